// The Cuda pooling engine's backward variants, for tests and benchmarks that
// compare them:
//   1: gather, one thread per input element (deterministic; the default);
//   2: scatter with atomicAdd, one thread per output (the float sums' order,
//      hence their last bits, may vary run to run).
// Pool2dPlanOptions::variant forces one; otherwise
// DLRT_CUDA_POOL2D_BACKWARD_VARIANT, read once, or the default.
#pragma once

#include "kernels/cuda/kernel_variant.hpp"

namespace dlrt::detail {

inline constexpr int kCudaPool2dBackwardVariants = 2;

// The variant an environment value asks for (see parse_kernel_variant).
inline int parse_cuda_pool2d_backward_variant(const char* text) {
  return parse_kernel_variant(text, kCudaPool2dBackwardVariants);
}

}  // namespace dlrt::detail
