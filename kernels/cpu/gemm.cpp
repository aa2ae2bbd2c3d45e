#include "kernels/cpu/gemm.hpp"

#include <cblas.h>

#include <algorithm>
#include <mutex>

#include "runtime/parallel.hpp"

namespace dlrt::detail::cpu {
namespace {

// Column blocks of C are multiples of this many columns and row blocks of
// this many rows, so that no block boundary splits one of the BLAS
// micro-kernel's register tiles, and a block's re-packed operand stays small
// next to its arithmetic (a block of w columns repacks op(A): M*K floats for
// 2*M*K*w flops).
constexpr std::int64_t kColumnUnit = 64;
constexpr std::int64_t kRowUnit = 16;

void ensure_single_threaded_blas() {
  // Whichever OpenBLAS build is loaded, its own threads must stay out of
  // the way of dlrt's: a serial build ignores this, a threaded one obeys.
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

CBLAS_TRANSPOSE to_cblas(Trans t) { return t == Trans::Yes ? CblasTrans : CblasNoTrans; }
int blas_int(std::int64_t v) { return static_cast<int>(v); }

}  // namespace

void gemm_serial(Trans trans_a, Trans trans_b, std::int64_t M, std::int64_t N, std::int64_t K,
                 float alpha, const float* A, std::int64_t lda, const float* B, std::int64_t ldb,
                 float beta, float* C, std::int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  ensure_single_threaded_blas();
  cblas_sgemm(CblasRowMajor, to_cblas(trans_a), to_cblas(trans_b), blas_int(M), blas_int(N),
              blas_int(K), alpha, A, blas_int(lda), B, blas_int(ldb), beta, C, blas_int(ldc));
}

void gemm(Trans trans_a, Trans trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
          const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
          std::int64_t ldc) {
  const double ns = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) *
                    kGemmNsPerMultiplyAdd;
  if (available_threads() == 1 || ns < 2 * kMinChunkNanoseconds) {
    gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split the dimension whose blocks re-pack the smaller operand: column
  // blocks re-pack op(A) (M x K), row blocks re-pack op(B) (K x N).
  if (M <= N) {
    const std::int64_t units = (N + kColumnUnit - 1) / kColumnUnit;
    const double ns_per_unit = ns / static_cast<double>(units);
    parallel_for(0, units, grain_for(ns_per_unit), [&](std::int64_t u0, std::int64_t u1) {
      const std::int64_t n0 = u0 * kColumnUnit, n1 = std::min(N, u1 * kColumnUnit);
      const float* b = trans_b == Trans::No ? B + n0 : B + n0 * ldb;
      gemm_serial(trans_a, trans_b, M, n1 - n0, K, alpha, A, lda, b, ldb, beta, C + n0, ldc);
    });
  } else {
    const std::int64_t units = (M + kRowUnit - 1) / kRowUnit;
    const double ns_per_unit = ns / static_cast<double>(units);
    parallel_for(0, units, grain_for(ns_per_unit), [&](std::int64_t u0, std::int64_t u1) {
      const std::int64_t m0 = u0 * kRowUnit, m1 = std::min(M, u1 * kRowUnit);
      const float* a = trans_a == Trans::No ? A + m0 * lda : A + m0;
      gemm_serial(trans_a, trans_b, m1 - m0, N, K, alpha, a, lda, B, ldb, beta, C + m0 * ldc, ldc);
    });
  }
}

}  // namespace dlrt::detail::cpu
