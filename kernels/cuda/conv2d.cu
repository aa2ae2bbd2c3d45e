// The Cuda convolution engine: dlrt's own kernels, without cuBLAS or cuDNN.
// Each op has numbered variants with one launcher each, and one dispatch
// point that picks a variant (choose_variant in conv2d_tiling.hpp, or the
// one forced through conv2d_variants.hpp):
//   1  direct: one thread per output element
//   2  implicit GEMM: 64x64x8 shared-memory tiles, 256 threads, 4x4 outputs
//      per thread (backward filter adds a depth split summed in fixed order)
// Backward bias has a single kernel, a per-channel tree reduction.
// No kernel uses atomics, and every output element is summed in an order
// fixed by the problem alone, so results repeat bit for bit run to run.
// Indices are 32-bit; supports() declines tensors past kMaxElements.
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

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

void launch_backward_filter_implicit_gemm(Context& ctx, cudaStream_t stream, const ConvDims& d,
                                          const float* x, const float* dy, float* dw) {
  const BackwardFilterGemm gemm{d};
  const int slice = d.K * d.Cg * d.R * d.S;
  const int splits = choose_splits(grid_blocks(make_gemm_grid(gemm)), gemm.depth(), slice,
                                   ctx.options().workspace_limit_bytes);
  const GemmGrid grid = make_gemm_grid(gemm, splits);
  const unsigned blocks = static_cast<unsigned>(grid_blocks(grid));
  if (grid.splits == 1) {
    implicit_gemm_kernel<<<blocks, kThreads, 0, stream>>>(gemm, grid, dy, x, nullptr, dw, 0);
    DLRT_CUDA_CHECK_LAUNCH();
    return;
  }
  auto* partials = static_cast<float*>(
      ctx.impl().workspace(static_cast<std::size_t>(grid.splits) * slice * sizeof(float)));
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

int pick_variant(Conv2dOp op, const ConvDims& d) {
  const int variant = choose_variant(op, d, cuda_conv2d_variant());
  log(LogLevel::Debug, to_string(op), ": cuda variant ", variant);
  return variant;
}

class CudaConv2d final : public Conv2dEngine {
public:
  Engine engine() const override { return Engine::Cuda; }
  Device::Kind device_kind() const override { return Device::Kind::Cuda; }

  Support supports(const Context&, Conv2dOp op, const Conv2dGeometry& g) const override {
    std::string why = index_limit_reason(op, g);
    return why.empty() ? Support::yes() : Support::no(std::move(why));
  }

  void forward(Context& ctx, const Conv2dGeometry& g, const float* x, const float* w,
               const float* bias, float* y) const override {
    const ConvDims d = make_conv_dims(g);
    const cudaStream_t stream = prepare(ctx);
    switch (pick_variant(Conv2dOp::Forward, d)) {
      case 1:
        launch_forward_direct(stream, d, x, w, bias, y);
        break;
      default:
        launch_forward_implicit_gemm(stream, d, x, w, bias, y);
        break;
    }
  }

  void backward_data(Context& ctx, const Conv2dGeometry& g, const float* dy, const float* w,
                     float* dx) const override {
    const ConvDims d = make_conv_dims(g);
    const cudaStream_t stream = prepare(ctx);
    switch (pick_variant(Conv2dOp::BackwardData, d)) {
      case 1:
        launch_backward_data_direct(stream, d, dy, w, dx);
        break;
      default:
        launch_backward_data_implicit_gemm(stream, d, dy, w, dx);
        break;
    }
  }

  void backward_filter(Context& ctx, const Conv2dGeometry& g, const float* x, const float* dy,
                       float* dw) const override {
    const ConvDims d = make_conv_dims(g);
    const cudaStream_t stream = prepare(ctx);
    switch (pick_variant(Conv2dOp::BackwardFilter, d)) {
      case 1:
        launch_backward_filter_direct(stream, d, x, dy, dw);
        break;
      default:
        launch_backward_filter_implicit_gemm(ctx, stream, d, x, dy, dw);
        break;
    }
  }

  void backward_bias(Context& ctx, const Conv2dGeometry& g, const float* dy,
                     float* db) const override {
    const cudaStream_t stream = prepare(ctx);
    launch_backward_bias_reduce(stream, static_cast<int>(g.N), static_cast<int>(g.K),
                                static_cast<int>(g.P * g.Q), dy, db);
  }
};

const Registrar<Conv2dEngine> registrar{std::make_unique<CudaConv2d>()};

}  // namespace
}  // namespace cuda_conv2d
}  // namespace dlrt::detail
