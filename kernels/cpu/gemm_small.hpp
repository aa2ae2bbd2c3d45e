// GEMMs with very few rows of A, as a recurrent step's product
// h_{t-1} W_hh^T over the last sequences still running or a batch of one:
// OpenBLAS re-packs the whole weight matrix on every call, which then costs
// far more than the arithmetic (4-6 GFLOP/s at one row, hidden 256-512, on
// the CI machines). These read the weights where they lie, once per call,
// with register tiles of two rows of A: no packing, no threads. Row-major,
// C[M, N]:
//   gemm_small_nt: C = A[M, K] B[N, K]^T + beta C
//   gemm_small_nn: C = A[M, K] B[K, N]   + beta C
// beta is 0 (C is overwritten, never read) or 1. The arithmetic order is
// fixed by the shapes alone, so equal calls give equal bits.
#pragma once

#include <cstdint>

namespace dlrt::detail::cpu {

// Where the small kernels beat sgemm, measured single-threaded on the CI
// machines (hidden 256 and 512, K = hidden or 4*hidden): 3-5x at one row,
// even at 4, while sgemm's packing pays off from 8 rows on.
inline constexpr std::int64_t kSmallGemmMaxRows = 4;

void gemm_small_nt(std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda,
                   const float* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc);

void gemm_small_nn(std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda,
                   const float* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc);

}  // namespace dlrt::detail::cpu
