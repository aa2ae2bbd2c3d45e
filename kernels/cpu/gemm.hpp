// The Cpu engine's GEMM: OpenBLAS sgemm with one BLAS thread per call (its
// pthreads build, which locks its buffers so that several threads may call
// it at once), with the output split across dlrt's threads
// (runtime/parallel.hpp) when the product is large enough to pay for it.
// Row-major, as cblas_sgemm with CblasRowMajor:
//   C[M, N] = alpha * op(A)[M, K] * op(B)[K, N] + beta * C
#pragma once

#include <cstdint>

namespace dlrt::detail::cpu {

enum class Trans { No, Yes };

// Splits C into blocks of rows or columns (whichever re-packs the smaller
// operand) and runs them on the pool. For a fixed thread count the blocks,
// and so the results, are the same run to run.
void gemm(Trans trans_a, Trans trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
          const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
          std::int64_t ldc);

// The same product on the calling thread only, in one BLAS call: what a
// chunk of a parallel loop, or a scheduler node, calls.
void gemm_serial(Trans trans_a, Trans trans_b, std::int64_t M, std::int64_t N, std::int64_t K,
                 float alpha, const float* A, std::int64_t lda, const float* B, std::int64_t ldb,
                 float beta, float* C, std::int64_t ldc);

// Single-thread nanoseconds one multiply-add of a large sgemm costs here
// (about 80 GFLOP/s on one core of the CI machines), for grain sizes.
inline constexpr double kGemmNsPerMultiplyAdd = 2.0 / 80.0;

}  // namespace dlrt::detail::cpu
