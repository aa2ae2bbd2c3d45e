// What every family's public entry points share once their arguments are
// validated: resolving and caching a plan, the workspace a run takes, and
// the rule that only dlrt::Error leaves the library.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>

#include "dlrt/context.hpp"
#include "dlrt/error.hpp"
#include "dlrt/tensor.hpp"
#include "runtime/context_impl.hpp"
#include "runtime/plan_cache.hpp"
#include "runtime/registry.hpp"
#include "runtime/validate.hpp"

namespace dlrt::detail {

// Runs `body`, turning what is not a dlrt::Error into one: std::bad_alloc
// into OutOfMemory, anything else into Internal, each naming `op`.
template <class Body>
decltype(auto) translate_exceptions(std::string_view op, Body&& body) {
  try {
    return body();
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Error(Error::Kind::OutOfMemory,
                std::string(op) + ": a host allocation failed (std::bad_alloc)");
  } catch (const std::exception& e) {
    throw Error(Error::Kind::Internal, std::string(op) + ": " + e.what());
  } catch (...) {
    throw Error(Error::Kind::Internal, std::string(op) + ": an unknown exception");
  }
}

// A family's plan state, resolved once for a key and kept in ctx's plan
// cache: `State` holds a shared_ptr<const Kernel> named kernel (null when
// no engine can run the problem) and the resolution's reason.
template <class State, class MakeState>
std::shared_ptr<const State> cached_state(Context& ctx, const PlanKey& key, MakeState&& make) {
  PlanCache& cache = PlanCache::of(ctx);
  if (std::shared_ptr<const void> hit = cache.find(key))
    return std::static_pointer_cast<const State>(hit);
  std::shared_ptr<const State> state = make();
  cache.insert(key, state);
  return state;
}

// The scratch memory of one run: `workspace` when the caller gave one (an
// f32 tensor on `device` of at least `bytes`), else ctx's own.
inline void* run_workspace(std::string_view op, Context& ctx, std::size_t bytes,
                           Tensor* workspace) {
  if (workspace != nullptr) {
    if (!workspace->defined())
      invalid_argument(op, "workspace", "undefined tensor", "must be a defined tensor or null");
    if (workspace->device() != ctx.device())
      invalid_argument(op, "workspace.device", to_string(workspace->device()),
                       "must be the context's device " + to_string(ctx.device()));
    if (workspace->bytes() < bytes)
      invalid_argument(
          op, "workspace", std::to_string(workspace->bytes()) + " bytes",
          "must hold at least the plan's workspace_bytes() = " + std::to_string(bytes));
    return workspace->data();
  }
  return bytes > 0 ? ctx.impl().workspace(bytes) : nullptr;
}

// A plan runs on a context of its own device.
inline void check_plan_device(std::string_view op, const Context& ctx, Device plan_device) {
  if (ctx.device() != plan_device)
    invalid_argument(op, "ctx", to_string(ctx.device()),
                     "must be on the plan's device " + to_string(plan_device));
}

}  // namespace dlrt::detail
