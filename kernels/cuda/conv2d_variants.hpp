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

namespace dlrt::detail {

inline constexpr int kCudaConv2dVariants = 2;

// Throws dlrt::Error (InvalidArgument) for a value outside [0, kCudaConv2dVariants].
void set_cuda_conv2d_variant(int variant);
int cuda_conv2d_variant();

// The variant an environment value asks for: 0 for null or empty, -1 for
// anything but a single digit in [0, kCudaConv2dVariants].
inline int parse_cuda_conv2d_variant(const char* text) {
  if (text == nullptr || text[0] == '\0') return 0;
  if (text[1] != '\0' || text[0] < '0' || text[0] > '0' + kCudaConv2dVariants) return -1;
  return text[0] - '0';
}

}  // namespace dlrt::detail
