// The Cuda convolution engine: dlrt's own kernels, without cuBLAS or cuDNN.
// Each op has numbered variants with one launcher each, and one dispatch
// point, the plan, that picks a variant (choose_cuda_conv2d in
// conv2d_variants.hpp: forced by the plan option, preferred by the
// environment, or the engine's rule):
//   1  direct: one thread per output element (backward bias: one block per
//      channel, tree reduction)
//   2  implicit GEMM: 64x64x8 shared-memory tiles, 256 threads, 4x4 outputs
//      per thread (backward filter adds a depth split summed in fixed order)
//   3  the fast fp32 kernels of conv2d_fast.cu: pipelined implicit GEMM with
//      split-K and sub-pixel backward data, depthwise kernels, split bias
//   4  the same implicit GEMM on TF32 tensor cores, 3xTF32
// No kernel uses atomics, and every output element is summed in a fixed
// order, so results repeat bit for bit run to run. Variants 1 and 2 fix it by
// the problem alone; 3 and 4 also by the SM count (split-K), so GPUs of
// different sizes may differ in the last bits.
// Indices are 32-bit; the plan declines tensors past kMaxElements.
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "kernels/cuda/conv2d_fast.hpp"
#include "kernels/cuda/conv2d_tiling.hpp"
#include "kernels/cuda/conv2d_variants.hpp"
#include "runtime/context_impl.hpp"
#include "runtime/conv2d_engine.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/cuda_handles.hpp"
#include "runtime/log.hpp"

namespace dlrt::detail {

namespace cuda_conv2d {
namespace {

namespace fast = cuda_conv2d_fast;

int blocks_for(std::int64_t elements, int threads) {
  return static_cast<int>((elements + threads - 1) / threads);
}

__device__ inline int global_thread() {
  return static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
}

// ---------------------------------------------------------------------------
// Variant 1: the definition in conv.hpp, one thread per output element.

__global__ void __launch_bounds__(kDirectThreads)
    forward_direct_kernel(ConvDims d, const float* __restrict__ x, const float* __restrict__ w,
                          const float* __restrict__ bias, float* __restrict__ y) {
  const int index = global_thread();
  if (index < d.N * d.K * d.P * d.Q) y[index] = direct_forward(d, x, w, bias, index);
}

__global__ void __launch_bounds__(kDirectThreads)
    backward_data_direct_kernel(ConvDims d, const float* __restrict__ dy,
                                const float* __restrict__ w, float* __restrict__ dx) {
  const int index = global_thread();
  if (index < d.N * d.C * d.H * d.W) dx[index] = direct_backward_data(d, dy, w, index);
}

__global__ void __launch_bounds__(kDirectThreads)
    backward_filter_direct_kernel(ConvDims d, const float* __restrict__ x,
                                  const float* __restrict__ dy, float* __restrict__ dw) {
  const int index = global_thread();
  if (index < d.K * d.Cg * d.R * d.S) dw[index] = direct_backward_filter(d, x, dy, index);
}

// ---------------------------------------------------------------------------
// Variant 2: implicit GEMM, Chetlur et al. 2014, "cuDNN: Efficient Primitives for Deep Learning".
// Register blocking as in Volkov and Demmel 2008, "Benchmarking GPUs to tune dense linear algebra".
// The operand tiles are gathered from the tensors on the fly. One block owns a 64x64 tile of one
// group's C over one depth split; the next depth tile's global loads are issued before the current
// one is multiplied, so their latency overlaps the arithmetic.
template <class Op>
__global__ void __launch_bounds__(kThreads)
    implicit_gemm_kernel(Op op, GemmGrid grid, const float* __restrict__ a,
                         const float* __restrict__ b, const float* __restrict__ row_bias,
                         float* __restrict__ c, int split_slice) {
  __shared__ float a_tile[kSmemFloats];
  __shared__ float b_tile[kSmemFloats];
  const int tid = static_cast<int>(threadIdx.x);
  const BlockTile t = block_tile(grid, op.depth(), static_cast<int>(blockIdx.x));

  float acc[kMicroM][kMicroN] = {};
  float a_regs[kLoadsA], b_regs[kLoadsB];
  load_a_tile(op, a, t, t.k_begin, tid, a_regs);
  load_b_tile(op, b, t, t.k_begin, tid, b_regs);
  for (int k0 = t.k_begin; k0 < t.k_end; k0 += kTileK) {
    store_tile(a_regs, a_tile, tid, Op::kAKFastest);
    store_tile(b_regs, b_tile, tid, Op::kBKFastest);
    __syncthreads();
    if (k0 + kTileK < t.k_end) {
      load_a_tile(op, a, t, k0 + kTileK, tid, a_regs);
      load_b_tile(op, b, t, k0 + kTileK, tid, b_regs);
    }
    multiply_tile(a_tile, b_tile, tid, acc);
    __syncthreads();  // before the next iteration overwrites the tiles
  }
  store_c_tile(op, c + static_cast<std::ptrdiff_t>(t.split) * split_slice, row_bias, t, tid, acc);
}

// dw from the depth split's partial slices, in split order.
__global__ void __launch_bounds__(kDirectThreads)
    split_sum_kernel(const float* __restrict__ partials, int splits, int slice,
                     float* __restrict__ out) {
  const int index = global_thread();
  if (index < slice) out[index] = split_sum(partials, splits, slice, index);
}

// ---------------------------------------------------------------------------
// Backward bias: one block per channel, strided per-thread sums, then a
// shared-memory tree (Harris 2007, "Optimizing Parallel Reduction in CUDA",
// sequential addressing). The tree's shape is fixed, hence so is the order.
__global__ void __launch_bounds__(kBiasThreads)
    backward_bias_kernel(int N, int K, int PQ, const float* __restrict__ dy,
                         float* __restrict__ db) {
  __shared__ float partial[kBiasThreads];
  const int k = static_cast<int>(blockIdx.x), tid = static_cast<int>(threadIdx.x);
  partial[tid] = bias_thread_sum(dy, N, K, PQ, k, tid);
  __syncthreads();
  for (int width = kBiasThreads / 2; width > 0; width /= 2) {
    if (tid < width) partial[tid] += partial[tid + width];
    __syncthreads();
  }
  if (tid == 0) db[k] = partial[0];
}

// ---------------------------------------------------------------------------
// Launchers, one per variant and op.

void launch_forward_direct(cudaStream_t stream, const ConvDims& d, const float* x, const float* w,
                           const float* bias, float* y) {
  const std::int64_t elements = std::int64_t{d.N} * d.K * d.P * d.Q;
  forward_direct_kernel<<<blocks_for(elements, kDirectThreads), kDirectThreads, 0, stream>>>(
      d, x, w, bias, y);
  DLRT_CUDA_CHECK_LAUNCH();
}

void launch_forward_implicit_gemm(cudaStream_t stream, const ConvDims& d, const float* x,
                                  const float* w, const float* bias, float* y) {
  const ForwardGemm gemm{d};
  const GemmGrid grid = make_gemm_grid(gemm);
  implicit_gemm_kernel<<<static_cast<unsigned>(grid_blocks(grid)), kThreads, 0, stream>>>(
      gemm, grid, w, x, bias, y, 0);
  DLRT_CUDA_CHECK_LAUNCH();
}

void launch_backward_data_direct(cudaStream_t stream, const ConvDims& d, const float* dy,
                                 const float* w, float* dx) {
  const std::int64_t elements = std::int64_t{d.N} * d.C * d.H * d.W;
  backward_data_direct_kernel<<<blocks_for(elements, kDirectThreads), kDirectThreads, 0, stream>>>(
      d, dy, w, dx);
  DLRT_CUDA_CHECK_LAUNCH();
}

void launch_backward_data_implicit_gemm(cudaStream_t stream, const ConvDims& d, const float* dy,
                                        const float* w, float* dx) {
  const BackwardDataGemm gemm{d};
  const GemmGrid grid = make_gemm_grid(gemm);
  implicit_gemm_kernel<<<static_cast<unsigned>(grid_blocks(grid)), kThreads, 0, stream>>>(
      gemm, grid, w, dy, nullptr, dx, 0);
  DLRT_CUDA_CHECK_LAUNCH();
}

void launch_backward_filter_direct(cudaStream_t stream, const ConvDims& d, const float* x,
                                   const float* dy, float* dw) {
  const std::int64_t elements = std::int64_t{d.K} * d.Cg * d.R * d.S;
  backward_filter_direct_kernel<<<blocks_for(elements, kDirectThreads), kDirectThreads, 0,
                                  stream>>>(d, x, dy, dw);
  DLRT_CUDA_CHECK_LAUNCH();
}

void launch_backward_filter_implicit_gemm(cudaStream_t stream, const ConvDims& d, int splits,
                                          float* partials, const float* x, const float* dy,
                                          float* dw) {
  const BackwardFilterGemm gemm{d};
  const int slice = d.K * d.Cg * d.R * d.S;
  const GemmGrid grid = make_gemm_grid(gemm, splits);
  const unsigned blocks = static_cast<unsigned>(grid_blocks(grid));
  if (grid.splits == 1) {
    implicit_gemm_kernel<<<blocks, kThreads, 0, stream>>>(gemm, grid, dy, x, nullptr, dw, 0);
    DLRT_CUDA_CHECK_LAUNCH();
    return;
  }
  implicit_gemm_kernel<<<blocks, kThreads, 0, stream>>>(gemm, grid, dy, x, nullptr, partials,
                                                        slice);
  DLRT_CUDA_CHECK_LAUNCH();
  split_sum_kernel<<<blocks_for(slice, kDirectThreads), kDirectThreads, 0, stream>>>(
      partials, grid.splits, slice, dw);
  DLRT_CUDA_CHECK_LAUNCH();
}

void launch_backward_bias_reduce(cudaStream_t stream, int N, int K, int PQ, const float* dy,
                                 float* db) {
  backward_bias_kernel<<<K, kBiasThreads, 0, stream>>>(N, K, PQ, dy, db);
  DLRT_CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------

cudaStream_t prepare(Context& ctx) {
  DLRT_CUDA_CHECK(cudaSetDevice(ctx.device().index));
  return cuda_stream(ctx);
}

// What the device contributes to the plan's choice.
CudaConv2dDevice device_facts(Context& ctx, std::size_t workspace_limit_bytes) {
  CudaConv2dDevice dev;
  const int index = ctx.device().index;
  DLRT_CUDA_CHECK(cudaDeviceGetAttribute(&dev.sm_count, cudaDevAttrMultiProcessorCount, index));
  DLRT_CUDA_CHECK(cudaDeviceGetAttribute(&dev.compute_capability_major,
                                         cudaDevAttrComputeCapabilityMajor, index));
  dev.workspace_limit_bytes = workspace_limit_bytes;
  return dev;
}

// Variants 3 and 4: the launcher the config names (conv2d_fast.hpp).
void launch_fast(Conv2dOp op, const fast::FastConvConfig& c, const ConvDims& d, const Conv2dArgs& a,
                 void* workspace, void* stream) {
  const std::size_t bytes = c.workspace_bytes;
  if (c.kernel == fast::FastKernel::BiasReduction)
    return fast::launch_backward_bias_split(c, d, a.dy, a.db, workspace, bytes, stream);
  const bool depthwise = c.kernel == fast::FastKernel::Depthwise, v4 = c.variant == 4;
  switch (op) {
    case Conv2dOp::Forward:
      if (depthwise)
        return fast::launch_forward_depthwise(c, d, a.x, a.w, a.bias, a.y, workspace, bytes,
                                              stream);
      if (v4) return fast::launch_forward_v4(c, d, a.x, a.w, a.bias, a.y, workspace, bytes, stream);
      return fast::launch_forward_v3(c, d, a.x, a.w, a.bias, a.y, workspace, bytes, stream);
    case Conv2dOp::BackwardData:
      if (depthwise)
        return fast::launch_backward_data_depthwise(c, d, a.dy, a.w, a.dx, workspace, bytes,
                                                    stream);
      if (v4) return fast::launch_backward_data_v4(c, d, a.dy, a.w, a.dx, workspace, bytes, stream);
      return fast::launch_backward_data_v3(c, d, a.dy, a.w, a.dx, workspace, bytes, stream);
    case Conv2dOp::BackwardFilter:
      if (depthwise)
        return fast::launch_backward_filter_depthwise(c, d, a.x, a.dy, a.dw, workspace, bytes,
                                                      stream);
      if (v4)
        return fast::launch_backward_filter_v4(c, d, a.x, a.dy, a.dw, workspace, bytes, stream);
      return fast::launch_backward_filter_v3(c, d, a.x, a.dy, a.dw, workspace, bytes, stream);
    case Conv2dOp::BackwardBias:
      break;  // BiasReduction above
  }
}

// DLRT_CUDA_CONV2D_VARIANT, read once: the variant a plan uses when its
// options leave the choice to the engine.
int environment_variant() {
  static const int variant =
      variant_from_environment("DLRT_CUDA_CONV2D_VARIANT", kCudaConv2dVariants);
  return variant;
}

class CudaConv2d final : public Conv2dEngine {
public:
  Engine engine() const override { return Engine::Cuda; }

  // The variant is chosen here, once (choose_cuda_conv2d in conv2d_variants.hpp); run only
  // launches it, with the workspace the plan booked.
  Planned<Conv2dKernel> plan(Context& ctx, const Conv2dProblem& p) const override {
    using Result = Planned<Conv2dKernel>;
    if (std::string why = index_limit_reason(p.op, p.g); !why.empty()) return Result::no(why);
    if (std::string why = cuda_conv2d_variant_range_reason(p.variant); !why.empty())
      return Result::no(why);
    const ConvDims d = make_conv_dims(p.g);
    const CudaConv2dDevice dev = device_facts(ctx, p.options.workspace_limit_bytes);
    CudaConv2dChoice choice = choose_cuda_conv2d(p.op, d, p.variant, environment_variant(), dev);
    if (choice.variant == 0) return Result::no(choice.reason);
    std::string text = describe(p.op, choice);
    if (!choice.fast_declined.empty())
      log(LogLevel::Debug, to_string(p.op), ": fast kernels declined: ", choice.fast_declined);
    log(LogLevel::Debug, to_string(p.op), ": ", text);
    const std::size_t bytes = choice.workspace_bytes;
    return {
        make_conv2d_kernel(
            engine(), bytes, std::move(text),
            [d, variant = choice.variant, splits = choice.splits, config = std::move(choice.fast),
             op = p.op](Context& ctx, const Conv2dArgs& a, void* workspace) {
              const cudaStream_t stream = prepare(ctx);
              if (variant >= 3) return launch_fast(op, config, d, a, workspace, stream);
              switch (op) {
                case Conv2dOp::Forward:
                  if (variant == 1) return launch_forward_direct(stream, d, a.x, a.w, a.bias, a.y);
                  return launch_forward_implicit_gemm(stream, d, a.x, a.w, a.bias, a.y);
                case Conv2dOp::BackwardData:
                  if (variant == 1) return launch_backward_data_direct(stream, d, a.dy, a.w, a.dx);
                  return launch_backward_data_implicit_gemm(stream, d, a.dy, a.w, a.dx);
                case Conv2dOp::BackwardFilter:
                  if (variant == 1)
                    return launch_backward_filter_direct(stream, d, a.x, a.dy, a.dw);
                  return launch_backward_filter_implicit_gemm(
                      stream, d, splits, static_cast<float*>(workspace), a.x, a.dy, a.dw);
                case Conv2dOp::BackwardBias:
                  return launch_backward_bias_reduce(stream, d.N, d.K, d.P * d.Q, a.dy, a.db);
              }
            }),
        {}};
  }
};

const Registrar<Conv2dEngine> registrar{std::make_unique<CudaConv2d>()};

}  // namespace
}  // namespace cuda_conv2d
}  // namespace dlrt::detail
