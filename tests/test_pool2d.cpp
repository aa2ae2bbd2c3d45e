// 2-D pooling through the public API: every engine against Reference on a
// table of geometries, finite-difference gradients, the tie and NaN rules,
// ceil-mode sizes and the validation rules.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace dlrt {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr PoolMode kModes[] = {PoolMode::Max, PoolMode::AverageIncludePad,
                               PoolMode::AverageExcludePad};

Pool2dParams make_params(PoolMode mode, int wh, int ww, int sh, int sw, int ph = 0, int pw = 0,
                         bool ceil = false) {
  Pool2dParams p;
  p.mode = mode;
  p.window_h = wh, p.window_w = ww;
  p.stride_h = sh, p.stride_w = sw;
  p.pad_h = ph, p.pad_w = pw;
  p.ceil_mode = ceil;
  return p;
}

std::string describe(const Shape& x, const Pool2dParams& p) {
  std::ostringstream out;
  out << "x " << x.to_string() << ", " << to_string(p.mode) << ", window " << p.window_h << "x"
      << p.window_w << ", stride " << p.stride_h << "x" << p.stride_w << ", pad " << p.pad_h << "x"
      << p.pad_w << (p.ceil_mode ? ", ceil" : ", floor");
  return out.str();
}

struct Geometry {
  Shape x;
  Pool2dParams params;  // mode is set by each test
};

// Windows 1x1..7x7 (square and rectangular), strides 1..3 and beyond the
// window, padding 0..window/2, both rounding modes, odd sizes, batch 1 and
// more, and global pooling.
const std::vector<Geometry>& geometry_table() {
  static const std::vector<Geometry> table = [] {
    const Shape inputs[] = {
        {2, 3, 13, 11}, {1, 2, 9, 8}, {3, 1, 7, 7}, {1, 1, 15, 17}, {2, 2, 8, 13}};
    const int windows[][2] = {{1, 1}, {2, 2}, {3, 3}, {2, 3}, {3, 2}, {1, 3},
                              {4, 4}, {5, 5}, {3, 5}, {6, 4}, {7, 7}, {7, 2}};
    std::vector<Geometry> out;
    std::size_t next_input = 0;
    for (const auto& w : windows) {
      const int wh = w[0], ww = w[1];
      const int strides[][2] = {{1, 1}, {2, 2}, {3, 3}, {1, 2}, {wh + 1, ww + 2}};
      std::vector<std::pair<int, int>> pads = {{0, 0}, {wh / 2, ww / 2}, {wh / 2, 0}};
      std::sort(pads.begin(), pads.end());
      pads.erase(std::unique(pads.begin(), pads.end()), pads.end());
      for (const auto& s : strides)
        for (const auto& [ph, pw] : pads)
          for (bool ceil : {false, true}) {
            const Shape& x = inputs[next_input++ % std::size(inputs)];
            out.push_back({x, make_params(PoolMode::Max, wh, ww, s[0], s[1], ph, pw, ceil)});
          }
    }
    for (const Shape& x : inputs) out.push_back({x, Pool2dParams::global(PoolMode::Max, x)});
    return out;
  }();
  return table;
}

std::int64_t window_area(const Pool2dParams& p) { return std::int64_t{p.window_h} * p.window_w; }

std::string first_difference(const std::vector<float>& got, const std::vector<float>& want) {
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      std::ostringstream out;
      out << "first difference at " << i << ": got " << got[i] << ", want " << want[i];
      return out.str();
    }
  return got.size() == want.size() ? "none" : "sizes differ";
}

bool has_nan(const std::vector<float>& v) {
  return std::any_of(v.begin(), v.end(), [](float f) { return std::isnan(f); });
}

// Reference results on the CPU, the oracle of every comparison.
struct Reference {
  Context ctx{Device::cpu()};

  Tensor forward(const Tensor& x, const Pool2dParams& p, Tensor* indices = nullptr) {
    const Shape ys = pool2d_output_shape(x.shape(), p);
    Tensor y(ys);
    if (indices) *indices = Tensor(ys, Device::cpu(), DType::I32);
    pool2d_forward(ctx, x, y, p, Engine::Reference, indices);
    return y;
  }
  Tensor backward(const Tensor& dy, const Shape& x_shape, const Pool2dParams& p,
                  const Pool2dSaved& saved) {
    Tensor dx(x_shape);
    pool2d_backward(ctx, dy, dx, p, saved, Engine::Reference);
    return dx;
  }
};

// Cases an engine declines are skipped with the registry's reason; a test
// whose every case is declined is skipped as a whole.
class Declines {
public:
  bool runs(const EngineQuery& q) {
    if (q.supported) {
      ++ran_;
      return true;
    }
    ++reasons_[q.reason];
    return false;
  }
  int ran() const { return ran_; }
  bool any() const { return !reasons_.empty(); }
  std::string summary() const {
    std::ostringstream out;
    for (const auto& [reason, count] : reasons_) out << count << " case(s): " << reason << "; ";
    return out.str();
  }

private:
  int ran_ = 0;
  std::map<std::string, int> reasons_;
};

#define DLRT_REPORT_DECLINES(declines)                                                  \
  do {                                                                                  \
    if ((declines).ran() == 0 && (declines).any())                                      \
      GTEST_SKIP() << "every case declined: " << (declines).summary();                  \
    if ((declines).any()) std::cout << "[ DECLINED ] " << (declines).summary() << "\n"; \
  } while (0)

class Pool2dEngineTest : public ::testing::TestWithParam<Engine> {
protected:
  void SetUp() override {
    DLRT_SKIP_UNLESS_ENGINE_RUNS(GetParam());
    device_ = test::device_for(GetParam());
    ctx_ = std::make_unique<Context>(device_);
  }

  Engine engine() const { return GetParam(); }

  EngineQuery query(Pool2dOp op, const Shape& x, const Pool2dParams& p, bool with_indices) {
    return pool2d_query(*ctx_, op, x, p, with_indices, engine());
  }

  struct Forward {
    std::vector<float> y;
    std::vector<std::int32_t> indices;
  };
  // Outputs start poisoned (NaN, index -1) so an unwritten element fails.
  Forward forward(const Tensor& x_host, const Pool2dParams& p, bool with_indices) {
    const Tensor x = x_host.to(device_);
    const Shape ys = pool2d_output_shape(x_host.shape(), p);
    Tensor y = test::poisoned(ys, device_);
    Tensor indices;
    if (with_indices) {
      indices = Tensor(ys, device_, DType::I32);
      indices.fill(-1);
    }
    EXPECT_EQ(pool2d_forward(*ctx_, x, y, p, engine(), with_indices ? &indices : nullptr),
              engine());
    ctx_->synchronize();
    Forward out{y.to_vector(), {}};
    if (with_indices) out.indices = indices.to_vector_i32();
    return out;
  }

  std::vector<float> backward(const Tensor& dy_host, const Shape& x_shape, const Pool2dParams& p,
                              const Pool2dSaved& saved_host) {
    const Tensor dy = dy_host.to(device_);
    Tensor dx = test::poisoned(x_shape, device_);
    Tensor indices, x, y;
    Pool2dSaved saved;
    if (saved_host.indices) indices = saved_host.indices->to(device_), saved.indices = &indices;
    if (saved_host.x) x = saved_host.x->to(device_), saved.x = &x;
    if (saved_host.y) y = saved_host.y->to(device_), saved.y = &y;
    EXPECT_EQ(pool2d_backward(*ctx_, dy, dx, p, saved, engine()), engine());
    ctx_->synchronize();
    return dx.to_vector();
  }

  // sum(r * pool(x)) in double, from this engine's forward.
  double loss(const Tensor& x, const Pool2dParams& p, const std::vector<float>& r) {
    const std::vector<float> y = forward(x, p, false).y;
    double sum = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) sum += double(r[i]) * double(y[i]);
    return sum;
  }

  Device device_ = Device::cpu();
  std::unique_ptr<Context> ctx_;
  Reference reference_;
};

TEST_P(Pool2dEngineTest, ForwardMatchesReference) {
  Declines declines;
  std::uint64_t seed = 100;
  for (const Geometry& geometry : geometry_table())
    for (PoolMode mode : kModes) {
      Pool2dParams p = geometry.params;
      p.mode = mode;
      SCOPED_TRACE(describe(geometry.x, p));
      if (!declines.runs(query(Pool2dOp::Forward, geometry.x, p, false))) continue;
      const Tensor x = test::random_tensor(geometry.x, ++seed);
      const std::vector<float> want = reference_.forward(x, p).to_vector();
      const std::vector<float> got = forward(x, p, false).y;
      ASSERT_FALSE(has_nan(got));
      if (mode == PoolMode::Max)
        ASSERT_TRUE(test::bitwise_equal(got, want)) << first_difference(got, want);
      else
        ASSERT_TRUE(test::all_close(got, want, window_area(p)));
    }
  DLRT_REPORT_DECLINES(declines);
}

TEST_P(Pool2dEngineTest, MaxIndicesMatchReference) {
  Declines declines;
  std::uint64_t seed = 200;
  for (const Geometry& geometry : geometry_table()) {
    const Pool2dParams& p = geometry.params;
    SCOPED_TRACE(describe(geometry.x, p));
    if (!declines.runs(query(Pool2dOp::Forward, geometry.x, p, true))) continue;
    const Tensor x = test::random_tensor(geometry.x, ++seed);
    Tensor want_indices;
    const std::vector<float> want = reference_.forward(x, p, &want_indices).to_vector();
    const Forward got = forward(x, p, true);
    ASSERT_TRUE(test::bitwise_equal(got.y, want)) << first_difference(got.y, want);
    ASSERT_EQ(got.indices, want_indices.to_vector_i32());
  }
  DLRT_REPORT_DECLINES(declines);
}

// Max backward agrees bitwise with Reference, from indices and from x and y,
// and a second run gives the same bits.
TEST_P(Pool2dEngineTest, MaxBackwardMatchesReference) {
  Declines declines;
  std::uint64_t seed = 300;
  for (const Geometry& geometry : geometry_table()) {
    const Pool2dParams& p = geometry.params;
    SCOPED_TRACE(describe(geometry.x, p));
    const Tensor x = test::random_tensor(geometry.x, ++seed);
    Tensor indices;
    const Tensor y = reference_.forward(x, p, &indices);
    const Tensor dy = test::random_tensor(y.shape(), ++seed);
    const std::vector<float> want =
        reference_.backward(dy, x.shape(), p, {&indices, nullptr, nullptr}).to_vector();
    // The Reference engine's two sources agree with each other.
    ASSERT_TRUE(test::bitwise_equal(
        reference_.backward(dy, x.shape(), p, {nullptr, &x, &y}).to_vector(), want));
    for (bool from_indices : {true, false}) {
      SCOPED_TRACE(from_indices ? "from indices" : "from x and y");
      if (!declines.runs(query(Pool2dOp::Backward, geometry.x, p, from_indices))) continue;
      const Pool2dSaved saved =
          from_indices ? Pool2dSaved{&indices, nullptr, nullptr} : Pool2dSaved{nullptr, &x, &y};
      const std::vector<float> got = backward(dy, x.shape(), p, saved);
      ASSERT_TRUE(test::bitwise_equal(got, want)) << first_difference(got, want);
      ASSERT_TRUE(test::bitwise_equal(backward(dy, x.shape(), p, saved), got));
    }
  }
  DLRT_REPORT_DECLINES(declines);
}

TEST_P(Pool2dEngineTest, AverageBackwardMatchesReference) {
  Declines declines;
  std::uint64_t seed = 400;
  for (const Geometry& geometry : geometry_table())
    for (PoolMode mode : {PoolMode::AverageIncludePad, PoolMode::AverageExcludePad}) {
      Pool2dParams p = geometry.params;
      p.mode = mode;
      SCOPED_TRACE(describe(geometry.x, p));
      if (!declines.runs(query(Pool2dOp::Backward, geometry.x, p, false))) continue;
      const Tensor dy = test::random_tensor(pool2d_output_shape(geometry.x, p), ++seed);
      const std::vector<float> want = reference_.backward(dy, geometry.x, p, {}).to_vector();
      const std::vector<float> got = backward(dy, geometry.x, p, {});
      ASSERT_FALSE(has_nan(got));
      ASSERT_TRUE(test::all_close(got, want, window_area(p)));
      if (engine() != Engine::Cudnn) {  // dlrt's own engines promise determinism
        ASSERT_TRUE(test::bitwise_equal(backward(dy, geometry.x, p, {}), got));
      }
    }
  DLRT_REPORT_DECLINES(declines);
}

const Geometry kGradientGeometries[] = {
    {{1, 2, 7, 6}, make_params(PoolMode::Max, 3, 3, 2, 2, 1, 1, true)},
    {{2, 1, 5, 7}, make_params(PoolMode::Max, 2, 2, 2, 2, 0, 0, true)},
    {{1, 1, 6, 5}, make_params(PoolMode::Max, 3, 2, 1, 1, 1, 1)},
    {{1, 1, 7, 7}, make_params(PoolMode::Max, 4, 4, 3, 3, 2, 2, true)},
    {{1, 2, 5, 4}, Pool2dParams::global(PoolMode::Max, {1, 2, 5, 4})},
};

// Central differences of sum(r * pool(x)), divided by the perturbation the
// floats actually hold.
TEST_P(Pool2dEngineTest, AverageGradientMatchesFiniteDifferences) {
  Declines declines;
  std::uint64_t seed = 500;
  for (const Geometry& geometry : kGradientGeometries)
    for (PoolMode mode : {PoolMode::AverageIncludePad, PoolMode::AverageExcludePad}) {
      Pool2dParams p = geometry.params;
      p.mode = mode;
      SCOPED_TRACE(describe(geometry.x, p));
      if (!declines.runs(query(Pool2dOp::Forward, geometry.x, p, false)) ||
          !declines.runs(query(Pool2dOp::Backward, geometry.x, p, false)))
        continue;
      const Tensor x = test::random_tensor(geometry.x, ++seed);
      const Tensor r = test::random_tensor(pool2d_output_shape(geometry.x, p), ++seed);
      const std::vector<float> rv = r.to_vector();
      const std::vector<float> grad = backward(r, geometry.x, p, {});
      const float step = 1e-2f;
      for (std::int64_t i = 0; i < x.numel(); ++i) {
        Tensor plus = x.clone(), minus = x.clone();
        plus.data()[i] += step;
        minus.data()[i] -= step;
        const double fd = (loss(plus, p, rv) - loss(minus, p, rv)) /
                          (double(plus.data()[i]) - double(minus.data()[i]));
        ASSERT_NEAR(grad[static_cast<std::size_t>(i)], fd, 1e-3) << "element " << i;
      }
    }
  DLRT_REPORT_DECLINES(declines);
}

// Max pooling is differentiable away from ties: x holds distinct values at
// least 0.04 apart, so a step of 0.01 never changes any window's argmax.
TEST_P(Pool2dEngineTest, MaxGradientMatchesFiniteDifferences) {
  Declines declines;
  std::uint64_t seed = 600;
  for (const Geometry& geometry : kGradientGeometries) {
    const Pool2dParams& p = geometry.params;
    SCOPED_TRACE(describe(geometry.x, p));
    const bool with_indices = query(Pool2dOp::Backward, geometry.x, p, true).supported;
    if (!declines.runs(query(Pool2dOp::Forward, geometry.x, p, false)) ||
        !declines.runs(query(Pool2dOp::Backward, geometry.x, p, with_indices)))
      continue;
    const std::int64_t n = geometry.x.numel();
    std::vector<float> values(static_cast<std::size_t>(n));
    std::iota(values.begin(), values.end(), 0.0f);
    std::shuffle(values.begin(), values.end(), std::mt19937_64(++seed));
    for (float& v : values) v = (v - float(n) / 2) * 0.05f;
    std::vector<float> sorted = values;
    std::sort(sorted.begin(), sorted.end());
    const float step = 1e-2f;
    for (std::size_t i = 1; i < sorted.size(); ++i)
      ASSERT_GT(sorted[i] - sorted[i - 1], 4 * step) << "the input has near-ties";
    const Tensor x = Tensor::from_vector(geometry.x, values);
    Tensor indices;
    const Tensor y = reference_.forward(x, p, &indices);
    const Tensor r = test::random_tensor(y.shape(), ++seed);
    const std::vector<float> rv = r.to_vector();
    const Pool2dSaved saved =
        with_indices ? Pool2dSaved{&indices, nullptr, nullptr} : Pool2dSaved{nullptr, &x, &y};
    const std::vector<float> grad = backward(r, geometry.x, p, saved);
    ASSERT_TRUE(std::any_of(grad.begin(), grad.end(), [](float g) { return g != 0.0f; }));
    for (std::int64_t i = 0; i < n; ++i) {
      Tensor plus = x.clone(), minus = x.clone();
      plus.data()[i] += step;
      minus.data()[i] -= step;
      const double fd = (loss(plus, p, rv) - loss(minus, p, rv)) /
                        (double(plus.data()[i]) - double(minus.data()[i]));
      ASSERT_NEAR(grad[static_cast<std::size_t>(i)], fd, 1e-4) << "element " << i;
    }
  }
  DLRT_REPORT_DECLINES(declines);
}

// Equal values: the first maximum in row-major window order wins, in the
// indices and in where backward sends the gradient (from indices or from x, y).
TEST_P(Pool2dEngineTest, TiesGoToTheFirstMaximum) {
  struct TieCase {
    Shape x;
    std::vector<float> values;
    Pool2dParams params;
    std::vector<std::int32_t> indices;
  };
  const TieCase cases[] = {
      // A constant plane, disjoint windows: each window's top-left element.
      {{1, 1, 4, 4},
       std::vector<float>(16, 1.0f),
       make_params(PoolMode::Max, 2, 2, 2, 2),
       {0, 2, 8, 10}},
      // Overlapping windows on a constant plane.
      {{1, 1, 3, 4},
       std::vector<float>(12, 5.0f),
       make_params(PoolMode::Max, 2, 2, 1, 1),
       {0, 1, 2, 4, 5, 6}},
      // Two maxima in one window, in different rows: the earlier row wins.
      {{1, 1, 2, 3}, {0, 3, 1, 3, 2, 3}, make_params(PoolMode::Max, 2, 3, 1, 1), {1}},
      // Padding never wins, even over negative inputs; ties among them as before.
      {{1, 1, 2, 2},
       std::vector<float>(4, -5.0f),
       make_params(PoolMode::Max, 3, 3, 1, 1, 1, 1),
       {0, 0, 0, 0}},
      // -inf everywhere: still the first element, not "nothing found".
      {{1, 1, 2, 2},
       std::vector<float>(4, -std::numeric_limits<float>::infinity()),
       make_params(PoolMode::Max, 2, 2, 2, 2),
       {0}},
  };
  Declines declines;
  for (const TieCase& c : cases) {
    SCOPED_TRACE(describe(c.x, c.params));
    const Tensor x = Tensor::from_vector(c.x, c.values);
    const Shape ys = pool2d_output_shape(c.x, c.params);
    ASSERT_EQ(ys.numel(), static_cast<std::int64_t>(c.indices.size()));
    // What the first-wins rule implies for y and for dx.
    std::vector<float> want_y, want_dx(c.values.size(), 0.0f);
    std::vector<float> dy_values(c.indices.size());
    for (std::size_t i = 0; i < c.indices.size(); ++i) {
      want_y.push_back(c.values[static_cast<std::size_t>(c.indices[i])]);
      dy_values[i] = float(i + 1);
      want_dx[static_cast<std::size_t>(c.indices[i])] += dy_values[i];
    }
    if (declines.runs(query(Pool2dOp::Forward, c.x, c.params, false))) {
      EXPECT_EQ(forward(x, c.params, false).y, want_y);
    }
    if (declines.runs(query(Pool2dOp::Forward, c.x, c.params, true))) {
      const Forward got = forward(x, c.params, true);
      EXPECT_EQ(got.y, want_y);
      EXPECT_EQ(got.indices, c.indices);
    }
    const Tensor dy = Tensor::from_vector(ys, dy_values);
    const Tensor y = Tensor::from_vector(ys, want_y);
    Tensor indices(ys, Device::cpu(), DType::I32);
    std::copy(c.indices.begin(), c.indices.end(), indices.data_i32());
    if (declines.runs(query(Pool2dOp::Backward, c.x, c.params, true))) {
      EXPECT_EQ(backward(dy, c.x, c.params, {&indices, nullptr, nullptr}), want_dx);
    }
    if (declines.runs(query(Pool2dOp::Backward, c.x, c.params, false))) {
      EXPECT_EQ(backward(dy, c.x, c.params, {nullptr, &x, &y}), want_dx);
    }
  }
  DLRT_REPORT_DECLINES(declines);
}

// Rows wide enough for the Cpu engine's blocks of interior windows (16 at a
// time), full of ties (values from a set of three) and NaNs: values and
// argmax bitwise as Reference's (and max backward from x and y, which finds
// the argmax again), at every stride the blocks load differently.
TEST_P(Pool2dEngineTest, WideRowsWithTiesAndNaNsMatchReference) {
  const Shape shape{2, 2, 5, 83};
  std::vector<float> values = test::random_values(shape.numel(), 11);
  for (std::size_t i = 0; i < values.size(); ++i) {
    values[i] = std::floor(values[i] * 1.5f);  // -2, -1, 0, 1: ties everywhere
    if (i % 37 == 5 || i % 53 == 0) values[i] = kNaN;
    if (i % 41 == 7) values[i] = -0.0f;
  }
  const Tensor x = Tensor::from_vector(shape, values);
  Declines declines;
  for (int stride : {1, 2, 3, 4})
    for (int window : {2, 3, 5})
      for (int pad : {0, window / 2}) {
        const Pool2dParams p = make_params(PoolMode::Max, window, window, stride, stride, pad, pad);
        SCOPED_TRACE(describe(shape, p));
        Tensor want_indices;
        const std::vector<float> want = reference_.forward(x, p, &want_indices).to_vector();
        if (declines.runs(query(Pool2dOp::Forward, shape, p, false))) {
          EXPECT_TRUE(test::bitwise_equal(forward(x, p, false).y, want));
        }
        if (declines.runs(query(Pool2dOp::Forward, shape, p, true))) {
          const Forward got = forward(x, p, true);
          EXPECT_TRUE(test::bitwise_equal(got.y, want));
          EXPECT_EQ(got.indices, want_indices.to_vector_i32());
        }
        if (declines.runs(query(Pool2dOp::Backward, shape, p, false))) {
          const Tensor y = Tensor::from_vector(pool2d_output_shape(shape, p), want);
          const Tensor dy = test::random_tensor(y.shape(), 13);
          const Pool2dSaved saved{nullptr, &x, &y};
          EXPECT_TRUE(test::bitwise_equal(backward(dy, shape, p, saved),
                                          reference_.backward(dy, shape, p, saved).to_vector()));
        }
      }
  DLRT_REPORT_DECLINES(declines);
}

// +0 and -0 compare equal, so the first of them is the maximum, sign and all.
TEST_P(Pool2dEngineTest, SignedZeroTieKeepsTheFirstZero) {
  if (engine() == Engine::Cudnn)
    GTEST_SKIP() << "cuDNN does not document which of tied maxima it returns; dlrt's Cudnn "
                    "engine promises the maximum's value only";
  const Pool2dParams p = make_params(PoolMode::Max, 1, 2, 1, 2);
  const EngineQuery q = query(Pool2dOp::Forward, {1, 1, 1, 2}, p, true);
  if (!q.supported) GTEST_SKIP() << "declined: " << q.reason;
  for (const float first : {0.0f, -0.0f}) {
    const Tensor x = Tensor::from_vector({1, 1, 1, 2}, std::vector<float>{first, -first});
    const Forward got = forward(x, p, true);
    EXPECT_TRUE(test::bitwise_equal(got.y, {first})) << "got " << got.y[0];
    EXPECT_EQ(got.indices, std::vector<std::int32_t>{0});
  }
}

// A NaN makes its window's output NaN and is its argmax; the first NaN wins,
// whether a number comes before or after it.
TEST_P(Pool2dEngineTest, NaNPropagatesAndIsTheArgmax) {
  const Shape shape{1, 1, 4, 4};
  const Pool2dParams p = make_params(PoolMode::Max, 2, 2, 2, 2);
  struct NaNCase {
    std::vector<int> nan_at;
    float big_at_zero;    // x[0], a large number before the NaNs
    std::int32_t argmax;  // of window (0, 0), which covers 0, 1, 4, 5
  };
  const NaNCase cases[] = {{{5}, 0.5f, 5}, {{4, 1}, 0.5f, 1}, {{5}, 100.0f, 5}, {{0}, 0.0f, 0}};
  Declines declines;
  for (const NaNCase& c : cases) {
    std::vector<float> values = test::random_values(shape.numel(), 7);
    values[0] = c.big_at_zero;
    for (int i : c.nan_at) values[static_cast<std::size_t>(i)] = kNaN;
    values[15] = 100.0f;  // window (1, 1) stays a number
    const Tensor x = Tensor::from_vector(shape, values);
    if (declines.runs(query(Pool2dOp::Forward, shape, p, false))) {
      const std::vector<float> y = forward(x, p, false).y;
      EXPECT_TRUE(std::isnan(y[0]));
      EXPECT_FALSE(std::isnan(y[1]) || std::isnan(y[2]));
      EXPECT_EQ(y[3], 100.0f);
    }
    if (declines.runs(query(Pool2dOp::Forward, shape, p, true))) {
      const Forward got = forward(x, p, true);
      EXPECT_TRUE(std::isnan(got.y[0]));
      EXPECT_EQ(got.indices[0], c.argmax);
      EXPECT_EQ(got.indices[3], 15);
    }
    if (declines.runs(query(Pool2dOp::Backward, shape, p, false))) {
      const Tensor y = reference_.forward(x, p);
      const Tensor dy = Tensor::full(y.shape(), 2.0f);
      const std::vector<float> dx = backward(dy, shape, p, {nullptr, &x, &y});
      EXPECT_EQ(dx[static_cast<std::size_t>(c.argmax)], 2.0f);
      EXPECT_EQ(std::count(dx.begin(), dx.end(), 2.0f), 4);
    }
  }
  // The averages propagate NaN through the sum.
  for (PoolMode mode : {PoolMode::AverageIncludePad, PoolMode::AverageExcludePad}) {
    Pool2dParams avg = p;
    avg.mode = mode;
    if (!declines.runs(query(Pool2dOp::Forward, shape, avg, false))) continue;
    std::vector<float> values = test::random_values(shape.numel(), 9);
    values[6] = kNaN;  // window (0, 1)
    const std::vector<float> y = forward(Tensor::from_vector(shape, values), avg, false).y;
    EXPECT_TRUE(std::isnan(y[1]));
    EXPECT_FALSE(std::isnan(y[0]) || std::isnan(y[2]) || std::isnan(y[3]));
  }
  DLRT_REPORT_DECLINES(declines);
}

// Indices that forward could not have written (outside the plane, or inside
// it but outside their window) contribute nothing, and nothing is written
// out of bounds.
TEST_P(Pool2dEngineTest, IndicesOutsideTheirWindowContributeNothing) {
  const Shape shape{1, 2, 4, 4};
  const Pool2dParams p = make_params(PoolMode::Max, 2, 2, 2, 2);
  if (!query(Pool2dOp::Backward, shape, p, true).supported)
    GTEST_SKIP() << query(Pool2dOp::Backward, shape, p, true).reason;
  const Shape ys = pool2d_output_shape(shape, p);
  // Plane 0: window (0,0) valid (5); (0,1) -> 0 (in the plane, not its window);
  // (1,0) -> -1; (1,1) -> 16 (one past the plane). Plane 1: 1 << 30 and valid ones.
  const std::vector<std::int32_t> bogus = {5, 0, -1, 16, 1 << 30, 3, 13, INT32_MIN};
  Tensor indices(ys, Device::cpu(), DType::I32);
  std::copy(bogus.begin(), bogus.end(), indices.data_i32());
  const Tensor dy = Tensor::full(ys, 1.0f);
  std::vector<float> want(static_cast<std::size_t>(shape.numel()), 0.0f);
  want[5] = want[16 + 3] = want[16 + 13] = 1.0f;
  EXPECT_EQ(backward(dy, shape, p, {&indices, nullptr, nullptr}), want);
  EXPECT_EQ(reference_.backward(dy, shape, p, {&indices, nullptr, nullptr}).to_vector(), want);
}

// Global pooling is one window per plane: the plane's maximum and mean.
TEST_P(Pool2dEngineTest, GlobalPoolingIsThePlaneMaximumAndMean) {
  const Shape shape{2, 3, 5, 7};
  const Tensor x = test::random_tensor(shape, 11);
  const std::vector<float> xv = x.to_vector();
  Declines declines;
  for (PoolMode mode : kModes) {
    const Pool2dParams p = Pool2dParams::global(mode, shape);
    ASSERT_EQ(pool2d_output_shape(shape, p), (Shape{2, 3, 1, 1}));
    if (!declines.runs(query(Pool2dOp::Forward, shape, p, false))) continue;
    const std::vector<float> y = forward(x, p, false).y;
    for (std::size_t plane = 0; plane < 6; ++plane) {
      const auto begin = xv.begin() + static_cast<std::ptrdiff_t>(plane * 35);
      if (mode == PoolMode::Max) {
        EXPECT_EQ(y[plane], *std::max_element(begin, begin + 35));
      } else {
        const double mean = std::accumulate(begin, begin + 35, 0.0) / 35.0;
        EXPECT_NEAR(y[plane], mean, 1e-6);
      }
    }
  }
  DLRT_REPORT_DECLINES(declines);
}

INSTANTIATE_TEST_SUITE_P(AllEngines, Pool2dEngineTest,
                         ::testing::ValuesIn(test::engines_of(OpFamily::Pool2d)),
                         test::engine_name);

// ---- shapes ----

std::int64_t extent(std::int64_t input, int window, int stride, int pad, bool ceil) {
  const Shape y = pool2d_output_shape(
      {1, 1, input, 1}, make_params(PoolMode::Max, window, 1, stride, 1, pad, 0, ceil));
  return y[2];
}

TEST(Pool2dShape, CeilModeSizesMatchHandComputedValues) {
  // floor((5 - 2) / 2) + 1 = 2; ceil gives 3: the last window starts at 4 < 5.
  EXPECT_EQ(extent(5, 2, 2, 0, false), 2);
  EXPECT_EQ(extent(5, 2, 2, 0, true), 3);
  // Divisible: both modes agree.
  EXPECT_EQ(extent(6, 2, 2, 0, false), 3);
  EXPECT_EQ(extent(6, 2, 2, 0, true), 3);
  // (10 - 3) / 3: floor 2 + 1 = 3, ceil 3 + 1 = 4 (the 4th window starts at 9 < 10).
  EXPECT_EQ(extent(10, 3, 3, 0, false), 3);
  EXPECT_EQ(extent(10, 3, 3, 0, true), 4);
  // The rule case: ceil((3 + 2 - 2) / 2) + 1 = 3, but the 3rd window would
  // start at 2*2 - 1 = 3 = H, wholly in the right padding: it is dropped.
  EXPECT_EQ(extent(3, 2, 2, 1, false), 2);
  EXPECT_EQ(extent(3, 2, 2, 1, true), 2);
  // Likewise ceil((5 + 2 - 3) / 3) + 1 = 3, third window at 6 - 1 = 5 = H: 2.
  EXPECT_EQ(extent(5, 3, 3, 1, true), 2);
  // ceil((4 + 2 - 3) / 2) + 1 = 3 and the third window starts at 3 < 4: kept.
  EXPECT_EQ(extent(4, 3, 2, 1, false), 2);
  EXPECT_EQ(extent(4, 3, 2, 1, true), 3);
  // Stride beyond the input, window 1: a single output either way.
  EXPECT_EQ(extent(1, 1, 2, 0, true), 1);
  EXPECT_EQ(extent(7, 7, 3, 0, true), 1);
  // Rectangular, both dimensions at once.
  EXPECT_EQ(pool2d_output_shape({2, 3, 5, 10}, make_params(PoolMode::Max, 2, 3, 2, 3, 0, 0, true)),
            (Shape{2, 3, 3, 4}));
}

// pad <= window/2 and the ceil rule together mean every window of every
// output overlaps the input: no output is an empty window.
TEST(Pool2dShape, EveryWindowOverlapsTheInputExhaustively) {
  int checked = 0;
  for (int H = 1; H <= 12; ++H)
    for (int window = 1; window <= 7; ++window)
      for (int stride = 1; stride <= 8; ++stride)
        for (int pad = 0; pad <= window / 2; ++pad) {
          if (window > H + 2 * pad) continue;
          for (bool ceil : {false, true}) {
            const std::int64_t P = extent(H, window, stride, pad, ceil);
            ASSERT_GE(P, 1);
            const std::int64_t floor_P = (H + 2 * pad - window) / stride + 1;
            ASSERT_TRUE(P == floor_P || (ceil && P == floor_P + 1));
            for (std::int64_t p = 0; p < P; ++p) {
              const std::int64_t start = p * stride - pad;
              ASSERT_LT(start, H) << "H " << H << " window " << window << " stride " << stride
                                  << " pad " << pad << " ceil " << ceil << " p " << p;
              ASSERT_GT(start + window, 0);
            }
            ++checked;
          }
        }
  EXPECT_GT(checked, 1000);
}

// In ceil mode the last window can reach past the right padding; the
// include-pad divisor counts only the padded input, as PyTorch does.
TEST(Pool2dShape, IncludePadDividesByTheWindowClippedToThePaddedInput) {
  Context ctx;
  const Tensor x = Tensor::from_vector({1, 1, 1, 5}, std::vector<float>{1, 2, 3, 4, 5});
  struct Case {
    PoolMode mode;
    int pad;
    std::vector<float> want;
  };
  const Case cases[] = {
      {PoolMode::AverageIncludePad, 0, {1.5f, 3.5f, 5.0f}},
      // With padding 1: windows [-1, 1), [1, 3), [3, 5), [5, 7) cut to [5, 6).
      {PoolMode::AverageIncludePad, 1, {0.5f, 2.5f, 4.5f}},
      {PoolMode::AverageExcludePad, 1, {1.0f, 2.5f, 4.5f}},
  };
  int ran = 0;
  for (Engine engine : test::engines_of(OpFamily::Pool2d)) {
    if (engine_device(engine) != Device::Kind::Cpu) continue;
    for (const Case& c : cases) {
      const Pool2dParams p = make_params(c.mode, 1, 2, 1, 2, 0, c.pad, true);
      // An engine may decline ceil mode's clipped divisor (Onednn does), never get it wrong.
      if (!pool2d_query(ctx, Pool2dOp::Forward, x.shape(), p, false, engine).supported) continue;
      Tensor y = test::poisoned({1, 1, 1, 3});
      pool2d_forward(ctx, x, y, p, engine);
      EXPECT_EQ(y.to_vector(), c.want) << to_string(engine) << " pad " << c.pad;
      ++ran;
    }
  }
  EXPECT_GE(ran, 6) << "Reference and Cpu run every case";
}

TEST(Pool2dShape, GlobalParamsCoverThePlane) {
  const Pool2dParams p = Pool2dParams::global(PoolMode::AverageExcludePad, {4, 3, 9, 5});
  EXPECT_EQ(p.mode, PoolMode::AverageExcludePad);
  EXPECT_EQ(p.window_h, 9);
  EXPECT_EQ(p.window_w, 5);
  EXPECT_EQ(p.pad_h, 0);
  EXPECT_EQ(p.pad_w, 0);
  EXPECT_EQ(pool2d_output_shape({4, 3, 9, 5}, p), (Shape{4, 3, 1, 1}));
  EXPECT_TRUE(test::throws_error(
      [] {
        Pool2dParams::global(PoolMode::Max, {3, 9, 5});
      },
      Error::Kind::InvalidArgument, {"'x'", "[3, 9, 5]", "rank 4"}));
}

TEST(Pool2dShape, ModeNames) {
  EXPECT_STREQ(to_string(PoolMode::Max), "max");
  EXPECT_STREQ(to_string(PoolMode::AverageIncludePad), "average_include_pad");
  EXPECT_STREQ(to_string(PoolMode::AverageExcludePad), "average_exclude_pad");
}

TEST(Pool2dDispatch, AutoRunsTheCpuEngineOnTheCpu) {
  Context ctx;
  const Tensor x = test::random_tensor({2, 3, 9, 8}, 3);
  const Pool2dParams p = make_params(PoolMode::Max, 3, 3, 2, 2, 1, 1);
  Tensor y = test::poisoned(pool2d_output_shape(x.shape(), p));
  EXPECT_EQ(pool2d_forward(ctx, x, y, p), Engine::Cpu);
  const EngineQuery q = pool2d_query(ctx, Pool2dOp::Backward, x.shape(), p, true);
  EXPECT_TRUE(q.supported);
  EXPECT_EQ(q.engine, Engine::Cpu);
}

// ---- validation: each rule throws InvalidArgument naming the argument, and
// leaves every output bitwise untouched ----

struct Snapshot {
  explicit Snapshot(std::vector<const Tensor*> outputs) : tensors(std::move(outputs)) {
    for (const Tensor* t : tensors) bits.push_back(bytes_of(*t));
  }
  static std::vector<std::uint8_t> bytes_of(const Tensor& t) {
    std::vector<std::uint8_t> out(t.bytes());
    if (t.defined()) std::memcpy(out.data(), t.to(Device::cpu()).data(), t.bytes());
    return out;
  }
  bool unchanged() const {
    for (std::size_t i = 0; i < tensors.size(); ++i)
      if (bytes_of(*tensors[i]) != bits[i]) return false;
    return true;
  }
  std::vector<const Tensor*> tensors;
  std::vector<std::vector<std::uint8_t>> bits;
};

::testing::AssertionResult rejected(const std::function<void()>& call,
                                    const std::vector<std::string>& needles,
                                    std::vector<const Tensor*> outputs) {
  const Snapshot before(std::move(outputs));
  ::testing::AssertionResult thrown =
      test::throws_error(call, Error::Kind::InvalidArgument, needles);
  if (!thrown) return thrown;
  if (!before.unchanged()) return ::testing::AssertionFailure() << "an output was written";
  return ::testing::AssertionSuccess();
}

class Pool2dValidation : public ::testing::Test {
protected:
  Context ctx;
  Pool2dParams p = make_params(PoolMode::Max, 3, 3, 2, 2, 1, 1);
  Tensor x = test::random_tensor({2, 3, 9, 8}, 1);
  Shape ys = pool2d_output_shape(x.shape(), p);  // [2, 3, 5, 4]
  Tensor y = test::random_tensor(ys, 2);
  Tensor indices = Tensor(ys, Device::cpu(), DType::I32);
  Tensor dy = test::random_tensor(ys, 3);
  Tensor dx = test::random_tensor(x.shape(), 4);

  void SetUp() override { indices.fill(-3); }

  ::testing::AssertionResult forward_rejects(const Tensor& xx, Tensor& yy, const Pool2dParams& pp,
                                             Tensor* ind, const std::vector<std::string>& needles,
                                             Engine engine = Engine::Auto) {
    return rejected([&] { pool2d_forward(ctx, xx, yy, pp, engine, ind); }, needles,
                    {&yy, ind ? ind : &indices, &xx});
  }
  ::testing::AssertionResult backward_rejects(const Tensor& dyy, Tensor& dxx,
                                              const Pool2dParams& pp, const Pool2dSaved& saved,
                                              const std::vector<std::string>& needles,
                                              Engine engine = Engine::Auto) {
    return rejected([&] { pool2d_backward(ctx, dyy, dxx, pp, saved, engine); }, needles,
                    {&dxx, &dyy});
  }
};

TEST_F(Pool2dValidation, ForwardRejectsBadTensors) {
  EXPECT_TRUE(forward_rejects(x, y, p, nullptr, {"'engine'", "42"}, static_cast<Engine>(42)));
  EXPECT_TRUE(forward_rejects(Tensor(), y, p, nullptr, {"'x'", "undefined"}));
  EXPECT_TRUE(forward_rejects(x.view({2, 3, 72}), y, p, nullptr, {"'x'", "rank 4"}));
  const Tensor x_i32(x.shape(), Device::cpu(), DType::I32);
  EXPECT_TRUE(forward_rejects(x_i32, y, p, nullptr, {"'x.dtype'", "i32", "f32"}));
  Tensor y_wrong = test::random_tensor({2, 3, 4, 4}, 5);
  EXPECT_TRUE(forward_rejects(x, y_wrong, p, nullptr, {"'y'", "[2, 3, 4, 4]", "[2, 3, 5, 4]"}));
  Tensor y_rank = test::random_tensor({2, 3, 20}, 5);
  EXPECT_TRUE(forward_rejects(x, y_rank, p, nullptr, {"'y'", "rank 4"}));
  Tensor y_i32(ys, Device::cpu(), DType::I32);
  EXPECT_TRUE(forward_rejects(x, y_i32, p, nullptr, {"'y.dtype'"}));
  Tensor y_in_x = x.view({x.numel()}).slice(0, ys.numel()).view(ys);
  EXPECT_TRUE(forward_rejects(x, y_in_x, p, nullptr, {"'y'", "'x'", "overlap"}));
  if (cuda_available()) {
    const Tensor x_gpu = x.to(Device::cuda(0));
    EXPECT_TRUE(forward_rejects(x_gpu, y, p, nullptr, {"'x.device'", "cuda:0"}));
  }
}

TEST_F(Pool2dValidation, ForwardRejectsBadParameters) {
  auto with = [&](auto change) {
    Pool2dParams q = p;
    change(q);
    return q;
  };
  EXPECT_TRUE(forward_rejects(x, y,
                              with([](Pool2dParams& q) { q.mode = static_cast<PoolMode>(9); }),
                              nullptr, {"'params.mode'", "9"}));
  EXPECT_TRUE(forward_rejects(x, y, with([](Pool2dParams& q) { q.window_h = 0; }), nullptr,
                              {"'params.window_h'", "= 0", "[1, 65536]"}));
  EXPECT_TRUE(forward_rejects(x, y, with([](Pool2dParams& q) { q.window_w = -2; }), nullptr,
                              {"'params.window_w'", "-2", "[1, 65536]"}));
  EXPECT_TRUE(forward_rejects(x, y, with([](Pool2dParams& q) { q.stride_h = 0; }), nullptr,
                              {"'params.stride_h'", "= 0", "[1, 65536]"}));
  // Strides near INT_MAX once overflowed the Cpu engine's int arithmetic and crashed.
  EXPECT_TRUE(forward_rejects(x, y, with([](Pool2dParams& q) { q.stride_w = INT_MAX; }), nullptr,
                              {"'params.stride_w'", "2147483647", "[1, 65536]"}));
  EXPECT_TRUE(forward_rejects(x, y, with([](Pool2dParams& q) { q.window_h = 65537; }), nullptr,
                              {"'params.window_h'", "65537", "[1, 65536]"}));
  EXPECT_TRUE(forward_rejects(x, y, with([](Pool2dParams& q) { q.stride_w = -1; }), nullptr,
                              {"'params.stride_w'", "-1"}));
  EXPECT_TRUE(forward_rejects(x, y, with([](Pool2dParams& q) { q.pad_h = 2; }), nullptr,
                              {"'params.pad_h'", "= 2", "[0, 1]"}));
  EXPECT_TRUE(forward_rejects(x, y, with([](Pool2dParams& q) { q.pad_w = -1; }), nullptr,
                              {"'params.pad_w'", "-1", "window_w / 2"}));
  // Windows larger than the padded input (9 + 2 and 8 + 2).
  EXPECT_TRUE(forward_rejects(x, y, with([](Pool2dParams& q) { q.window_h = 12, q.pad_h = 0; }),
                              nullptr, {"'params.window_h'", "12", "padded input height", "9"}));
  EXPECT_TRUE(forward_rejects(x, y, with([](Pool2dParams& q) { q.window_w = 11; }), nullptr,
                              {"'params.window_w'", "11", "padded input width", "10"}));
}

TEST_F(Pool2dValidation, ForwardRejectsBadIndices) {
  Pool2dParams avg = p;
  avg.mode = PoolMode::AverageIncludePad;
  EXPECT_TRUE(forward_rejects(x, y, avg, &indices, {"'indices'", "average_include_pad"}));
  Tensor f32_indices = test::random_tensor(ys, 6);
  EXPECT_TRUE(forward_rejects(x, y, p, &f32_indices, {"'indices.dtype'", "f32", "i32"}));
  Tensor wrong(Shape{2, 3, 4, 5}, Device::cpu(), DType::I32);
  wrong.fill(-3);
  EXPECT_TRUE(forward_rejects(x, y, p, &wrong, {"'indices'", "[2, 3, 4, 5]", "y's shape"}));
  Tensor undefined;
  EXPECT_TRUE(forward_rejects(x, y, p, &undefined, {"'indices'", "undefined"}));
}

TEST_F(Pool2dValidation, BackwardRejectsBadTensors) {
  const Pool2dSaved saved{&indices, nullptr, nullptr};
  EXPECT_TRUE(backward_rejects(dy, dx, p, saved, {"'engine'"}, static_cast<Engine>(-1)));
  Tensor dy_wrong = test::random_tensor({2, 3, 4, 4}, 7);
  EXPECT_TRUE(backward_rejects(dy_wrong, dx, p, saved, {"'dy'", "[2, 3, 4, 4]", "[2, 3, 5, 4]"}));
  Tensor dx_rank = test::random_tensor({6, 9, 8}, 7);
  EXPECT_TRUE(backward_rejects(dy, dx_rank, p, saved, {"'dx'", "rank 4"}));
  Tensor dx_params = dx;
  Pool2dParams bad = p;
  bad.pad_w = 5;
  EXPECT_TRUE(backward_rejects(dy, dx_params, bad, saved, {"'params.pad_w'", "5"}));
  // dx sharing dy's memory.
  Tensor both = test::random_tensor({x.numel() + ys.numel()}, 8);
  Tensor dx_shared = both.slice(0, x.numel()).view(x.shape());
  Tensor dy_shared = both.slice(x.numel() - 1, x.numel() - 1 + ys.numel()).view(ys);
  EXPECT_TRUE(backward_rejects(dy_shared, dx_shared, p, saved, {"'dx'", "'dy'", "overlap"}));
}

TEST_F(Pool2dValidation, BackwardRejectsBadSavedTensors) {
  Pool2dParams avg = p;
  avg.mode = PoolMode::AverageExcludePad;
  EXPECT_TRUE(backward_rejects(dy, dx, avg, {&indices, nullptr, nullptr},
                               {"'saved.indices'", "average_exclude_pad"}));
  EXPECT_TRUE(backward_rejects(dy, dx, avg, {nullptr, &x, &y}, {"'saved.x'", "must be null"}));
  EXPECT_TRUE(backward_rejects(dy, dx, avg, {nullptr, nullptr, &y}, {"'saved.y'"}));
  EXPECT_TRUE(backward_rejects(dy, dx, p, {}, {"'saved'", "saved.indices", "saved.x"}));
  EXPECT_TRUE(backward_rejects(dy, dx, p, {nullptr, &x, nullptr}, {"'saved.y'", "together"}));
  EXPECT_TRUE(backward_rejects(dy, dx, p, {nullptr, nullptr, &y}, {"'saved.x'", "together"}));
  const Tensor x_wrong = test::random_tensor({2, 3, 10, 8}, 9);
  EXPECT_TRUE(backward_rejects(dy, dx, p, {nullptr, &x_wrong, &y},
                               {"'saved.x'", "[2, 3, 10, 8]", "dx's shape"}));
  const Tensor y_wrong = test::random_tensor({2, 3, 5, 5}, 9);
  EXPECT_TRUE(backward_rejects(dy, dx, p, {nullptr, &x, &y_wrong},
                               {"'saved.y'", "[2, 3, 5, 5]", "dy's shape"}));
  const Tensor f32_indices = test::random_tensor(ys, 10);
  EXPECT_TRUE(backward_rejects(dy, dx, p, {&f32_indices, nullptr, nullptr},
                               {"'saved.indices.dtype'", "f32"}));
  Tensor wrong_indices(Shape{2, 3, 5, 3}, Device::cpu(), DType::I32);
  EXPECT_TRUE(backward_rejects(dy, dx, p, {&wrong_indices, nullptr, nullptr},
                               {"'saved.indices'", "[2, 3, 5, 3]"}));
  // dx sharing saved.x's memory.
  Tensor dx_is_x = x.view(x.shape());
  EXPECT_TRUE(backward_rejects(dy, dx_is_x, p, {nullptr, &x, &y}, {"'dx'", "'saved.x'"}));
}

TEST_F(Pool2dValidation, QueryAndShapeRejectBadArguments) {
  Pool2dParams avg = p;
  avg.mode = PoolMode::AverageIncludePad;
  EXPECT_TRUE(
      test::throws_error([&] { pool2d_query(ctx, Pool2dOp::Forward, x.shape(), avg, true); },
                         Error::Kind::InvalidArgument, {"'with_indices'", "average_include_pad"}));
  EXPECT_TRUE(test::throws_error([&] { pool2d_query(ctx, static_cast<Pool2dOp>(5), x.shape(), p); },
                                 Error::Kind::InvalidArgument, {"'op'", "5"}));
  Pool2dParams bad = p;
  bad.stride_h = 0;
  EXPECT_TRUE(test::throws_error([&] { pool2d_query(ctx, Pool2dOp::Forward, x.shape(), bad); },
                                 Error::Kind::InvalidArgument, {"'params.stride_h'"}));
  EXPECT_TRUE(test::throws_error(
      [&] {
        pool2d_output_shape({2, 3, 9}, p);
      },
      Error::Kind::InvalidArgument, {"'x'", "[2, 3, 9]", "rank 4"}));
  EXPECT_TRUE(test::throws_error(
      [&] {
        pool2d_output_shape({2, 0, 9, 8}, p);
      },
      Error::Kind::InvalidArgument, {"'x'", ">= 1"}));
}

// An engine that cannot run the problem is an Unsupported error, raised
// before anything is written.
TEST_F(Pool2dValidation, UnavailableEngineLeavesOutputsUntouched) {
  const Snapshot before({&y, &indices});
  EXPECT_TRUE(test::throws_error([&] { pool2d_forward(ctx, x, y, p, Engine::Cuda, &indices); },
                                 Error::Kind::Unsupported, {"cuda"}));
  EXPECT_TRUE(before.unchanged());
}

// The largest stride the rule allows, with a window reaching into the
// padding: the Cpu engine's interior range once overflowed int here.
TEST(Pool2dExtremes, LargestStrideMatchesReference) {
  Pool2dParams params;
  params.window_h = params.window_w = 4;
  params.pad_h = params.pad_w = 2;
  params.stride_h = params.stride_w = 65536;
  const Shape xs{1, 2, 5, 6};
  const Shape ys = pool2d_output_shape(xs, params);
  ASSERT_EQ(ys, (Shape{1, 2, 1, 1}));
  Context ctx;
  Tensor x = test::random_tensor(xs, 41), dy = test::random_tensor(ys, 42);
  for (PoolMode mode : {PoolMode::Max, PoolMode::AverageIncludePad, PoolMode::AverageExcludePad}) {
    params.mode = mode;
    Tensor want_y = test::poisoned(ys), got_y = test::poisoned(ys);
    pool2d_forward(ctx, x, want_y, params, Engine::Reference);
    pool2d_forward(ctx, x, got_y, params, Engine::Cpu);
    EXPECT_TRUE(test::all_close(got_y.to_vector(), want_y.to_vector(), 16)) << to_string(mode);
    Pool2dSaved saved;
    if (mode == PoolMode::Max) saved = {nullptr, &x, &want_y};
    Tensor want_dx = test::poisoned(xs), got_dx = test::poisoned(xs);
    pool2d_backward(ctx, dy, want_dx, params, saved, Engine::Reference);
    pool2d_backward(ctx, dy, got_dx, params, saved, Engine::Cpu);
    EXPECT_TRUE(test::all_close(got_dx.to_vector(), want_dx.to_vector(), 16)) << to_string(mode);
  }
}

}  // namespace
}  // namespace dlrt
