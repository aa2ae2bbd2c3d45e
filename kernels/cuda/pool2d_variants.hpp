// Choosing the Cuda engine's pooling backward kernel by hand, for tests and
// benchmarks that compare them:
//   0: the default, which is 1;
//   1: gather, one thread per input element (deterministic);
//   2: scatter with atomicAdd, one thread per output (the float sums' order,
//      hence their last bits, may vary run to run).
// The environment variable DLRT_CUDA_POOL2D_BACKWARD_VARIANT sets the
// starting value (read once, on first use; an invalid value is logged and
// ignored); set_cuda_pool2d_backward_variant overrides it for the rest of the
// process. Plain C++: no CUDA types, so host-only code can include it; the
// setting lives in runtime/kernel_variants.cpp, which every build compiles.
#pragma once

#include "kernels/cuda/kernel_variant.hpp"

namespace dlrt::detail {

inline constexpr int kCudaPool2dBackwardVariants = 2;

// Throws dlrt::Error (InvalidArgument) for a value outside [0, kCudaPool2dBackwardVariants].
void set_cuda_pool2d_backward_variant(int variant);
int cuda_pool2d_backward_variant();

// The variant an environment value asks for (see parse_kernel_variant).
inline int parse_cuda_pool2d_backward_variant(const char* text) {
  return parse_kernel_variant(text, kCudaPool2dBackwardVariants);
}

}  // namespace dlrt::detail
