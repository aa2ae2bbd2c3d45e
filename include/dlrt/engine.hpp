// Engines: the implementations an op can run on, and the op families they
// implement. Which engines exist, on which device, and the order Engine::Auto
// tries them in for each family come from one table inside the library;
// tests, benchmarks and tools ask it (registered_engines) instead of listing
// engines themselves.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "dlrt/device.hpp"
#include "dlrt/export.hpp"

namespace dlrt {

enum class Engine {
  Auto,       // the best engine that supports the problem on the tensors' device
  Reference,  // plain loops with double accumulation: the oracle (CPU)
  Cpu,        // the fast CPU fallback: packing + OpenBLAS on dlrt's threads (CPU)
  Cuda,       // dlrt's own CUDA kernels (GPU)
  Cudnn,      // cuDNN 9, for comparison (GPU)
  Onednn,     // oneDNN (Intel's CPU library, as PyTorch's CPU path), beside Cpu (CPU)
};

// The groups of ops that engines implement as a whole.
enum class OpFamily {
  Conv2d,     // conv2d_forward, conv2d_backward_data, _filter, _bias
  Pool2d,     // pool2d_forward, pool2d_backward
  Rnn,        // rnn_forward, rnn_backward_data, rnn_backward_weights, rnn_cell_*
  Linear,     // linear_forward, linear_backward_*, gram
  Pointwise,  // activations forward and backward, add, scale
  Loss,       // softmax cross-entropy forward and backward
  Optimizer,  // the optimizers' parameter updates (optim::Sgd, optim::Adam) and clip_grad_norm
};

DLRT_EXPORT const char* to_string(Engine engine) noexcept;
DLRT_EXPORT const char* to_string(OpFamily family) noexcept;
// "auto", "reference", "cpu", ... (any case); throws dlrt::Error otherwise.
DLRT_EXPORT Engine engine_from_string(std::string_view name);

// Every engine the library knows (never Auto), whether or not this build holds it.
DLRT_EXPORT std::vector<Engine> known_engines();
// The engines that implement `family`, in the order Engine::Auto tries them
// on each device (best first), whether or not this build holds them: an
// engine that cannot run here says why when asked (a GPU engine in a
// CPU-only build, or on a machine without a GPU).
DLRT_EXPORT std::vector<Engine> registered_engines(OpFamily family);
// The device kind an engine runs on (Cpu for Auto).
DLRT_EXPORT Device::Kind engine_device(Engine engine) noexcept;
// The pairs of engines dlrt measures against each other, (own, yardstick):
// a benchmark report shows t(own) / t(yardstick) for each.
struct EngineComparison {
  Engine own;
  Engine yardstick;
};
DLRT_EXPORT std::vector<EngineComparison> engine_comparisons();
// True when this build of libdlrt holds `engine`'s implementation of `family`.
DLRT_EXPORT bool engine_built(Engine engine, OpFamily family) noexcept;

// The answer to "can this engine run this problem here?". For Auto,
// `engine` is the engine Auto would pick.
struct EngineQuery {
  bool supported = false;
  Engine engine = Engine::Auto;
  std::string reason;  // why not, when !supported; the plan chosen, when supported
};

}  // namespace dlrt
