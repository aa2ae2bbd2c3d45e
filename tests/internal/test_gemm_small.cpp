// The small-row GEMM kernels against sgemm: every tile edge (rows not a
// multiple of 2, columns not a multiple of 4, 8 or 32, K not a multiple of
// 8), strided operands, beta 0 (C never read: NaN there stays out) and 1.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/gemm_small.hpp"

namespace dlrt::detail::cpu {
namespace {

std::vector<float> random_values(std::size_t count, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float& x : v) x = uniform(rng);
  return v;
}

struct Shape3 {
  std::int64_t M, N, K;
};

class GemmSmall : public ::testing::TestWithParam<Shape3> {};

TEST_P(GemmSmall, MatchesSgemmForBothLayoutsAndBetas) {
  const auto [M, N, K] = GetParam();
  const std::int64_t pad = 3;  // strides wider than the rows
  for (float beta : {0.0f, 1.0f}) {
    // nt: C[M, N] = A[M, K] B[N, K]^T + beta C
    const std::int64_t lda = K + pad, ldb = K + pad, ldc = N + pad;
    const std::vector<float> A = random_values(M * lda, 1), B = random_values(N * ldb, 2);
    std::vector<float> want = random_values(M * ldc, 3);
    std::vector<float> got = want;
    if (beta == 0.0f) std::fill(got.begin(), got.end(), std::numeric_limits<float>::quiet_NaN());
    gemm_serial(Trans::No, Trans::Yes, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, beta,
                want.data(), ldc);
    gemm_small_nt(M, N, K, A.data(), lda, B.data(), ldb, beta, got.data(), ldc);
    for (std::int64_t m = 0; m < M; ++m)
      for (std::int64_t n = 0; n < N; ++n)
        ASSERT_NEAR(got[m * ldc + n], want[m * ldc + n], 1e-4 * std::sqrt(double(K)) + 1e-6)
            << "nt beta " << beta << " at " << m << "," << n;

    // nn: C[M, N] = A[M, K] B[K, N] + beta C
    const std::int64_t ldb_nn = N + pad;
    const std::vector<float> B_nn = random_values(K * ldb_nn, 4);
    std::vector<float> want_nn = random_values(M * ldc, 5);
    std::vector<float> got_nn = want_nn;
    if (beta == 0.0f)
      std::fill(got_nn.begin(), got_nn.end(), std::numeric_limits<float>::quiet_NaN());
    gemm_serial(Trans::No, Trans::No, M, N, K, 1.0f, A.data(), lda, B_nn.data(), ldb_nn, beta,
                want_nn.data(), ldc);
    gemm_small_nn(M, N, K, A.data(), lda, B_nn.data(), ldb_nn, beta, got_nn.data(), ldc);
    for (std::int64_t m = 0; m < M; ++m)
      for (std::int64_t n = 0; n < N; ++n)
        ASSERT_NEAR(got_nn[m * ldc + n], want_nn[m * ldc + n], 1e-4 * std::sqrt(double(K)) + 1e-6)
            << "nn beta " << beta << " at " << m << "," << n;
  }
}

TEST(GemmSmallRepeat, EqualCallsGiveEqualBits) {
  const std::vector<float> A = random_values(3 * 77, 7), B = random_values(45 * 77, 8);
  std::vector<float> first(3 * 45), second(3 * 45);
  gemm_small_nt(3, 45, 77, A.data(), 77, B.data(), 77, 0.0f, first.data(), 45);
  gemm_small_nt(3, 45, 77, A.data(), 77, B.data(), 77, 0.0f, second.data(), 45);
  EXPECT_EQ(first, second);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemmSmall,
                         ::testing::Values(Shape3{1, 1, 1}, Shape3{1, 1024, 256}, Shape3{2, 37, 19},
                                           Shape3{3, 64, 8}, Shape3{4, 130, 263}, Shape3{5, 33, 7},
                                           Shape3{4, 256, 1024}, Shape3{1, 8, 300}),
                         [](const auto& param_info) {
                           const Shape3& s = param_info.param;
                           std::string name = "m";
                           name.append(std::to_string(s.M)).append("_n");
                           name.append(std::to_string(s.N)).append("_k");
                           name.append(std::to_string(s.K));
                           return name;
                         });

}  // namespace
}  // namespace dlrt::detail::cpu
