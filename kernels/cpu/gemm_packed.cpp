#include "kernels/cpu/gemm_packed.hpp"

#include <algorithm>
#include <cstring>

// The vector type never crosses a call that is not inlined; GCC's note
// about its ABI without AVX (clang warns too) is moot here.
#if defined(__GNUC__)  // GCC and clang
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace dlrt::detail::cpu {
namespace {

using i64 = std::int64_t;

// One panel row: one AVX-512 register, two AVX2 ones or four SSE ones.
typedef float v16 __attribute__((vector_size(64)));
static_assert(sizeof(v16) == kPackedPanel * sizeof(float));

inline __attribute__((always_inline)) v16 load16(const float* p) {
  v16 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline __attribute__((always_inline)) void store16(float* p, v16 v) {
  __builtin_memcpy(p, &v, sizeof v);
}

// Rows [0, MR) x panels [0, NP) of C: each k broadcasts A[r, k] against NP
// panel rows, MR + NP loads per 16 * MR * NP multiply-adds. `width` is the
// number of C's columns the panels cover (less than 16 * NP at the edge).
template <int MR, int NP>
inline __attribute__((always_inline)) void panel_tile(i64 K, const float* A, i64 lda,
                                                      const float* panels, float beta, float* C,
                                                      i64 ldc, i64 width) {
  v16 acc[MR][NP] = {};
  const i64 panel_floats = kPackedPanel * K;
  for (i64 k = 0; k < K; ++k) {
    v16 b[NP];
    for (int q = 0; q < NP; ++q) b[q] = load16(panels + q * panel_floats + k * kPackedPanel);
    for (int r = 0; r < MR; ++r) {
      const float a = A[r * lda + k];
      for (int q = 0; q < NP; ++q) acc[r][q] += a * b[q];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < NP; ++q) {
      float* out = C + r * ldc + q * kPackedPanel;
      const i64 columns = std::min<i64>(kPackedPanel, width - q * kPackedPanel);
      if (columns == kPackedPanel) {
        store16(out, beta != 0.0f ? load16(out) + acc[r][q] : acc[r][q]);
        continue;
      }
      for (i64 j = 0; j < columns; ++j)
        out[j] = beta != 0.0f ? out[j] + acc[r][q][j] : acc[r][q][j];
    }
}

// The rows left after the full tiles of MR: one tile of `rest` < MR rows.
template <int R, int NP>
inline __attribute__((always_inline)) void panel_tile_rows(int rest, i64 K, const float* A, i64 lda,
                                                           const float* panels, float beta,
                                                           float* C, i64 ldc, i64 width) {
  if constexpr (R > 0) {
    if (rest == R) return panel_tile<R, NP>(K, A, lda, panels, beta, C, ldc, width);
    panel_tile_rows<R - 1, NP>(rest, K, A, lda, panels, beta, C, ldc, width);
  }
}

template <int MR, int NP>
inline __attribute__((always_inline)) void panel_columns(i64 M, i64 K, const float* A, i64 lda,
                                                         const float* panels, float beta, float* C,
                                                         i64 ldc, i64 width) {
  i64 m = 0;
  for (; m + MR <= M; m += MR)
    panel_tile<MR, NP>(K, A + m * lda, lda, panels, beta, C + m * ldc, ldc, width);
  if (m < M)
    panel_tile_rows<MR - 1, NP>(static_cast<int>(M - m), K, A + m * lda, lda, panels, beta,
                                C + m * ldc, ldc, width);
}

// Columns outer: a group of NP panels (NP * 16 * K floats) comes from
// memory once and from L2 for every later tile of rows, while A (M * K
// floats) stays in L2 across the groups.
template <int MR, int NP>
inline __attribute__((always_inline)) void packed_body(i64 M, i64 N, i64 K, const float* A, i64 lda,
                                                       const float* packed, float beta, float* C,
                                                       i64 ldc) {
  const i64 panel_floats = kPackedPanel * K;
  i64 j = 0;
  for (; j + (NP - 1) * kPackedPanel < N; j += NP * kPackedPanel) {
    const float* panels = packed + j / kPackedPanel * panel_floats;
    panel_columns<MR, NP>(M, K, A, lda, panels, beta, C + j, ldc,
                          std::min<i64>(NP * kPackedPanel, N - j));
  }
  if constexpr (NP > 1)
    if (j < N)
      panel_columns<MR, 1>(M, K, A, lda, packed + j / kPackedPanel * panel_floats, beta, C + j, ldc,
                           N - j);
}

using Kernel = void (*)(i64, i64, i64, const float*, i64, const float*, float, float*, i64);

// Register tiles per instruction set: accumulators MR * NP * 16 floats,
// leaving room for the panel rows and the broadcast (32 zmm; 16 ymm; 16 xmm).
#if defined(__x86_64__)
__attribute__((target("avx512f"))) void packed_avx512(i64 M, i64 N, i64 K, const float* A, i64 lda,
                                                      const float* packed, float beta, float* C,
                                                      i64 ldc) {
  packed_body<8, 2>(M, N, K, A, lda, packed, beta, C, ldc);
}
__attribute__((target("avx2,fma"))) void packed_avx2(i64 M, i64 N, i64 K, const float* A, i64 lda,
                                                     const float* packed, float beta, float* C,
                                                     i64 ldc) {
  packed_body<6, 1>(M, N, K, A, lda, packed, beta, C, ldc);
}
#endif
void packed_baseline(i64 M, i64 N, i64 K, const float* A, i64 lda, const float* packed, float beta,
                     float* C, i64 ldc) {
  packed_body<2, 1>(M, N, K, A, lda, packed, beta, C, ldc);
}

// Chosen once by what the CPU has (features, not the model name).
Kernel pick() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) return packed_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return packed_avx2;
#endif
  return packed_baseline;
}

}  // namespace

void pack_panels(Trans trans_b, i64 N, i64 K, const float* B, i64 ldb, i64 panel_begin,
                 i64 panel_end, float* packed) {
  for (i64 p = panel_begin; p < panel_end; ++p) {
    float* panel = packed + p * kPackedPanel * K;
    const i64 j0 = p * kPackedPanel, columns = std::min(kPackedPanel, N - j0);
    if (trans_b == Trans::No) {
      for (i64 k = 0; k < K; ++k) {
        float* row = panel + k * kPackedPanel;
        std::memcpy(row, B + k * ldb + j0, sizeof(float) * columns);
        std::fill(row + columns, row + kPackedPanel, 0.0f);
      }
      continue;
    }
    // B's rows j0.. are the panel's columns: read each row once, in
    // blocks of k that keep the panel's destination lines in L1.
    constexpr i64 kBlock = 64;
    for (i64 k0 = 0; k0 < K; k0 += kBlock) {
      const i64 k1 = std::min(K, k0 + kBlock);
      for (i64 c = 0; c < columns; ++c) {
        const float* column = B + (j0 + c) * ldb;
        for (i64 k = k0; k < k1; ++k) panel[k * kPackedPanel + c] = column[k];
      }
      for (i64 k = k0; k < k1; ++k)
        std::fill(panel + k * kPackedPanel + columns, panel + (k + 1) * kPackedPanel, 0.0f);
    }
  }
}

void gemm_packed(i64 M, i64 N, i64 K, const float* A, i64 lda, const float* packed, float beta,
                 float* C, i64 ldc) {
  static const Kernel kernel = pick();
  if (M > 0 && N > 0) kernel(M, N, K, A, lda, packed, beta, C, ldc);
}

}  // namespace dlrt::detail::cpu
