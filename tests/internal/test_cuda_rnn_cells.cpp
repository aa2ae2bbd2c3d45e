// The Cuda recurrent engine proven on the CPU. Its kernels are grid-stride
// loops over the bodies of kernels/cuda/rnn_cells.hpp and its plan is
// kernels/cuda/rnn_graph.hpp; here the same bodies run index by index, the
// GEMMs run as cuBLAS would take them (through to_column_major, on a
// column-major loop), and the same graphs are played, so that everything but
// the CUDA calls themselves is checked against the Reference engine:
//   - every cell's forward and backward math against the Reference cell ops;
//   - the packing and its index arithmetic against the Cpu engine's rule;
//   - whole sequence problems (forward, backward data, backward weights) on
//     NaN-poisoned arenas and outputs, sequential and through the stream
//     schedule with the lanes interleaved at random (a missing event would
//     let a node read what its predecessor has not written);
//   - variant 2, the persistent kernel (rnn_persistent.hpp): its partition
//     and fit rule, its forward graph, and whole problems with its blocks
//     replayed one after another (in order and shuffled) between the grid
//     barriers, against the Reference and bit for bit against variant 1.
// GCC 12 emits RnnPacking's constructor out of line in this file and then
// warns of a null dereference inside std::vector::resize, a false positive
// (resize allocates before it constructs); the pragma precedes the headers
// because the warning is placed in the standard library's.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wnull-dereference"
#endif
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <limits>
#include <memory>
#include <numeric>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kernels/cuda/rnn_cells.hpp"
#include "kernels/cuda/rnn_graph.hpp"
#include "kernels/cuda/rnn_persistent.hpp"
#include "kernels/reference/rnn.hpp"
#include "runtime/stream_schedule.hpp"
#include "support/test_support.hpp"

namespace dlrt::detail::cuda_rnn {
namespace {

using Floats = std::vector<float>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr RnnCell kCells[] = {RnnCell::Tanh, RnnCell::Relu, RnnCell::Lstm, RnnCell::Gru};

Floats random(std::int64_t count, std::uint64_t seed, float scale = 1.0f) {
  return test::random_values(count, seed, -scale, scale);
}

// ---- the cell math -----------------------------------------------------------------

// One cell step through the host/device functions: pre-activations summed
// in double, as a GEMM would, then the cell's forward and backward, then
// the gradient products.
struct CellResult {
  std::vector<double> h_out, c_out, saved, dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh;
};

CellResult cell_by_functions(RnnCell cell, i64 N, i64 I, i64 H, const Floats& x, const Floats& h,
                             const Floats& c, const Floats& w_ih, const Floats& w_hh,
                             const Floats& b_ih, const Floats& b_hh, const Floats& dh_out,
                             const Floats& dc_out) {
  const i64 G = rnn_gate_count(cell), GH = G * H;
  CellResult o;
  auto zeros = [](i64 n) { return std::vector<double>(static_cast<std::size_t>(n), 0.0); };
  o.h_out = zeros(N * H), o.c_out = zeros(N * H), o.saved = zeros(N * 4 * H);
  o.dx = zeros(N * I), o.dh = zeros(N * H), o.dc = zeros(N * H);
  o.dw_ih = zeros(GH * I), o.dw_hh = zeros(GH * H), o.db_ih = zeros(GH), o.db_hh = zeros(GH);
  for (i64 n = 0; n < N; ++n) {
    std::vector<double> ai(GH), ah(GH);
    for (i64 r = 0; r < GH; ++r) {
      ai[r] = b_ih[r], ah[r] = b_hh[r];
      for (i64 k = 0; k < I; ++k) ai[r] += double(w_ih[r * I + k]) * x[n * I + k];
      for (i64 k = 0; k < H; ++k) ah[r] += double(w_hh[r * H + k]) * h[n * H + k];
    }
    std::vector<double> gi(GH), gh(GH), direct(H, 0.0);
    for (i64 j = 0; j < H; ++j) {
      const i64 at = n * H + j;
      auto pre = [&](int q) { return static_cast<float>(ai[q * H + j] + ah[q * H + j]); };
      if (cell == RnnCell::Lstm) {
        const LstmForward f = lstm_forward(pre(0), pre(1), pre(2), pre(3), c[at]);
        o.h_out[at] = f.h, o.c_out[at] = f.c;
        const float kept[] = {f.i, f.f, f.g, f.o};
        for (int q = 0; q < 4; ++q) o.saved[n * 4 * H + q * H + j] = kept[q];
        const LstmBackward b =
            lstm_backward(f.i, f.f, f.g, f.o, c[at], f.c, dh_out[at], dc_out[at]);
        const float grads[] = {b.di, b.df, b.dg, b.d_o};
        for (int q = 0; q < 4; ++q) gi[q * H + j] = gh[q * H + j] = grads[q];
        o.dc[at] = b.dc_prev;
      } else if (cell == RnnCell::Gru) {
        const float hn = static_cast<float>(ah[2 * H + j]);
        const GruForward f =
            gru_forward(pre(0), pre(1), static_cast<float>(ai[2 * H + j]), hn, h[at]);
        o.h_out[at] = f.h;
        const float kept[] = {f.r, f.z, f.n, hn};
        for (int q = 0; q < 4; ++q) o.saved[n * 4 * H + q * H + j] = kept[q];
        const GruBackward b = gru_backward(f.r, f.z, f.n, hn, h[at], dh_out[at]);
        gi[j] = gh[j] = b.dr;
        gi[H + j] = gh[H + j] = b.dz;
        gi[2 * H + j] = b.dn;
        gh[2 * H + j] = b.dhn;
        direct[j] = b.dh_prev_direct;
      } else {
        const bool relu = cell == RnnCell::Relu;
        const float out = vanilla_forward(relu, pre(0));
        o.h_out[at] = out;
        gi[j] = gh[j] = vanilla_backward(relu, out, dh_out[at]);
      }
    }
    for (i64 k = 0; k < I; ++k)
      for (i64 r = 0; r < GH; ++r) o.dx[n * I + k] += double(w_ih[r * I + k]) * gi[r];
    for (i64 k = 0; k < H; ++k) {
      o.dh[n * H + k] = direct[k];
      for (i64 r = 0; r < GH; ++r) o.dh[n * H + k] += double(w_hh[r * H + k]) * gh[r];
    }
    for (i64 r = 0; r < GH; ++r) {
      for (i64 k = 0; k < I; ++k) o.dw_ih[r * I + k] += gi[r] * x[n * I + k];
      for (i64 k = 0; k < H; ++k) o.dw_hh[r * H + k] += gh[r] * h[n * H + k];
      o.db_ih[r] += gi[r], o.db_hh[r] += gh[r];
    }
  }
  return o;
}

void expect_near_all(const std::vector<double>& got, const std::vector<double>& want,
                     const char* what, double tol = 2e-5) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::abs(want[i]))) << what << "[" << i << "]";
}

class CudaRnnCellMath : public ::testing::TestWithParam<RnnCell> {};

TEST_P(CudaRnnCellMath, ForwardAndBackwardMatchTheReferenceCellOps) {
  const RnnCell cell = GetParam();
  const i64 N = 3, I = 4, H = 5, GH = rnn_gate_count(cell) * H;
  const Floats x = random(N * I, 1), h = random(N * H, 2), c = random(N * H, 3);
  const Floats w_ih = random(GH * I, 4, 0.6f), w_hh = random(GH * H, 5, 0.6f);
  const Floats b_ih = random(GH, 6), b_hh = random(GH, 7);
  const Floats dh_out = random(N * H, 8), dc_out = random(N * H, 9);
  const bool lstm = cell == RnnCell::Lstm, gated = lstm || cell == RnnCell::Gru;
  const CellResult mine =
      cell_by_functions(cell, N, I, H, x, h, c, w_ih, w_hh, b_ih, b_hh, dh_out, dc_out);

  auto as_double = [](const Floats& v) { return std::vector<double>(v.begin(), v.end()); };
  const std::vector<double> xd = as_double(x), hd = as_double(h), cd = as_double(c),
                            w_ihd = as_double(w_ih), w_hhd = as_double(w_hh),
                            b_ihd = as_double(b_ih), b_hhd = as_double(b_hh),
                            dh_outd = as_double(dh_out), dc_outd = as_double(dc_out);
  RnnCellProblem p;
  p.cell = cell, p.N = N, p.I = I, p.H = H, p.bias = true, p.with_saved = gated;
  std::vector<double> h_out(N * H), c_out(N * H), saved(N * 4 * H);
  reference::RnnCellOperands<double> f;
  f.x = xd.data(), f.h = hd.data(), f.c = lstm ? cd.data() : nullptr;
  f.w_ih = w_ihd.data(), f.w_hh = w_hhd.data(), f.b_ih = b_ihd.data(), f.b_hh = b_hhd.data();
  f.h_out = h_out.data(), f.c_out = lstm ? c_out.data() : nullptr;
  f.saved = gated ? saved.data() : nullptr;
  reference::rnn_cell_forward(p, f);
  expect_near_all(mine.h_out, h_out, "h_out");
  if (lstm) expect_near_all(mine.c_out, c_out, "c_out");
  if (gated) expect_near_all(mine.saved, saved, "saved");

  p.backward = true;
  p.with_dx = true, p.with_dc = lstm;
  p.with_dw_ih = p.with_dw_hh = p.with_db_ih = p.with_db_hh = true;
  std::vector<double> dx(N * I), dh(N * H), dc(N * H), dw_ih(GH * I, 0.0), dw_hh(GH * H, 0.0),
      db_ih(GH, 0.0), db_hh(GH, 0.0);
  reference::RnnCellOperands<double> b = f;
  b.h_out = nullptr, b.c_out = nullptr, b.saved = nullptr;
  b.h_out_in = h_out.data(), b.c_out_in = lstm ? c_out.data() : nullptr;
  b.saved_in = gated ? saved.data() : nullptr;
  b.dh_out = dh_outd.data(), b.dc_out = lstm ? dc_outd.data() : nullptr;
  b.dx = dx.data(), b.dh = dh.data(), b.dc = lstm ? dc.data() : nullptr;
  b.dw_ih = dw_ih.data(), b.dw_hh = dw_hh.data(), b.db_ih = db_ih.data(), b.db_hh = db_hh.data();
  reference::rnn_cell_backward(p, b);
  expect_near_all(mine.dx, dx, "dx");
  expect_near_all(mine.dh, dh, "dh");
  if (lstm) expect_near_all(mine.dc, dc, "dc");
  expect_near_all(mine.dw_ih, dw_ih, "dw_ih");
  expect_near_all(mine.dw_hh, dw_hh, "dw_hh");
  expect_near_all(mine.db_ih, db_ih, "db_ih");
  expect_near_all(mine.db_hh, db_hh, "db_hh");
}

INSTANTIATE_TEST_SUITE_P(Cells, CudaRnnCellMath, ::testing::ValuesIn(kCells),
                         [](const auto& param_info) {
                           return std::string(to_string(param_info.param));
                         });

// ---- packing and index arithmetic ----------------------------------------------------

TEST(CudaRnnPacking, FollowsTheCpuEnginesRuleAndIndexesEveryRowOnce) {
  const std::vector<std::vector<int>> sets = {
      {1}, {4, 4, 4}, {2, 7, 1, 5, 1, 5}, {7, 5, 5, 2, 1, 1}, {3, 20, 11, 1, 20, 7, 2, 15}};
  for (const std::vector<int>& lengths : sets) {
    const Packing pk(lengths);
    const i64 N = static_cast<i64>(lengths.size());
    // The Cpu engine's rule: longest first, ties in the caller's order;
    // B_s = sequences longer than s; rows packed step after step.
    std::vector<int> order(N);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return lengths[a] > lengths[b]; });
    EXPECT_EQ(pk.order, order);
    const i64 steps = *std::max_element(lengths.begin(), lengths.end());
    ASSERT_EQ(pk.steps, steps);
    i64 rows = 0;
    for (i64 s = 0; s < steps; ++s) {
      EXPECT_EQ(pk.offset[s], rows);
      const i64 active =
          std::count_if(lengths.begin(), lengths.end(), [&](int l) { return l > s; });
      EXPECT_EQ(pk.active[s], active);
      rows += active;
    }
    EXPECT_EQ(pk.total, rows);
    EXPECT_EQ(pk.active[steps], 0);
    for (i64 n = 0; n < N; ++n) EXPECT_EQ(pk.rank[pk.order[n]], n);
    for (i64 r = 0; r < pk.total; ++r) {
      const i64 s = pk.row_step[r];
      EXPECT_TRUE(pk.offset[s] <= r && r < pk.offset[s + 1]) << "row " << r;
    }
    // Every (direction, time, sequence) has one packed row, in the step
    // that packed_time maps back to that time.
    for (int d = 0; d < 2; ++d) {
      std::set<i64> seen;
      for (i64 n = 0; n < N; ++n)
        for (i64 t = 0; t < pk.length[n]; ++t) {
          const i64 r = packed_row(d, t, n, pk.length[n], pk.offset.data());
          ASSERT_TRUE(seen.insert(r).second) << "row " << r << " twice";
          const i64 s = pk.row_step[r];
          EXPECT_EQ(r - pk.offset[s], n);
          EXPECT_EQ(packed_time(d, s, pk.length[n]), t);
        }
      EXPECT_EQ(static_cast<i64>(seen.size()), pk.total);
    }
  }
  EXPECT_EQ(gate_at(2, 12, 3, 3, 1), 2 * 12 + 9 + 1);
  EXPECT_EQ(state_at(3, 4, 2, 5, 1), (3 * 4 + 2) * 5 + 1);
  EXPECT_EQ(padded_row(3, 4, 2), 14);
}

TEST(CudaRnnPacking, RowMajorGemmsMapOntoCublassColumnMajorArguments) {
  RowMajorGemm g;
  g.trans_a = false, g.trans_b = true, g.M = 3, g.N = 4, g.K = 5, g.lda = 7, g.ldb = 6, g.ldc = 9;
  const ColumnMajorGemm c = to_column_major(g);
  EXPECT_TRUE(c.trans_a);
  EXPECT_FALSE(c.trans_b);
  EXPECT_EQ(c.m, 4);
  EXPECT_EQ(c.n, 3);
  EXPECT_EQ(c.k, 5);
  EXPECT_EQ(c.lda, 6);
  EXPECT_EQ(c.ldb, 7);
  EXPECT_EQ(c.ldc, 9);
}

// ---- whole problems on the host -------------------------------------------------------

// cuBLAS's sgemm as a loop: C = alpha op(A) op(B) + beta C, column-major;
// C is not read when beta is 0 (it may hold NaN, as cuBLAS allows).
void column_major_sgemm(const ColumnMajorGemm& g) {
  // cuBLAS's argument rules (it refuses the call otherwise).
  EXPECT_TRUE(g.m >= 0 && g.n >= 0 && g.k >= 0);
  EXPECT_GE(g.lda, std::max<i64>(1, g.trans_a ? g.k : g.m));
  EXPECT_GE(g.ldb, std::max<i64>(1, g.trans_b ? g.n : g.k));
  EXPECT_GE(g.ldc, std::max<i64>(1, g.m));
  auto a = [&](i64 i, i64 p) { return g.trans_a ? g.a[p + i * g.lda] : g.a[i + p * g.lda]; };
  auto b = [&](i64 p, i64 j) { return g.trans_b ? g.b[j + p * g.ldb] : g.b[p + j * g.ldb]; };
  for (i64 j = 0; j < g.n; ++j)
    for (i64 i = 0; i < g.m; ++i) {
      float sum = 0.0f;
      for (i64 p = 0; p < g.k; ++p) sum += a(i, p) * b(p, j);
      float& out = g.c[i + j * g.ldc];
      out = g.beta == 0.0f ? g.alpha * sum : g.alpha * sum + g.beta * out;
    }
}

// The device ops replayed: every kernel's body at every index.
class HostOps final : public RnnDeviceOps {
public:
  void gemm(int, const RowMajorGemm& g) override { column_major_sgemm(to_column_major(g)); }
  void gather(int, const GatherArgs& a, i64 count) override {
    for (i64 i = 0; i < count; ++i) gather_element(a, i);
  }
  void init_state(int, const InitStateArgs& a, i64 count) override {
    for (i64 i = 0; i < count; ++i) init_state_element(a, i);
  }
  void forward_step(int, const ForwardStepArgs& a, i64 count) override {
    for (i64 i = 0; i < count; ++i) forward_step_element(a, i);
  }
  void forward_proj(int, const ForwardStepArgs& a, i64 count) override {
    for (i64 i = 0; i < count; ++i) forward_proj_element(a, i);
  }
  void zero_padding(int, const ZeroPaddingArgs& a, i64 count) override {
    for (i64 i = 0; i < count; ++i) zero_padding_element(a, i);
  }
  void backward_step(int, const BackwardStepArgs& a, i64 count) override {
    for (i64 i = 0; i < count; ++i) backward_step_element(a, i);
  }
  void backward_proj(int, const BackwardStepArgs& a, i64 count) override {
    for (i64 i = 0; i < count; ++i) backward_proj_element(a, i);
  }
  void state_out(int, const StateOutArgs& a, i64 count) override {
    for (i64 i = 0; i < count; ++i) state_out_element(a, i);
  }
  void scatter_dx(int, const ScatterDxArgs& a, i64 count) override {
    for (i64 i = 0; i < count; ++i) scatter_dx_element(a, i);
  }
  void bias_sums(int, const BiasSumsArgs& a, i64 count) override {
    for (i64 i = 0; i < count; ++i) bias_sums_element(a, i);
  }
  // Variant 2's cooperative launch: every block's weight slice loaded
  // (NaN past what it loads), then each step's blocks one after another,
  // in order or shuffled, their threads one after another, then the next
  // step (the grid barrier).
  void persistent_layer(int, const PersistentLayerArgs& a) override {
    ++persistent_launches;
    const i64 G = a.GH / a.H, blocks = a.D * a.blocks;
    std::vector<Floats> slices(
        static_cast<std::size_t>(blocks),
        Floats(static_cast<std::size_t>(persistent_slice_floats(G, a.H, a.units)), kNaN));
    for (i64 i = 0; i < blocks; ++i)
      for (i64 thread = 0; thread < threads; ++thread)
        persistent_load_weights(a, static_cast<int>(i / a.blocks), i % a.blocks, slices[i].data(),
                                thread, threads);
    std::vector<i64> order(static_cast<std::size_t>(blocks));
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(shuffle_seed);
    // The partial sums' scratch, NaN until a split step writes it.
    Floats scratch(static_cast<std::size_t>(persistent_scratch_floats(G, threads)), kNaN);
    for (i64 s = 0; s < a.steps; ++s) {
      if (shuffle_seed != 0) std::shuffle(order.begin(), order.end(), rng);
      for (i64 i : order) {
        const int d = static_cast<int>(i / a.blocks);
        std::fill(scratch.begin(), scratch.end(), kNaN);
        for (i64 thread = 0; thread < threads; ++thread)
          persistent_block_partials(a, d, s, i % a.blocks, slices[i].data(), scratch.data(), thread,
                                    threads);
        // __syncthreads
        for (i64 thread = 0; thread < threads; ++thread)
          persistent_block_finish(a, d, s, i % a.blocks, slices[i].data(), scratch.data(), thread,
                                  threads);
      }
    }
  }

  i64 threads = kPersistentThreads;
  std::uint64_t shuffle_seed = 0;  // 0: blocks in order
  int persistent_launches = 0;
};

// Issues a stream schedule onto per-lane queues, then runs the queues as
// asynchronous streams would: at each turn a random lane whose head is
// ready (a wait whose event is recorded) advances by one entry.
class InterleavedLanes final : public StreamBackend {
public:
  InterleavedLanes(const TaskGraph& graph, const Play& play, int lanes, int events)
      : graph_(graph), play_(play), queues_(lanes), recorded_(events, false) {}
  void wait(int lane, std::int32_t event) override { queues_[lane].push_back({Kind::Wait, event}); }
  void launch(int lane, std::int32_t node) override { queues_[lane].push_back({Kind::Run, node}); }
  void record(int lane, std::int32_t event) override {
    queues_[lane].push_back({Kind::Record, event});
  }

  // False on a deadlock (a wait whose event no lane will record).
  bool run(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (;;) {
      std::vector<int> ready;
      bool left = false;
      for (int l = 0; l < static_cast<int>(queues_.size()); ++l) {
        if (queues_[l].empty()) continue;
        left = true;
        const Entry& e = queues_[l].front();
        if (e.kind != Kind::Wait || recorded_[e.value]) ready.push_back(l);
      }
      if (!left) return true;
      if (ready.empty()) return false;
      const int lane = ready[rng() % ready.size()];
      const Entry e = queues_[lane].front();
      queues_[lane].pop_front();
      if (e.kind == Kind::Record) recorded_[e.value] = true;
      if (e.kind == Kind::Run) {
        play_.lane = lane;
        graph_.run_node(e.value, &play_);
      }
    }
  }

private:
  enum class Kind { Wait, Run, Record };
  struct Entry {
    Kind kind;
    std::int32_t value;
  };
  const TaskGraph& graph_;
  const Play& play_;
  std::vector<std::deque<Entry>> queues_;
  std::vector<bool> recorded_;
};

// rnn_cell_forward / rnn_cell_backward of the Cuda engine (cell_forward and
// cell_backward of rnn_graph.hpp) replayed on the host, against the
// Reference cell ops, with and without biases and saved gates.
struct CellCase {
  RnnCell cell;
  bool bias;
};
void PrintTo(const CellCase& c, std::ostream* os) {
  *os << to_string(c.cell) << (c.bias ? "" : " without bias");
}

class CudaRnnCellOps : public ::testing::TestWithParam<CellCase> {};

TEST_P(CudaRnnCellOps, ReplayedOnTheHostMatchTheReference) {
  const RnnCell cell = GetParam().cell;
  const bool bias = GetParam().bias;
  const i64 N = 4, I = 3, H = 5, GH = rnn_gate_count(cell) * H;
  const bool lstm = cell == RnnCell::Lstm, gated = lstm || cell == RnnCell::Gru;
  const Floats x = random(N * I, 11), h = random(N * H, 12), c = random(N * H, 13);
  const Floats w_ih = random(GH * I, 14, 0.6f), w_hh = random(GH * H, 15, 0.6f);
  const Floats b_ih = random(GH, 16), b_hh = random(GH, 17);
  const Floats dh_out = random(N * H, 18), dc_out = random(N * H, 19);
  const Floats dw_ih0 = random(GH * I, 20), dw_hh0 = random(GH * H, 21), db_ih0 = random(GH, 22),
               db_hh0 = random(GH, 23);
  std::vector<int> tables(static_cast<std::size_t>(2 * N), 1);
  std::iota(tables.begin(), tables.begin() + N, 0);
  Tables t;
  t.order = tables.data(), t.length = tables.data() + N;
  RnnCellProblem p;
  p.cell = cell, p.N = N, p.I = I, p.H = H, p.bias = bias, p.with_saved = gated;
  HostOps ops;

  // Forward: the Cuda engine's and the Reference's.
  Floats ws(static_cast<std::size_t>(cell_workspace_floats(p)), kNaN);
  Floats h_out(N * H, kNaN), c_out(N * H, kNaN), saved(gated ? N * 4 * H : 0, kNaN);
  RnnCellArgs a;
  a.x = x.data(), a.h = h.data(), a.c = lstm ? c.data() : nullptr;
  a.w_ih = w_ih.data(), a.w_hh = w_hh.data();
  a.b_ih = bias ? b_ih.data() : nullptr, a.b_hh = bias ? b_hh.data() : nullptr;
  a.h_out = h_out.data(), a.c_out = lstm ? c_out.data() : nullptr;
  a.saved = gated ? saved.data() : nullptr;
  cell_forward(p, a, ws.data(), t, ops);
  Floats want_h(N * H), want_c(N * H), want_saved(gated ? N * 4 * H : 0);
  reference::RnnCellOperands<float> r;
  r.x = a.x, r.h = a.h, r.c = a.c, r.w_ih = a.w_ih, r.w_hh = a.w_hh, r.b_ih = a.b_ih,
  r.b_hh = a.b_hh;
  r.h_out = want_h.data(), r.c_out = lstm ? want_c.data() : nullptr;
  r.saved = gated ? want_saved.data() : nullptr;
  reference::rnn_cell_forward(p, r);
  EXPECT_TRUE(test::all_close(h_out, want_h, I + H));
  if (lstm) {
    EXPECT_TRUE(test::all_close(c_out, want_c, I + H));
  }
  if (gated) {
    EXPECT_TRUE(test::all_close(saved, want_saved, I + H));
  }

  // Backward from the forward's own outputs; weight gradients added to.
  p.backward = true;
  p.with_dx = true, p.with_dc = lstm;
  p.with_dw_ih = p.with_dw_hh = true;
  p.with_db_ih = p.with_db_hh = bias;
  Floats bws(static_cast<std::size_t>(cell_workspace_floats(p)), kNaN);
  Floats dx(N * I, kNaN), dh(N * H, kNaN), dc(N * H, kNaN);
  Floats dw_ih = dw_ih0, dw_hh = dw_hh0, db_ih = db_ih0, db_hh = db_hh0;
  RnnCellArgs b;
  b.x = a.x, b.h = a.h, b.c = a.c, b.w_ih = a.w_ih, b.w_hh = a.w_hh, b.b_ih = a.b_ih,
  b.b_hh = a.b_hh;
  b.h_out_in = want_h.data(), b.c_out_in = lstm ? want_c.data() : nullptr;
  b.saved_in = gated ? want_saved.data() : nullptr;
  b.dh_out = dh_out.data(), b.dc_out = lstm ? dc_out.data() : nullptr;
  b.dx = dx.data(), b.dh = dh.data(), b.dc = lstm ? dc.data() : nullptr;
  b.dw_ih = dw_ih.data(), b.dw_hh = dw_hh.data();
  b.db_ih = bias ? db_ih.data() : nullptr, b.db_hh = bias ? db_hh.data() : nullptr;
  cell_backward(p, b, bws.data(), t, ops);
  Floats want_dx(N * I), want_dh(N * H), want_dc(N * H);
  Floats want_dw_ih = dw_ih0, want_dw_hh = dw_hh0, want_db_ih = db_ih0, want_db_hh = db_hh0;
  reference::RnnCellOperands<float> rb;
  rb.x = b.x, rb.h = b.h, rb.c = b.c, rb.w_ih = b.w_ih, rb.w_hh = b.w_hh, rb.b_ih = b.b_ih,
  rb.b_hh = b.b_hh;
  rb.h_out_in = b.h_out_in, rb.c_out_in = b.c_out_in, rb.saved_in = b.saved_in;
  rb.dh_out = b.dh_out, rb.dc_out = b.dc_out;
  rb.dx = want_dx.data(), rb.dh = want_dh.data(), rb.dc = lstm ? want_dc.data() : nullptr;
  rb.dw_ih = want_dw_ih.data(), rb.dw_hh = want_dw_hh.data();
  rb.db_ih = bias ? want_db_ih.data() : nullptr, rb.db_hh = bias ? want_db_hh.data() : nullptr;
  reference::rnn_cell_backward(p, rb);
  EXPECT_TRUE(test::all_close(dx, want_dx, GH)) << "dx";
  EXPECT_TRUE(test::all_close(dh, want_dh, GH)) << "dh";
  if (lstm) {
    EXPECT_TRUE(test::all_close(dc, want_dc, GH)) << "dc";
  }
  EXPECT_TRUE(test::all_close(dw_ih, want_dw_ih, N)) << "dw_ih";
  EXPECT_TRUE(test::all_close(dw_hh, want_dw_hh, N)) << "dw_hh";
  EXPECT_TRUE(test::all_close(db_ih, want_db_ih, N)) << "db_ih";
  EXPECT_TRUE(test::all_close(db_hh, want_db_hh, N)) << "db_hh";
}

std::vector<CellCase> cell_cases() {
  std::vector<CellCase> out;
  for (RnnCell cell : kCells)
    for (bool bias : {true, false}) out.push_back({cell, bias});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Cells, CudaRnnCellOps, ::testing::ValuesIn(cell_cases()),
                         [](const auto& param_info) {
                           return std::string(to_string(param_info.param.cell)) +
                                  (param_info.param.bias ? "_bias" : "_nobias");
                         });

struct Case {
  std::string name;
  RnnParams params;
  i64 T, N;
  std::vector<int> lengths;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

RnnParams params_of(RnnCell cell, int input, int hidden, int layers, bool bidirectional, bool bias,
                    int proj = 0) {
  RnnParams p;
  p.cell = cell, p.input_size = input, p.hidden_size = hidden, p.num_layers = layers;
  p.bidirectional = bidirectional, p.bias = bias, p.proj_size = proj;
  return p;
}

std::vector<Case> cases() {
  struct Row {
    const char* name;
    int layers;
    bool bidirectional, bias;
    i64 T;
    std::vector<int> lengths;
    int input, hidden;
  };
  const Row rows[] = {
      {"L1_T1_N1", 1, false, true, 1, {1}, 3, 5},
      {"L2_bi_unsorted", 2, true, true, 7, {2, 7, 1, 5, 1, 5}, 4, 3},
      {"L3_nobias_sorted", 3, false, false, 9, {9, 6, 6, 3}, 2, 6},
      {"L1_bi_none_full", 1, true, true, 8, {7, 5, 5, 2, 1, 1}, 1, 4},
      {"L3_bi_unequal", 3, true, false, 5, {5, 1, 4, 5, 2}, 3, 4},
      {"L2_equal", 2, false, true, 6, {6, 6, 6}, 5, 3},
  };
  std::vector<Case> out;
  for (RnnCell cell : kCells)
    for (const Row& r : rows)
      out.push_back({std::string(to_string(cell)) + "_" + r.name,
                     params_of(cell, r.input, r.hidden, r.layers, r.bidirectional, r.bias), r.T,
                     static_cast<i64>(r.lengths.size()), r.lengths});
  return out;
}

// LSTM with a projection (proj_size < hidden_size, input_size != hidden_size).
std::vector<Case> projected_cases() {
  struct Row {
    const char* name;
    int layers;
    bool bidirectional, bias;
    i64 T;
    std::vector<int> lengths;
    int input, hidden, proj;
  };
  const Row rows[] = {
      {"L1_T1_N1", 1, false, true, 1, {1}, 3, 5, 2},
      {"L1_unsorted", 1, false, true, 7, {7, 5, 5, 2, 1, 1}, 3, 5, 3},
      {"L1_bi_nobias_unsorted", 1, true, false, 8, {2, 7, 1, 5, 1, 5}, 4, 6, 2},
      {"L2_equal", 2, false, true, 6, {6, 6, 6}, 5, 4, 3},
      {"L2_bi_unsorted", 2, true, true, 7, {7, 5, 5, 2, 1, 1}, 2, 5, 3},
      {"L2_bi_nobias_equal", 2, true, false, 4, {4, 4}, 3, 6, 1},
  };
  std::vector<Case> out;
  for (const Row& r : rows)
    out.push_back(
        {std::string("lstm_proj_") + r.name,
         params_of(RnnCell::Lstm, r.input, r.hidden, r.layers, r.bidirectional, r.bias, r.proj),
         r.T, static_cast<i64>(r.lengths.size()), r.lengths});
  return out;
}

struct Results {
  Floats y, hy, cy, dx, dh0, dc0, dw, dw_accumulated;
};

struct Inputs {
  Floats x, w, h0, c0, dy, dhy, dcy, dw_start;
};

Inputs inputs_of(const RnnProblem& p, std::uint64_t seed) {
  const i64 D = p.directions(), H = p.hidden(), HP = p.hidden_out(), LD = p.params.num_layers * D;
  Inputs in;
  in.x = random(p.T * p.N * p.params.input_size, seed);
  in.w = random(rnn_weight_count(p.params), seed + 1, 0.5f);
  in.h0 = random(LD * p.N * HP, seed + 2);
  in.c0 = random(LD * p.N * H, seed + 3);
  in.dy = random(p.T * p.N * D * HP, seed + 4);
  in.dhy = random(LD * p.N * HP, seed + 5);
  in.dcy = random(LD * p.N * H, seed + 6);
  in.dw_start = random(rnn_weight_count(p.params), seed + 7);
  return in;
}

// The whole engine on the host: the plan's graphs, played in insertion
// order or through the stream schedule with the lanes interleaved.
// Variant 2 of the engine: its blocks per direction, the host threads per
// block, the order of the blocks within a step (0: in order).
struct Persistent {
  i64 blocks = 0;  // 0: variant 1
  i64 threads = kPersistentThreads;
  std::uint64_t shuffle_seed = 0;
};

std::unique_ptr<Design> make_design(const RnnProblem& p) { return std::make_unique<Design>(p); }

Results run_engine(const RnnProblem& p, const Inputs& in, bool with_states, int interleave_seed,
                   const Persistent& persistent = {}) {
  const std::unique_ptr<Design> design = make_design(p);
  Design& g = *design;
  if (persistent.blocks > 0) g.variant = 2, g.persistent_blocks = persistent.blocks;
  g.tables.order = g.pack.order.data();
  g.tables.length = g.pack.length.data();
  g.tables.offset = g.pack.offset.data();
  g.tables.row_step = g.pack.row_step.data();
  g.tables.rank = g.pack.rank.data();
  std::vector<int> seq_length(p.lengths.begin(), p.lengths.end());
  g.tables.seq_length = seq_length.data();
  const LanedGraph forward = build_forward(&g), backward_data = build_backward_data(&g),
                   backward_weights = build_backward_weights(&g);
  const bool lstm = p.params.cell == RnnCell::Lstm;
  const i64 D = p.directions(), H = p.hidden(), HP = p.hidden_out(), LD = p.params.num_layers * D;
  Floats arena(static_cast<std::size_t>(g.total_floats), kNaN);
  Results r;
  r.y.assign(p.T * p.N * D * HP, kNaN);
  r.hy.assign(LD * p.N * HP, kNaN);
  r.cy.assign(lstm ? LD * p.N * H : 0, kNaN);
  r.dx.assign(in.x.size(), kNaN);
  r.dh0.assign(LD * p.N * HP, kNaN);
  r.dc0.assign(lstm ? LD * p.N * H : 0, kNaN);
  r.dw.assign(in.w.size(), kNaN);
  r.dw_accumulated = in.dw_start;
  HostOps ops;
  ops.threads = persistent.threads, ops.shuffle_seed = persistent.shuffle_seed;
  Play play;
  play.ops = &ops;
  Bindings& b = play.b;
  b.x = in.x.data(), b.w = in.w.data();
  b.h0 = with_states ? in.h0.data() : nullptr;
  b.c0 = with_states && lstm ? in.c0.data() : nullptr;
  b.y = r.y.data(), b.hy = r.hy.data(), b.cy = lstm ? r.cy.data() : nullptr;
  b.arena = arena.data();
  b.dy = in.dy.data();
  b.dhy = with_states ? in.dhy.data() : nullptr;
  b.dcy = with_states && lstm ? in.dcy.data() : nullptr;
  b.dx = r.dx.data(), b.dh0 = r.dh0.data(), b.dc0 = lstm ? r.dc0.data() : nullptr;
  auto play_one = [&](const LanedGraph& laned) {
    if (interleave_seed < 0) {
      laned.graph.play(Executor::Sequential, 1, &play, nullptr);
      return;
    }
    const StreamSchedule schedule = make_stream_schedule(laned.graph, laned.lane, g.lanes);
    InterleavedLanes lanes(laned.graph, play, schedule.lanes, schedule.events);
    issue(schedule, lanes);
    ASSERT_TRUE(lanes.run(static_cast<std::uint64_t>(interleave_seed))) << "the lanes deadlocked";
  };
  play_one(forward);
  // Variant 2: one launch per layer and no per-step forward node.
  EXPECT_EQ(ops.persistent_launches, persistent.blocks > 0 ? p.params.num_layers : 0);
  play_one(backward_data);
  b.dw = r.dw.data();
  play_one(backward_weights);
  b.dw = r.dw_accumulated.data(), b.accumulate = true;
  play_one(backward_weights);
  return r;
}

Results run_reference(const RnnProblem& p, const Inputs& in, bool with_states) {
  const bool lstm = p.params.cell == RnnCell::Lstm;
  const i64 D = p.directions(), H = p.hidden(), HP = p.hidden_out(), LD = p.params.num_layers * D;
  Results r;
  r.y.assign(p.T * p.N * D * HP, kNaN);
  r.hy.assign(LD * p.N * HP, kNaN);
  r.cy.assign(lstm ? LD * p.N * H : 0, kNaN);
  r.dx.assign(in.x.size(), kNaN);
  r.dh0.assign(LD * p.N * HP, kNaN);
  r.dc0.assign(lstm ? LD * p.N * H : 0, kNaN);
  r.dw.assign(in.w.size(), kNaN);
  r.dw_accumulated = in.dw_start;
  const float* h0 = with_states ? in.h0.data() : nullptr;
  const float* c0 = with_states && lstm ? in.c0.data() : nullptr;
  reference::RnnTape tape;
  reference::rnn_forward(p, in.x.data(), in.w.data(), h0, c0, r.y.data(), r.hy.data(),
                         lstm ? r.cy.data() : nullptr, tape);
  reference::rnn_backward_data(p, in.w.data(), h0, c0, tape, in.dy.data(),
                               with_states ? in.dhy.data() : nullptr,
                               with_states && lstm ? in.dcy.data() : nullptr, r.dx.data(),
                               r.dh0.data(), lstm ? r.dc0.data() : nullptr);
  reference::rnn_backward_weights(p, in.x.data(), h0, tape, r.dw.data(), false);
  reference::rnn_backward_weights(p, in.x.data(), h0, tape, r.dw_accumulated.data(), true);
  return r;
}

RnnProblem problem_of(const Case& c) {
  RnnProblem p;
  p.params = c.params;
  p.T = c.T, p.N = c.N, p.lengths = c.lengths;
  return p;
}

void expect_close(const Results& got, const Results& want, i64 length) {
  EXPECT_TRUE(test::all_close(got.y, want.y, length, 1e-4)) << "y";
  EXPECT_TRUE(test::all_close(got.hy, want.hy, length, 1e-4)) << "hy";
  EXPECT_TRUE(test::all_close(got.cy, want.cy, length, 1e-4)) << "cy";
  EXPECT_TRUE(test::all_close(got.dx, want.dx, length, 1e-4)) << "dx";
  EXPECT_TRUE(test::all_close(got.dh0, want.dh0, length, 1e-4)) << "dh0";
  EXPECT_TRUE(test::all_close(got.dc0, want.dc0, length, 1e-4)) << "dc0";
  EXPECT_TRUE(test::all_close(got.dw, want.dw, length, 1e-4)) << "dw";
  EXPECT_TRUE(test::all_close(got.dw_accumulated, want.dw_accumulated, length, 1e-4))
      << "dw accumulated";
}

bool same_bits(const Results& a, const Results& b) {
  return test::bitwise_equal(a.y, b.y) && test::bitwise_equal(a.hy, b.hy) &&
         test::bitwise_equal(a.cy, b.cy) && test::bitwise_equal(a.dx, b.dx) &&
         test::bitwise_equal(a.dh0, b.dh0) && test::bitwise_equal(a.dc0, b.dc0) &&
         test::bitwise_equal(a.dw, b.dw) && test::bitwise_equal(a.dw_accumulated, b.dw_accumulated);
}

// The reduction length for the tolerance: the steps times the widest sum.
i64 reduction_length(const RnnProblem& p) {
  return p.T * std::max<i64>(
                   {p.params.input_size, p.directions() * p.hidden(), p.gates() * p.hidden(), p.N});
}

class CudaRnnReplay : public ::testing::TestWithParam<Case> {};

TEST_P(CudaRnnReplay, TheEngineReplayedOnTheHostMatchesTheReference) {
  const RnnProblem p = problem_of(GetParam());
  const i64 length = reduction_length(p);
  for (bool with_states : {true, false}) {
    SCOPED_TRACE(with_states ? "with h0, c0, dhy, dcy" : "without them (zeros)");
    const Inputs in = inputs_of(p, with_states ? 100 : 200);
    const Results want = run_reference(p, in, with_states);
    const Results sequential = run_engine(p, in, with_states, -1);
    expect_close(sequential, want, length);
    for (float v : sequential.y) ASSERT_FALSE(std::isnan(v)) << "a y element was not written";
  }
}

TEST_P(CudaRnnReplay, InterleavedLanesGiveTheBitsOfSequential) {
  const RnnProblem p = problem_of(GetParam());
  const Inputs in = inputs_of(p, 300);
  const Results sequential = run_engine(p, in, true, -1);
  for (int seed = 1; seed <= 3; ++seed)
    EXPECT_TRUE(same_bits(run_engine(p, in, true, seed), sequential)) << "interleaving " << seed;
}

INSTANTIATE_TEST_SUITE_P(Rnn, CudaRnnReplay, ::testing::ValuesIn(cases()),
                         [](const auto& param_info) { return param_info.param.name; });
INSTANTIATE_TEST_SUITE_P(Projected, CudaRnnReplay, ::testing::ValuesIn(projected_cases()),
                         [](const auto& param_info) { return param_info.param.name; });

// ---- variant 2: the persistent kernel ------------------------------------------------

TEST(CudaRnnPersistent, SlicesPartitionTheHiddenUnitsContiguously) {
  for (i64 H = 1; H <= 40; ++H)
    for (i64 blocks = 1; blocks <= H; ++blocks) {
      const i64 units = persistent_units(H, blocks);
      i64 next = 0;
      for (i64 b = 0; b < blocks; ++b) {
        const i64 j0 = persistent_first(H, blocks, b), j1 = persistent_end(H, blocks, b);
        ASSERT_EQ(j0, next) << "H " << H << " blocks " << blocks << " block " << b;
        ASSERT_LE(j1 - j0, units);
        ASSERT_GE(j1, j0);
        next = j1;
      }
      ASSERT_EQ(next, H) << "H " << H << " blocks " << blocks;
      // The column parts of a split cover [0, H) in order, none empty.
      for (i64 elements : {i64{1}, i64{5}, i64{64}, i64{300}}) {
        const i64 parts = persistent_split(elements, kPersistentThreads, H);
        ASSERT_GE(parts, 1);
        ASSERT_LE(parts, H);
        ASSERT_LE(elements * parts, std::max<i64>(elements, kPersistentThreads));
        ASSERT_EQ(parts & (parts - 1), 0) << "a power of two";
        // Maximal: doubling would pass H or the threads.
        ASSERT_TRUE(parts * 2 > H || elements * parts * 2 > kPersistentThreads);
        ASSERT_EQ(persistent_part_first(H, parts, 0), 0);
        ASSERT_EQ(persistent_part_first(H, parts, parts), H);
        for (i64 q = 0; q < parts; ++q)
          ASSERT_LT(persistent_part_first(H, parts, q), persistent_part_first(H, parts, q + 1));
      }
      // Every (gate, unit, column) of a slice has its own float, inside the slice.
      for (i64 G : {1, 3, 4}) {
        std::set<i64> seen;
        for (i64 q = 0; q < G; ++q)
          for (i64 u = 0; u < units; ++u)
            for (i64 k = 0; k < H; ++k) {
              const i64 at = persistent_slice_at(units, H, q, u, k);
              ASSERT_TRUE(at >= 0 && at < persistent_slice_floats(G, H, units));
              ASSERT_TRUE(seen.insert(at).second);
            }
      }
    }
}

// A non-empty reason that names every one of `words`.
bool mentions(const std::string& reason, std::initializer_list<const char*> words) {
  if (reason.empty()) return false;
  for (const char* w : words)
    if (reason.find(w) == std::string::npos) return false;
  return true;
}

TEST(CudaRnnPersistent, FitsOrDeclinesNamingTheNumber) {
  // H200-like: 227 KiB of opt-in shared memory per block, 132 SMs.
  const std::size_t shared = 232448;
  const PersistentFit lstm512 = persistent_fit(RnnCell::Lstm, 512, 8, 2, 0, shared, 132);
  EXPECT_TRUE(lstm512.reason.empty()) << lstm512.reason;
  EXPECT_EQ(lstm512.blocks, 64);
  EXPECT_EQ(lstm512.units, 8);
  // The slice and a partial sum per gate and thread.
  EXPECT_EQ(lstm512.shared_bytes, std::size_t{(4 * 8 * 512 + 4 * 256) * 4});
  // No block without units: 10 units over 66 SMs is 10 blocks of 1.
  const PersistentFit small = persistent_fit(RnnCell::Gru, 10, 1, 1, 0, shared, 66);
  EXPECT_TRUE(small.reason.empty()) << small.reason;
  EXPECT_EQ(small.blocks, 10);
  EXPECT_EQ(small.units, 1);
  // 7 units over 3 blocks: 3, 3, 1.
  const PersistentFit uneven = persistent_fit(RnnCell::Tanh, 7, 4, 1, 0, shared, 3);
  EXPECT_EQ(uneven.blocks, 3);
  EXPECT_EQ(uneven.units, 3);
  // An LSTM of 1024 units bidirectional: 16 units per block, 266240 bytes.
  const PersistentFit big = persistent_fit(RnnCell::Lstm, 1024, 4, 2, 0, shared, 132);
  EXPECT_TRUE(mentions(big.reason, {"266240", "232448", "shared memory"})) << big.reason;
  const PersistentFit wide = persistent_fit(RnnCell::Tanh, 64, 33, 1, 0, shared, 132);
  EXPECT_TRUE(mentions(wide.reason, {"33", "32"})) << wide.reason;
  EXPECT_TRUE(persistent_fit(RnnCell::Tanh, 64, 32, 1, 0, shared, 132).reason.empty());
  const PersistentFit projected = persistent_fit(RnnCell::Lstm, 64, 2, 1, 16, shared, 132);
  EXPECT_TRUE(mentions(projected.reason, {"proj_size", "16"})) << projected.reason;
  EXPECT_FALSE(persistent_fit(RnnCell::Tanh, 0, 2, 1, 0, shared, 132).reason.empty());
  EXPECT_FALSE(persistent_fit(RnnCell::Tanh, 8, 2, 2, 0, shared, 1).reason.empty());
  // Co-residency: every block at once, or a named refusal.
  EXPECT_TRUE(persistent_resident_check(132, 132, 1).empty());
  EXPECT_TRUE(persistent_resident_check(200, 132, 2).empty());
  EXPECT_TRUE(mentions(persistent_resident_check(133, 132, 1), {"133", "132"}));
  EXPECT_TRUE(mentions(persistent_resident_check(4, 132, 0), {"4", "0 per SM"}));
}

TEST(CudaRnnPersistent, TheForwardGraphHasOneNodePerLayerAfterItsInputs) {
  const std::vector<Case> all = cases();
  const auto it = std::find_if(all.begin(), all.end(),
                               [](const Case& c) { return c.name == "lstm_L2_bi_unsorted"; });
  ASSERT_NE(it, all.end());
  const RnnProblem p = problem_of(*it);
  const std::unique_ptr<Design> design = make_design(p), design1 = make_design(p);
  Design& g = *design;
  g.variant = 2, g.persistent_blocks = 2;
  const LanedGraph forward = build_forward(&g);
  const LanedGraph forward1 = build_forward(design1.get());
  // Variant 1's per-step nodes (steps per unit) are replaced by one per layer.
  const std::int32_t per_step = static_cast<std::int32_t>(g.L * g.D * g.pack.steps);
  EXPECT_EQ(forward.graph.size(), forward1.graph.size() - per_step + g.L);
  // Each layer's node waits for every input chunk of both its directions;
  // the layer above's chunks wait for it.
  std::vector<std::int32_t> persistent;
  for (std::int32_t n = 0; n < forward.graph.size(); ++n)
    if (forward.graph.node_name(n).find("persistent") != std::string::npos) persistent.push_back(n);
  ASSERT_EQ(static_cast<int>(persistent.size()), g.L);
  for (int l = 0; l < g.L; ++l) {
    const std::string layer = " L" + std::to_string(l) + " ";
    std::set<std::int32_t> chunks;
    for (std::int32_t n = 0; n < forward.graph.size(); ++n)
      if (forward.graph.node_name(n).find(layer) != std::string::npos &&
          forward.graph.node_name(n).find("x-proj") != std::string::npos)
        chunks.insert(n);
    EXPECT_EQ(static_cast<i64>(chunks.size()), g.D * g.chunks());
    const std::vector<std::int32_t>& before = forward.graph.predecessors(persistent[l]);
    EXPECT_EQ(std::set<std::int32_t>(before.begin(), before.end()), chunks) << "layer " << l;
    if (l + 1 < g.L) {
      for (std::int32_t n = 0; n < forward.graph.size(); ++n) {
        if (forward.graph.node_name(n).find(" L" + std::to_string(l + 1) + " ") ==
                std::string::npos ||
            forward.graph.node_name(n).find("x-proj") == std::string::npos)
          continue;
        const std::vector<std::int32_t>& deps = forward.graph.predecessors(n);
        EXPECT_NE(std::find(deps.begin(), deps.end(), persistent[l]), deps.end())
            << forward.graph.node_name(n);
      }
    }
  }
}

class CudaRnnPersistentReplay : public ::testing::TestWithParam<Case> {};

TEST_P(CudaRnnPersistentReplay, MatchesTheReferenceAndTheBitsOfVariant1) {
  const RnnProblem p = problem_of(GetParam());
  const i64 length = reduction_length(p);
  for (bool with_states : {true, false}) {
    SCOPED_TRACE(with_states ? "with h0, c0, dhy, dcy" : "without them (zeros)");
    const Inputs in = inputs_of(p, with_states ? 400 : 500);
    const Results want = run_reference(p, in, with_states);
    const Results variant1 = run_engine(p, in, with_states, -1);
    // Blocks of uneven slices (H 3-7 over 2 blocks, and one block per unit).
    for (i64 blocks : {i64{1}, i64{2}, p.hidden()}) {
      SCOPED_TRACE("blocks per direction " + std::to_string(blocks));
      // The device's 256 threads per block: these small batches split
      // every dot product over the columns.
      EXPECT_GT(persistent_split(p.N * persistent_units(p.hidden(), blocks), kPersistentThreads,
                                 p.hidden()),
                1);
      Persistent v2;
      v2.blocks = blocks;
      const Results got = run_engine(p, in, with_states, -1, v2);
      expect_close(got, want, length);
      expect_close(got, variant1, length);
      for (float v : got.y) ASSERT_FALSE(std::isnan(v)) << "a y element was not written";
      // The barriers separate the phases and the steps: the blocks' order
      // within a step and the lanes' interleaving change nothing.
      Persistent shuffled = v2;
      shuffled.shuffle_seed = 7;
      EXPECT_TRUE(same_bits(run_engine(p, in, with_states, 2, shuffled), got));
      // One thread per block never splits: the same products in the same
      // order as variant 1's GEMM on the host, so the same bits, gradients
      // included (backward is variant 1's), blocks shuffled or not.
      Persistent unsplit = v2;
      unsplit.threads = 1;
      EXPECT_TRUE(same_bits(run_engine(p, in, with_states, -1, unsplit), variant1));
      unsplit.shuffle_seed = 11;
      EXPECT_TRUE(same_bits(run_engine(p, in, with_states, 3, unsplit), variant1));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Rnn, CudaRnnPersistentReplay, ::testing::ValuesIn(cases()),
                         [](const auto& param_info) { return param_info.param.name; });

// ---- the projection --------------------------------------------------------------

// The projection's buffers: h, h0 and carry_h of P columns, m and dh kept
// per packed row, the next layer reading D * P columns, dW_hr after dW_hh.
TEST(CudaRnnProjection, TheDesignCarvesTheProjectedBuffersAndTheGraphAddsDwHr) {
  const std::vector<Case> all = projected_cases();
  const auto it = std::find_if(all.begin(), all.end(),
                               [](const Case& c) { return c.name == "lstm_proj_L2_bi_unsorted"; });
  ASSERT_NE(it, all.end());
  const RnnProblem p = problem_of(*it);
  const std::unique_ptr<Design> design = make_design(p);
  const Design& g = *design;
  EXPECT_EQ(g.P, 3);
  EXPECT_EQ(g.HP, 3);
  for (const Unit& u : g.units) {
    EXPECT_GE(u.w_hr, 0);
    EXPECT_GE(u.m, 0);
    EXPECT_GE(u.dh, 0);
    EXPECT_GE(u.dm, 0);
  }
  EXPECT_EQ(g.unit(1, 0).in, 2 * 3);
  EXPECT_EQ(g.unit(1, 1).in, 2 * 3);
  // The buffers of each unit, in carve order, do not overlap.
  const i64 R = g.pack.total;
  const Unit& u = g.unit(0, 0);
  EXPECT_GE(u.c - u.h, R * 3);
  EXPECT_GE(u.m - u.c, R * 5);
  EXPECT_GE(u.h0 - u.m, R * 5);
  EXPECT_GE(u.c0 - u.h0, p.N * 3);
  EXPECT_GE(u.carry_c - u.carry_h, p.N * 3);
  EXPECT_GE(u.dh - u.carry_c, p.N * 5);
  EXPECT_GE(u.dm - u.dh, R * 3);
  EXPECT_LE(g.unit(1, 1).dm + p.N * 5, g.total_floats);
  const LanedGraph weights = build_backward_weights(&g);
  int dw_hr = 0;
  for (std::int32_t n = 0; n < weights.graph.size(); ++n)
    if (weights.graph.node_name(n).find("dW_hr") != std::string::npos) ++dw_hr;
  EXPECT_EQ(dw_hr, g.L * g.D);
  // Variant 2 keeps declining a projection.
  const PersistentFit fit = persistent_fit(RnnCell::Lstm, g.H, g.N, g.D, g.P, 232448, 132);
  EXPECT_TRUE(mentions(fit.reason, {"proj_size", "3"})) << fit.reason;
}

}  // namespace
}  // namespace dlrt::detail::cuda_rnn
