#include <algorithm>
#include <cctype>
#include <string>

#include "dlrt/device.hpp"
#include "dlrt/engine.hpp"
#include "dlrt/error.hpp"
#include "runtime/gpu.hpp"
#include "runtime/registry.hpp"

namespace dlrt {

const char* to_string(Engine engine) noexcept {
  switch (engine) {
    case Engine::Auto:
      return "auto";
    case Engine::Reference:
      return "reference";
    case Engine::Cpu:
      return "cpu";
    case Engine::Cuda:
      return "cuda";
    case Engine::Cudnn:
      return "cudnn";
  }
  return "unknown";
}

Engine engine_from_string(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (Engine engine : {Engine::Auto, Engine::Reference, Engine::Cpu, Engine::Cuda, Engine::Cudnn})
    if (lower == to_string(engine)) return engine;
  throw Error(Error::Kind::InvalidArgument,
              "engine_from_string: argument 'name' = \"" + std::string(name) +
                  "\": must be one of auto, reference, cpu, cuda, cudnn");
}

namespace detail {

std::span<const Engine> auto_preference(Device::Kind kind) {
  static constexpr Engine kCpu[] = {Engine::Cpu, Engine::Reference};
  static constexpr Engine kCuda[] = {Engine::Cudnn, Engine::Cuda};
  if (kind == Device::Kind::Cuda) return kCuda;
  return kCpu;
}

std::string engine_unavailable_reason(Engine engine, bool registered, Device::Kind engine_kind,
                                      Device device) {
  bool gpu_engine = engine == Engine::Cuda || engine == Engine::Cudnn;
  if (!registered) {
    if (gpu_engine && !gpu::built())
      return std::string("engine ") + to_string(engine) +
             " is not in this build of libdlrt (configured with DLRT_WITH_CUDA=OFF)";
    return std::string("engine ") + to_string(engine) + " does not implement this op";
  }
  if (engine_kind != device.kind) {
    std::string why = std::string("engine ") + to_string(engine) + " runs on " +
                      (engine_kind == Device::Kind::Cuda ? "CUDA devices" : "the CPU") +
                      " but the tensors are on " + to_string(device);
    if (engine_kind == Device::Kind::Cuda && !cuda_available())
      why += ", and this machine has no usable GPU (" + cuda_unavailable_reason() + ")";
    return why;
  }
  return {};
}

}  // namespace detail
}  // namespace dlrt
