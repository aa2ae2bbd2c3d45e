// The Cuda Loss engine's arithmetic, proven on the CPU: one block per row is
// replayed thread by thread through the same host/device functions the
// kernels call (loss_rows.hpp), with the kernels' reduction pairing, and
// compared with the Reference engine over widths below, at and above the
// block size, masked rows and labels out of range.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "kernels/cuda/loss_rows.hpp"
#include "support/test_support.hpp"

namespace dlrt::cuda_loss {
namespace {

template <class T, class Combine>
T replay_block_reduce(std::vector<T> slots, Combine combine) {
  const int threads = static_cast<int>(slots.size());
  for (int half = threads / 2; half > 0; half /= 2)
    for (int i = 0; i < threads; ++i) tree_level(slots.data(), i, half, combine);
  return slots[0];
}

struct Replayed {
  std::vector<float> probs;
  float loss = 0.0f;
};

// forward_rows_kernel for every row, then sum_terms_kernel (256 threads).
Replayed replay_forward(const std::vector<float>& logits, const std::vector<std::int32_t>& labels,
                        const std::vector<float>* mask, i64 N, i64 C) {
  Replayed out;
  out.probs.assign(static_cast<std::size_t>(N * C), std::nanf(""));
  std::vector<double> terms(static_cast<std::size_t>(2 * N));
  auto max_of = [](float a, float b) { return std::fmax(a, b); };
  auto plus = [](double a, double b) { return a + b; };
  for (i64 n = 0; n < N; ++n) {
    const float* z = logits.data() + n * C;
    std::vector<float> tops(kRowThreads);
    for (int t = 0; t < kRowThreads; ++t)
      tops[static_cast<std::size_t>(t)] = partial_maximum(z, C, t, kRowThreads);
    const float top = replay_block_reduce(tops, max_of);
    std::vector<double> sums(kRowThreads);
    for (int t = 0; t < kRowThreads; ++t)
      sums[static_cast<std::size_t>(t)] = partial_exp_sum(z, C, top, t, kRowThreads);
    const double sum = replay_block_reduce(sums, plus);
    const float inverse = static_cast<float>(1.0 / sum);
    for (int t = 0; t < kRowThreads; ++t)
      for (i64 c = t; c < C; c += kRowThreads)
        out.probs[static_cast<std::size_t>(n * C + c)] = std::exp(z[c] - top) * inverse;
    const float m = row_weight(mask ? mask->data() : nullptr, labels.data(), n, C);
    terms[static_cast<std::size_t>(2 * n)] =
        row_term(z, top, sum, m, m != 0.0f ? labels[static_cast<std::size_t>(n)] : 0);
    terms[static_cast<std::size_t>(2 * n + 1)] = m;
  }
  constexpr int kSumThreads = 256;
  std::vector<double> totals(kSumThreads, 0.0), counts(kSumThreads, 0.0);
  for (int t = 0; t < kSumThreads; ++t)
    for (i64 n = t; n < N; n += kSumThreads) {
      totals[static_cast<std::size_t>(t)] += terms[static_cast<std::size_t>(2 * n)];
      counts[static_cast<std::size_t>(t)] += terms[static_cast<std::size_t>(2 * n + 1)];
    }
  const double total = replay_block_reduce(totals, plus);
  const double count = replay_block_reduce(counts, plus);
  out.loss = static_cast<float>(total / std::max(count, 1.0));
  return out;
}

struct Case {
  i64 N, C;
  bool masked;
};

class CudaLossRows : public ::testing::TestWithParam<Case> {};

TEST_P(CudaLossRows, ReplayMatchesTheReference) {
  const auto [N, C, masked] = GetParam();
  std::vector<float> logits = test::random_values(N * C, 5, -6.0f, 6.0f);
  std::vector<std::int32_t> labels(static_cast<std::size_t>(N));
  std::vector<float> mask(static_cast<std::size_t>(N), 1.0f);
  for (i64 n = 0; n < N; ++n) {
    labels[static_cast<std::size_t>(n)] = static_cast<std::int32_t>((n * 7) % C);
    if (masked && n % 3 == 1) {
      mask[static_cast<std::size_t>(n)] = 0.0f;
      labels[static_cast<std::size_t>(n)] = -1;  // never read
    }
  }
  const Replayed replayed = replay_forward(logits, labels, masked ? &mask : nullptr, N, C);

  Context ctx;
  const Tensor z = Tensor::from_vector({N, C}, logits);
  Tensor label_tensor({N}, Device::cpu(), DType::I32);
  std::copy(labels.begin(), labels.end(), label_tensor.data_i32());
  const Tensor mask_tensor = Tensor::from_vector({N}, mask);
  Tensor loss({1}), probs({N, C});
  softmax_cross_entropy_forward(ctx, z, label_tensor, masked ? &mask_tensor : nullptr, loss, probs,
                                Engine::Reference);
  EXPECT_TRUE(test::all_close(replayed.probs, probs.to_vector(), C, 1e-5));
  EXPECT_NEAR(replayed.loss, loss.to_vector()[0], 1e-5 * (1.0 + std::fabs(loss.to_vector()[0])));
}

INSTANTIATE_TEST_SUITE_P(Widths, CudaLossRows,
                         ::testing::Values(Case{3, 1, false}, Case{5, 26, true},
                                           Case{4, 128, false}, Case{7, 129, true},
                                           Case{300, 40, true}, Case{2, 1000, false}));

// A label outside [0, C) (possible for device tensors only) gives its row
// weight 0, as the Cpu engine does.
TEST(CudaLossRowsWeights, LabelsOutOfRangeAndMaskedRowsWeighNothing) {
  const std::int32_t labels[] = {0, 5, -2, 2};
  const float mask[] = {1.0f, 1.0f, 1.0f, 0.0f};
  EXPECT_EQ(row_weight(mask, labels, 0, 5), 1.0f);
  EXPECT_EQ(row_weight(mask, labels, 1, 5), 0.0f);
  EXPECT_EQ(row_weight(mask, labels, 2, 5), 0.0f);
  EXPECT_EQ(row_weight(mask, labels, 3, 5), 0.0f);
  EXPECT_EQ(row_weight(nullptr, labels, 0, 5), 1.0f);
  const float z[] = {1.0f, 2.0f};
  EXPECT_EQ(row_term(z, 2.0f, 1.5, 0.0f, 0), 0.0);
}

}  // namespace
}  // namespace dlrt::cuda_loss
