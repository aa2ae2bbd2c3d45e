// The packed-panel GEMM against sgemm: both orientations of B, every tile
// edge (rows not a multiple of 2, 6 or 8; columns not a multiple of 16 or
// 32; K of 1), strided operands, beta 0 (C never read: NaN there stays
// out) and 1; and the same bits for a row whatever rows share its call.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/gemm_packed.hpp"

namespace dlrt::detail::cpu {
namespace {

std::vector<float> random_values(std::size_t count, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float& x : v) x = uniform(rng);
  return v;
}

struct PackedShape {
  std::int64_t M, N, K;
};

// op(B)[K, N] packed from B stored as trans_b says, with a stride wider
// than its rows; packed in two halves to check that panel ranges compose.
std::vector<float> packed_of(Trans trans_b, std::int64_t N, std::int64_t K, const float* B,
                             std::int64_t ldb) {
  std::vector<float> packed(static_cast<std::size_t>(packed_floats(N, K)),
                            std::numeric_limits<float>::quiet_NaN());
  const std::int64_t panels = (N + kPackedPanel - 1) / kPackedPanel;
  pack_panels(trans_b, N, K, B, ldb, 0, panels / 2, packed.data());
  pack_panels(trans_b, N, K, B, ldb, panels / 2, panels, packed.data());
  return packed;
}

class GemmPacked : public ::testing::TestWithParam<PackedShape> {};

TEST_P(GemmPacked, MatchesSgemmForBothOrientationsAndBetas) {
  const auto [M, N, K] = GetParam();
  const std::int64_t pad = 3;  // strides wider than the rows
  const std::int64_t lda = K + pad, ldc = N + pad;
  const std::vector<float> A = random_values(M * lda, 1);
  for (Trans trans_b : {Trans::Yes, Trans::No}) {
    const std::int64_t ldb = trans_b == Trans::Yes ? K + pad : N + pad;
    const std::vector<float> B =
        random_values(static_cast<std::size_t>((trans_b == Trans::Yes ? N : K) * ldb), 2);
    const std::vector<float> packed = packed_of(trans_b, N, K, B.data(), ldb);
    for (float beta : {0.0f, 1.0f}) {
      std::vector<float> want = random_values(M * ldc, 3);
      std::vector<float> got = want;
      if (beta == 0.0f) std::fill(got.begin(), got.end(), std::numeric_limits<float>::quiet_NaN());
      gemm_serial(Trans::No, trans_b, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, beta,
                  want.data(), ldc);
      gemm_packed(M, N, K, A.data(), lda, packed.data(), beta, got.data(), ldc);
      for (std::int64_t m = 0; m < M; ++m) {
        for (std::int64_t n = 0; n < N; ++n)
          ASSERT_NEAR(got[m * ldc + n], want[m * ldc + n], 1e-4 * std::sqrt(double(K)) + 1e-6)
              << (trans_b == Trans::Yes ? "nt" : "nn") << " beta " << beta << " at " << m << ","
              << n;
        // The stride's padding is never written.
        if (beta == 0.0f) {
          for (std::int64_t n = N; n < ldc; ++n)
            ASSERT_TRUE(std::isnan(got[m * ldc + n])) << "padding at " << m;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Edges, GemmPacked,
                         ::testing::Values(PackedShape{1, 1, 1}, PackedShape{1, 16, 7},
                                           PackedShape{2, 17, 9}, PackedShape{5, 31, 16},
                                           PackedShape{6, 32, 33}, PackedShape{7, 33, 64},
                                           PackedShape{8, 48, 5}, PackedShape{9, 15, 20},
                                           PackedShape{13, 64, 40}, PackedShape{16, 100, 128},
                                           PackedShape{17, 47, 3}, PackedShape{32, 256, 64}),
                         [](const auto& param_info) {
                           const PackedShape& s = param_info.param;
                           std::string name = "m";
                           name.append(std::to_string(s.M)).append("_n");
                           name.append(std::to_string(s.N)).append("_k");
                           name.append(std::to_string(s.K));
                           return name;
                         });

TEST(GemmPackedRows, ARowGivesTheSameBitsWhateverRowsShareItsCall) {
  // The Cpu rnn engine hands a step's batch to the kernel in pieces whose
  // size depends on the plan; a row's result must not.
  const std::int64_t M = 19, N = 70, K = 37;
  const std::vector<float> A = random_values(M * K, 5), B = random_values(N * K, 6);
  const std::vector<float> packed = packed_of(Trans::Yes, N, K, B.data(), K);
  std::vector<float> whole(M * N), split(M * N);
  gemm_packed(M, N, K, A.data(), K, packed.data(), 0.0f, whole.data(), N);
  for (std::int64_t m0 = 0; m0 < M;) {
    const std::int64_t rows = std::min<std::int64_t>(M - m0, 1 + m0 % 5);
    gemm_packed(rows, N, K, A.data() + m0 * K, K, packed.data(), 0.0f, split.data() + m0 * N, N);
    m0 += rows;
  }
  EXPECT_EQ(0, std::memcmp(whole.data(), split.data(), sizeof(float) * whole.size()));
}

TEST(GemmPackedPanels, PackingZeroesColumnsPastN) {
  const std::int64_t N = 20, K = 3;
  const std::vector<float> B = random_values(N * K, 7);
  for (Trans trans_b : {Trans::Yes, Trans::No}) {
    const std::vector<float> packed =
        packed_of(trans_b, N, K, B.data(), trans_b == Trans::Yes ? K : N);
    ASSERT_EQ(packed.size(), static_cast<std::size_t>(2 * kPackedPanel * K));
    for (std::int64_t k = 0; k < K; ++k)
      for (std::int64_t j = 0; j < 2 * kPackedPanel; ++j) {
        const float v =
            packed[(j / kPackedPanel) * kPackedPanel * K + k * kPackedPanel + j % kPackedPanel];
        const float want = j >= N ? 0.0f : trans_b == Trans::Yes ? B[j * K + k] : B[k * N + j];
        ASSERT_EQ(v, want) << "k " << k << " column " << j;
      }
  }
}

}  // namespace
}  // namespace dlrt::detail::cpu
