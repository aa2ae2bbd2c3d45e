// The engine registry and planning. Each engine of an op family derives from
// the family's interface (Conv2dEngine, ...) and registers itself from its
// own translation unit. Asked to plan a problem, an engine chooses everything
// once (kernel variant, cuDNN algorithm, descriptors, workspace) and returns
// a kernel that runs that choice, or declines with the reason (as ggml's
// supports_op, and oneDNN's primitive descriptor before its primitive).
// Running a kernel chooses and allocates nothing.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "dlrt/context.hpp"
#include "dlrt/engine.hpp"
#include "dlrt/error.hpp"
#include "runtime/engine_table.hpp"
#include "runtime/log.hpp"

namespace dlrt::detail {

// What every engine's kernel has besides running.
class KernelBase {
public:
  KernelBase(Engine engine, std::size_t workspace_bytes, std::string description)
      : engine_(engine), workspace_bytes_(workspace_bytes), description_(std::move(description)) {}
  virtual ~KernelBase() = default;
  KernelBase(const KernelBase&) = delete;
  KernelBase& operator=(const KernelBase&) = delete;

  Engine engine() const { return engine_; }
  // Scratch memory on the context's device that each run needs.
  std::size_t workspace_bytes() const { return workspace_bytes_; }
  // What was chosen, for logs and plan queries ("cudnn IMPLICIT_PRECOMP_GEMM").
  const std::string& description() const { return description_; }

private:
  Engine engine_;
  std::size_t workspace_bytes_;
  std::string description_;
};

// An engine's plan for one problem, or why it declines. `defer`, set with a
// kernel, says that the engine runs the problem but its measured rule
// expects a later engine of Auto's order to be faster: Auto tries those
// first and comes back to this one only when none of them plans it. An
// explicit request for the engine ignores it.
template <class Kernel>
struct Planned {
  std::shared_ptr<const Kernel> kernel;
  std::string reason;
  std::string defer = {};

  static Planned no(std::string why) { return {nullptr, std::move(why)}; }
};

// The reason an engine without numbered kernels gives for options.variant != 0.
inline std::string no_kernel_variants(Engine engine, int variant) {
  return "engine " + std::string(to_string(engine)) + " has no kernel variants (variant " +
         std::to_string(variant) + " was asked for)";
}

class EngineImpl {
public:
  virtual ~EngineImpl() = default;
  virtual Engine engine() const = 0;
};

template <class Family>
class Registry {
public:
  static Registry& instance() {
    static Registry registry;
    return registry;
  }
  void add(std::unique_ptr<Family> impl) {
    std::lock_guard lock(mutex_);
    note_built(Family::kFamily, impl->engine());
    impls_.push_back(std::move(impl));
  }
  const Family* find(Engine engine) const {
    std::lock_guard lock(mutex_);
    for (const auto& impl : impls_)
      if (impl->engine() == engine) return impl.get();
    return nullptr;
  }

private:
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Family>> impls_;
};

// Registers an engine at load time: `const Registrar<Conv2dEngine> r{...};`
template <class Family>
struct Registrar {
  explicit Registrar(std::unique_ptr<Family> impl) {
    Registry<Family>::instance().add(std::move(impl));
  }
};

// The outcome of planning one problem for a requested engine: the kernel of
// the engine that will run it, or the reason none can, and for Auto which
// engines were passed over and why.
template <class Kernel>
struct Resolution {
  std::shared_ptr<const Kernel> kernel;
  Engine engine = Engine::Auto;  // the engine that planned it (or was asked)
  std::string reason;            // why not; for Auto, what was passed over
  std::string defer = {};        // while resolving: the engine's rule passes it on
};

// Plans the problem on `requested` (Auto: the family's engines in order,
// the first that plans it). `plan(const Family&)` returns a Planned<Kernel>.
// Never throws for an engine that declines: the resolution says why.
template <class Family, class Kernel, class PlanFn>
Resolution<Kernel> resolve(Device device, Engine requested, PlanFn&& plan) {
  auto try_one = [&](Engine engine) -> Resolution<Kernel> {
    std::string why = engine_unavailable_reason(Family::kFamily, engine, device);
    if (!why.empty()) return {nullptr, engine, std::move(why)};
    const Family* impl = Registry<Family>::instance().find(engine);
    Planned<Kernel> planned = plan(*impl);
    return {std::move(planned.kernel), engine, std::move(planned.reason), std::move(planned.defer)};
  };
  if (requested != Engine::Auto) {
    Resolution<Kernel> choice = try_one(requested);
    choice.defer.clear();
    return choice;
  }

  std::string declined;
  Resolution<Kernel> deferred;
  for (Engine engine : auto_order(Family::kFamily)) {
    if (engine_device(engine) != device.kind) continue;
    Resolution<Kernel> choice = try_one(engine);
    if (choice.kernel && !choice.defer.empty()) {
      if (!deferred.kernel) deferred = std::move(choice);
      continue;
    }
    if (choice.kernel) {
      if (deferred.kernel) {
        if (!declined.empty()) declined += "; ";
        declined += std::string(to_string(deferred.engine)) + " passed it on: " + deferred.defer;
      }
      choice.reason = declined.empty() ? "first choice" : "after " + declined;
      return choice;
    }
    if (!declined.empty()) declined += "; ";
    declined += std::string(to_string(engine)) + " declined: " + choice.reason;
  }
  if (deferred.kernel) {
    deferred.reason = "no later engine runs it (" + declined + ")";
    deferred.defer.clear();
    return deferred;
  }
  return {nullptr, Engine::Auto,
          "no engine supports this problem on " + to_string(device) + " (" + declined + ")"};
}

// The error of an op whose engine cannot run it.
[[noreturn]] inline void throw_unsupported(std::string_view op, Engine requested, Device device,
                                           const std::string& reason) {
  const std::string who = requested == Engine::Auto ? std::string("Engine::Auto")
                                                    : "engine " + std::string(to_string(requested));
  throw Error(Error::Kind::Unsupported, std::string(op) + ": " + who +
                                            " cannot run this problem on " + to_string(device) +
                                            ": " + reason);
}

}  // namespace dlrt::detail
