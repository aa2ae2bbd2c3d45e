// The Cuda convolution engine's kernel variants: 1 = direct kernels,
// 2 = tiled implicit GEMM. Conv2dPlanOptions::variant forces one (the plan
// declines, with the reason, a variant that cannot run its problem);
// otherwise DLRT_CUDA_CONV2D_VARIANT, read once, or the engine's rule
// (choose_variant in conv2d_tiling.hpp). Backward bias has a single kernel.
#pragma once

#include "kernels/cuda/kernel_variant.hpp"

namespace dlrt::detail {

inline constexpr int kCudaConv2dVariants = 2;

// The variant an environment value asks for (see parse_kernel_variant).
inline int parse_cuda_conv2d_variant(const char* text) {
  return parse_kernel_variant(text, kCudaConv2dVariants);
}

}  // namespace dlrt::detail
