// Engines: the implementations an op can run on.
#pragma once

#include <string>
#include <string_view>

#include "dlrt/export.hpp"

namespace dlrt {

enum class Engine {
  Auto,       // the best engine that supports the problem on the tensors' device
  Reference,  // plain loops with double accumulation: the oracle (CPU)
  Cpu,        // the fast CPU fallback: packing + OpenBLAS, OpenMP (CPU)
  Cuda,       // dlrt's own CUDA kernels (GPU)
  Cudnn,      // cuDNN 9, for comparison (GPU)
};

DLRT_EXPORT const char* to_string(Engine engine) noexcept;
// "auto", "reference", "cpu", "cuda", "cudnn" (any case); throws dlrt::Error otherwise.
DLRT_EXPORT Engine engine_from_string(std::string_view name);

// The answer to "can this engine run this problem here?". For Auto,
// `engine` is the engine Auto would pick.
struct EngineQuery {
  bool supported = false;
  Engine engine = Engine::Auto;
  std::string reason;  // why not, when !supported
};

}  // namespace dlrt
