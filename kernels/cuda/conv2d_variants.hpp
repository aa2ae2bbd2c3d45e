// Choosing the Cuda convolution engine's kernel variant by hand, for tests
// and benchmarks: 0 = auto (the engine's own rule), 1 = direct kernels,
// 2 = tiled implicit GEMM. The environment variable DLRT_CUDA_CONV2D_VARIANT
// sets the starting value (read once, on first use); set_cuda_conv2d_variant
// overrides it for the rest of the process. A forced variant 2 still falls
// back to variant 1 where its grid would not fit (see choose_variant in
// conv2d_tiling.hpp), and backward bias has a single kernel.
// Plain C++: no CUDA types, so host-only code can include it; the functions
// are defined in runtime/kernel_variants.cpp, which every build compiles.
#pragma once

#include "kernels/cuda/kernel_variant.hpp"

namespace dlrt::detail {

inline constexpr int kCudaConv2dVariants = 2;

// Throws dlrt::Error (InvalidArgument) for a value outside [0, kCudaConv2dVariants].
void set_cuda_conv2d_variant(int variant);
int cuda_conv2d_variant();

// The variant an environment value asks for (see parse_kernel_variant).
inline int parse_cuda_conv2d_variant(const char* text) {
  return parse_kernel_variant(text, kCudaConv2dVariants);
}

}  // namespace dlrt::detail
