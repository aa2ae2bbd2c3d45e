// The recurrent reference in double: worked examples computed by hand, then
// central finite differences showing that backward is the derivative of
// forward. With upstream gradients gy, ghy, gcy the loss is
//   L = sum(y * gy) + sum(hy * ghy) + sum(cy * gcy),
// so rnn_backward_data(dy = gy, dhy = ghy, dcy = gcy) must give dL/dx,
// dL/dh0, dL/dc0 and rnn_backward_weights dL/dw.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/reference/rnn.hpp"

namespace dlrt::detail {
namespace {

using reference::RnnTape;
using Values = std::vector<double>;

Values random_doubles(std::int64_t n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Values v(static_cast<std::size_t>(n));
  for (double& e : v) e = dist(rng);
  return v;
}

RnnProblem problem_of(const RnnParams& params, std::int64_t T, std::vector<int> lengths) {
  RnnProblem p;
  p.params = params;
  p.T = T;
  p.N = static_cast<std::int64_t>(lengths.size());
  p.lengths = std::move(lengths);
  return p;
}

double weight(const Values& w, const RnnParams& params, const std::string& name,
              std::int64_t index) {
  for (const RnnWeight& piece : rnn_weight_layout(params))
    if (piece.name == name) return w[static_cast<std::size_t>(piece.offset + index)];
  ADD_FAILURE() << "no piece " << name;
  return 0.0;
}

void set_weight(Values& w, const RnnParams& params, const std::string& name, const Values& values) {
  for (const RnnWeight& piece : rnn_weight_layout(params))
    if (piece.name == name) {
      ASSERT_EQ(static_cast<std::int64_t>(values.size()), piece.shape.numel()) << name;
      std::copy(values.begin(), values.end(), w.begin() + piece.offset);
      return;
    }
  FAIL() << "no piece " << name;
}

// ------------------------------------------------- worked by hand

// The lecture's recurrence h_t = tanh(W x_t + W_h h_{t-1} + b) with one
// unit, one input, W = 0.5, W_h = 0.8, b = 0.1 (all in b_ih), h_0 = 0 and
// x = (1, -2):
//   a_1 = 0.5 * 1 + 0.8 * 0 + 0.1                 =  0.6
//   h_1 = tanh(0.6)                               =  0.537049567
//   a_2 = 0.5 * (-2) + 0.8 * 0.537049567 + 0.1    = -0.470360346
//   h_2 = tanh(-0.470360346)                      = -0.438490422
// Backpropagation through time of L = h_2 (dy = (0, 1)):
//   da_2 = 1 - h_2^2                              =  0.807726150
//   dh_1 = W_h da_2 = 0.8 * 0.807726150           =  0.646180920
//   da_1 = dh_1 (1 - h_1^2)                       =  0.459807973
//   dW   = da_1 x_1 + da_2 x_2                    = -1.155644326
//   dW_h = da_2 h_1 + da_1 h_0                    =  0.433788979
//   db   = da_1 + da_2                            =  1.267534123
//   dx   = (W da_1, W da_2)                       = (0.229903987, 0.403863075)
//   dh_0 = W_h da_1                               =  0.367846379
TEST(RnnWorkedExample, TwoTanhStepsForwardAndBackwardByHand) {
  RnnParams params;
  params.cell = RnnCell::Tanh;
  const RnnProblem p = problem_of(params, 2, {2});
  Values w(static_cast<std::size_t>(rnn_weight_count(params)), 0.0);
  set_weight(w, params, "weight_ih_l0", {0.5});
  set_weight(w, params, "weight_hh_l0", {0.8});
  set_weight(w, params, "bias_ih_l0", {0.1});
  const Values x = {1.0, -2.0};
  Values y(2), hy(1);
  RnnTape tape;
  reference::rnn_forward<double>(p, x.data(), w.data(), nullptr, nullptr, y.data(), hy.data(),
                                 nullptr, tape);
  constexpr double kHand = 1e-9;  // the comments' nine digits
  EXPECT_NEAR(y[0], 0.537049567, kHand);
  EXPECT_NEAR(y[1], -0.438490422, kHand);
  EXPECT_NEAR(hy[0], -0.438490422, kHand);

  const Values dy = {0.0, 1.0};
  Values dx(2), dh0(1), dw(w.size());
  reference::rnn_backward_data<double>(p, w.data(), nullptr, nullptr, tape, dy.data(), nullptr,
                                       nullptr, dx.data(), dh0.data(), nullptr);
  reference::rnn_backward_weights<double>(p, x.data(), nullptr, tape, dw.data(), false);
  EXPECT_NEAR(dx[0], 0.229903987, kHand);
  EXPECT_NEAR(dx[1], 0.403863075, kHand);
  EXPECT_NEAR(dh0[0], 0.367846379, kHand);
  EXPECT_NEAR(weight(dw, params, "weight_ih_l0", 0), -1.155644326, kHand);
  EXPECT_NEAR(weight(dw, params, "weight_hh_l0", 0), 0.433788979, kHand);
  // b_ih and b_hh enter the sum alike, so both get db.
  EXPECT_NEAR(weight(dw, params, "bias_ih_l0", 0), 1.267534123, kHand);
  EXPECT_NEAR(weight(dw, params, "bias_hh_l0", 0), 1.267534123, kHand);
}

// One LSTM step with one unit, x = 1, h_0 = 1, c_0 = 0.5, and weights chosen
// so that the gate sums are round: W_ih = (1, -1, 0.5, 0), W_hh = (-0.5,
// 0.5, 0.5, 0.25), b_ih = (0, 1, 0, 0) (the forget gate's customary +1),
// b_hh = 0:
//   a = W_ih x + W_hh h_0 + b = (0.5, 0.5, 1.0, 0.25)
//   i = f = sigma(0.5) = 0.622459331    g = tanh(1) = 0.761594156
//   o = sigma(0.25)    = 0.562176501
//   c_1 = f c_0 + i g = 0.311229666 + 0.474060346 = 0.785291055
//   h_1 = o tanh(c_1) = 0.562176501 * 0.655733153 = 0.368637770
TEST(RnnWorkedExample, OneLstmStepByHand) {
  RnnParams params;
  params.cell = RnnCell::Lstm;
  const RnnProblem p = problem_of(params, 1, {1});
  Values w(static_cast<std::size_t>(rnn_weight_count(params)), 0.0);
  set_weight(w, params, "weight_ih_l0", {1.0, -1.0, 0.5, 0.0});
  set_weight(w, params, "weight_hh_l0", {-0.5, 0.5, 0.5, 0.25});
  set_weight(w, params, "bias_ih_l0", {0.0, 1.0, 0.0, 0.0});
  const Values x = {1.0}, h0 = {1.0}, c0 = {0.5};
  Values y(1), hy(1), cy(1);
  RnnTape tape;
  reference::rnn_forward<double>(p, x.data(), w.data(), h0.data(), c0.data(), y.data(), hy.data(),
                                 cy.data(), tape);
  constexpr double kHand = 1e-9;
  EXPECT_NEAR(cy[0], 0.785291055, kHand);
  EXPECT_NEAR(y[0], 0.368637770, kHand);
  EXPECT_NEAR(hy[0], 0.368637770, kHand);

  // The cell op computes the same step and saves the gates i, f, g, o.
  RnnCellProblem cell;
  cell.cell = RnnCell::Lstm;
  cell.N = cell.I = cell.H = 1;
  cell.with_saved = true;
  const Values w_ih = {1.0, -1.0, 0.5, 0.0}, w_hh = {-0.5, 0.5, 0.5, 0.25};
  const Values b_ih = {0.0, 1.0, 0.0, 0.0}, b_hh = {0.0, 0.0, 0.0, 0.0};
  Values h_out(1), c_out(1), saved(4);
  reference::RnnCellOperands<double> a;
  a.x = x.data(), a.h = h0.data(), a.c = c0.data();
  a.w_ih = w_ih.data(), a.w_hh = w_hh.data(), a.b_ih = b_ih.data(), a.b_hh = b_hh.data();
  a.h_out = h_out.data(), a.c_out = c_out.data(), a.saved = saved.data();
  reference::rnn_cell_forward(cell, a);
  EXPECT_NEAR(h_out[0], 0.368637770, kHand);
  EXPECT_NEAR(c_out[0], 0.785291055, kHand);
  EXPECT_NEAR(saved[0], 0.622459331, kHand);
  EXPECT_NEAR(saved[1], 0.622459331, kHand);
  EXPECT_NEAR(saved[2], 0.761594156, kHand);
  EXPECT_NEAR(saved[3], 0.562176501, kHand);
}

// ------------------------------------------------- finite differences, sequences

struct SequenceCase {
  const char* name;
  RnnParams params;
  std::int64_t T;
  std::vector<int> lengths;
};

void PrintTo(const SequenceCase& c, std::ostream* os) { *os << c.name; }

RnnParams params_of(RnnCell cell, int input, int hidden, int layers, bool bidirectional,
                    bool bias = true, int proj = 0) {
  RnnParams p;
  p.cell = cell;
  p.input_size = input;
  p.hidden_size = hidden;
  p.num_layers = layers;
  p.bidirectional = bidirectional;
  p.bias = bias;
  p.proj_size = proj;
  return p;
}

class RnnSequenceGradCheck : public ::testing::TestWithParam<SequenceCase> {};

TEST_P(RnnSequenceGradCheck, BackwardIsTheDerivativeOfForward) {
  const SequenceCase& c = GetParam();
  const RnnProblem p = problem_of(c.params, c.T, c.lengths);
  const bool lstm = c.params.cell == RnnCell::Lstm;
  const std::int64_t LD = std::int64_t{p.params.num_layers} * p.directions();
  const std::int64_t y_count = p.T * p.N * p.directions() * p.hidden_out();
  const std::int64_t h_count = LD * p.N * p.hidden_out(), c_count = LD * p.N * p.hidden();

  Values x = random_doubles(p.T * p.N * c.params.input_size, 1);
  Values w = random_doubles(rnn_weight_count(c.params), 2, -0.6, 0.6);
  Values h0 = random_doubles(h_count, 3), c0 = random_doubles(c_count, 4);
  const Values gy = random_doubles(y_count, 5), ghy = random_doubles(h_count, 6);
  const Values gcy = random_doubles(c_count, 7);
  const double* c0_or_null = lstm ? c0.data() : nullptr;

  Values y(static_cast<std::size_t>(y_count)), hy(static_cast<std::size_t>(h_count)),
      cy(static_cast<std::size_t>(c_count));
  RnnTape tape;
  auto loss = [&] {
    reference::rnn_forward<double>(p, x.data(), w.data(), h0.data(), lstm ? c0.data() : nullptr,
                                   y.data(), hy.data(), lstm ? cy.data() : nullptr, tape);
    double sum = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) sum += y[i] * gy[i];
    for (std::size_t i = 0; i < hy.size(); ++i) sum += hy[i] * ghy[i];
    if (lstm)
      for (std::size_t i = 0; i < cy.size(); ++i) sum += cy[i] * gcy[i];
    return sum;
  };

  loss();
  // y is zero past each length whatever the weights.
  for (std::int64_t t = 0; t < p.T; ++t)
    for (std::int64_t n = 0; n < p.N; ++n) {
      if (t < p.lengths[n]) continue;
      for (std::int64_t j = 0; j < p.directions() * p.hidden_out(); ++j)
        ASSERT_EQ(y[(t * p.N + n) * p.directions() * p.hidden_out() + j], 0.0)
            << "y past length at t=" << t << " n=" << n;
    }

  Values dx(x.size()), dh0(h0.size()), dc0(c0.size()), dw(w.size());
  reference::rnn_backward_data<double>(p, w.data(), h0.data(), c0_or_null, tape, gy.data(),
                                       ghy.data(), lstm ? gcy.data() : nullptr, dx.data(),
                                       dh0.data(), lstm ? dc0.data() : nullptr);
  reference::rnn_backward_weights<double>(p, x.data(), h0.data(), tape, dw.data(), false);
  // accumulate adds exactly the same gradient on top.
  Values twice = dw;
  reference::rnn_backward_weights<double>(p, x.data(), h0.data(), tape, twice.data(), true);
  for (std::size_t i = 0; i < dw.size(); ++i) EXPECT_NEAR(twice[i], 2 * dw[i], 1e-12) << i;

  auto check = [&](const char* name, Values& param, const Values& grad) {
    constexpr double kStep = 1e-6;
    double largest = 0.0;
    int bad = 0;
    for (std::size_t i = 0; i < param.size(); ++i) {
      const double saved = param[i];
      param[i] = saved + kStep;
      const double up = loss();
      param[i] = saved - kStep;
      const double down = loss();
      param[i] = saved;
      const double numeric = (up - down) / (2 * kStep);
      largest = std::max(largest, std::fabs(grad[i]));
      if (std::fabs(grad[i] - numeric) > 1e-6 * (1.0 + std::fabs(numeric)) && bad++ < 5)
        ADD_FAILURE() << name << "[" << i << "]: backward " << grad[i] << ", finite difference "
                      << numeric;
    }
    EXPECT_EQ(bad, 0) << name << ": elements that differ";
    // A check whose gradients are all zero proves nothing.
    EXPECT_GT(largest, 1e-2) << name << " gradients are (nearly) all zero";
  };
  check("dx", x, dx);
  check("dh0", h0, dh0);
  if (lstm) check("dc0", c0, dc0);
  check("dw", w, dw);

  // Padded input steps are never read, so their gradient is exactly zero.
  for (std::int64_t t = 0; t < p.T; ++t)
    for (std::int64_t n = 0; n < p.N; ++n) {
      if (t < p.lengths[n]) continue;
      for (std::int64_t k = 0; k < c.params.input_size; ++k)
        EXPECT_EQ(dx[(t * p.N + n) * c.params.input_size + k], 0.0);
    }
}

std::string sequence_case_name(const ::testing::TestParamInfo<SequenceCase>& case_info) {
  return case_info.param.name;
}

// Unequal, unsorted lengths in the stacks: a short sequence's reverse
// direction must start at its own last step, and hy must be taken there.
const std::vector<int> kMixed = {5, 1, 7, 2, 5, 1};  // [7, 5, 5, 2, 1, 1], shuffled

INSTANTIATE_TEST_SUITE_P(
    Reference, RnnSequenceGradCheck,
    ::testing::Values(
        SequenceCase{"tanh_bi2", params_of(RnnCell::Tanh, 3, 4, 2, true), 7, kMixed},
        SequenceCase{"relu_bi2", params_of(RnnCell::Relu, 3, 4, 2, true), 7, kMixed},
        SequenceCase{"lstm_bi2", params_of(RnnCell::Lstm, 3, 4, 2, true), 7, kMixed},
        SequenceCase{"lstm_proj_bi2", params_of(RnnCell::Lstm, 3, 5, 2, true, true, 2), 7, kMixed},
        SequenceCase{"gru_bi2", params_of(RnnCell::Gru, 3, 4, 2, true), 7, kMixed},
        SequenceCase{
            "tanh_uni3_nobias", params_of(RnnCell::Tanh, 2, 3, 3, false, false), 4, {4, 2, 3}},
        SequenceCase{
            "lstm_uni1_nobias", params_of(RnnCell::Lstm, 4, 3, 1, false, false), 5, {3, 5}},
        SequenceCase{
            "lstm_proj_uni3_nobias", params_of(RnnCell::Lstm, 2, 4, 3, false, false, 3), 4, {2, 4}},
        SequenceCase{"gru_bi1_nobias", params_of(RnnCell::Gru, 2, 3, 1, true, false), 6, {6, 3, 1}},
        SequenceCase{"relu_bi3_T1", params_of(RnnCell::Relu, 2, 3, 3, true), 1, {1, 1}}),
    sequence_case_name);

// ------------------------------------------------- finite differences, one cell step

class RnnCellGradCheck : public ::testing::TestWithParam<RnnCell> {};

TEST_P(RnnCellGradCheck, BackwardIsTheDerivativeOfForwardAndAddsToTheWeightGradients) {
  RnnCellProblem p;
  p.cell = GetParam();
  p.N = 3, p.I = 4, p.H = 5;
  const bool lstm = p.cell == RnnCell::Lstm;
  const std::int64_t GH = rnn_gate_count(p.cell) * p.H, width = rnn_cell_saved_size(p.cell, p.H);
  Values x = random_doubles(p.N * p.I, 11), h = random_doubles(p.N * p.H, 12);
  Values c = random_doubles(p.N * p.H, 13);
  Values w_ih = random_doubles(GH * p.I, 14), w_hh = random_doubles(GH * p.H, 15);
  Values b_ih = random_doubles(GH, 16), b_hh = random_doubles(GH, 17);
  const Values gh = random_doubles(p.N * p.H, 18), gc = random_doubles(p.N * p.H, 19);

  Values h_out(static_cast<std::size_t>(p.N * p.H)), c_out(h_out.size());
  Values saved(static_cast<std::size_t>(p.N * std::max<std::int64_t>(width, 1)));
  auto operands = [&] {
    reference::RnnCellOperands<double> a;
    a.x = x.data(), a.h = h.data(), a.c = lstm ? c.data() : nullptr;
    a.w_ih = w_ih.data(), a.w_hh = w_hh.data(), a.b_ih = b_ih.data(), a.b_hh = b_hh.data();
    a.h_out = h_out.data(), a.c_out = lstm ? c_out.data() : nullptr;
    a.saved = width > 0 ? saved.data() : nullptr;
    return a;
  };
  auto loss = [&] {
    reference::rnn_cell_forward(p, operands());
    double sum = 0.0;
    for (std::size_t i = 0; i < h_out.size(); ++i) sum += h_out[i] * gh[i];
    if (lstm)
      for (std::size_t i = 0; i < c_out.size(); ++i) sum += c_out[i] * gc[i];
    return sum;
  };

  // Weight gradients start from values already there: backward adds to them.
  const Values start_ih = random_doubles(GH * p.I, 21), start_hh = random_doubles(GH * p.H, 22);
  const Values start_bi = random_doubles(GH, 23), start_bh = random_doubles(GH, 24);
  Values dx(x.size()), dh(h.size()), dc(c.size());
  Values dw_ih = start_ih, dw_hh = start_hh, db_ih = start_bi, db_hh = start_bh;
  auto backward = [&](bool from_saved) {
    loss();
    reference::RnnCellOperands<double> a = operands();
    a.h_out = a.c_out = a.saved = nullptr;
    if (from_saved) {
      a.h_out_in = h_out.data();
      a.c_out_in = lstm ? c_out.data() : nullptr;
      a.saved_in = width > 0 ? saved.data() : nullptr;
    }
    a.dh_out = gh.data(), a.dc_out = lstm ? gc.data() : nullptr;
    a.dx = dx.data(), a.dh = dh.data(), a.dc = lstm ? dc.data() : nullptr;
    a.dw_ih = dw_ih.data(), a.dw_hh = dw_hh.data(), a.db_ih = db_ih.data(), a.db_hh = db_hh.data();
    RnnCellProblem q = p;
    q.backward = true;
    reference::rnn_cell_backward(q, a);
  };
  backward(true);
  auto minus = [](Values a, const Values& b) {
    for (std::size_t i = 0; i < a.size(); ++i) a[i] -= b[i];
    return a;
  };
  const Values d_w_ih = minus(dw_ih, start_ih), d_w_hh = minus(dw_hh, start_hh);
  const Values d_b_ih = minus(db_ih, start_bi), d_b_hh = minus(db_hh, start_bh);

  auto check = [&](const char* name, Values& param, const Values& grad) {
    constexpr double kStep = 1e-6;
    double largest = 0.0;
    for (std::size_t i = 0; i < param.size(); ++i) {
      const double keep = param[i];
      param[i] = keep + kStep;
      const double up = loss();
      param[i] = keep - kStep;
      const double down = loss();
      param[i] = keep;
      const double numeric = (up - down) / (2 * kStep);
      largest = std::max(largest, std::fabs(grad[i]));
      EXPECT_NEAR(grad[i], numeric, 1e-7 * (1.0 + std::fabs(numeric))) << name << "[" << i << "]";
    }
    EXPECT_GT(largest, 1e-2) << name << " gradients are (nearly) all zero";
  };
  const Values dx_saved = dx, dh_saved = dh, dc_saved = dc;
  check("dx", x, dx_saved);
  check("dh", h, dh_saved);
  if (lstm) check("dc", c, dc_saved);
  check("dw_ih", w_ih, d_w_ih);
  check("dw_hh", w_hh, d_w_hh);
  check("db_ih", b_ih, d_b_ih);
  check("db_hh", b_hh, d_b_hh);

  // The saved gates mean what backward reads them as: recomputing them
  // from the inputs gives the same gradients.
  dw_ih = start_ih, dw_hh = start_hh, db_ih = start_bi, db_hh = start_bh;
  backward(false);
  for (std::size_t i = 0; i < dx.size(); ++i) EXPECT_NEAR(dx[i], dx_saved[i], 1e-14);
  for (std::size_t i = 0; i < dh.size(); ++i) EXPECT_NEAR(dh[i], dh_saved[i], 1e-14);
  for (std::size_t i = 0; i < dw_ih.size(); ++i)
    EXPECT_NEAR(dw_ih[i] - start_ih[i], d_w_ih[i], 1e-13);
}

std::string cell_name(const ::testing::TestParamInfo<RnnCell>& cell_info) {
  return to_string(cell_info.param);
}

INSTANTIATE_TEST_SUITE_P(Reference, RnnCellGradCheck,
                         ::testing::Values(RnnCell::Tanh, RnnCell::Relu, RnnCell::Lstm,
                                           RnnCell::Gru),
                         cell_name);

}  // namespace
}  // namespace dlrt::detail
