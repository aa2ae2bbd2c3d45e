// The Cuda Loss engine: softmax cross-entropy with one block per row
// (loss_rows.hpp holds the arithmetic, replayed on the CPU by the tests).
//   forward:  per row, a tree-reduced maximum and exponential sum, the
//             softmax written out, and the row's weighted term and weight
//             stored in the workspace; then one block sums the rows in a
//             fixed order, so the loss is the same run to run.
//   backward: one block sums the weights, then each row's gradient is
//             dloss * m * (p - onehot) / max(sum of weights, 1).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/loss_rows.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/cuda_handles.hpp"
#include "runtime/gpu.hpp"
#include "runtime/loss_engine.hpp"

namespace dlrt::detail {
namespace {

using cuda_loss::i64;
using cuda_loss::kRowThreads;

constexpr int kSumThreads = 256;

unsigned row_blocks(i64 rows) { return static_cast<unsigned>(std::min<i64>(rows, i64{1} << 16)); }

struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct Plus {
  __device__ double operator()(double a, double b) const { return a + b; }
};

template <class T, class Combine>
__device__ T block_reduce(T* slots, T value, Combine combine) {
  const int i = static_cast<int>(threadIdx.x);
  slots[i] = value;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    cuda_loss::tree_level(slots, i, half, combine);
    __syncthreads();
  }
  const T result = slots[0];
  __syncthreads();  // slots are reused by the next reduction
  return result;
}

// terms: 2 doubles per row, the weighted nll and the weight.
__global__ void forward_rows_kernel(const float* logits, const std::int32_t* labels,
                                    const float* mask, float* probs, double* terms, i64 N, i64 C) {
  __shared__ float top_slots[kRowThreads];
  __shared__ double sum_slots[kRowThreads];
  const int t = static_cast<int>(threadIdx.x);
  for (i64 n = blockIdx.x; n < N; n += gridDim.x) {
    const float* z = logits + n * C;
    const float top =
        block_reduce(top_slots, cuda_loss::partial_maximum(z, C, t, kRowThreads), Max{});
    const double sum =
        block_reduce(sum_slots, cuda_loss::partial_exp_sum(z, C, top, t, kRowThreads), Plus{});
    const float inverse = static_cast<float>(1.0 / sum);
    for (i64 c = t; c < C; c += kRowThreads) probs[n * C + c] = expf(z[c] - top) * inverse;
    if (t == 0) {
      const float m = cuda_loss::row_weight(mask, labels, n, C);
      terms[2 * n] = cuda_loss::row_term(z, top, sum, m, m != 0.0f ? labels[n] : 0);
      terms[2 * n + 1] = m;
    }
  }
}

// One block: thread t sums rows t, t + threads, ... in order, then the tree.
__global__ void sum_terms_kernel(const double* terms, i64 N, float* loss) {
  __shared__ double total_slots[kSumThreads];
  __shared__ double count_slots[kSumThreads];
  const int t = static_cast<int>(threadIdx.x);
  double total = 0.0, count = 0.0;
  for (i64 n = t; n < N; n += kSumThreads) {
    total += terms[2 * n];
    count += terms[2 * n + 1];
  }
  total = block_reduce(total_slots, total, Plus{});
  count = block_reduce(count_slots, count, Plus{});
  if (t == 0) loss[0] = static_cast<float>(total / fmax(count, 1.0));
}

__global__ void sum_weights_kernel(const std::int32_t* labels, const float* mask, i64 N, i64 C,
                                   double* count_out) {
  __shared__ double slots[kSumThreads];
  const int t = static_cast<int>(threadIdx.x);
  double count = 0.0;
  for (i64 n = t; n < N; n += kSumThreads) count += cuda_loss::row_weight(mask, labels, n, C);
  count = block_reduce(slots, count, Plus{});
  if (t == 0) count_out[0] = count;
}

__global__ void backward_rows_kernel(const float* probs, const std::int32_t* labels,
                                     const float* mask, float dloss, const double* count, i64 N,
                                     i64 C, float* dlogits) {
  const float k = static_cast<float>(static_cast<double>(dloss) / fmax(count[0], 1.0));
  for (i64 n = blockIdx.x; n < N; n += gridDim.x) {
    const float m = cuda_loss::row_weight(mask, labels, n, C);
    const float km = k * m;
    const std::int32_t label = m != 0.0f ? labels[n] : -1;
    for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
      const float p = probs[n * C + c];
      dlogits[n * C + c] = m == 0.0f ? 0.0f : km * (c == label ? p - 1.0f : p);
    }
  }
}

class CudaLoss final : public LossEngine {
public:
  Engine engine() const override { return Engine::Cuda; }

  Planned<LossKernel> plan(Context&, const LossProblem& p) const override {
    const std::size_t bytes = p.op == LossOp::Forward
                                  ? static_cast<std::size_t>(2 * p.N) * sizeof(double)
                                  : sizeof(double);
    return {
        make_loss_kernel(engine(), bytes, "cuda one block per row, fixed-order sums",
                         [p](Context& ctx, const LossArgs& a, void* workspace) {
                           gpu::set_device(ctx.device().index);
                           const cudaStream_t stream = cuda_stream(ctx);
                           auto* scratch = static_cast<double*>(workspace);
                           if (p.op == LossOp::Forward) {
                             forward_rows_kernel<<<row_blocks(p.N), kRowThreads, 0, stream>>>(
                                 a.logits, a.labels, a.mask, a.probs, scratch, p.N, p.C);
                             DLRT_CUDA_CHECK_LAUNCH();
                             sum_terms_kernel<<<1, kSumThreads, 0, stream>>>(scratch, p.N, a.loss);
                             DLRT_CUDA_CHECK_LAUNCH();
                             return;
                           }
                           sum_weights_kernel<<<1, kSumThreads, 0, stream>>>(a.labels, a.mask, p.N,
                                                                             p.C, scratch);
                           DLRT_CUDA_CHECK_LAUNCH();
                           backward_rows_kernel<<<row_blocks(p.N), kRowThreads, 0, stream>>>(
                               a.probs_in, a.labels, a.mask, a.dloss, scratch, p.N, p.C, a.dlogits);
                           DLRT_CUDA_CHECK_LAUNCH();
                         }),
        {}};
  }
};

const Registrar<LossEngine> registrar{std::make_unique<CudaLoss>()};

}  // namespace
}  // namespace dlrt::detail
