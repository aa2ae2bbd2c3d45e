// Launchers of the Cuda engine's fast convolution kernels (conv2d_fast.cu).
// Plain C++ without CUDA types: the stream travels as void* (a cudaStream_t;
// nullptr is the legacy default stream), so a plan that holds these calls
// needs no CUDA headers. The launchers exist in CUDA builds only.
//
// Calling convention, the same for every launcher:
//   1. config = choose_fast_config(op, d, sm_count, mode) (conv2d_fast_tiling.hpp),
//      optionally limit_fast_workspace(config, d, limit); config.applies must
//      hold, and it picks the launcher: kernel ImplicitGemm with variant 3 or
//      4, Depthwise, or BiasReduction.
//   2. the caller allocates config.workspace_bytes (== fast_workspace_bytes(
//      op, d, config)) of device memory, or passes nullptr and 0 when that is
//      zero. Launchers never allocate, never synchronise, and use the
//      workspace only between their first and last kernel on `stream`.
//   3. pointers are device pointers of contiguous NCHW / KCRS f32 tensors as
//      the Cuda engine receives them; outputs must not overlap inputs, and
//      every output element is written. 16-byte copies are used where a
//      tensor's base address is 16-byte aligned, single floats elsewhere.
// A config that does not match the launcher, or a workspace smaller than
// the config needs, throws dlrt::Error (Internal) before anything runs.
// Results are bitwise reproducible run to run on one device: no atomics,
// and every sum runs in an order fixed by the problem and the SM count.
#pragma once

#include <cstddef>

#include "kernels/cuda/conv2d_fast_tiling.hpp"

namespace dlrt::detail::cuda_conv2d_fast {

// Variant 3: implicit GEMM on fp32 FFMA (config.variant == 3, kernel ImplicitGemm).
// Backward data runs one GEMM per sub-pixel phase (config.phases launches).
void launch_forward_v3(const FastConvConfig& config, const ConvDims& d, const float* x,
                       const float* w, const float* bias, float* y, void* workspace,
                       std::size_t workspace_bytes, void* stream);
void launch_backward_data_v3(const FastConvConfig& config, const ConvDims& d, const float* dy,
                             const float* w, float* dx, void* workspace,
                             std::size_t workspace_bytes, void* stream);
void launch_backward_filter_v3(const FastConvConfig& config, const ConvDims& d, const float* x,
                               const float* dy, float* dw, void* workspace,
                               std::size_t workspace_bytes, void* stream);

// Variant 4: the same GEMMs on TF32 tensor cores (config.variant == 4);
// config.mode is Tf32 or Tf32x3.
void launch_forward_v4(const FastConvConfig& config, const ConvDims& d, const float* x,
                       const float* w, const float* bias, float* y, void* workspace,
                       std::size_t workspace_bytes, void* stream);
void launch_backward_data_v4(const FastConvConfig& config, const ConvDims& d, const float* dy,
                             const float* w, float* dx, void* workspace,
                             std::size_t workspace_bytes, void* stream);
void launch_backward_filter_v4(const FastConvConfig& config, const ConvDims& d, const float* x,
                               const float* dy, float* dw, void* workspace,
                               std::size_t workspace_bytes, void* stream);

// Depthwise (kernel Depthwise: C/g == 1 and K/g < 16), fp32 in every mode.
void launch_forward_depthwise(const FastConvConfig& config, const ConvDims& d, const float* x,
                              const float* w, const float* bias, float* y, void* workspace,
                              std::size_t workspace_bytes, void* stream);
void launch_backward_data_depthwise(const FastConvConfig& config, const ConvDims& d,
                                    const float* dy, const float* w, float* dx, void* workspace,
                                    std::size_t workspace_bytes, void* stream);
void launch_backward_filter_depthwise(const FastConvConfig& config, const ConvDims& d,
                                      const float* x, const float* dy, float* dw, void* workspace,
                                      std::size_t workspace_bytes, void* stream);

// Backward bias (kernel BiasReduction): K * chunks blocks, then chunks summed
// in order. Only N, K, P, Q of d are read.
void launch_backward_bias_split(const FastConvConfig& config, const ConvDims& d, const float* dy,
                                float* db, void* workspace, std::size_t workspace_bytes,
                                void* stream);

// The launchers as a table, for code compiled in every build (the GPU tests):
// null in CPU-only builds, set by conv2d_fast.cu when it is linked in.
struct FastConvLaunchers {
  decltype(&launch_forward_v3) forward_v3;
  decltype(&launch_backward_data_v3) backward_data_v3;
  decltype(&launch_backward_filter_v3) backward_filter_v3;
  decltype(&launch_forward_v4) forward_v4;
  decltype(&launch_backward_data_v4) backward_data_v4;
  decltype(&launch_backward_filter_v4) backward_filter_v4;
  decltype(&launch_forward_depthwise) forward_depthwise;
  decltype(&launch_backward_data_depthwise) backward_data_depthwise;
  decltype(&launch_backward_filter_depthwise) backward_filter_depthwise;
  decltype(&launch_backward_bias_split) backward_bias_split;
};

inline const FastConvLaunchers*& fast_conv_launchers() {
  static const FastConvLaunchers* table = nullptr;
  return table;
}

}  // namespace dlrt::detail::cuda_conv2d_fast
