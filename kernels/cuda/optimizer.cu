// The Cuda Optimizer engine: one grid-stride kernel per update (the Cpu
// engine's float formulas, element by element), and a sum of squares that
// is the same run to run: a fixed grid for a given size, each block's
// threads reduced by a fixed tree, the block sums added by one block.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "runtime/cuda_check.hpp"
#include "runtime/cuda_handles.hpp"
#include "runtime/gpu.hpp"
#include "runtime/optimizer_engine.hpp"

namespace dlrt::detail {
namespace {

using i64 = std::int64_t;
constexpr int kBlock = 256;
constexpr i64 kMaxSumBlocks = 1024;

unsigned blocks_for(i64 count) {
  return static_cast<unsigned>(std::min<i64>((count + kBlock - 1) / kBlock, i64{1} << 16));
}
i64 sum_blocks(i64 count) {
  return std::clamp<i64>((count + 8 * kBlock - 1) / (8 * kBlock), 1, kMaxSumBlocks);
}

__device__ i64 first_index() { return i64{blockIdx.x} * blockDim.x + threadIdx.x; }
__device__ i64 grid_stride() { return i64{gridDim.x} * blockDim.x; }

__global__ void sgd_kernel(i64 count, OptimizerArgs a) {
  for (i64 i = first_index(); i < count; i += grid_stride()) {
    float g = __fadd_rn(a.grad[i], __fmul_rn(a.weight_decay, a.theta[i]));
    if (a.velocity != nullptr) {
      a.velocity[i] = a.first ? g
                              : __fadd_rn(__fmul_rn(a.momentum, a.velocity[i]),
                                          __fmul_rn(1.0f - a.dampening, g));
      g = a.nesterov ? __fadd_rn(g, __fmul_rn(a.momentum, a.velocity[i])) : a.velocity[i];
    }
    a.theta[i] = __fsub_rn(a.theta[i], __fmul_rn(a.learning_rate, g));
  }
}

__global__ void adam_kernel(i64 count, OptimizerArgs a) {
  for (i64 i = first_index(); i < count; i += grid_stride()) {
    float theta = __fsub_rn(a.theta[i], __fmul_rn(a.decoupled, a.theta[i]));
    const float g = __fadd_rn(a.grad[i], __fmul_rn(a.coupled, theta));
    const float m = __fadd_rn(__fmul_rn(a.beta1, a.m[i]), __fmul_rn(1.0f - a.beta1, g));
    const float v =
        __fadd_rn(__fmul_rn(a.beta2, a.v[i]), __fmul_rn(__fmul_rn(1.0f - a.beta2, g), g));
    a.m[i] = m;
    a.v[i] = v;
    const float m_hat = __fdiv_rn(m, a.correction1), v_hat = __fdiv_rn(v, a.correction2);
    theta = __fsub_rn(theta, __fdiv_rn(__fmul_rn(a.learning_rate, m_hat),
                                       __fadd_rn(__fsqrt_rn(v_hat), a.epsilon)));
    a.theta[i] = theta;
  }
}

__global__ void scale_kernel(i64 count, float* grad, float scale) {
  for (i64 i = first_index(); i < count; i += grid_stride()) grad[i] = __fmul_rn(grad[i], scale);
}

__device__ double block_sum(double* slots, double value) {
  const int t = static_cast<int>(threadIdx.x);
  slots[t] = value;
  __syncthreads();
  for (int half = kBlock / 2; half > 0; half /= 2) {
    if (t < half) slots[t] += slots[t + half];
    __syncthreads();
  }
  return slots[0];
}

__global__ void partial_squares_kernel(i64 count, const float* grad, double* partial) {
  __shared__ double slots[kBlock];
  double sum = 0.0;
  for (i64 i = first_index(); i < count; i += grid_stride())
    sum += static_cast<double>(grad[i]) * grad[i];
  const double total = block_sum(slots, sum);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

__global__ void add_partials_kernel(const double* partial, i64 blocks, double* total) {
  __shared__ double slots[kBlock];
  double sum = 0.0;
  for (i64 b = threadIdx.x; b < blocks; b += kBlock) sum += partial[b];
  const double all = block_sum(slots, sum);
  if (threadIdx.x == 0) *total = all;
}

void run(Context& ctx, OptimizerOp op, i64 count, const OptimizerArgs& a, void* workspace) {
  gpu::set_device(ctx.device().index);
  const cudaStream_t stream = cuda_stream(ctx);
  switch (op) {
    case OptimizerOp::Sgd:
      sgd_kernel<<<blocks_for(count), kBlock, 0, stream>>>(count, a);
      break;
    case OptimizerOp::Adam:
      adam_kernel<<<blocks_for(count), kBlock, 0, stream>>>(count, a);
      break;
    case OptimizerOp::Zero:
      DLRT_CUDA_CHECK(
          cudaMemsetAsync(a.grad, 0, static_cast<std::size_t>(count) * sizeof(float), stream));
      return;
    case OptimizerOp::Scale:
      scale_kernel<<<blocks_for(count), kBlock, 0, stream>>>(count, a.grad, a.scale);
      break;
    case OptimizerOp::SumOfSquares: {
      const i64 blocks = sum_blocks(count);
      auto* partial = static_cast<double*>(workspace);
      partial_squares_kernel<<<static_cast<unsigned>(blocks), kBlock, 0, stream>>>(count, a.grad,
                                                                                   partial);
      DLRT_CUDA_CHECK_LAUNCH();
      add_partials_kernel<<<1, kBlock, 0, stream>>>(partial, blocks, partial + blocks);
      DLRT_CUDA_CHECK_LAUNCH();
      // The norm decides whether to clip: the host needs it now.
      DLRT_CUDA_CHECK(
          cudaMemcpyAsync(a.sum, partial + blocks, sizeof(double), cudaMemcpyDeviceToHost, stream));
      DLRT_CUDA_CHECK(cudaStreamSynchronize(stream));
      return;
    }
  }
  DLRT_CUDA_CHECK_LAUNCH();
}

class CudaOptimizer final : public OptimizerEngine {
public:
  Engine engine() const override { return Engine::Cuda; }

  Planned<OptimizerKernel> plan(Context&, const OptimizerProblem& p) const override {
    const std::size_t bytes =
        p.op == OptimizerOp::SumOfSquares
            ? static_cast<std::size_t>(sum_blocks(p.count) + 1) * sizeof(double)
            : 0;
    return {make_optimizer_kernel(engine(), bytes, "cuda grid-stride update kernels",
                                  [op = p.op, count = p.count](Context& ctx, const OptimizerArgs& a,
                                                               void* workspace) {
                                    run(ctx, op, count, a, workspace);
                                  }),
            {}};
  }
};

const Registrar<OptimizerEngine> registrar{std::make_unique<CudaOptimizer>()};

}  // namespace
}  // namespace dlrt::detail
