// The Cpu cells' pointwise rows: sigmoid and tanh against double precision
// over a dense sweep and the edges (0, tiny, huge, infinite); every row,
// forward and backward, against the equations in double for widths that
// end in every kind of tail, with and without a null previous state; and
// a column's bits the same whatever H and wherever it falls in the row.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/rnn_cells.hpp"

namespace dlrt::detail::cpu {
namespace {

// Bounds measured with margin: sigmoid and tanh are within a few ulp of the
// exact value wherever that value is a normal float; below FLT_MIN (sigmoid
// of x < -87) the clamp in exp leaves at most FLT_MIN absolute.
constexpr double kMaxUlp = 4.0;

// The ulp of the float nearest to v.
double ulp_of(double v) {
  const double a = std::fabs(v);
  if (a < static_cast<double>(FLT_MIN)) return std::ldexp(1.0, -149);
  return std::ldexp(1.0, std::ilogb(a) - 23);
}

std::vector<float> sweep_inputs() {
  std::vector<float> x;
  for (int k = -100000; k <= 100000; ++k) x.push_back(static_cast<float>(k) * 1e-3f);
  // Every magnitude from subnormal to FLT_MAX, a few values per octave.
  for (int e = -149; e <= 127; ++e)
    for (float m : {1.0f, 1.2f, 1.5f, 1.9f}) {
      const float v = std::ldexp(m, e);
      if (std::isfinite(v)) x.push_back(v), x.push_back(-v);
    }
  // Around the switch between tanh's series and its exp form.
  for (int k = -2000; k <= 2000; ++k) x.push_back(0.4f + static_cast<float>(k) * 1e-6f);
  for (float v : {0.0f, 1e-30f, 1e-8f, 1e-4f, 88.0f, 88.5f, 89.0f, 104.0f, 1e4f, FLT_MAX,
                  std::numeric_limits<float>::infinity()})
    x.push_back(v), x.push_back(-v);
  return x;
}

struct Accuracy {
  double max_ulp = 0.0, max_abs_below_normal = 0.0;
  int non_finite = 0;
};

Accuracy measure(const std::function<void(i64, const float*, float*)>& row,
                 double (*exact)(double)) {
  const std::vector<float> x = sweep_inputs();
  std::vector<float> y(x.size());
  row(static_cast<i64>(x.size()), x.data(), y.data());
  Accuracy a;
  for (std::size_t k = 0; k < x.size(); ++k) {
    const double want = exact(static_cast<double>(x[k]));
    const double got = static_cast<double>(y[k]);
    if (!std::isfinite(got)) {
      ++a.non_finite;
      continue;
    }
    const double error = std::fabs(got - want);
    if (std::fabs(want) < static_cast<double>(FLT_MIN))
      a.max_abs_below_normal = std::max(a.max_abs_below_normal, error);
    else
      a.max_ulp = std::max(a.max_ulp, error / ulp_of(want));
  }
  return a;
}

double sigmoid_exact(double v) { return 1.0 / (1.0 + std::exp(-v)); }
double tanh_exact(double v) { return std::tanh(v); }

TEST(CpuRnnCells, SigmoidWithinFourUlp) {
  const Accuracy a = measure(sigmoid_row, sigmoid_exact);
  EXPECT_EQ(a.non_finite, 0);
  EXPECT_LE(a.max_ulp, kMaxUlp);
  EXPECT_LE(a.max_abs_below_normal, static_cast<double>(FLT_MIN));
}

TEST(CpuRnnCells, TanhWithinFourUlp) {
  const Accuracy a = measure(tanh_row, tanh_exact);
  EXPECT_EQ(a.non_finite, 0);
  EXPECT_LE(a.max_ulp, kMaxUlp);
  EXPECT_EQ(a.max_abs_below_normal, 0.0);  // tanh(x) is x there, exactly
}

TEST(CpuRnnCells, EdgesAreExact) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {0.0f,   -0.0f,   1e-30f,   -1e-30f, 20.0f,
                                -20.0f, FLT_MAX, -FLT_MAX, inf,     -inf};
  std::vector<float> t(x.size()), s(x.size());
  tanh_row(static_cast<i64>(x.size()), x.data(), t.data());
  sigmoid_row(static_cast<i64>(x.size()), x.data(), s.data());
  EXPECT_EQ(t[0], 0.0f);
  EXPECT_FALSE(std::signbit(t[0]));
  EXPECT_TRUE(std::signbit(t[1]));
  EXPECT_EQ(t[2], 1e-30f);
  EXPECT_EQ(t[3], -1e-30f);
  for (std::size_t k = 4; k < x.size(); k += 2) {
    EXPECT_EQ(t[k], 1.0f) << x[k];
    EXPECT_EQ(t[k + 1], -1.0f) << x[k + 1];
    EXPECT_EQ(s[k], 1.0f) << x[k];
    EXPECT_GE(s[k + 1], 0.0f) << x[k + 1];
    EXPECT_LE(s[k + 1], 2.1e-9f) << x[k + 1];
  }
  EXPECT_EQ(s[0], 0.5f);
  EXPECT_EQ(s[1], 0.5f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  float out = 0.0f;
  tanh_row(1, &nan, &out);
  EXPECT_TRUE(std::isnan(out));
  sigmoid_row(1, &nan, &out);
  EXPECT_TRUE(std::isnan(out));
  const float three = 3.0f;
  float from_row = 0.0f;
  sigmoid_row(1, &three, &from_row);
  EXPECT_EQ(sigmoid(three), from_row);
}

// ---- the rows against the equations in double ------------------------------------

double sig(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// The value of block `block`, column j: depends on nothing else, so rows of
// any H share their first columns.
float input(int block, i64 j, float scale = 3.0f) {
  const std::uint32_t seed = static_cast<std::uint32_t>(block * 7919 + j * 104729 + 12345);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-scale, scale);
  return uniform(rng);
}

std::vector<float> blocks(int first_block, int count, i64 H, float scale = 3.0f) {
  std::vector<float> v(static_cast<std::size_t>(count * H));
  for (int b = 0; b < count; ++b)
    for (i64 j = 0; j < H; ++j)
      v[static_cast<std::size_t>(b * H + j)] = input(first_block + b, j, scale);
  return v;
}

// Activations, as forward saves them: strictly inside (0, 1) or (-1, 1).
std::vector<float> activations(int first_block, int count, i64 H, bool signed_range) {
  std::vector<float> v = blocks(first_block, count, H, 1.0f);
  for (float& x : v) x = signed_range ? 0.999f * x : 0.5f + 0.4995f * x;
  return v;
}

// Tolerance for a row value against its double value: the activations are
// within a few ulp and each product or sum adds half of one.
void expect_close(const std::vector<float>& got, const std::vector<double>& want,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t k = 0; k < got.size(); ++k) {
    const double g = static_cast<double>(got[k]);
    ASSERT_TRUE(std::isfinite(g)) << what << " at " << k;
    EXPECT_NEAR(g, want[k], 2e-6 * (1.0 + std::fabs(want[k]))) << what << " at " << k;
  }
}

const i64 kWidths[] = {1, 7, 8, 15, 16, 17, 33, 64};

std::string name(const char* what, i64 H, bool null_state) {
  return std::string(what) + " H=" + std::to_string(H) + (null_state ? " null state" : "");
}

TEST(CpuRnnCells, VanillaRowsMatchEquations) {
  for (i64 H : kWidths)
    for (bool relu : {false, true}) {
      const std::vector<float> pre = blocks(0, 1, H);
      std::vector<float> h(static_cast<std::size_t>(H));
      std::vector<double> want(h.size());
      vanilla_forward_row(H, relu, pre.data(), h.data());
      for (std::size_t j = 0; j < h.size(); ++j) {
        const double p = static_cast<double>(pre[j]);
        want[j] = relu ? std::max(p, 0.0) : std::tanh(p);
      }
      expect_close(h, want, name(relu ? "relu forward" : "tanh forward", H, false));

      const std::vector<float> out = relu ? blocks(1, 1, H) : activations(1, 1, H, true);
      const std::vector<float> dh = blocks(2, 1, H);
      std::vector<float> dpre(h.size());
      vanilla_backward_row(H, relu, out.data(), dh.data(), dpre.data());
      for (std::size_t j = 0; j < h.size(); ++j) {
        const double o = static_cast<double>(out[j]), d = static_cast<double>(dh[j]);
        want[j] = relu ? (o > 0.0 ? d : 0.0) : d * (1.0 - o * o);
      }
      expect_close(dpre, want, name(relu ? "relu backward" : "tanh backward", H, false));
    }
}

TEST(CpuRnnCells, LstmRowsMatchEquations) {
  for (i64 H : kWidths)
    for (bool null_state : {false, true}) {
      const auto n = static_cast<std::size_t>(H);
      const std::vector<float> pre = blocks(0, 4, H);
      const std::vector<float> c_prev = blocks(4, 1, H);
      const float* cp = null_state ? nullptr : c_prev.data();
      std::vector<float> gates = pre, c(n), m(n);
      lstm_forward_row(H, gates.data(), cp, c.data(), m.data());
      std::vector<double> want_gates(4 * n), want_c(n), want_m(n);
      for (std::size_t j = 0; j < n; ++j) {
        const double i = sig(pre[j]), f = sig(pre[n + j]), g = std::tanh(pre[2 * n + j]),
                     o = sig(pre[3 * n + j]);
        const double before = null_state ? 0.0 : static_cast<double>(c_prev[j]);
        want_gates[j] = i, want_gates[n + j] = f, want_gates[2 * n + j] = g,
        want_gates[3 * n + j] = o;
        want_c[j] = f * before + i * g;
        // m from the row's own c: the cell's rounding is not tanh's error.
        want_m[j] = o * std::tanh(static_cast<double>(c[j]));
      }
      expect_close(gates, want_gates, name("lstm gates", H, null_state));
      expect_close(c, want_c, name("lstm c", H, null_state));
      expect_close(m, want_m, name("lstm m", H, null_state));

      const std::vector<float> act = activations(10, 4, H, false);
      std::vector<float> saved = act;
      for (std::size_t j = 0; j < n; ++j) saved[2 * n + j] = 2.0f * act[2 * n + j] - 1.0f;
      const std::vector<float> cell = blocks(14, 1, H), dm = blocks(15, 1, H),
                               dc_in = blocks(16, 1, H);
      std::vector<float> dc = dc_in, dpre(4 * n);
      lstm_backward_row(H, saved.data(), cp, cell.data(), dm.data(), dc.data(), dpre.data());
      std::vector<double> want_dpre(4 * n), want_dc(n);
      for (std::size_t j = 0; j < n; ++j) {
        const double i = saved[j], f = saved[n + j], g = saved[2 * n + j], o = saved[3 * n + j];
        const double tc = std::tanh(static_cast<double>(cell[j]));
        const double d = static_cast<double>(dm[j]);
        const double dcell = static_cast<double>(dc_in[j]) + d * o * (1.0 - tc * tc);
        const double before = null_state ? 0.0 : static_cast<double>(c_prev[j]);
        want_dpre[j] = dcell * g * i * (1.0 - i);
        want_dpre[n + j] = dcell * before * f * (1.0 - f);
        want_dpre[2 * n + j] = dcell * i * (1.0 - g * g);
        want_dpre[3 * n + j] = d * tc * o * (1.0 - o);
        want_dc[j] = dcell * f;
      }
      expect_close(dpre, want_dpre, name("lstm dpre", H, null_state));
      expect_close(dc, want_dc, name("lstm dc", H, null_state));
    }
}

TEST(CpuRnnCells, GruRowsMatchEquations) {
  for (i64 H : kWidths)
    for (bool null_state : {false, true}) {
      const auto n = static_cast<std::size_t>(H);
      const std::vector<float> pre = blocks(0, 3, H), hn = blocks(3, 1, H),
                               h_prev = blocks(4, 1, H);
      const float* hp = null_state ? nullptr : h_prev.data();
      std::vector<float> h(n), saved(4 * n);
      gru_forward_row(H, pre.data(), hn.data(), hp, h.data(), saved.data());
      std::vector<double> want_h(n), want_saved(4 * n);
      for (std::size_t j = 0; j < n; ++j) {
        const double r = sig(pre[j]), z = sig(pre[n + j]);
        // n from the row's own r: a 1-ulp r times a large hn is not tanh's error.
        const double rf = static_cast<double>(saved[j]);
        const double cand = std::tanh(static_cast<double>(pre[2 * n + j]) + rf * hn[j]);
        const double before = null_state ? 0.0 : static_cast<double>(h_prev[j]);
        want_saved[j] = r, want_saved[n + j] = z, want_saved[2 * n + j] = cand;
        want_saved[3 * n + j] = hn[j];
        want_h[j] = (1.0 - z) * cand + z * before;
      }
      expect_close(saved, want_saved, name("gru saved", H, null_state));
      expect_close(h, want_h, name("gru h", H, null_state));

      std::vector<float> back = activations(10, 4, H, false);
      for (std::size_t j = 0; j < n; ++j) {
        back[2 * n + j] = 2.0f * back[2 * n + j] - 1.0f;
        back[3 * n + j] = input(13, static_cast<i64>(j));
      }
      const std::vector<float> dh = blocks(14, 1, H);
      std::vector<float> d_in(3 * n), d_hidden(3 * n), dh_direct(n);
      gru_backward_row(H, back.data(), hp, dh.data(), d_in.data(), d_hidden.data(),
                       dh_direct.data());
      std::vector<double> want_in(3 * n), want_hidden(3 * n), want_direct(n);
      for (std::size_t j = 0; j < n; ++j) {
        const double r = back[j], z = back[n + j], cand = back[2 * n + j], hidden = back[3 * n + j];
        const double before = null_state ? 0.0 : static_cast<double>(h_prev[j]);
        const double d = static_cast<double>(dh[j]);
        const double dn = d * (1.0 - z) * (1.0 - cand * cand);
        const double dz = d * (before - cand) * z * (1.0 - z);
        const double dr = dn * hidden * r * (1.0 - r);
        want_in[j] = dr, want_in[n + j] = dz, want_in[2 * n + j] = dn;
        want_hidden[j] = dr, want_hidden[n + j] = dz, want_hidden[2 * n + j] = dn * r;
        want_direct[j] = d * z;
      }
      expect_close(d_in, want_in, name("gru d_in", H, null_state));
      expect_close(d_hidden, want_hidden, name("gru d_hidden", H, null_state));
      expect_close(dh_direct, want_direct, name("gru dh_prev_direct", H, null_state));
    }
}

// ---- the same bits for a column wherever it falls ----------------------------------

// Runs every row at width H on inputs that depend only on (block, column),
// and returns all outputs as blocks of H: out[b][j].
std::vector<std::vector<float>> all_rows(i64 H, bool null_state) {
  const auto n = static_cast<std::size_t>(H);
  std::vector<std::vector<float>> out;
  auto add = [&](const std::vector<float>& v, int count) {
    for (int b = 0; b < count; ++b)
      out.emplace_back(v.begin() + static_cast<std::ptrdiff_t>(b * n),
                       v.begin() + static_cast<std::ptrdiff_t>((b + 1) * n));
  };
  const std::vector<float> prev = blocks(20, 1, H);
  const float* state = null_state ? nullptr : prev.data();
  {
    const std::vector<float> x = blocks(0, 1, H);
    std::vector<float> s(n), t(n), relu(n);
    sigmoid_row(H, x.data(), s.data());
    tanh_row(H, x.data(), t.data());
    vanilla_forward_row(H, true, x.data(), relu.data());
    add(s, 1), add(t, 1), add(relu, 1);
    const std::vector<float> dh = blocks(1, 1, H);
    std::vector<float> dt(n), dr(n);
    vanilla_backward_row(H, false, t.data(), dh.data(), dt.data());
    vanilla_backward_row(H, true, relu.data(), dh.data(), dr.data());
    add(dt, 1), add(dr, 1);
  }
  {
    std::vector<float> gates = blocks(2, 4, H), c(n), m(n);
    lstm_forward_row(H, gates.data(), state, c.data(), m.data());
    add(gates, 4), add(c, 1), add(m, 1);
    const std::vector<float> dm = blocks(6, 1, H);
    std::vector<float> dc = blocks(7, 1, H), dpre(4 * n);
    lstm_backward_row(H, gates.data(), state, c.data(), dm.data(), dc.data(), dpre.data());
    add(dpre, 4), add(dc, 1);
  }
  {
    const std::vector<float> pre = blocks(8, 3, H), hn = blocks(11, 1, H);
    std::vector<float> h(n), saved(4 * n);
    gru_forward_row(H, pre.data(), hn.data(), state, h.data(), saved.data());
    add(h, 1), add(saved, 4);
    const std::vector<float> dh = blocks(12, 1, H);
    std::vector<float> d_in(3 * n), d_hidden(3 * n), direct(n);
    gru_backward_row(H, saved.data(), state, dh.data(), d_in.data(), d_hidden.data(),
                     direct.data());
    add(d_in, 3), add(d_hidden, 3), add(direct, 1);
  }
  return out;
}

TEST(CpuRnnCells, ColumnBitsIndependentOfWidth) {
  for (bool null_state : {false, true}) {
    const std::vector<std::vector<float>> widest = all_rows(64, null_state);
    for (i64 H : {1, 7, 8, 15, 16, 17, 33, 40}) {
      const std::vector<std::vector<float>> rows = all_rows(H, null_state);
      ASSERT_EQ(rows.size(), widest.size());
      for (std::size_t b = 0; b < rows.size(); ++b)
        EXPECT_EQ(std::memcmp(rows[b].data(), widest[b].data(), rows[b].size() * sizeof(float)), 0)
            << "output " << b << " at H=" << H << (null_state ? " null state" : "");
    }
  }
}

TEST(CpuRnnCells, NullStateIsZeros) {
  for (i64 H : {7, 33}) {
    const auto n = static_cast<std::size_t>(H);
    const std::vector<float> zeros(n, 0.0f);
    std::vector<float> g1 = blocks(0, 4, H), g2 = g1, c1(n), c2(n), m1(n), m2(n);
    lstm_forward_row(H, g1.data(), nullptr, c1.data(), m1.data());
    lstm_forward_row(H, g2.data(), zeros.data(), c2.data(), m2.data());
    EXPECT_EQ(g1, g2);
    EXPECT_EQ(c1, c2);
    EXPECT_EQ(m1, m2);
    const std::vector<float> pre = blocks(4, 3, H), hn = blocks(7, 1, H);
    std::vector<float> h1(n), h2(n), s1(4 * n), s2(4 * n);
    gru_forward_row(H, pre.data(), hn.data(), nullptr, h1.data(), s1.data());
    gru_forward_row(H, pre.data(), hn.data(), zeros.data(), h2.data(), s2.data());
    EXPECT_EQ(h1, h2);
    EXPECT_EQ(s1, s2);
  }
}

}  // namespace
}  // namespace dlrt::detail::cpu
