// libFuzzer target for pooling: random bytes become a pooling problem (mode,
// window, stride, padding, ceil mode, forward or backward, from indices or
// from x and y, sometimes a deliberately wrong tensor). Invalid problems must
// raise dlrt::Error(InvalidArgument) and leave the output untouched; valid
// ones must make the Cpu engine agree with the Reference engine (bitwise for
// max pooling, which involves no arithmetic).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "fuzz_support.hpp"

namespace {

using dlrt::fuzz::Bytes;

[[noreturn]] void finding(const char* what) { dlrt::fuzz::finding("fuzz_pool2d", what); }

// Values on a coarse grid, so that max pooling meets ties often.
dlrt::Tensor grid_tensor(const dlrt::Shape& shape, std::uint32_t seed, bool with_nan) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(-4, 4);
  std::vector<float> values(static_cast<std::size_t>(shape.numel()));
  for (float& v : values) v = static_cast<float>(dist(rng)) * 0.25f;
  if (with_nan && !values.empty()) values[rng() % values.size()] = std::nanf("");
  return dlrt::Tensor::from_vector(shape, values);
}

bool same(const std::vector<float>& a, const std::vector<float>& b, bool exact) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      if (std::isnan(a[i]) != std::isnan(b[i])) return false;
      continue;
    }
    if (exact ? a[i] != b[i] : std::fabs(a[i] - b[i]) > 1e-5f * (1.0f + std::fabs(b[i])))
      return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Bytes in(data, size);
  dlrt::Pool2dParams p;
  p.mode = static_cast<dlrt::PoolMode>(in.in(0, 2));
  const bool backward = in.in(0, 1) == 1;
  const int source = in.in(0, 2);  // max backward: 0 indices, 1 x and y, 2 neither
  const std::int64_t N = in.in(1, 2), C = in.in(1, 3), H = in.in(1, 9), W = in.in(1, 9);
  p.window_h = in.in(0, 5), p.window_w = in.in(0, 5);
  p.stride_h = in.in(0, 4), p.stride_w = in.in(0, 4);
  p.pad_h = in.in(-1, 3), p.pad_w = in.in(-1, 3);
  p.ceil_mode = in.in(0, 1) == 1;
  p.stride_h = in.or_extreme(p.stride_h), p.pad_h = in.or_extreme(p.pad_h);
  p.window_w = in.or_extreme(p.window_w);
  const int corrupt = in.in(0, 7);  // 0: y (or dy) one column too wide
  const std::uint32_t seed = static_cast<std::uint32_t>(in.in(0, 255));
  const bool max = p.mode == dlrt::PoolMode::Max;

  const dlrt::Shape xs{N, C, H, W};
  dlrt::Shape ys{N, C, 1, 1};
  bool valid = true;
  try {
    ys = dlrt::pool2d_output_shape(xs, p);
  } catch (const dlrt::Error& e) {
    if (e.kind() != dlrt::Error::Kind::InvalidArgument)
      finding("shape rule threw a non-argument error");
    valid = false;
  }
  if (corrupt == 0) ys[3] += 1;
  bool expect_error = !valid || corrupt == 0;
  if (backward && max && source == 2) expect_error = true;  // nowhere to find the argmax

  dlrt::Context ctx;
  const dlrt::Tensor x = grid_tensor(xs, seed, seed % 5 == 0);
  const dlrt::Engine engines[2] = {dlrt::Engine::Reference, dlrt::Engine::Cpu};
  std::vector<float> results[2];
  std::vector<std::int32_t> argmax[2];
  for (int e = 0; e < 2; ++e) {
    dlrt::Tensor out = dlrt::Tensor::full(backward ? xs : ys, std::nanf(""));
    const std::vector<float> before = out.to_vector();
    dlrt::Tensor indices(ys, dlrt::Device::cpu(), dlrt::DType::I32);
    indices.fill(-7);
    try {
      if (!backward) {
        dlrt::pool2d_forward(ctx, x, out, p, engines[e], max ? &indices : nullptr);
        argmax[e] = indices.to_vector_i32();
      } else {
        // The saved state always comes from the Reference forward, so both
        // engines' backward ops see the same inputs.
        dlrt::Tensor y(ys), dy = grid_tensor(ys, seed + 1, false);
        dlrt::Pool2dSaved saved;
        if (max && source != 2) {
          dlrt::pool2d_forward(ctx, x, y, p, dlrt::Engine::Reference,
                               source == 0 ? &indices : nullptr);
          if (source == 0)
            saved.indices = &indices;
          else
            saved.x = &x, saved.y = &y;
        }
        dlrt::pool2d_backward(ctx, dy, out, p, saved, engines[e]);
      }
      if (expect_error) finding("an invalid problem ran");
    } catch (const dlrt::Error& error) {
      dlrt::fuzz::check_refusal("fuzz_pool2d", error, expect_error, before, out);
      return 0;
    }
    results[e] = out.to_vector();
  }
  if (!same(results[1], results[0], max)) finding("Cpu disagrees with Reference");
  if (!backward && max && argmax[0] != argmax[1]) finding("Cpu's argmax differs from Reference's");
  return 0;
}
