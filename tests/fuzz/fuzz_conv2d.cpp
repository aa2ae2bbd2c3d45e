// libFuzzer target: random bytes become a convolution problem (shapes,
// parameters, which op, and sometimes a deliberately wrong tensor). Invalid
// problems must raise dlrt::Error and leave the output untouched; valid ones
// must make the Cpu engine agree with the Reference engine. Anything else —
// a crash, a sanitizer report, another exception, a mismatch — is a finding.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "fuzz_support.hpp"

namespace {

using dlrt::fuzz::Bytes;

[[noreturn]] void finding(const char* what) { dlrt::fuzz::finding("fuzz_conv2d", what); }

dlrt::Tensor random_tensor(const dlrt::Shape& shape, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> values(static_cast<std::size_t>(shape.numel()));
  for (float& v : values) v = dist(rng);
  return dlrt::Tensor::from_vector(shape, values);
}

bool close(const std::vector<float>& got, const std::vector<float>& want, std::int64_t length) {
  double scale = 1.0;
  for (float v : want) scale = std::max(scale, double(std::fabs(v)));
  const double tol = 1e-5 * std::sqrt(double(length) + 1.0) * scale;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(double(got[i]) - double(want[i])) <= tol)) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Bytes in(data, size);
  const int op = in.in(0, 3);
  const std::int64_t N = in.in(1, 3), C = in.in(1, 6), H = in.in(1, 9), W = in.in(1, 9);
  const std::int64_t K = in.in(1, 6), R = in.in(1, 5), S = in.in(1, 5);
  dlrt::Conv2dParams p;
  p.pad_h = in.in(-1, 4), p.pad_w = in.in(-1, 4);
  p.stride_h = in.in(-1, 4), p.stride_w = in.in(-1, 4);
  p.dilation_h = in.in(-1, 3), p.dilation_w = in.in(-1, 3);
  p.groups = in.in(0, 3);
  const int corrupt = in.in(0, 7);  // 0: corrupt one tensor's shape; else keep them right
  const std::uint32_t seed = static_cast<std::uint32_t>(in.in(0, 255));

  const std::int64_t wc = p.groups > 0 && C % p.groups == 0 ? C / p.groups : C;
  dlrt::Shape xs{N, C, H, W}, ws{K, wc, R, S};
  dlrt::Shape ys{N, K, 1, 1};  // stands in for y's shape when the problem has none
  try {
    ys = dlrt::conv2d_output_shape(xs, ws, p);
  } catch (const dlrt::Error& e) {
    if (e.kind() != dlrt::Error::Kind::InvalidArgument)
      finding("shape rule threw a non-argument error");
  }
  if (corrupt == 0) {
    if (op == 1)
      xs[2] += 1;  // dx one row taller than dy implies
    else
      ys[3] += 1;  // y or dy one column too wide
  }
  // The shape rule is the oracle (it has its own tests): an op must run
  // exactly when the final shapes satisfy it. Bias backward needs only dy.
  bool expect_error = false;
  if (op != 3) {
    try {
      expect_error = !(dlrt::conv2d_output_shape(xs, ws, p) == ys);
    } catch (const dlrt::Error&) {
      expect_error = true;
    }
  }

  dlrt::Context ctx;
  const dlrt::Tensor x = random_tensor(xs, seed), w = random_tensor(ws, seed + 1);
  const dlrt::Tensor dy = random_tensor(ys, seed + 2), bias = random_tensor({K}, seed + 3);
  const dlrt::Shape out_shape = op == 0 ? ys : op == 1 ? xs : op == 2 ? ws : dlrt::Shape{K};
  std::vector<float> results[2];
  const dlrt::Engine engines[2] = {dlrt::Engine::Reference, dlrt::Engine::Cpu};
  for (int e = 0; e < 2; ++e) {
    dlrt::Tensor out = dlrt::Tensor::full(out_shape, std::nanf(""));
    const std::vector<float> before = out.to_vector();
    try {
      switch (op) {
        case 0:
          dlrt::conv2d_forward(ctx, x, w, seed % 2 ? &bias : nullptr, out, p, engines[e]);
          break;
        case 1:
          dlrt::conv2d_backward_data(ctx, dy, w, out, p, engines[e]);
          break;
        case 2:
          dlrt::conv2d_backward_filter(ctx, x, dy, out, p, engines[e]);
          break;
        default:
          dlrt::conv2d_backward_bias(ctx, dy, out, engines[e]);
          break;
      }
      if (expect_error) finding("an invalid problem ran");
    } catch (const dlrt::Error& error) {
      dlrt::fuzz::check_refusal("fuzz_conv2d", error, expect_error, before, out);
      return 0;
    }
    results[e] = out.to_vector();
  }
  const std::int64_t length = op == 0 ? wc * R * S : op == 1 ? K * R * S : N * ys[2] * ys[3];
  if (!close(results[1], results[0], length)) finding("Cpu disagrees with Reference");
  return 0;
}
