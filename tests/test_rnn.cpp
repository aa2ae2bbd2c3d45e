// Recurrent networks through the public API: PyTorch's weight layout written
// out by hand, the cell ops against a hand loop, a padded batch against each
// of its sequences run alone, every engine against the Reference engine on a
// table of problems (outputs and every gradient, saved-state reuse), and
// every validation rule.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "dlrt/rnn.hpp"
#include "support/test_support.hpp"

namespace dlrt {
namespace {

using Floats = std::vector<float>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr RnnCell kCells[] = {RnnCell::Tanh, RnnCell::Relu, RnnCell::Lstm, RnnCell::Gru};

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

// The tensor shapes of one sequence problem.
struct Dims {
  std::int64_t T, N, I, H, H_out, D, LD, weights;
  bool lstm;

  Dims(const RnnParams& p, std::int64_t steps, std::int64_t batch)
      : T(steps),
        N(batch),
        I(p.input_size),
        H(p.hidden_size),
        H_out(p.proj_size > 0 ? p.proj_size : p.hidden_size),
        D(p.bidirectional ? 2 : 1),
        LD(p.num_layers * D),
        weights(rnn_weight_count(p)),
        lstm(p.cell == RnnCell::Lstm) {}
  Shape x() const { return {T, N, I}; }
  Shape y() const { return {T, N, D * H_out}; }
  Shape h() const { return {LD, N, H_out}; }
  Shape c() const { return {LD, N, H}; }
};

// ------------------------------------------------- weight layout

struct ExpectedPiece {
  const char* name;
  int layer, direction;
  std::int64_t offset;
  Shape shape;
};

void expect_layout(const RnnParams& params, const std::vector<ExpectedPiece>& expected,
                   std::int64_t count) {
  const std::vector<RnnWeight> layout = rnn_weight_layout(params);
  ASSERT_EQ(layout.size(), expected.size());
  for (std::size_t i = 0; i < layout.size(); ++i) {
    EXPECT_EQ(layout[i].name, expected[i].name) << "piece " << i;
    EXPECT_EQ(layout[i].layer, expected[i].layer) << expected[i].name;
    EXPECT_EQ(layout[i].direction, expected[i].direction) << expected[i].name;
    EXPECT_EQ(layout[i].offset, expected[i].offset) << expected[i].name;
    EXPECT_EQ(layout[i].shape, expected[i].shape)
        << expected[i].name << ": " << layout[i].shape.to_string();
  }
  EXPECT_EQ(rnn_weight_count(params), count);

  // Element i of the flat tensor holds i, so each view must read its own
  // offset onward, in order.
  Floats iota(static_cast<std::size_t>(count));
  std::iota(iota.begin(), iota.end(), 0.0f);
  const Tensor flat = Tensor::from_vector({count}, iota);
  for (const ExpectedPiece& e : expected) {
    const Tensor view = rnn_weight(flat, params, e.name);
    EXPECT_EQ(view.shape(), e.shape) << e.name;
    const Floats values = view.to_vector();
    int wrong = 0;
    for (std::size_t j = 0; j < values.size(); ++j)
      wrong += values[j] != static_cast<float>(e.offset + static_cast<std::int64_t>(j));
    EXPECT_EQ(wrong, 0) << e.name << " does not view its own elements";
  }
}

TEST(RnnWeightLayout, IsPyTorchsStateDictOfABidirectionalProjectedLstm) {
  // torch.nn.LSTM(input_size=3, hidden_size=5, num_layers=2,
  // bidirectional=True, proj_size=2).state_dict(), in its order: gate rows
  // G*H = 4*5 = 20, h is proj_size = 2 wide, layer 1 reads 2 * 2 = 4.
  const std::vector<ExpectedPiece> expected = {
      {"weight_ih_l0", 0, 0, 0, {20, 3}},            // 60
      {"weight_hh_l0", 0, 0, 60, {20, 2}},           // 40
      {"bias_ih_l0", 0, 0, 100, {20}},               //
      {"bias_hh_l0", 0, 0, 120, {20}},               //
      {"weight_hr_l0", 0, 0, 140, {2, 5}},           // 10
      {"weight_ih_l0_reverse", 0, 1, 150, {20, 3}},  //
      {"weight_hh_l0_reverse", 0, 1, 210, {20, 2}},  //
      {"bias_ih_l0_reverse", 0, 1, 250, {20}},       //
      {"bias_hh_l0_reverse", 0, 1, 270, {20}},       //
      {"weight_hr_l0_reverse", 0, 1, 290, {2, 5}},   //
      {"weight_ih_l1", 1, 0, 300, {20, 4}},          // 80
      {"weight_hh_l1", 1, 0, 380, {20, 2}},          //
      {"bias_ih_l1", 1, 0, 420, {20}},               //
      {"bias_hh_l1", 1, 0, 440, {20}},               //
      {"weight_hr_l1", 1, 0, 460, {2, 5}},           //
      {"weight_ih_l1_reverse", 1, 1, 470, {20, 4}},  //
      {"weight_hh_l1_reverse", 1, 1, 550, {20, 2}},  //
      {"bias_ih_l1_reverse", 1, 1, 590, {20}},       //
      {"bias_hh_l1_reverse", 1, 1, 610, {20}},       //
      {"weight_hr_l1_reverse", 1, 1, 630, {2, 5}},   // ends at 640
  };
  expect_layout(params_of(RnnCell::Lstm, 3, 5, 2, true, true, 2), expected, 640);
}

TEST(RnnWeightLayout, IsPyTorchsStateDictOfGruAndTanhStacks) {
  // torch.nn.GRU(4, 3, bias=False): 3 gates of 3 rows, no biases.
  expect_layout(params_of(RnnCell::Gru, 4, 3, 1, false, false),
                {{"weight_ih_l0", 0, 0, 0, {9, 4}}, {"weight_hh_l0", 0, 0, 36, {9, 3}}}, 63);
  // torch.nn.RNN(2, 3, num_layers=2): one gate; layer 1 reads 3.
  expect_layout(params_of(RnnCell::Tanh, 2, 3, 2, false),
                {{"weight_ih_l0", 0, 0, 0, {3, 2}},
                 {"weight_hh_l0", 0, 0, 6, {3, 3}},
                 {"bias_ih_l0", 0, 0, 15, {3}},
                 {"bias_hh_l0", 0, 0, 18, {3}},
                 {"weight_ih_l1", 1, 0, 21, {3, 3}},
                 {"weight_hh_l1", 1, 0, 30, {3, 3}},
                 {"bias_ih_l1", 1, 0, 39, {3}},
                 {"bias_hh_l1", 1, 0, 42, {3}}},
                45);
}

TEST(RnnWeightLayout, AViewSharesTheFlatTensorsStorage) {
  const RnnParams params = params_of(RnnCell::Lstm, 3, 5, 2, true, true, 2);
  Tensor flat = Tensor::zeros({rnn_weight_count(params)});
  Tensor hr = rnn_weight(flat, params, "weight_hr_l1_reverse");
  hr.fill(-1.0f);
  const Floats after = flat.to_vector();
  EXPECT_EQ(after[629], 0.0f);
  EXPECT_EQ(after[630], -1.0f);
  EXPECT_EQ(after[639], -1.0f);
  EXPECT_EQ(std::count(after.begin(), after.end(), -1.0f), 10);
}

// ------------------------------------------------- cell ops against a hand loop

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// One cell step written out from the equations of dlrt/rnn.hpp in double,
// forward and backward, independently of every engine.
struct CellByHand {
  Floats h_out, c_out, saved, dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh;
};

CellByHand cell_by_hand(RnnCell cell, std::int64_t N, std::int64_t I, std::int64_t H,
                        const Floats& x, const Floats& h, const Floats& c, const Floats& w_ih,
                        const Floats& w_hh, const Floats* b_ih, const Floats* b_hh,
                        const Floats& dh_out, const Floats& dc_out) {
  const std::int64_t GH = rnn_gate_count(cell) * H;
  auto zeros = [](std::int64_t n) { return Floats(static_cast<std::size_t>(n), 0.0f); };
  CellByHand o{zeros(N * H), zeros(N * H),  zeros(N * 4 * H), zeros(N * I), zeros(N * H),
               zeros(N * H), zeros(GH * I), zeros(GH * H),    zeros(GH),    zeros(GH)};
  std::vector<double> dw_ih(o.dw_ih.size()), dw_hh(o.dw_hh.size()), db_ih(GH), db_hh(GH);
  for (std::int64_t n = 0; n < N; ++n) {
    std::vector<double> ai(GH), ah(GH), gi(GH), gh(GH), dh_direct(H, 0.0);
    for (std::int64_t r = 0; r < GH; ++r) {
      ai[r] = b_ih ? (*b_ih)[r] : 0.0;
      ah[r] = b_hh ? (*b_hh)[r] : 0.0;
      for (std::int64_t k = 0; k < I; ++k) ai[r] += double(w_ih[r * I + k]) * x[n * I + k];
      for (std::int64_t k = 0; k < H; ++k) ah[r] += double(w_hh[r * H + k]) * h[n * H + k];
    }
    for (std::int64_t j = 0; j < H; ++j) {
      const std::int64_t at = n * H + j;
      const double up = dh_out[at];
      if (cell == RnnCell::Tanh || cell == RnnCell::Relu) {
        const double sum = ai[j] + ah[j];
        const double out = cell == RnnCell::Tanh ? std::tanh(sum) : std::max(sum, 0.0);
        const double slope = cell == RnnCell::Tanh ? 1.0 - out * out : (out > 0.0 ? 1.0 : 0.0);
        o.h_out[at] = static_cast<float>(out);
        gi[j] = gh[j] = up * slope;
      } else if (cell == RnnCell::Lstm) {
        const double i = sigmoid(ai[j] + ah[j]), f = sigmoid(ai[H + j] + ah[H + j]);
        const double g = std::tanh(ai[2 * H + j] + ah[2 * H + j]);
        const double out_gate = sigmoid(ai[3 * H + j] + ah[3 * H + j]);
        const double c_new = f * c[at] + i * g, tanh_c = std::tanh(c_new);
        o.h_out[at] = static_cast<float>(out_gate * tanh_c);
        o.c_out[at] = static_cast<float>(c_new);
        const double kept[] = {i, f, g, out_gate};
        for (int q = 0; q < 4; ++q) o.saved[n * 4 * H + q * H + j] = static_cast<float>(kept[q]);
        const double dc_new = dc_out[at] + up * out_gate * (1.0 - tanh_c * tanh_c);
        o.dc[at] = static_cast<float>(dc_new * f);
        gi[j] = dc_new * g * i * (1.0 - i);
        gi[H + j] = dc_new * c[at] * f * (1.0 - f);
        gi[2 * H + j] = dc_new * i * (1.0 - g * g);
        gi[3 * H + j] = up * tanh_c * out_gate * (1.0 - out_gate);
        for (int q = 0; q < 4; ++q) gh[q * H + j] = gi[q * H + j];
      } else {
        const double r = sigmoid(ai[j] + ah[j]), z = sigmoid(ai[H + j] + ah[H + j]);
        const double hn = ah[2 * H + j], n_gate = std::tanh(ai[2 * H + j] + r * hn);
        o.h_out[at] = static_cast<float>((1.0 - z) * n_gate + z * h[at]);
        const double kept[] = {r, z, n_gate, hn};
        for (int q = 0; q < 4; ++q) o.saved[n * 4 * H + q * H + j] = static_cast<float>(kept[q]);
        const double d_n = up * (1.0 - z) * (1.0 - n_gate * n_gate);
        gi[j] = gh[j] = d_n * hn * r * (1.0 - r);
        gi[H + j] = gh[H + j] = up * (h[at] - n_gate) * z * (1.0 - z);
        gi[2 * H + j] = d_n;
        gh[2 * H + j] = d_n * r;
        dh_direct[j] = up * z;
      }
    }
    for (std::int64_t k = 0; k < I; ++k) {
      double sum = 0.0;
      for (std::int64_t r = 0; r < GH; ++r) sum += double(w_ih[r * I + k]) * gi[r];
      o.dx[n * I + k] = static_cast<float>(sum);
    }
    for (std::int64_t k = 0; k < H; ++k) {
      double sum = dh_direct[k];
      for (std::int64_t r = 0; r < GH; ++r) sum += double(w_hh[r * H + k]) * gh[r];
      o.dh[n * H + k] = static_cast<float>(sum);
    }
    for (std::int64_t r = 0; r < GH; ++r) {
      for (std::int64_t k = 0; k < I; ++k) dw_ih[r * I + k] += gi[r] * x[n * I + k];
      for (std::int64_t k = 0; k < H; ++k) dw_hh[r * H + k] += gh[r] * h[n * H + k];
      db_ih[r] += gi[r];
      db_hh[r] += gh[r];
    }
  }
  auto to_floats = [](const std::vector<double>& v, Floats& out) {
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i]);
  };
  to_floats(dw_ih, o.dw_ih), to_floats(dw_hh, o.dw_hh), to_floats(db_ih, o.db_ih),
      to_floats(db_hh, o.db_hh);
  return o;
}

Floats plus(const Floats& a, const Floats& b) {
  Floats sum(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) sum[i] = a[i] + b[i];
  return sum;
}

using CellCase = std::tuple<Engine, RnnCell, bool>;
class RnnCellOps : public ::testing::TestWithParam<CellCase> {};

TEST_P(RnnCellOps, ForwardAndBackwardMatchAHandLoop) {
  const auto [engine, cell, bias] = GetParam();
  DLRT_SKIP_UNLESS_ENGINE_RUNS(engine);
  const Device device = test::device_for(engine);
  Context ctx(device);
  const std::int64_t N = 3, I = 4, H = 5, GH = rnn_gate_count(cell) * H;
  const std::int64_t width = rnn_cell_saved_size(cell, H);
  const bool lstm = cell == RnnCell::Lstm;

  const Floats x = test::random_values(N * I, 1), h = test::random_values(N * H, 2);
  const Floats c = test::random_values(N * H, 3);
  const Floats w_ih = test::random_values(GH * I, 4, -0.5f, 0.5f);
  const Floats w_hh = test::random_values(GH * H, 5, -0.5f, 0.5f);
  const Floats b_ih = test::random_values(GH, 6), b_hh = test::random_values(GH, 7);
  const Floats dh_out = test::random_values(N * H, 8), dc_out = test::random_values(N * H, 9);
  // The weight gradients start from values already there: backward adds.
  const Floats start_w_ih = test::random_values(GH * I, 10),
               start_w_hh = test::random_values(GH * H, 11);
  const Floats start_b_ih = test::random_values(GH, 12), start_b_hh = test::random_values(GH, 13);
  const CellByHand want = cell_by_hand(cell, N, I, H, x, h, c, w_ih, w_hh, bias ? &b_ih : nullptr,
                                       bias ? &b_hh : nullptr, dh_out, dc_out);

  auto on_device = [&](const Floats& v, const Shape& shape) {
    return Tensor::from_vector(shape, v, device);
  };
  const Tensor xt = on_device(x, {N, I}), ht = on_device(h, {N, H}), ct = on_device(c, {N, H});
  const Tensor w_iht = on_device(w_ih, {GH, I}), w_hht = on_device(w_hh, {GH, H});
  const Tensor b_iht = on_device(b_ih, {GH}), b_hht = on_device(b_hh, {GH});
  const RnnCellWeights weights{&w_iht, &w_hht, bias ? &b_iht : nullptr, bias ? &b_hht : nullptr};
  Tensor h_out = test::poisoned({N, H}, device), c_out = test::poisoned({N, H}, device);
  Tensor saved = test::poisoned({N, std::max<std::int64_t>(width, 1)}, device);
  try {
    EXPECT_EQ(rnn_cell_forward(ctx, cell, xt, ht, lstm ? &ct : nullptr, weights, h_out,
                               lstm ? &c_out : nullptr, width ? &saved : nullptr, engine),
              engine);
  } catch (const Error& e) {
    if (engine == Engine::Reference || e.kind() != Error::Kind::Unsupported) throw;
    GTEST_SKIP() << e.what();
  }
  EXPECT_TRUE(test::all_close(h_out.to_vector(), want.h_out, I + H));
  if (lstm) {
    EXPECT_TRUE(test::all_close(c_out.to_vector(), want.c_out, I + H));
  }
  if (width) {
    EXPECT_TRUE(test::all_close(saved.to_vector(), want.saved, I + H));
  }

  Tensor dx = test::poisoned({N, I}, device), dh = test::poisoned({N, H}, device);
  Tensor dc = test::poisoned({N, H}, device);
  Tensor dw_ih = on_device(start_w_ih, {GH, I}), dw_hh = on_device(start_w_hh, {GH, H});
  Tensor db_ih = on_device(start_b_ih, {GH}), db_hh = on_device(start_b_hh, {GH});
  const Tensor dh_outt = on_device(dh_out, {N, H}), dc_outt = on_device(dc_out, {N, H});
  RnnCellGradients g;
  g.dx = &dx, g.dh = &dh, g.dc = lstm ? &dc : nullptr;
  g.dw_ih = &dw_ih, g.dw_hh = &dw_hh;
  g.db_ih = bias ? &db_ih : nullptr, g.db_hh = bias ? &db_hh : nullptr;
  EXPECT_EQ(rnn_cell_backward(ctx, cell, xt, ht, lstm ? &ct : nullptr, weights, h_out,
                              lstm ? &c_out : nullptr, width ? &saved : nullptr, dh_outt,
                              lstm ? &dc_outt : nullptr, g, engine),
            engine);
  EXPECT_TRUE(test::all_close(dx.to_vector(), want.dx, GH));
  EXPECT_TRUE(test::all_close(dh.to_vector(), want.dh, GH));
  if (lstm) {
    EXPECT_TRUE(test::all_close(dc.to_vector(), want.dc, GH));
  }
  EXPECT_TRUE(test::all_close(dw_ih.to_vector(), plus(start_w_ih, want.dw_ih), N));
  EXPECT_TRUE(test::all_close(dw_hh.to_vector(), plus(start_w_hh, want.dw_hh), N));
  if (bias) {
    EXPECT_TRUE(test::all_close(db_ih.to_vector(), plus(start_b_ih, want.db_ih), N));
    EXPECT_TRUE(test::all_close(db_hh.to_vector(), plus(start_b_hh, want.db_hh), N));
  } else {
    EXPECT_TRUE(test::bitwise_equal(db_ih.to_vector(), start_b_ih)) << "db_ih was not asked for";
  }
}

std::string cell_case_name(const ::testing::TestParamInfo<CellCase>& cell_info) {
  const auto& [engine, cell, bias] = cell_info.param;
  return std::string(to_string(engine)) + "_" + to_string(cell) + (bias ? "_bias" : "_nobias");
}

INSTANTIATE_TEST_SUITE_P(Rnn, RnnCellOps,
                         ::testing::Combine(::testing::ValuesIn(test::engines_of(OpFamily::Rnn)),
                                            ::testing::ValuesIn(kCells), ::testing::Bool()),
                         cell_case_name);

// ------------------------------------------------- sequences: shared plumbing

struct RnnCase {
  std::string name;
  RnnParams params;
  std::int64_t T, N;
  std::vector<int> lengths;  // empty: every sequence has T steps

  int length(std::int64_t n) const {
    return lengths.empty() ? static_cast<int>(T) : lengths[static_cast<std::size_t>(n)];
  }
};

void PrintTo(const RnnCase& c, std::ostream* os) { *os << c.name; }

// Host tensors of one problem's inputs and upstream gradients.
struct RnnInputs {
  Tensor x, w, h0, c0, dy, dhy, dcy, dw_start;
};

RnnInputs make_inputs(const RnnCase& c, std::uint64_t seed) {
  const Dims d(c.params, c.T, c.N);
  RnnInputs in;
  in.x = test::random_tensor(d.x(), seed);
  // Weights of a size that keeps the recurrences contracting, as trained ones do.
  in.w = Tensor::from_vector({d.weights}, test::random_values(d.weights, seed + 1, -0.5f, 0.5f));
  in.h0 = test::random_tensor(d.h(), seed + 2);
  in.c0 = test::random_tensor(d.c(), seed + 3);
  in.dy = test::random_tensor(d.y(), seed + 4);
  in.dhy = test::random_tensor(d.h(), seed + 5);
  in.dcy = test::random_tensor(d.c(), seed + 6);
  in.dw_start = test::random_tensor({d.weights}, seed + 7);
  return in;
}

// Every output and gradient of one forward + backward, on the host.
struct RnnResults {
  Floats y, hy, cy, dx, dh0, dc0, dw, dw_accumulated;
};

// Forward in training mode, backward_data, backward_weights (overwriting,
// then accumulating onto dw_start), every output poisoned first.
// initial_state: pass h0 (and c0), or null for zeros.
RnnResults run_sequence(Engine engine, const RnnCase& c, const RnnInputs& in,
                        bool initial_state = true) {
  const Dims d(c.params, c.T, c.N);
  const Device device = test::device_for(engine);
  Context ctx(device);
  const Tensor x = in.x.to(device), w = in.w.to(device), h0 = in.h0.to(device),
               c0 = in.c0.to(device);
  const Tensor dy = in.dy.to(device), dhy = in.dhy.to(device), dcy = in.dcy.to(device);
  Tensor y = test::poisoned(d.y(), device), hy = test::poisoned(d.h(), device),
         cy = test::poisoned(d.c(), device);
  RnnTrainingState state;
  EXPECT_EQ(rnn_forward(ctx, c.params, x, c.lengths, w, initial_state ? &h0 : nullptr,
                        initial_state && d.lstm ? &c0 : nullptr, y, &hy, d.lstm ? &cy : nullptr,
                        &state, engine),
            engine);
  EXPECT_FALSE(state.empty());
  EXPECT_EQ(state.engine(), engine);
  Tensor dx = test::poisoned(d.x(), device), dh0 = test::poisoned(d.h(), device),
         dc0 = test::poisoned(d.c(), device), dw = test::poisoned({d.weights}, device);
  EXPECT_EQ(rnn_backward_data(ctx, state, dy, &dhy, d.lstm ? &dcy : nullptr, dx, &dh0,
                              d.lstm ? &dc0 : nullptr),
            engine);
  EXPECT_EQ(rnn_backward_weights(ctx, state, dw), engine);
  Tensor accumulated = in.dw_start.to(device);
  EXPECT_EQ(rnn_backward_weights(ctx, state, accumulated, true), engine);
  RnnResults r{y.to_vector(),  hy.to_vector(),         {}, dx.to_vector(), dh0.to_vector(), {},
               dw.to_vector(), accumulated.to_vector()};
  if (d.lstm) r.cy = cy.to_vector(), r.dc0 = dc0.to_vector();
  return r;
}

// The longest chain of float sums behind one value: through every layer and
// step, each step a product over the layer's input and state.
std::int64_t chain_length(const RnnCase& c) {
  const Dims d(c.params, c.T, c.N);
  return c.params.num_layers * c.T * (std::max(d.I, d.D * d.H_out) + d.H_out + d.H);
}

// Every element of y and dx at t >= the sequence's length is exactly zero.
::testing::AssertionResult zero_past_lengths(const RnnCase& c, const Floats& values,
                                             std::int64_t width) {
  for (std::int64_t t = 0; t < c.T; ++t)
    for (std::int64_t n = 0; n < c.N; ++n) {
      if (t < c.length(n)) continue;
      for (std::int64_t j = 0; j < width; ++j)
        if (values[(t * c.N + n) * width + j] != 0.0f)
          return ::testing::AssertionFailure()
                 << "t=" << t << " n=" << n << " j=" << j << " holds "
                 << values[(t * c.N + n) * width + j] << " past length " << c.length(n);
    }
  return ::testing::AssertionSuccess();
}

void expect_results_close(const RnnCase& c, const RnnResults& got, const RnnResults& want,
                          double rtol) {
  const Dims d(c.params, c.T, c.N);
  const std::int64_t chain = chain_length(c);
  EXPECT_TRUE(test::all_close(got.y, want.y, chain, rtol)) << "y";
  EXPECT_TRUE(test::all_close(got.hy, want.hy, chain, rtol)) << "hy";
  if (d.lstm) {
    EXPECT_TRUE(test::all_close(got.cy, want.cy, chain, rtol)) << "cy";
  }
  EXPECT_TRUE(test::all_close(got.dx, want.dx, chain, rtol)) << "dx";
  EXPECT_TRUE(test::all_close(got.dh0, want.dh0, chain, rtol)) << "dh0";
  if (d.lstm) {
    EXPECT_TRUE(test::all_close(got.dc0, want.dc0, chain, rtol)) << "dc0";
  }
  // dW sums over every sequence and step on top of the chain.
  EXPECT_TRUE(test::all_close(got.dw, want.dw, chain * c.N, rtol)) << "dw";
  EXPECT_TRUE(test::all_close(got.dw_accumulated, want.dw_accumulated, chain * c.N, rtol))
      << "dw accumulated";
  EXPECT_TRUE(zero_past_lengths(c, got.y, d.D * d.H_out)) << "y";
  EXPECT_TRUE(zero_past_lengths(c, got.dx, d.I)) << "dx";
}

// ------------------------------------------------- the Reference engine's own semantics

// A padded batch of sequences of unequal lengths, in no order, is the same
// as each sequence run alone over exactly its own steps: the reverse
// direction starts at each sequence's own last step, hy and cy are taken
// there, and dW is the sum of the sequences' dW.
class RnnPaddedBatch : public ::testing::TestWithParam<std::tuple<Engine, RnnCase>> {};

TEST_P(RnnPaddedBatch, EqualsEachSequenceRunAlone) {
  // Not a structured binding: lambdas below capture `c` (clang 14 refuses bindings there).
  const Engine engine = std::get<0>(GetParam());
  const auto& c = std::get<1>(GetParam());
  DLRT_SKIP_UNLESS_ENGINE_RUNS(engine);
  {
    Context ctx(test::device_for(engine));
    const EngineQuery q = rnn_query(ctx, c.params, c.T, c.N, c.lengths, engine);
    if (!q.supported) GTEST_SKIP() << q.reason;
  }
  const Dims d(c.params, c.T, c.N);
  const RnnInputs batch_in = make_inputs(c, 300);
  const RnnResults batch = run_sequence(engine, c, batch_in);

  // Columns of [T, N, W] (rows t < steps) and of [L*D, N, W].
  auto time_column = [&](const Floats& v, std::int64_t n, std::int64_t steps, std::int64_t width) {
    Floats out;
    for (std::int64_t t = 0; t < steps; ++t)
      for (std::int64_t j = 0; j < width; ++j) out.push_back(v[(t * c.N + n) * width + j]);
    return out;
  };
  auto state_column = [&](const Floats& v, std::int64_t n, std::int64_t width) {
    Floats out;
    for (std::int64_t ld = 0; ld < d.LD; ++ld)
      for (std::int64_t j = 0; j < width; ++j) out.push_back(v[(ld * c.N + n) * width + j]);
    return out;
  };
  Floats dw_sum(static_cast<std::size_t>(d.weights), 0.0f);
  for (std::int64_t n = 0; n < c.N; ++n) {
    const std::int64_t steps = c.length(n);
    const RnnCase alone{c.name + "_alone", c.params, steps, 1, {}};
    const Dims a(c.params, steps, 1);
    RnnInputs in;
    in.x = Tensor::from_vector(a.x(), time_column(batch_in.x.to_vector(), n, steps, d.I));
    in.w = batch_in.w;
    in.h0 = Tensor::from_vector(a.h(), state_column(batch_in.h0.to_vector(), n, d.H_out));
    in.c0 = Tensor::from_vector(a.c(), state_column(batch_in.c0.to_vector(), n, d.H));
    in.dy =
        Tensor::from_vector(a.y(), time_column(batch_in.dy.to_vector(), n, steps, d.D * d.H_out));
    in.dhy = Tensor::from_vector(a.h(), state_column(batch_in.dhy.to_vector(), n, d.H_out));
    in.dcy = Tensor::from_vector(a.c(), state_column(batch_in.dcy.to_vector(), n, d.H));
    in.dw_start = Tensor::zeros({d.weights});
    const RnnResults one = run_sequence(engine, alone, in);
    const std::int64_t chain = chain_length(c);
    SCOPED_TRACE("sequence " + std::to_string(n) + " of length " + std::to_string(steps));
    EXPECT_TRUE(test::all_close(time_column(batch.y, n, steps, d.D * d.H_out), one.y, chain));
    EXPECT_TRUE(test::all_close(state_column(batch.hy, n, d.H_out), one.hy, chain));
    if (d.lstm) {
      EXPECT_TRUE(test::all_close(state_column(batch.cy, n, d.H), one.cy, chain));
    }
    EXPECT_TRUE(test::all_close(time_column(batch.dx, n, steps, d.I), one.dx, chain));
    EXPECT_TRUE(test::all_close(state_column(batch.dh0, n, d.H_out), one.dh0, chain));
    if (d.lstm) {
      EXPECT_TRUE(test::all_close(state_column(batch.dc0, n, d.H), one.dc0, chain));
    }
    for (std::size_t i = 0; i < dw_sum.size(); ++i) dw_sum[i] += one.dw[i];
  }
  EXPECT_TRUE(test::all_close(batch.dw, dw_sum, chain_length(c) * c.N));
  EXPECT_TRUE(zero_past_lengths(c, batch.y, d.D * d.H_out));
  EXPECT_TRUE(zero_past_lengths(c, batch.dx, d.I));
}

const std::vector<RnnCase>& padded_batch_cases() {
  static const std::vector<RnnCase> cases = {
      {"lstm_proj_bi2", params_of(RnnCell::Lstm, 3, 4, 2, true, true, 2), 7, 4, {2, 7, 1, 5}},
      {"gru_bi2", params_of(RnnCell::Gru, 3, 4, 2, true), 7, 4, {2, 7, 1, 5}},
      {"tanh_bi3_nobias", params_of(RnnCell::Tanh, 2, 3, 3, true, false), 6, 3, {1, 6, 4}},
      {"relu_bi1", params_of(RnnCell::Relu, 4, 3, 1, true), 5, 3, {3, 1, 5}},
  };
  return cases;
}

std::string engine_case_name(const ::testing::TestParamInfo<std::tuple<Engine, RnnCase>>& info_) {
  return std::string(to_string(std::get<0>(info_.param))) + "_" + std::get<1>(info_.param).name;
}

INSTANTIATE_TEST_SUITE_P(Rnn, RnnPaddedBatch,
                         ::testing::Combine(::testing::ValuesIn(test::engines_of(OpFamily::Rnn)),
                                            ::testing::ValuesIn(padded_batch_cases())),
                         engine_case_name);

TEST(RnnReference, ASavedStateIsReusedByTheNextForward) {
  const RnnCase c{
      "lstm_proj_bi2", params_of(RnnCell::Lstm, 3, 4, 2, true, true, 2), 6, 5, {6, 2, 5, 1, 2}};
  const Dims d(c.params, c.T, c.N);
  const RnnInputs first = make_inputs(c, 400), second = make_inputs(c, 500);
  Context ctx;
  RnnTrainingState state;
  Tensor y = test::poisoned(d.y()), hy = test::poisoned(d.h()), cy = test::poisoned(d.c());
  rnn_forward(ctx, c.params, first.x, c.lengths, first.w, &first.h0, &first.c0, y, &hy, &cy, &state,
              Engine::Reference);
  Tensor dx = test::poisoned(d.x()), dh0 = test::poisoned(d.h()), dc0 = test::poisoned(d.c());
  rnn_backward_data(ctx, state, first.dy, &first.dhy, &first.dcy, dx, &dh0, &dc0);
  // The second forward replaces everything the first kept.
  y.fill(kNaN), hy.fill(kNaN), cy.fill(kNaN);
  rnn_forward(ctx, c.params, second.x, c.lengths, second.w, nullptr, nullptr, y, &hy, &cy, &state,
              Engine::Reference);
  Tensor dw = test::poisoned({d.weights});
  dx.fill(kNaN), dh0.fill(kNaN), dc0.fill(kNaN);
  rnn_backward_data(ctx, state, second.dy, &second.dhy, &second.dcy, dx, &dh0, &dc0);
  rnn_backward_weights(ctx, state, dw);

  const RnnResults want = run_sequence(Engine::Reference, c, second, false);
  EXPECT_TRUE(test::bitwise_equal(y.to_vector(), want.y));
  EXPECT_TRUE(test::bitwise_equal(hy.to_vector(), want.hy));
  EXPECT_TRUE(test::bitwise_equal(cy.to_vector(), want.cy));
  EXPECT_TRUE(test::bitwise_equal(dx.to_vector(), want.dx));
  EXPECT_TRUE(test::bitwise_equal(dh0.to_vector(), want.dh0));
  EXPECT_TRUE(test::bitwise_equal(dc0.to_vector(), want.dc0));
  EXPECT_TRUE(test::bitwise_equal(dw.to_vector(), want.dw));
}

TEST(RnnReference, PlansWithoutWorkspaceAndDeclinesKernelVariants) {
  Context ctx;
  const RnnParams params = params_of(RnnCell::Lstm, 3, 4, 1, false);
  const RnnPlan plan(ctx, params, 5, 2, {}, RnnPlanOptions{Engine::Reference});
  EXPECT_EQ(plan.engine(), Engine::Reference);
  EXPECT_EQ(plan.workspace_bytes(), 0u);
  EXPECT_NE(plan.description().find("reference lstm"), std::string::npos) << plan.description();
  EXPECT_EQ(plan.lengths(), (std::vector<int>{5, 5}));
  RnnPlanOptions options{Engine::Reference};
  options.variant = 1;
  EXPECT_TRUE(test::throws_error([&] { RnnPlan(ctx, params, 5, 2, {}, options); },
                                 Error::Kind::Unsupported, {"no kernel variants", "variant 1"}));
}

// The Onednn engine's own paths: a unidirectional stack whose input is as
// wide as its output runs every layer in one primitive (the table's
// unidirectional stacks all have layer 0 apart); two runs agree bit for bit
// (groups and pieces fixed by the plan, dW summed in group order); what it
// declines says the rule.
TEST(RnnOnednn, OneStackedPrimitiveRepeatsBitwiseAndDeclinesWithTheRule) {
  DLRT_SKIP_UNLESS_ENGINE_RUNS(Engine::Onednn);
  for (RnnCell cell : kCells) {
    const RnnCase c{std::string(to_string(cell)) + "_L3_square",
                    params_of(cell, 3, 3, 3, false),
                    5,
                    4,
                    {5, 3, 5, 1}};
    Context ctx;
    const RnnPlan plan(ctx, c.params, c.T, c.N, c.lengths, RnnPlanOptions{Engine::Onednn});
    EXPECT_NE(plan.description().find(", 1 stage,"), std::string::npos) << plan.description();
    const RnnInputs in = make_inputs(c, 900);
    const RnnResults a = run_sequence(Engine::Onednn, c, in);
    expect_results_close(c, a, run_sequence(Engine::Reference, c, in), 1e-4);
    const RnnResults b = run_sequence(Engine::Onednn, c, in);
    for (const auto& [got, want] : {std::pair{&a.y, &b.y},
                                    {&a.hy, &b.hy},
                                    {&a.cy, &b.cy},
                                    {&a.dx, &b.dx},
                                    {&a.dh0, &b.dh0},
                                    {&a.dc0, &b.dc0},
                                    {&a.dw, &b.dw},
                                    {&a.dw_accumulated, &b.dw_accumulated}})
      EXPECT_TRUE(test::bitwise_equal(*got, *want)) << c.name;
  }
  Context ctx;
  const EngineQuery proj =
      rnn_query(ctx, params_of(RnnCell::Lstm, 3, 4, 1, false, true, 2), 5, 2, {}, Engine::Onednn);
  EXPECT_FALSE(proj.supported);
  EXPECT_NE(proj.reason.find("proj_size is 2"), std::string::npos) << proj.reason;
  RnnPlanOptions options{Engine::Onednn};
  options.executor = Executor::Sequential;
  EXPECT_TRUE(test::throws_error(
      [&] { RnnPlan(ctx, params_of(RnnCell::Gru, 3, 4, 1, false), 5, 2, {}, options); },
      Error::Kind::Unsupported, {"plays no graph", "sequential"}));
  const Tensor x = test::random_tensor({2, 3}, 1), h = test::random_tensor({2, 4}, 2);
  const Tensor w_ih = test::random_tensor({4, 3}, 3), w_hh = test::random_tensor({4, 4}, 4);
  Tensor h_out = test::poisoned({2, 4});
  EXPECT_TRUE(test::throws_error(
      [&] {
        rnn_cell_forward(ctx, RnnCell::Tanh, x, h, nullptr, RnnCellWeights{&w_ih, &w_hh}, h_out,
                         nullptr, nullptr, Engine::Onednn);
      },
      Error::Kind::Unsupported, {"whole sequences"}));
}

TEST(RnnDispatch, AutoPicksACpuEngineForCpuTensors) {
  Context ctx;
  const EngineQuery q = rnn_query(ctx, params_of(RnnCell::Gru, 3, 4, 2, true), 5, 2);
  EXPECT_TRUE(q.supported) << q.reason;
  EXPECT_EQ(engine_device(q.engine), Device::Kind::Cpu);
}

TEST(RnnDispatch, AGpuEngineOnCpuTensorsIsAnErrorThatSaysWhy) {
  Context ctx;
  const RnnParams params = params_of(RnnCell::Tanh, 2, 3, 1, false);
  const Dims d(params, 4, 2);
  const Tensor x = test::random_tensor(d.x(), 1), w = test::random_tensor({d.weights}, 2);
  Tensor y = test::poisoned(d.y());
  const Floats before = y.to_vector();
  for (Engine e : registered_engines(OpFamily::Rnn)) {
    if (engine_device(e) != Device::Kind::Cuda) continue;
    EXPECT_TRUE(test::throws_error(
        [&] {
          rnn_forward(ctx, params, x, {}, w, nullptr, nullptr, y, nullptr, nullptr, nullptr, e);
        },
        Error::Kind::Unsupported, {to_string(e), "cpu"}));
    EXPECT_FALSE(rnn_query(ctx, params, 4, 2, {}, e).supported);
  }
  EXPECT_TRUE(test::bitwise_equal(y.to_vector(), before));
}

// ------------------------------------------------- every engine against Reference

// 4 cells x 8 shapes, plus projected LSTMs: layers 1-3, uni- and
// bidirectional, bias on and off, equal (given and implied), unequal sorted
// and unsorted lengths (with [7, 5, 5, 2, 1, 1] both ways, and a batch where
// no sequence is full length), T 1-20, N 1-8, input size != hidden size.
const std::vector<RnnCase>& table() {
  static const std::vector<RnnCase> cases = [] {
    struct Row {
      const char* name;
      int layers;
      bool bidirectional, bias;
      std::int64_t T, N;
      std::vector<int> lengths;
      int input, hidden;
    };
    const Row rows[] = {
        {"L1_T1_N1", 1, false, true, 1, 1, {1}, 3, 5},
        {"L2_bi_unsorted", 2, true, true, 7, 6, {2, 7, 1, 5, 1, 5}, 4, 3},
        {"L3_nobias_sorted", 3, false, false, 9, 4, {9, 6, 6, 3}, 2, 6},
        {"L1_bi_nobias_T20_N8", 1, true, false, 20, 8, {3, 20, 11, 1, 20, 7, 2, 15}, 5, 4},
        {"L2_equal_implied", 2, false, true, 12, 3, {}, 6, 2},
        {"L3_bi_unequal", 3, true, true, 5, 5, {5, 1, 4, 5, 2}, 3, 4},
        {"L1_none_full", 1, false, true, 8, 6, {7, 5, 5, 2, 1, 1}, 1, 7},
        {"L2_bi_nobias_equal", 2, true, false, 3, 8, {3, 3, 3, 3, 3, 3, 3, 3}, 7, 5},
    };
    std::vector<RnnCase> out;
    for (RnnCell cell : kCells)
      for (const Row& r : rows)
        out.push_back({std::string(to_string(cell)) + "_" + r.name,
                       params_of(cell, r.input, r.hidden, r.layers, r.bidirectional, r.bias), r.T,
                       r.N, r.lengths});
    out.push_back({"lstm_proj_L2_bi_unsorted",
                   params_of(RnnCell::Lstm, 4, 5, 2, true, true, 2),
                   7,
                   6,
                   {2, 7, 1, 5, 1, 5}});
    out.push_back(
        {"lstm_proj_L1_nobias", params_of(RnnCell::Lstm, 3, 4, 1, false, false, 1), 6, 2, {6, 3}});
    out.push_back(
        {"lstm_proj_L3_bi", params_of(RnnCell::Lstm, 2, 6, 3, true, true, 3), 4, 3, {4, 1, 3}});
    return out;
  }();
  return cases;
}

class RnnAgainstReference : public ::testing::TestWithParam<std::tuple<Engine, RnnCase>> {
protected:
  void SetUp() override {
    engine_ = std::get<0>(GetParam());
    DLRT_SKIP_UNLESS_ENGINE_RUNS(engine_);
    const RnnCase& c = std::get<1>(GetParam());
    Context ctx(test::device_for(engine_));
    const EngineQuery q = rnn_query(ctx, c.params, c.T, c.N, c.lengths, engine_);
    if (!q.supported) GTEST_SKIP() << q.reason;
  }
  // Float engines against the double oracle, errors compounding over steps.
  static constexpr double kRtol = 1e-4;
  Engine engine_ = Engine::Reference;
};

TEST_P(RnnAgainstReference, OutputsAndEveryGradient) {
  const RnnCase& c = std::get<1>(GetParam());
  const RnnInputs in = make_inputs(c, 100);
  expect_results_close(c, run_sequence(engine_, c, in), run_sequence(Engine::Reference, c, in),
                       kRtol);
  // Without h0 and c0 (zeros): a separate path in several engines.
  const RnnInputs other = make_inputs(c, 200);
  expect_results_close(c, run_sequence(engine_, c, other, false),
                       run_sequence(Engine::Reference, c, other, false), kRtol);
}

TEST_P(RnnAgainstReference, ASavedStateIsReusedByTheNextForward) {
  const RnnCase& c = std::get<1>(GetParam());
  const Dims d(c.params, c.T, c.N);
  const Device device = test::device_for(engine_);
  Context ctx(device);
  const RnnPlan plan(ctx, c.params, c.T, c.N, c.lengths, RnnPlanOptions{engine_});
  EXPECT_EQ(plan.engine(), engine_);
  const RnnInputs first = make_inputs(c, 600), second = make_inputs(c, 700);
  auto dev = [&](const Tensor& t) { return t.to(device); };
  const Tensor x1 = dev(first.x), w1 = dev(first.w), h1 = dev(first.h0), c1 = dev(first.c0);
  const Tensor x2 = dev(second.x), w2 = dev(second.w), dy = dev(second.dy), dhy = dev(second.dhy),
               dcy = dev(second.dcy);
  Tensor y = test::poisoned(d.y(), device), hy = test::poisoned(d.h(), device),
         cy = test::poisoned(d.c(), device);
  Tensor dx = test::poisoned(d.x(), device), dh0 = test::poisoned(d.h(), device),
         dc0 = test::poisoned(d.c(), device), dw = test::poisoned({d.weights}, device);
  Tensor* cy_or_null = d.lstm ? &cy : nullptr;
  Tensor* dc0_or_null = d.lstm ? &dc0 : nullptr;

  RnnTrainingState state;
  plan.forward(ctx, x1, w1, &h1, d.lstm ? &c1 : nullptr, y, &hy, cy_or_null, &state);
  plan.backward_data(ctx, state, dy, &dhy, d.lstm ? &dcy : nullptr, dx, &dh0, dc0_or_null);
  // Everything the first round kept is replaced by the second.
  for (Tensor* t : {&y, &hy, &cy, &dx, &dh0, &dc0}) t->fill(kNaN);
  plan.forward(ctx, x2, w2, nullptr, nullptr, y, &hy, cy_or_null, &state);
  plan.backward_data(ctx, state, dy, &dhy, d.lstm ? &dcy : nullptr, dx, &dh0, dc0_or_null);
  plan.backward_weights(ctx, state, dw);
  Tensor accumulated = second.dw_start.to(device);
  plan.backward_weights(ctx, state, accumulated, true);

  RnnResults got{y.to_vector(),  hy.to_vector(),         {}, dx.to_vector(), dh0.to_vector(), {},
                 dw.to_vector(), accumulated.to_vector()};
  if (d.lstm) got.cy = cy.to_vector(), got.dc0 = dc0.to_vector();
  expect_results_close(c, got, run_sequence(Engine::Reference, c, second, false), kRtol);
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RnnAgainstReference);
INSTANTIATE_TEST_SUITE_P(Rnn, RnnAgainstReference,
                         ::testing::Combine(::testing::ValuesIn(test::engines_of(OpFamily::Rnn,
                                                                                 true)),
                                            ::testing::ValuesIn(table())),
                         engine_case_name);

// ------------------------------------------------- every GPU executor against Reference

// The engines that the scheduler plays on a GPU, under each GPU executor,
// through RnnPlan (the one-shot functions plan with the default executor).
RnnResults run_planned(Engine engine, Executor executor, const RnnCase& c, const RnnInputs& in,
                       int variant = 0) {
  const Dims d(c.params, c.T, c.N);
  const Device device = test::device_for(engine);
  Context ctx(device);
  RnnPlanOptions options;
  options.engine = engine;
  options.executor = executor;
  options.variant = variant;
  const RnnPlan plan(ctx, c.params, c.T, c.N, c.lengths, options);
  EXPECT_EQ(plan.executor(), executor);
  const Tensor x = in.x.to(device), w = in.w.to(device), h0 = in.h0.to(device),
               c0 = in.c0.to(device);
  const Tensor dy = in.dy.to(device), dhy = in.dhy.to(device), dcy = in.dcy.to(device);
  Tensor y = test::poisoned(d.y(), device), hy = test::poisoned(d.h(), device),
         cy = test::poisoned(d.c(), device);
  RnnTrainingState state;
  plan.forward(ctx, x, w, &h0, d.lstm ? &c0 : nullptr, y, &hy, d.lstm ? &cy : nullptr, &state);
  Tensor dx = test::poisoned(d.x(), device), dh0 = test::poisoned(d.h(), device),
         dc0 = test::poisoned(d.c(), device), dw = test::poisoned({d.weights}, device);
  plan.backward_data(ctx, state, dy, &dhy, d.lstm ? &dcy : nullptr, dx, &dh0,
                     d.lstm ? &dc0 : nullptr);
  plan.backward_weights(ctx, state, dw);
  Tensor accumulated = in.dw_start.to(device);
  plan.backward_weights(ctx, state, accumulated, true);
  RnnResults r{y.to_vector(),  hy.to_vector(),         {}, dx.to_vector(), dh0.to_vector(), {},
               dw.to_vector(), accumulated.to_vector()};
  if (d.lstm) r.cy = cy.to_vector(), r.dc0 = dc0.to_vector();
  return r;
}

std::vector<Engine> gpu_engines() {
  std::vector<Engine> out;
  for (Engine e : test::engines_of(OpFamily::Rnn, true))
    if (engine_device(e) == Device::Kind::Cuda) out.push_back(e);
  return out;
}

using ExecutorCase = std::tuple<Engine, Executor, RnnCase>;
class RnnGpuExecutors : public ::testing::TestWithParam<ExecutorCase> {};

TEST_P(RnnGpuExecutors, OutputsAndEveryGradientMatchTheReference) {
  const auto& [engine, executor, c] = GetParam();
  DLRT_SKIP_UNLESS_ENGINE_RUNS(engine);
  Context ctx(test::device_for(engine));
  RnnPlanOptions options;
  options.engine = engine;
  options.executor = executor;
  try {
    const RnnPlan plan(ctx, c.params, c.T, c.N, c.lengths, options);
    // An engine that plays the sequence itself (cuDNN) has no scheduler executor.
    if (plan.executor() != executor)
      GTEST_SKIP() << to_string(engine) << " plays no scheduler executor (its plan reports "
                   << to_string(plan.executor()) << ")";
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  const RnnInputs in = make_inputs(c, 900);
  expect_results_close(c, run_planned(engine, executor, c, in),
                       run_sequence(Engine::Reference, c, in), 1e-4);
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RnnGpuExecutors);
INSTANTIATE_TEST_SUITE_P(Rnn, RnnGpuExecutors,
                         ::testing::Combine(::testing::ValuesIn(gpu_engines()),
                                            ::testing::Values(Executor::Sequential,
                                                              Executor::CudaStreams,
                                                              Executor::CudaGraph),
                                            ::testing::ValuesIn(table())),
                         [](const ::testing::TestParamInfo<ExecutorCase>& param_info) {
                           return std::string(to_string(std::get<0>(param_info.param))) + "_" +
                                  to_string(std::get<1>(param_info.param)) + "_" +
                                  std::get<2>(param_info.param).name;
                         });

// The Cuda engine's variants (1: a cell kernel per step, 2: the persistent
// kernel per layer) under each GPU executor, training included.
std::vector<Engine> cuda_engine() {
  std::vector<Engine> out;
  for (Engine e : gpu_engines())
    if (e == Engine::Cuda) out.push_back(e);
  return out;
}

using VariantCase = std::tuple<Engine, int, Executor, RnnCase>;
class RnnCudaVariants : public ::testing::TestWithParam<VariantCase> {};

TEST_P(RnnCudaVariants, OutputsAndEveryGradientMatchTheReference) {
  const auto& [engine, variant, executor, c] = GetParam();
  DLRT_SKIP_UNLESS_ENGINE_RUNS(engine);
  Context ctx(test::device_for(engine));
  RnnPlanOptions options;
  options.engine = engine;
  options.executor = executor;
  options.variant = variant;
  try {
    const RnnPlan plan(ctx, c.params, c.T, c.N, c.lengths, options);
    EXPECT_NE(plan.description().find("variant " + std::to_string(variant)), std::string::npos)
        << plan.description();
  } catch (const Error& e) {
    // Only variant 2 declines anything on this table (every batch is
    // small): a projection. Variant 1 runs every case.
    EXPECT_EQ(variant, 2) << e.what();
    EXPECT_GT(c.params.proj_size, 0) << e.what();
    GTEST_SKIP() << e.what();
  }
  const RnnInputs in = make_inputs(c, 950);
  expect_results_close(c, run_planned(engine, executor, c, in, variant),
                       run_sequence(Engine::Reference, c, in), 1e-4);
}

TEST(RnnCudaVariant2, DeclinesBatchesOverItsBoundNamingTheNumber) {
  DLRT_SKIP_UNLESS_ENGINE_RUNS(Engine::Cuda);
  Context ctx(test::device_for(Engine::Cuda));
  RnnPlanOptions options;
  options.engine = Engine::Cuda;
  options.variant = 2;
  const RnnParams params = params_of(RnnCell::Gru, 3, 4, 1, false);
  EXPECT_TRUE(test::throws_error([&] { RnnPlan(ctx, params, 5, 33, {}, options); },
                                 Error::Kind::Unsupported, {"variant 2", "33"}));
  const RnnPlan fits(ctx, params, 5, 32, {}, options);
  EXPECT_NE(fits.description().find("persistent"), std::string::npos) << fits.description();
  // A projection: variant 2 declines it naming proj_size, variant 1 runs it.
  const RnnParams projected = params_of(RnnCell::Lstm, 3, 4, 1, false, true, 2);
  EXPECT_TRUE(test::throws_error([&] { RnnPlan(ctx, projected, 5, 2, {}, options); },
                                 Error::Kind::Unsupported, {"variant 2", "proj_size"}));
  options.variant = 1;
  const RnnPlan one(ctx, projected, 5, 2, {}, options);
  EXPECT_NE(one.description().find("projection"), std::string::npos) << one.description();
  EXPECT_TRUE(rnn_query(ctx, projected, 5, 2, {}, Engine::Cuda).supported);
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RnnCudaVariants);
INSTANTIATE_TEST_SUITE_P(
    Rnn, RnnCudaVariants,
    ::testing::Combine(::testing::ValuesIn(cuda_engine()), ::testing::Values(1, 2),
                       ::testing::Values(Executor::Sequential, Executor::CudaStreams,
                                         Executor::CudaGraph),
                       ::testing::ValuesIn(table())),
    [](const ::testing::TestParamInfo<VariantCase>& param_info) {
      return std::string(to_string(std::get<0>(param_info.param))) + "_variant" +
             std::to_string(std::get<1>(param_info.param)) + "_" +
             to_string(std::get<2>(param_info.param)) + "_" + std::get<3>(param_info.param).name;
    });

// ------------------------------------------------- validation

// Every rule raises InvalidArgument naming the argument, before any output
// is written. A bidirectional 2-layer LSTM whose input is as wide as its
// output (I = D * H = 4), so that y can alias x.
class RnnValidation : public ::testing::Test {
protected:
  RnnValidation()
      : params_(params_of(RnnCell::Lstm, 4, 2, 2, true)),
        d_(params_, 5, 3),
        x_(test::random_tensor(d_.x(), 1)),
        w_(test::random_tensor({d_.weights}, 2)),
        h0_(test::random_tensor(d_.h(), 3)),
        c0_(test::random_tensor(d_.c(), 4)),
        dy_(test::random_tensor(d_.y(), 5)),
        y_(test::poisoned(d_.y())),
        hy_(test::poisoned(d_.h())),
        cy_(test::poisoned(d_.c())),
        dx_(test::poisoned(d_.x())),
        dh0_(test::poisoned(d_.h())),
        dc0_(test::poisoned(d_.c())),
        dw_(test::poisoned({d_.weights})) {}

  // The call throws InvalidArgument naming `argument` (and the `others`),
  // and no output changes.
  void expect_rejected(const std::function<void()>& call, const std::string& argument,
                       std::vector<std::string> others = {}) {
    Tensor* outputs[] = {&y_, &hy_, &cy_, &dx_, &dh0_, &dc0_, &dw_};
    std::vector<Floats> before;
    for (Tensor* t : outputs) before.push_back(t->to_vector());
    others.insert(others.begin(), "argument '" + argument + "'");
    EXPECT_TRUE(test::throws_error(call, Error::Kind::InvalidArgument, others));
    for (std::size_t i = 0; i < std::size(outputs); ++i)
      EXPECT_TRUE(test::bitwise_equal(outputs[i]->to_vector(), before[i]))
          << "output " << i << " was written by a call that was refused";
  }

  Engine forward(const RnnParams& params, const Tensor& x, std::span<const int> lengths,
                 const Tensor& w, const Tensor* h0, const Tensor* c0, Tensor& y, Tensor* hy,
                 Tensor* cy, RnnTrainingState* saved = nullptr) {
    return rnn_forward(ctx_, params, x, lengths, w, h0, c0, y, hy, cy, saved, Engine::Reference);
  }
  Engine forward_default(RnnTrainingState* saved = nullptr) {
    return forward(params_, x_, lengths_, w_, &h0_, &c0_, y_, &hy_, &cy_, saved);
  }
  // A filled training state (its forward writes scratch outputs, not the watched ones).
  RnnTrainingState trained() {
    RnnTrainingState state;
    Tensor y(d_.y()), hy(d_.h()), cy(d_.c());
    forward(params_, x_, lengths_, w_, &h0_, &c0_, y, &hy, &cy, &state);
    return state;
  }

  Context ctx_;
  const RnnParams params_;
  const Dims d_;
  const std::vector<int> lengths_ = {5, 2, 4};
  Tensor x_, w_, h0_, c0_, dy_;
  Tensor y_, hy_, cy_, dx_, dh0_, dc0_, dw_;
};

TEST_F(RnnValidation, TheValidCallRuns) {
  EXPECT_EQ(forward_default(), Engine::Reference);
  EXPECT_TRUE(zero_past_lengths({"valid", params_, 5, 3, lengths_}, y_.to_vector(), 4));
}

TEST_F(RnnValidation, Sizes) {
  const std::pair<const char*, int> out_of_range[] = {{"params.input_size", 0},
                                                      {"params.hidden_size", 0},
                                                      {"params.hidden_size", (1 << 20) + 1},
                                                      {"params.num_layers", 0},
                                                      {"params.num_layers", 65}};
  for (const auto& [field, value] : out_of_range) {
    RnnParams p = params_;
    if (std::string(field) == "params.input_size") p.input_size = value;
    if (std::string(field) == "params.hidden_size") p.hidden_size = value;
    if (std::string(field) == "params.num_layers") p.num_layers = value;
    expect_rejected([&] { forward(p, x_, lengths_, w_, &h0_, &c0_, y_, &hy_, &cy_); }, field);
    expect_rejected([&] { rnn_weight_layout(p); }, field);
  }
  RnnParams projected = params_;
  projected.proj_size = params_.hidden_size;  // must be below hidden_size
  expect_rejected([&] { forward(projected, x_, lengths_, w_, &h0_, &c0_, y_, &hy_, &cy_); },
                  "params.proj_size");
  RnnParams gru = params_of(RnnCell::Gru, 4, 3, 1, false, true, 1);  // only LSTM projects
  expect_rejected([&] { rnn_weight_count(gru); }, "params.proj_size", {"lstm"});
  RnnParams bad_cell = params_;
  bad_cell.cell = static_cast<RnnCell>(7);
  expect_rejected([&] { rnn_query(ctx_, bad_cell, 5, 3); }, "params.cell");
  // x's last extent must be input_size; T and N come from x.
  RnnParams wider = params_;
  wider.input_size = 5;
  expect_rejected([&] { forward(wider, x_, lengths_, w_, &h0_, &c0_, y_, &hy_, &cy_); }, "x",
                  {"input_size"});
  expect_rejected([&] { RnnPlan(ctx_, params_, 0, 3); }, "T");
  expect_rejected([&] { RnnPlan(ctx_, params_, 5, 0); }, "N");
  // A plan's tensors must have its T and N.
  const RnnPlan plan(ctx_, params_, 6, 3, {}, RnnPlanOptions{Engine::Reference});
  expect_rejected([&] { plan.forward(ctx_, x_, w_, &h0_, &c0_, y_, &hy_, &cy_); }, "x");
}

TEST_F(RnnValidation, Lengths) {
  const std::vector<int> zero = {5, 0, 4}, too_long = {5, 2, 6}, too_few = {5, 2},
                         too_many = {5, 2, 4, 1};
  expect_rejected([&] { forward(params_, x_, zero, w_, &h0_, &c0_, y_, &hy_, &cy_); }, "lengths[1]",
                  {"[1, 5]"});
  expect_rejected([&] { forward(params_, x_, too_long, w_, &h0_, &c0_, y_, &hy_, &cy_); },
                  "lengths[2]", {"[1, 5]"});
  expect_rejected([&] { forward(params_, x_, too_few, w_, &h0_, &c0_, y_, &hy_, &cy_); }, "lengths",
                  {"N = 3"});
  expect_rejected([&] { forward(params_, x_, too_many, w_, &h0_, &c0_, y_, &hy_, &cy_); },
                  "lengths", {"N = 3"});
  expect_rejected([&] { RnnPlan(ctx_, params_, 5, 3, too_long); }, "lengths[2]");
  expect_rejected([&] { rnn_query(ctx_, params_, 5, 3, zero); }, "lengths[1]");
}

TEST_F(RnnValidation, WeightSize) {
  const Tensor short_w = test::random_tensor({d_.weights - 1}, 9);
  const Tensor matrix_w = test::random_tensor({1, d_.weights}, 9);
  expect_rejected([&] { forward(params_, x_, lengths_, short_w, &h0_, &c0_, y_, &hy_, &cy_); },
                  "weights", {"rnn_weight_count"});
  expect_rejected([&] { forward(params_, x_, lengths_, matrix_w, &h0_, &c0_, y_, &hy_, &cy_); },
                  "weights");
  expect_rejected([&] { rnn_weight(short_w, params_, "weight_ih_l0"); }, "weights");
  expect_rejected([&] { rnn_weight(w_, params_, "weight_ih_l2"); }, "name", {"weight_ih_l0"});
}

TEST_F(RnnValidation, InitialAndFinalStateShapes) {
  const Tensor h_wrong = test::random_tensor({d_.LD, d_.N + 1, d_.H_out}, 9);
  const Tensor c_wrong = test::random_tensor({d_.LD - 1, d_.N, d_.H}, 9);
  expect_rejected([&] { forward(params_, x_, lengths_, w_, &h_wrong, &c0_, y_, &hy_, &cy_); },
                  "h0");
  expect_rejected([&] { forward(params_, x_, lengths_, w_, &h0_, &c_wrong, y_, &hy_, &cy_); },
                  "c0");
  Tensor hy_wrong = test::poisoned({d_.LD, d_.N, d_.H_out + 1});
  Tensor cy_wrong = test::poisoned({d_.LD, d_.N, d_.H + 1});
  Tensor y_wrong = test::poisoned({d_.T, d_.N, d_.H_out});
  expect_rejected([&] { forward(params_, x_, lengths_, w_, &h0_, &c0_, y_, &hy_wrong, &cy_); },
                  "hy");
  expect_rejected([&] { forward(params_, x_, lengths_, w_, &h0_, &c0_, y_, &hy_, &cy_wrong); },
                  "cy");
  expect_rejected([&] { forward(params_, x_, lengths_, w_, &h0_, &c0_, y_wrong, &hy_, &cy_); },
                  "y");
  // Only an LSTM has a cell state.
  const RnnParams gru = params_of(RnnCell::Gru, 4, 2, 2, true);
  const Tensor gru_w = test::random_tensor({rnn_weight_count(gru)}, 9);
  expect_rejected([&] { forward(gru, x_, lengths_, gru_w, &h0_, &c0_, y_, &hy_, nullptr); }, "c0",
                  {"lstm"});
  expect_rejected([&] { forward(gru, x_, lengths_, gru_w, &h0_, nullptr, y_, &hy_, &cy_); }, "cy",
                  {"lstm"});
}

TEST_F(RnnValidation, DType) {
  const Tensor x_i32(d_.x(), Device::cpu(), DType::I32);
  const Tensor w_i32({d_.weights}, Device::cpu(), DType::I32);
  const Tensor h_i32(d_.h(), Device::cpu(), DType::I32);
  expect_rejected([&] { forward(params_, x_i32, lengths_, w_, &h0_, &c0_, y_, &hy_, &cy_); },
                  "x.dtype", {"i32", "f32"});
  expect_rejected([&] { forward(params_, x_, lengths_, w_i32, &h0_, &c0_, y_, &hy_, &cy_); },
                  "weights.dtype");
  expect_rejected([&] { forward(params_, x_, lengths_, w_, &h_i32, &c0_, y_, &hy_, &cy_); },
                  "h0.dtype");
}

TEST_F(RnnValidation, Device) {
  if (!cuda_available())
    GTEST_SKIP() << "a tensor on another device needs a GPU, and this machine has none: "
                 << cuda_unavailable_reason();
  const Tensor x_gpu = x_.to(Device::cuda(0)), h_gpu = h0_.to(Device::cuda(0));
  expect_rejected([&] { forward(params_, x_gpu, lengths_, w_, &h0_, &c0_, y_, &hy_, &cy_); },
                  "x.device", {"cuda:0"});
  expect_rejected([&] { forward(params_, x_, lengths_, w_, &h_gpu, &c0_, y_, &hy_, &cy_); },
                  "h0.device", {"cuda:0"});
}

TEST_F(RnnValidation, OutputsMayNotAliasInputsOrEachOther) {
  // y is x itself (both [5, 3, 4]).
  expect_rejected([&] { forward(params_, x_, lengths_, w_, &h0_, &c0_, x_, &hy_, &cy_); }, "y",
                  {"'x'"});
  Tensor h_alias = h0_, c_alias = c0_;
  expect_rejected([&] { forward(params_, x_, lengths_, w_, &h0_, &c0_, y_, &h_alias, &cy_); }, "hy",
                  {"'h0'"});
  expect_rejected([&] { forward(params_, x_, lengths_, w_, &h0_, &c0_, y_, &hy_, &c_alias); }, "cy",
                  {"'c0'"});
  // hy and cy share storage (both [4, 3, 2]).
  Tensor shared = hy_;
  expect_rejected([&] { forward(params_, x_, lengths_, w_, &h0_, &c0_, y_, &hy_, &shared); }, "cy",
                  {"'hy'"});
  // Backward: dx over dy (same shape), over the saved x; dw over the saved weights.
  RnnTrainingState state = trained();
  Tensor dy_alias = dy_;
  expect_rejected(
      [&] { rnn_backward_data(ctx_, state, dy_, nullptr, nullptr, dy_alias, &dh0_, &dc0_); }, "dx",
      {"'dy'"});
  Tensor x_alias = x_;
  expect_rejected(
      [&] { rnn_backward_data(ctx_, state, dy_, nullptr, nullptr, x_alias, &dh0_, &dc0_); }, "dx",
      {"saved x"});
  const Tensor dhy = test::random_tensor(d_.h(), 8);
  Tensor dhy_alias = dhy;
  expect_rejected(
      [&] { rnn_backward_data(ctx_, state, dy_, &dhy, nullptr, dx_, &dhy_alias, &dc0_); }, "dh0",
      {"'dhy'"});
  rnn_backward_data(ctx_, state, dy_, nullptr, nullptr, dx_, nullptr, nullptr);
  dx_.fill(kNaN);
  Tensor w_alias = w_;
  expect_rejected([&] { rnn_backward_weights(ctx_, state, w_alias); }, "dw", {"saved weights"});
}

TEST_F(RnnValidation, BackwardShapes) {
  RnnTrainingState state = trained();
  const Tensor dy_wrong = test::random_tensor({d_.T, d_.N, d_.H_out}, 8);
  const Tensor dhy_wrong = test::random_tensor({d_.LD, d_.N, d_.H_out + 1}, 8);
  Tensor dx_wrong = test::poisoned({d_.T, d_.N, d_.I + 1});
  Tensor dw_wrong = test::poisoned({d_.weights + 1});
  expect_rejected(
      [&] { rnn_backward_data(ctx_, state, dy_wrong, nullptr, nullptr, dx_, &dh0_, &dc0_); }, "dy");
  expect_rejected(
      [&] { rnn_backward_data(ctx_, state, dy_, &dhy_wrong, nullptr, dx_, &dh0_, &dc0_); }, "dhy");
  expect_rejected(
      [&] { rnn_backward_data(ctx_, state, dy_, nullptr, nullptr, dx_wrong, &dh0_, &dc0_); }, "dx");
  rnn_backward_data(ctx_, state, dy_, nullptr, nullptr, dx_, nullptr, nullptr);
  dx_.fill(kNaN);
  expect_rejected([&] { rnn_backward_weights(ctx_, state, dw_wrong); }, "dw");
}

TEST_F(RnnValidation, ASavedStateFromAnotherProblem) {
  RnnTrainingState state = trained();
  // The same network over one more step: another plan.
  const RnnPlan other(ctx_, params_, 6, 3, {}, RnnPlanOptions{Engine::Reference});
  const Tensor dy6 = test::random_tensor({6, d_.N, d_.D * d_.H_out}, 8);
  Tensor dx6 = test::poisoned({6, d_.N, d_.I});
  const Floats dx6_before = dx6.to_vector();
  expect_rejected(
      [&] { other.backward_data(ctx_, state, dy6, nullptr, nullptr, dx6, &dh0_, &dc0_); }, "saved",
      {"another problem"});
  EXPECT_TRUE(test::bitwise_equal(dx6.to_vector(), dx6_before));
  // The refusal left the state as it was: its own backward still runs.
  Tensor dx(d_.x());
  EXPECT_EQ(rnn_backward_data(ctx_, state, dy_, nullptr, nullptr, dx, nullptr, nullptr),
            Engine::Reference);
}

TEST_F(RnnValidation, BackwardWeightsBeforeBackwardData) {
  RnnTrainingState state = trained();
  expect_rejected([&] { rnn_backward_weights(ctx_, state, dw_); }, "saved", {"backward_data"});
  // A new forward resets the order.
  Tensor dx(d_.x());
  rnn_backward_data(ctx_, state, dy_, nullptr, nullptr, dx, nullptr, nullptr);
  Tensor y(d_.y());
  forward(params_, x_, lengths_, w_, &h0_, &c0_, y, nullptr, nullptr, &state);
  expect_rejected([&] { rnn_backward_weights(ctx_, state, dw_); }, "saved", {"backward_data"});
}

TEST_F(RnnValidation, AnEmptySavedState) {
  RnnTrainingState empty;
  EXPECT_TRUE(empty.empty());
  expect_rejected([&] { rnn_backward_data(ctx_, empty, dy_, nullptr, nullptr, dx_, &dh0_, &dc0_); },
                  "saved", {"empty"});
  expect_rejected([&] { rnn_backward_weights(ctx_, empty, dw_); }, "saved", {"empty"});
  const RnnPlan plan(ctx_, params_, 5, 3, lengths_, RnnPlanOptions{Engine::Reference});
  expect_rejected([&] { plan.backward_weights(ctx_, empty, dw_); }, "saved");
  // Inference mode keeps nothing.
  forward_default(nullptr);
  EXPECT_TRUE(empty.empty());
}

TEST_F(RnnValidation, CellOps) {
  const RnnCell cell = RnnCell::Gru;
  const std::int64_t N = 2, I = 3, H = 4, GH = 3 * H;
  const Tensor x = test::random_tensor({N, I}, 1), h = test::random_tensor({N, H}, 2);
  const Tensor w_ih = test::random_tensor({GH, I}, 3), w_hh = test::random_tensor({GH, H}, 4);
  const Tensor b = test::random_tensor({GH}, 5), c = test::random_tensor({N, H}, 6);
  const Tensor w_ih_wrong = test::random_tensor({GH, I + 1}, 3);
  Tensor h_out = test::poisoned({N, H}), saved = test::poisoned({N, 4 * H});
  const Floats h_out_before = h_out.to_vector();
  auto cell_forward = [&](const RnnCellWeights& w, const Tensor* cs, Tensor& out, Tensor* s) {
    rnn_cell_forward(ctx_, cell, x, h, cs, w, out, nullptr, s, Engine::Reference);
  };
  const RnnCellWeights good{&w_ih, &w_hh, &b, &b};
  expect_rejected(
      [&] {
        cell_forward({&w_ih_wrong, &w_hh, &b, &b}, nullptr, h_out, &saved);
      },
      "weights.w_ih");
  expect_rejected(
      [&] {
        cell_forward({&w_ih, &w_hh, &b, nullptr}, nullptr, h_out, &saved);
      },
      "weights.b_hh", {"both or neither"});
  expect_rejected([&] { cell_forward(good, &c, h_out, &saved); }, "c", {"lstm"});
  Tensor saved_wrong = test::poisoned({N, 3 * H});
  expect_rejected([&] { cell_forward(good, nullptr, h_out, &saved_wrong); }, "saved");
  Tensor h_alias = h;
  expect_rejected([&] { cell_forward(good, nullptr, h_alias, &saved); }, "h_out", {"'h'"});
  EXPECT_TRUE(test::bitwise_equal(h_out.to_vector(), h_out_before));
  // An LSTM needs its cell state; a GRU's backward needs the saved gates.
  const Tensor w4 = test::random_tensor({4 * H, I}, 7), r4 = test::random_tensor({4 * H, H}, 8);
  expect_rejected(
      [&] {
        rnn_cell_forward(ctx_, RnnCell::Lstm, x, h, nullptr, {&w4, &r4, nullptr, nullptr}, h_out,
                         &saved, nullptr, Engine::Reference);
      },
      "c");
  cell_forward(good, nullptr, h_out, &saved);
  Tensor dh = test::poisoned({N, H});
  RnnCellGradients grads;
  grads.dh = &dh;
  const Floats dh_before = dh.to_vector();
  expect_rejected(
      [&] {
        rnn_cell_backward(ctx_, cell, x, h, nullptr, good, h_out, nullptr, nullptr, h_out, nullptr,
                          grads, Engine::Reference);
      },
      "saved", {"gates"});
  RnnCellGradients no_dh;
  expect_rejected(
      [&] {
        rnn_cell_backward(ctx_, cell, x, h, nullptr, good, h_out, nullptr, &saved, h_out, nullptr,
                          no_dh, Engine::Reference);
      },
      "gradients.dh");
  EXPECT_TRUE(test::bitwise_equal(dh.to_vector(), dh_before));
}

}  // namespace
}  // namespace dlrt
