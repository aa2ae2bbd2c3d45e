// GEMMs against a weight matrix packed once and used many times: a
// recurrent step's products h_{t-1} W_hh^T (forward) and dG W_hh
// (backward) run once per step and batch piece against the same W_hh, and
// sgemm packs the whole matrix again on every call, which at 8-32 rows
// costs as much as the arithmetic. Here op(B) is packed once per play into
// panels of kPackedPanel columns, each panel K rows of kPackedPanel floats,
// contiguous (the layout of BLIS's packed B micro-panels, Van Zee and van
// de Geijn, "BLIS", TOMS 2015); A is read where it lies. Row-major:
//   pack_panels:  packed = op(B)[K, N], zero past column N
//   gemm_packed:  C[M, N] = A[M, K] op(B)[K, N] + beta C
// beta is 0 (C is overwritten, never read) or 1. The arithmetic order is
// fixed by the shapes alone, so equal calls give equal bits whatever rows
// a call is handed.
#pragma once

#include <cstdint>

#include "kernels/cpu/gemm.hpp"

namespace dlrt::detail::cpu {

inline constexpr std::int64_t kPackedPanel = 16;

// Floats the packed form of an op(B) of K rows and N columns takes.
constexpr std::int64_t packed_floats(std::int64_t N, std::int64_t K) {
  return (N + kPackedPanel - 1) / kPackedPanel * kPackedPanel * K;
}

// Packs panels [panel_begin, panel_end) of op(B): op(B)[k, j] is B[j * ldb
// + k] when trans_b is Yes (B stored [N, K], as W_hh for h W_hh^T), else
// B[k * ldb + j]. Disjoint panel ranges may be packed on different threads.
void pack_panels(Trans trans_b, std::int64_t N, std::int64_t K, const float* B, std::int64_t ldb,
                 std::int64_t panel_begin, std::int64_t panel_end, float* packed);

void gemm_packed(std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda,
                 const float* packed, float beta, float* C, std::int64_t ldc);

}  // namespace dlrt::detail::cpu
