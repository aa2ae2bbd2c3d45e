#include "kernels/cpu/gemm_small.hpp"

#include <algorithm>

// The vector type never crosses a call that is not inlined; GCC's note
// about its ABI without AVX (clang warns too) is moot here.
#if defined(__GNUC__)  // GCC and clang
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace dlrt::detail::cpu {
namespace {

using i64 = std::int64_t;

// Eight floats; the compiler maps it to one AVX register, or two SSE ones.
typedef float v8 __attribute__((vector_size(32)));

inline __attribute__((always_inline)) v8 load8(const float* p) {
  v8 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline __attribute__((always_inline)) void store8(float* p, v8 v) {
  __builtin_memcpy(p, &v, sizeof v);
}
inline __attribute__((always_inline)) float sum8(v8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// Rows [m, m + MB) x columns [j, j + NB) of C = A B^T: MB * NB dot products
// of length K, eight lanes at a time, with MB + NB loads per 8 * MB * NB
// multiply-adds.
template <int MB, int NB>
inline __attribute__((always_inline)) void nt_tile(i64 K, const float* A, i64 lda, const float* B,
                                                   i64 ldb, float beta, float* C, i64 ldc) {
  v8 acc[MB][NB] = {};
  const i64 K8 = K & ~i64{7};
  for (i64 k = 0; k < K8; k += 8) {
    v8 a[MB], b[NB];
    for (int r = 0; r < MB; ++r) a[r] = load8(A + r * lda + k);
    for (int c = 0; c < NB; ++c) b[c] = load8(B + c * ldb + k);
    for (int r = 0; r < MB; ++r)
      for (int c = 0; c < NB; ++c) acc[r][c] += a[r] * b[c];
  }
  for (int r = 0; r < MB; ++r)
    for (int c = 0; c < NB; ++c) {
      float s = sum8(acc[r][c]);
      for (i64 k = K8; k < K; ++k) s += A[r * lda + k] * B[c * ldb + k];
      float& out = C[r * ldc + c];
      out = beta != 0.0f ? out + s : s;
    }
}

template <int MB>
inline __attribute__((always_inline)) void nt_rows(i64 N, i64 K, const float* A, i64 lda,
                                                   const float* B, i64 ldb, float beta, float* C,
                                                   i64 ldc) {
  i64 j = 0;
  for (; j + 4 <= N; j += 4) nt_tile<MB, 4>(K, A, lda, B + j * ldb, ldb, beta, C + j, ldc);
  for (; j < N; ++j) nt_tile<MB, 1>(K, A, lda, B + j * ldb, ldb, beta, C + j, ldc);
}

inline __attribute__((always_inline)) void nt_body(i64 M, i64 N, i64 K, const float* A, i64 lda,
                                                   const float* B, i64 ldb, float beta, float* C,
                                                   i64 ldc) {
  // Columns outer: four rows of B (4 K floats) stay in L1 while every
  // pair of A's rows passes them; A itself (M*K floats) stays in L1 too.
  constexpr i64 kColumnBlock = 64;
  for (i64 j0 = 0; j0 < N; j0 += kColumnBlock) {
    const i64 width = std::min(kColumnBlock, N - j0);
    i64 m = 0;
    for (; m + 2 <= M; m += 2)
      nt_rows<2>(width, K, A + m * lda, lda, B + j0 * ldb, ldb, beta, C + m * ldc + j0, ldc);
    if (m < M)
      nt_rows<1>(width, K, A + m * lda, lda, B + j0 * ldb, ldb, beta, C + m * ldc + j0, ldc);
  }
}

// Rows [m, m + MB) x columns [j, j + 8 * NV) of C = A B: each k broadcasts
// A[r, k] against NV vectors of B's row k.
template <int MB, int NV>
inline __attribute__((always_inline)) void nn_tile(i64 K, const float* A, i64 lda, const float* B,
                                                   i64 ldb, float beta, float* C, i64 ldc) {
  v8 acc[MB][NV] = {};
  for (i64 k = 0; k < K; ++k) {
    v8 b[NV];
    for (int v = 0; v < NV; ++v) b[v] = load8(B + k * ldb + 8 * v);
    for (int r = 0; r < MB; ++r) {
      const float a = A[r * lda + k];
      for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MB; ++r)
    for (int v = 0; v < NV; ++v) {
      float* out = C + r * ldc + 8 * v;
      store8(out, beta != 0.0f ? load8(out) + acc[r][v] : acc[r][v]);
    }
}

template <int MB>
inline __attribute__((always_inline)) void nn_rows(i64 N, i64 K, const float* A, i64 lda,
                                                   const float* B, i64 ldb, float beta, float* C,
                                                   i64 ldc) {
  i64 j = 0;
  for (; j + 32 <= N; j += 32) nn_tile<MB, 4>(K, A, lda, B + j, ldb, beta, C + j, ldc);
  for (; j + 8 <= N; j += 8) nn_tile<MB, 1>(K, A, lda, B + j, ldb, beta, C + j, ldc);
  for (; j < N; ++j)
    for (int r = 0; r < MB; ++r) {
      float s = 0.0f;
      for (i64 k = 0; k < K; ++k) s += A[r * lda + k] * B[k * ldb + j];
      float& out = C[r * ldc + j];
      out = beta != 0.0f ? out + s : s;
    }
}

inline __attribute__((always_inline)) void nn_body(i64 M, i64 N, i64 K, const float* A, i64 lda,
                                                   const float* B, i64 ldb, float beta, float* C,
                                                   i64 ldc) {
  i64 m = 0;
  for (; m + 2 <= M; m += 2) nn_rows<2>(N, K, A + m * lda, lda, B, ldb, beta, C + m * ldc, ldc);
  if (m < M) nn_rows<1>(N, K, A + m * lda, lda, B, ldb, beta, C + m * ldc, ldc);
}

using Kernel = void (*)(i64, i64, i64, const float*, i64, const float*, i64, float, float*, i64);

// One build of each body per instruction set, chosen once by what the CPU
// has (features, not the model name: AMD and Intel alike).
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void nt_avx2(i64 M, i64 N, i64 K, const float* A, i64 lda,
                                                 const float* B, i64 ldb, float beta, float* C,
                                                 i64 ldc) {
  nt_body(M, N, K, A, lda, B, ldb, beta, C, ldc);
}
__attribute__((target("avx2,fma"))) void nn_avx2(i64 M, i64 N, i64 K, const float* A, i64 lda,
                                                 const float* B, i64 ldb, float beta, float* C,
                                                 i64 ldc) {
  nn_body(M, N, K, A, lda, B, ldb, beta, C, ldc);
}
#endif
void nt_baseline(i64 M, i64 N, i64 K, const float* A, i64 lda, const float* B, i64 ldb, float beta,
                 float* C, i64 ldc) {
  nt_body(M, N, K, A, lda, B, ldb, beta, C, ldc);
}
void nn_baseline(i64 M, i64 N, i64 K, const float* A, i64 lda, const float* B, i64 ldb, float beta,
                 float* C, i64 ldc) {
  nn_body(M, N, K, A, lda, B, ldb, beta, C, ldc);
}

bool has_avx2_fma() {
#if defined(__x86_64__)
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

Kernel pick(Kernel avx2, Kernel baseline) { return has_avx2_fma() && avx2 ? avx2 : baseline; }

}  // namespace

void gemm_small_nt(i64 M, i64 N, i64 K, const float* A, i64 lda, const float* B, i64 ldb,
                   float beta, float* C, i64 ldc) {
#if defined(__x86_64__)
  static const Kernel kernel = pick(nt_avx2, nt_baseline);
#else
  static const Kernel kernel = nt_baseline;
#endif
  if (M > 0 && N > 0) kernel(M, N, K, A, lda, B, ldb, beta, C, ldc);
}

void gemm_small_nn(i64 M, i64 N, i64 K, const float* A, i64 lda, const float* B, i64 ldb,
                   float beta, float* C, i64 ldc) {
#if defined(__x86_64__)
  static const Kernel kernel = pick(nn_avx2, nn_baseline);
#else
  static const Kernel kernel = nn_baseline;
#endif
  if (M > 0 && N > 0) kernel(M, N, K, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace dlrt::detail::cpu
