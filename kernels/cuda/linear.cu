// The Cuda Linear engine: every product is one cuBLAS SGEMM (FP32 math, no
// TF32) on the context's stream, row-major operands passed as their
// column-major transposes (row-major C = A B is column-major C^T = B^T A^T).
// The bias broadcast and the bias gradient's column sums are small kernels;
// the column sums run one thread per column over the rows in order, so they
// are deterministic.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "runtime/cuda_check.hpp"
#include "runtime/cuda_handles.hpp"
#include "runtime/gpu.hpp"
#include "runtime/linear_engine.hpp"

namespace dlrt::detail {
namespace {

using i64 = std::int64_t;
constexpr int kBlock = 256;

unsigned blocks_for(i64 count) {
  return static_cast<unsigned>(std::min<i64>((count + kBlock - 1) / kBlock, i64{1} << 16));
}

// y[n, o] = bias[o] for every row n.
__global__ void broadcast_rows_kernel(const float* bias, float* y, i64 rows, i64 cols) {
  const i64 stride = i64{gridDim.x} * blockDim.x;
  for (i64 i = i64{blockIdx.x} * blockDim.x + threadIdx.x; i < rows * cols; i += stride)
    y[i] = bias[i % cols];
}

// db[o] (+)= sum_n dy[n, o], rows in order; consecutive threads read
// consecutive columns of a row, so the reads coalesce.
__global__ void column_sums_kernel(const float* dy, float* db, i64 rows, i64 cols,
                                   bool accumulate) {
  const i64 stride = i64{gridDim.x} * blockDim.x;
  for (i64 o = i64{blockIdx.x} * blockDim.x + threadIdx.x; o < cols; o += stride) {
    float sum = accumulate ? db[o] : 0.0f;
    for (i64 n = 0; n < rows; ++n) sum += dy[n * cols + o];
    db[o] = sum;
  }
}

void sgemm(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, i64 m, i64 n, i64 k,
           float alpha, const float* a, i64 lda, const float* b, i64 ldb, float beta, float* c,
           i64 ldc) {
  DLRT_CUBLAS_CHECK(cublasSgemm(handle, ta, tb, static_cast<int>(m), static_cast<int>(n),
                                static_cast<int>(k), &alpha, a, static_cast<int>(lda), b,
                                static_cast<int>(ldb), &beta, c, static_cast<int>(ldc)));
}

void run(Context& ctx, const LinearProblem& p, const LinearArgs& a) {
  gpu::set_device(ctx.device().index);
  const cudaStream_t stream = cuda_stream(ctx);
  cublasHandle_t handle = cublas_handle(ctx);
  constexpr cublasOperation_t N = CUBLAS_OP_N, T = CUBLAS_OP_T;
  switch (p.op) {
    case LinearOp::Forward: {
      // y^T (out x N) = w (viewed as in x out, transposed) x^T (in x N).
      float beta = 0.0f;
      if (a.bias) {
        broadcast_rows_kernel<<<blocks_for(p.N * p.out), kBlock, 0, stream>>>(a.bias, a.y, p.N,
                                                                              p.out);
        DLRT_CUDA_CHECK_LAUNCH();
        beta = 1.0f;
      }
      return sgemm(handle, T, N, p.out, p.N, p.in, 1.0f, a.w, p.in, a.x, p.in, beta, a.y, p.out);
    }
    case LinearOp::BackwardData:
      // dx^T (in x N) = w^T (in x out) dy^T (out x N).
      return sgemm(handle, N, N, p.in, p.N, p.out, 1.0f, a.w, p.in, a.dy, p.out, 0.0f, a.dx, p.in);
    case LinearOp::BackwardWeights:
      // dw^T (in x out) = x^T (in x N) dy (N x out).
      sgemm(handle, N, T, p.in, p.out, p.N, 1.0f, a.x, p.in, a.dy, p.out,
            p.accumulate ? 1.0f : 0.0f, a.dw, p.in);
      if (a.db) {
        column_sums_kernel<<<blocks_for(p.out), kBlock, 0, stream>>>(a.dy, a.db, p.N, p.out,
                                                                     p.accumulate);
        DLRT_CUDA_CHECK_LAUNCH();
      }
      return;
    case LinearOp::Gram:
      // g (C x C) = scale f f^T, as Forward with w = x = f.
      return sgemm(handle, T, N, p.N, p.N, p.in, a.scale, a.x, p.in, a.x, p.in, 0.0f, a.y, p.N);
    case LinearOp::GramBackward:
      // df = scale dg f + scale dg^T f: df^T (P x C) = f^T dg^T, then += f^T dg.
      sgemm(handle, N, N, p.in, p.N, p.N, a.scale, a.x, p.in, a.dy, p.N, 0.0f, a.dx, p.in);
      return sgemm(handle, N, T, p.in, p.N, p.N, a.scale, a.x, p.in, a.dy, p.N, 1.0f, a.dx, p.in);
  }
}

class CudaLinear final : public LinearEngine {
public:
  Engine engine() const override { return Engine::Cuda; }

  Planned<LinearKernel> plan(Context&, const LinearProblem& p) const override {
    // cuBLAS takes int extents and leading dimensions.
    const i64 largest = std::max({p.N, p.in, p.out});
    if (largest > INT_MAX)
      return Planned<LinearKernel>::no("cuBLAS takes int extents, but an extent is " +
                                       std::to_string(largest));
    return {make_linear_kernel(engine(), 0, "cuda cublasSgemm (FP32, no TF32)",
                               [p](Context& ctx, const LinearArgs& a, void*) { run(ctx, p, a); }),
            {}};
  }
};

const Registrar<LinearEngine> registrar{std::make_unique<CudaLinear>()};

}  // namespace
}  // namespace dlrt::detail
