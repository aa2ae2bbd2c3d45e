// libFuzzer target for the recurrent ops: random bytes become an RNN problem
// (cell, layers, direction, bias, projection, sizes, lengths in and out of
// range, optional initial states, sometimes a deliberately wrong tensor).
// Invalid problems must raise dlrt::Error(InvalidArgument) and leave y
// untouched; valid ones must make the Cpu engine agree with the Reference
// engine on y, hy, dx and dw.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "fuzz_support.hpp"

namespace {

using dlrt::fuzz::Bytes;

[[noreturn]] void finding(const char* what) { dlrt::fuzz::finding("fuzz_rnn", what); }

dlrt::Tensor random_tensor(const dlrt::Shape& shape, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> values(static_cast<std::size_t>(shape.numel()));
  for (float& v : values) v = dist(rng);
  return dlrt::Tensor::from_vector(shape, values);
}

bool close(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(a[i] - b[i]) <= 1e-3f * (1.0f + std::fabs(b[i])))) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Bytes in(data, size);
  dlrt::RnnParams p;
  p.cell = static_cast<dlrt::RnnCell>(in.in(0, 3));
  p.num_layers = in.or_extreme(in.in(1, 3));
  p.bidirectional = in.in(0, 1) == 1;
  p.bias = in.in(0, 1) == 1;
  p.input_size = in.or_extreme(in.in(1, 6));
  p.hidden_size = in.in(1, 6);
  p.proj_size = in.in(0, 3) == 0 ? in.in(-1, 6) : 0;
  const int T = in.in(1, 6), N = in.in(1, 4);
  std::vector<int> lengths;
  if (in.in(0, 3) != 0)
    for (int n = 0; n < N + (in.in(0, 7) == 0 ? 1 : 0); ++n) lengths.push_back(in.in(0, T + 1));
  const bool with_h0 = in.in(0, 1) == 1;
  const int corrupt = in.in(0, 9);  // 0: x one step too long, 1: weights one short
  const auto seed = static_cast<std::uint32_t>(in.in(0, 255));

  bool valid = true;
  std::int64_t weight_count = 1;
  try {
    weight_count = dlrt::rnn_weight_count(p);
  } catch (const dlrt::Error& e) {
    if (e.kind() != dlrt::Error::Kind::InvalidArgument)
      finding("layout threw a non-argument error");
    valid = false;
  }
  if (!lengths.empty()) {
    if (static_cast<int>(lengths.size()) != N) valid = false;
    for (int length : lengths)
      if (length < 1 || length > T) valid = false;
  }
  const bool expect_error = !valid || corrupt <= 1;
  if (!valid && corrupt > 1 && p.input_size > 64) return 0;  // no tensor that size is needed

  const int D = p.bidirectional ? 2 : 1;
  const int H_out = p.proj_size > 0 ? p.proj_size : p.hidden_size;
  const std::int64_t input = valid ? p.input_size : 1;
  const std::int64_t layers = valid ? p.num_layers : 1;
  dlrt::Context ctx;
  const dlrt::Tensor x = random_tensor({T + (corrupt == 0 ? 1 : 0), N, input}, seed);
  const dlrt::Tensor w =
      random_tensor({std::max<std::int64_t>(1, weight_count - (corrupt == 1 ? 1 : 0))}, seed + 1);
  const dlrt::Shape state{layers * D, N, std::max(1, H_out)};
  const dlrt::Tensor h0 = random_tensor(state, seed + 2);
  const dlrt::Tensor dy = random_tensor({T, N, D * std::max(1, H_out)}, seed + 3);
  const dlrt::Engine engines[2] = {dlrt::Engine::Reference, dlrt::Engine::Cpu};
  std::vector<float> results[2][4];
  for (int e = 0; e < 2; ++e) {
    dlrt::Tensor y = dlrt::Tensor::full({T, N, D * std::max(1, H_out)}, std::nanf(""));
    dlrt::Tensor hy = dlrt::Tensor::full(state, std::nanf(""));
    const std::vector<float> before = y.to_vector();
    dlrt::RnnTrainingState saved;
    try {
      dlrt::rnn_forward(ctx, p, x, lengths, w, with_h0 ? &h0 : nullptr, nullptr, y, &hy, nullptr,
                        &saved, engines[e]);
      if (expect_error) finding("an invalid problem ran");
    } catch (const dlrt::Error& error) {
      dlrt::fuzz::check_refusal("fuzz_rnn", error, expect_error, before, y);
      return 0;
    }
    dlrt::Tensor dx(x.shape()), dw(w.shape());
    dlrt::rnn_backward_data(ctx, saved, dy, nullptr, nullptr, dx, nullptr, nullptr);
    dlrt::rnn_backward_weights(ctx, saved, dw);
    results[e][0] = y.to_vector(), results[e][1] = hy.to_vector();
    results[e][2] = dx.to_vector(), results[e][3] = dw.to_vector();
  }
  for (int k = 0; k < 4; ++k)
    if (!close(results[1][k], results[0][k])) finding("Cpu disagrees with Reference");
  return 0;
}
