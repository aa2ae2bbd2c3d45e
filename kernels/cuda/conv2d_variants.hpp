// The Cuda convolution engine's kernel variants, and the rule its plan uses
// to pick one:
//   1  direct kernels (backward bias: one block per channel, tree reduction)
//   2  tiled implicit GEMM, 64x64x8 (backward filter with a depth split)
//   3  the fast kernels of conv2d_fast.cu in fp32: a pipelined 128x128 /
//      128x64 / 64x128 implicit GEMM on FFMA with split-K and sub-pixel
//      backward data, the depthwise kernels, and the split bias reduction
//   4  the same implicit GEMM on TF32 tensor cores, in 3xTF32 (about fp32
//      accuracy; see docs/cuda-conv2d-fast.md for the bound). Plain TF32 has
//      no plan option yet, so no plan runs it.
// Conv2dPlanOptions::variant forces one (the plan declines, with the reason,
// a variant that cannot run its problem); otherwise DLRT_CUDA_CONV2D_VARIANT,
// read once, is a preference that falls back to the engine's own rule where
// it cannot run; with neither the engine chooses (choose_cuda_conv2d below).
// Plain C++: the CPU tests replay the choice.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include "kernels/cuda/conv2d_fast_tiling.hpp"
#include "kernels/cuda/conv2d_tiling.hpp"
#include "kernels/cuda/kernel_variant.hpp"
#include "runtime/conv2d_geometry.hpp"

namespace dlrt::detail {

inline constexpr int kCudaConv2dVariants = 4;

// The variant an environment value asks for (see parse_kernel_variant).
inline int parse_cuda_conv2d_variant(const char* text) {
  return parse_kernel_variant(text, kCudaConv2dVariants);
}

// Why a plan option names no variant of the engine, or empty.
inline std::string cuda_conv2d_variant_range_reason(int variant) {
  if (variant >= 0 && variant <= kCudaConv2dVariants) return {};
  return "engine cuda has conv2d variants 1 (direct), 2 (implicit GEMM), 3 (fast fp32 kernels: "
         "pipelined implicit GEMM, depthwise, split bias reduction) and 4 (tensor-core implicit "
         "GEMM, 3xTF32), not " +
         std::to_string(variant);
}

// What the device contributes to the choice.
// Whether the engine's own rule may pick variant 3. Off until a GPU run has
// verified the fast kernels against Reference (tools/gpu-suite.sh): until
// then they run only when a plan option or DLRT_CUDA_CONV2D_VARIANT asks.
inline constexpr bool kFastConvByDefault = false;

struct CudaConv2dDevice {
  bool fast_by_default = kFastConvByDefault;  // the rule below; tests set it to check both
  int sm_count = 1;                           // split-K of variants 3 and 4
  int compute_capability_major = 8;           // variant 4 needs mma.sync: 8 or newer
  std::size_t workspace_limit_bytes = 0;      // ContextOptions::workspace_limit_bytes
};

// A plan's kernel: variant 0 means declined, with `reason`.
struct CudaConv2dChoice {
  int variant = 0;
  std::string reason;
  int splits = 1;                         // variant 2's backward-filter depth split
  cuda_conv2d_fast::FastConvConfig fast;  // variants 3 and 4 (fast.applies)
  std::size_t workspace_bytes = 0;        // what each run needs, within the limit
  std::string fast_declined;              // why a plan that could have taken 3 did not
};

namespace cuda_conv2d_choice {

inline CudaConv2dChoice declined(std::string why) {
  CudaConv2dChoice c;
  c.reason = std::move(why);
  return c;
}

// Variant 3 or 4 from the fast chooser, held to the workspace limit; empty
// `reason` of the result when it can run `variant`.
inline CudaConv2dChoice fast(Conv2dOp op, const cuda_conv2d::ConvDims& d, int variant,
                             const CudaConv2dDevice& dev) {
  namespace fc = cuda_conv2d_fast;
  const fc::MathMode mode = variant == 4 ? fc::MathMode::Tf32x3 : fc::MathMode::Fp32;
  const fc::FastConvConfig config = fc::limit_fast_workspace(
      fc::choose_fast_config(op, d, dev.sm_count, mode), d, dev.workspace_limit_bytes);
  if (!config.applies) return declined(config.reason);
  if (config.variant != variant)  // variant 4 on a depthwise layer (bias never gets here)
    return declined(
        "variant 4 runs implicit GEMMs on tensor cores; this problem takes variant 3 (" +
        fc::describe(config) + ")");
  if (variant == 4 && dev.compute_capability_major < 8)
    return declined(
        "variant 4 needs compute capability 8.0 or newer (mma.sync TF32); this "
        "device has " +
        std::to_string(dev.compute_capability_major) + ".x");
  CudaConv2dChoice c;
  c.variant = variant;
  c.fast = config;
  c.workspace_bytes = config.workspace_bytes;
  return c;
}

// Variants 1 and 2 by the rule of conv2d_tiling.hpp (`asked` 0, 1 or 2).
inline CudaConv2dChoice classic(Conv2dOp op, const cuda_conv2d::ConvDims& d, int asked,
                                const CudaConv2dDevice& dev) {
  CudaConv2dChoice c;
  c.variant = cuda_conv2d::choose_variant(op, d, asked);
  if (op == Conv2dOp::BackwardFilter && c.variant == 2) {
    const cuda_conv2d::BackwardFilterGemm gemm{d};
    const std::int64_t slice = std::int64_t{d.K} * d.Cg * d.R * d.S;
    c.splits =
        cuda_conv2d::choose_splits(cuda_conv2d::grid_blocks(cuda_conv2d::make_gemm_grid(gemm)),
                                   gemm.depth(), slice, dev.workspace_limit_bytes);
    if (c.splits > 1)
      c.workspace_bytes =
          static_cast<std::size_t>(c.splits) * static_cast<std::size_t>(slice) * sizeof(float);
  }
  return c;
}

}  // namespace cuda_conv2d_choice

// The plan's choice. `option` is Conv2dPlanOptions::variant (0..4; a value
// outside is the caller's to decline, see cuda_conv2d_variant_range_reason),
// `environment` DLRT_CUDA_CONV2D_VARIANT's (0..4). A forced variant runs or
// declines; the environment's is taken where it can run, else the engine
// chooses. The engine's own rule (with dev.fast_by_default): variant 3 wherever the fast chooser
// applies within the workspace limit (fp32 only: never variant 4), else
// variants 1 and 2 as before (choose_variant), with fast_declined saying why.
// Precondition: cuda_conv2d::index_limit_reason(op, g) is empty.
inline CudaConv2dChoice choose_cuda_conv2d(Conv2dOp op, const cuda_conv2d::ConvDims& d, int option,
                                           int environment, const CudaConv2dDevice& dev) {
  namespace choice = cuda_conv2d_choice;
  const bool forced = option != 0;
  int asked = forced ? option : environment;
  const std::string name = "variant " + std::to_string(asked);

  if (op == Conv2dOp::BackwardBias && (asked == 2 || asked == 4)) {
    if (forced)
      return choice::declined(
          "conv2d_backward_bias has Cuda kernels 1 (one block per channel) "
          "and 3 (split reduction), not " +
          name);
    asked = 0;
  }
  if (asked == 3 || asked == 4) {
    CudaConv2dChoice c = choice::fast(op, d, asked, dev);
    if (c.variant != 0) return c;
    if (forced) return choice::declined(name + " cannot run this problem: " + c.reason);
    asked = 0;  // the environment's preference cannot run here: the engine chooses
  }
  if (asked == 0 && !dev.fast_by_default) {
    CudaConv2dChoice old = choice::classic(op, d, 0, dev);
    old.fast_declined =
        "variants 3 and 4 run only when asked for until a GPU run has verified them";
    return old;
  }
  if (asked == 0) {
    CudaConv2dChoice c = choice::fast(op, d, 3, dev);
    if (c.variant != 0) return c;
    CudaConv2dChoice old = choice::classic(op, d, 0, dev);
    old.fast_declined = std::move(c.reason);
    return old;
  }
  CudaConv2dChoice c = choice::classic(op, d, asked, dev);
  if (forced && c.variant != asked)
    return choice::declined(op == Conv2dOp::BackwardBias
                                ? "conv2d_backward_bias has no variant " + std::to_string(asked)
                                : name +
                                      " cannot run this problem (its grid would exceed 2^31 - 1 "
                                      "blocks)");
  return c;
}

// The plan's description: "cuda variant 2 (implicit GEMM), depth split 8",
// "cuda variant 3 (fp32) implicit GEMM 128x64x8, 4 stages, 16 splits", ...
inline std::string describe(Conv2dOp op, const CudaConv2dChoice& c) {
  if (c.variant == 0) return "declined: " + c.reason;
  if (c.variant >= 3) {
    if (c.fast.kernel == cuda_conv2d_fast::FastKernel::ImplicitGemm)
      return "cuda " + cuda_conv2d_fast::describe(c.fast);
    return "cuda variant 3: " + cuda_conv2d_fast::describe(c.fast);
  }
  if (op == Conv2dOp::BackwardBias) return "cuda variant 1 (per-channel tree reduction)";
  return "cuda variant " + std::to_string(c.variant) +
         (c.variant == 1 ? " (direct)" : " (implicit GEMM)") +
         (c.splits > 1 ? ", depth split " + std::to_string(c.splits) : "");
}

}  // namespace dlrt::detail
