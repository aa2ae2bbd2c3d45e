// The engine registry. Each engine of an op family derives from the family's
// interface (Conv2dEngine, ...), says which device it runs on and, per
// problem, whether it supports it and why not (as ggml's supports_op).
// Engines register themselves from their own translation unit; dispatch asks
// them in a fixed preference order and logs the choice.
#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dlrt/context.hpp"
#include "dlrt/engine.hpp"
#include "dlrt/error.hpp"
#include "runtime/log.hpp"

namespace dlrt::detail {

struct Support {
  bool ok = true;
  std::string reason;
  static Support yes() { return {}; }
  static Support no(std::string reason) { return {false, std::move(reason)}; }
};

class EngineImpl {
public:
  virtual ~EngineImpl() = default;
  virtual Engine engine() const = 0;
  virtual Device::Kind device_kind() const = 0;
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

// Registers an engine at load time: `static Registrar<Conv2dEngine> r{...};`
template <class Family>
struct Registrar {
  explicit Registrar(std::unique_ptr<Family> impl) {
    Registry<Family>::instance().add(std::move(impl));
  }
};

// Auto's preference on each device kind, best first. cuDNN leads on the GPU
// because it is the faster engine on most shapes; dlrt's own kernels are the
// fallback for what cuDNN declines.
std::span<const Engine> auto_preference(Device::Kind kind);

// Why `engine` cannot run on `device` at all (not built in, wrong device,
// no GPU); empty when it can be asked about problems.
std::string engine_unavailable_reason(Engine engine, bool registered, Device::Kind engine_kind,
                                      Device device);

// The engine chosen for one problem, with its implementation (null when
// none can run it).
template <class Family>
struct Resolution {
  EngineQuery answer;
  const Family* impl = nullptr;
};

// Resolves `requested` for one problem. `supports(const Family&)` returns
// a Support. Never throws for an unsupported engine: the answer says why.
template <class Family, class SupportsFn>
Resolution<Family> resolve_engine(Device device, Engine requested, SupportsFn&& supports) {
  auto try_one = [&](Engine engine) -> Resolution<Family> {
    const Family* impl = Registry<Family>::instance().find(engine);
    std::string why = engine_unavailable_reason(engine, impl != nullptr,
                                                impl ? impl->device_kind() : device.kind, device);
    if (!why.empty()) return {{false, engine, why}, nullptr};
    Support support = supports(*impl);
    return {{support.ok, engine, support.reason}, support.ok ? impl : nullptr};
  };
  if (requested != Engine::Auto) return try_one(requested);

  std::string declined;
  for (Engine engine : auto_preference(device.kind)) {
    Resolution<Family> choice = try_one(engine);
    if (choice.answer.supported) {
      choice.answer.reason = declined.empty() ? "first choice" : "after " + declined;
      return choice;
    }
    if (!declined.empty()) declined += "; ";
    declined += std::string(to_string(engine)) + " declined: " + choice.answer.reason;
  }
  return {{false, Engine::Auto, "no engine supports this problem (" + declined + ")"}, nullptr};
}

template <class Family, class SupportsFn>
EngineQuery query_engine(Device device, Engine requested, SupportsFn&& supports) {
  return resolve_engine<Family>(device, requested, std::forward<SupportsFn>(supports)).answer;
}

// resolve_engine, then the implementation to run; throws Error(Unsupported)
// with the reason when there is none. Logs the choice at debug level.
template <class Family, class SupportsFn>
const Family& select_engine(const char* op, Device device, Engine requested,
                            SupportsFn&& supports) {
  const Resolution<Family> choice =
      resolve_engine<Family>(device, requested, std::forward<SupportsFn>(supports));
  const EngineQuery& answer = choice.answer;
  if (choice.impl == nullptr) {
    std::string who =
        requested == Engine::Auto ? "Engine::Auto" : "engine " + std::string(to_string(requested));
    throw Error(Error::Kind::Unsupported, std::string(op) + ": " + who +
                                              " cannot run this problem on " + to_string(device) +
                                              ": " + answer.reason);
  }
  log(LogLevel::Debug, op, ": engine=", to_string(answer.engine), " device=", to_string(device),
      requested == Engine::Auto ? " (auto: " + answer.reason + ")" : std::string(" (requested)"));
  return *choice.impl;
}

}  // namespace dlrt::detail
