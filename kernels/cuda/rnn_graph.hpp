// The Cuda recurrent engine's plan, without CUDA: the packing, the arena
// layout, the scheduler's graphs and the lane of every node. Node bodies
// issue their GEMMs and kernels through RnnDeviceOps, which rnn.cu
// implements with cuBLAS and the kernels of rnn_cells.hpp on the lanes'
// streams, and the internal tests implement on the host (a column-major
// GEMM loop and the kernel bodies replayed index by index), so that the
// whole engine, graph and index arithmetic included, is checked against the
// Reference engine on machines without a GPU.
//
// The structure mirrors kernels/cpu/rnn.cpp (Appleyard, Kocisky and
// Blunsom, "Optimizing Performance of Recurrent Neural Networks on GPUs",
// 2016): per layer and direction, the input projection as GEMMs over
// chunks of steps; per step one recurrent GEMM over the step's active batch
// and one fused cell kernel; backward mirrored in reverse time; weight
// gradients as a few large GEMMs. With an LSTM projection (proj_size P) a
// forward step adds the GEMM h = m W_hr^T onto its cell's output m and a
// kernel writing h, a backward step the gradient reaching h and its GEMM
// with W_hr before the cell's backward, and the weight gradients one GEMM
// for dW_hr, as the Cpu engine. A GPU step is one node (no batch pieces:
// one GEMM over the whole active batch keeps the device busiest). Variant 2
// (rnn_persistent.hpp) replaces a layer's forward steps of both directions
// with one node, a persistent kernel; the backward graphs are the same.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "dlrt/rnn.hpp"
#include "kernels/cuda/rnn_cells.hpp"
#include "kernels/cuda/rnn_persistent.hpp"
#include "runtime/rnn_engine.hpp"
#include "runtime/rnn_packing.hpp"
#include "runtime/scheduler.hpp"

namespace dlrt::detail::cuda_rnn {

// Input-projection and dX GEMMs per layer and direction: the recurrence
// starts on the first chunk while the rest is computed on the input lane.
constexpr i64 kStepChunks = 4;
// Lanes beyond this fold onto the first ones (lane % kMaxLanes): same-lane
// work is ordered, so folding stays correct and bounds the streams a plan holds.
constexpr int kMaxLanes = 16;

using Packing = RnnPacking;

// Offsets (in floats) of one layer and direction's weights and buffers.
struct Unit {
  i64 in = 0;  // the layer's input width
  i64 w_ih = 0, w_hh = 0, b_ih = -1, b_hh = -1, w_hr = -1;
  // forward buffers (packed rows; h and h0 have HP columns; with a
  // projection m holds the cell's output o * tanh(c) [R, H])
  i64 xp = 0, gates = 0, gru = -1, h = 0, c = -1, m = -1, h0 = 0, c0 = -1;
  // backward buffers (carry_h has HP columns; with a projection dh holds
  // the gradient reaching each projected h [R, P], dm the one reaching m
  // at the step being played [N, H])
  i64 dgates = 0, dhidden = -1, dxp = 0, carry_h = 0, carry_c = -1, dh = -1, dm = -1;
};

// The pointers of one run.
struct Bindings {
  const float* x = nullptr;
  const float* w = nullptr;
  const float* h0 = nullptr;
  const float* c0 = nullptr;
  float* y = nullptr;
  float* hy = nullptr;
  float* cy = nullptr;
  float* arena = nullptr;
  const float* dy = nullptr;
  const float* dhy = nullptr;
  const float* dcy = nullptr;
  float* dx = nullptr;
  float* dh0 = nullptr;
  float* dc0 = nullptr;
  float* dw = nullptr;
  bool accumulate = false;

  bool operator==(const Bindings&) const = default;
};

// Where the nodes' work goes: a GEMM or a kernel over `count` indices,
// issued on a lane (a stream on the GPU).
class RnnDeviceOps {
public:
  virtual ~RnnDeviceOps() = default;
  virtual void gemm(int lane, const RowMajorGemm& g) = 0;
  virtual void gather(int lane, const GatherArgs& a, i64 count) = 0;
  virtual void init_state(int lane, const InitStateArgs& a, i64 count) = 0;
  virtual void forward_step(int lane, const ForwardStepArgs& a, i64 count) = 0;
  // With a projection: the projected state's writes (forward_proj_element).
  virtual void forward_proj(int lane, const ForwardStepArgs& a, i64 count) = 0;
  virtual void zero_padding(int lane, const ZeroPaddingArgs& a, i64 count) = 0;
  virtual void backward_step(int lane, const BackwardStepArgs& a, i64 count) = 0;
  // With a projection: the gradient reaching the projected h (backward_proj_element).
  virtual void backward_proj(int lane, const BackwardStepArgs& a, i64 count) = 0;
  virtual void state_out(int lane, const StateOutArgs& a, i64 count) = 0;
  virtual void scatter_dx(int lane, const ScatterDxArgs& a, i64 count) = 0;
  virtual void bias_sums(int lane, const BiasSumsArgs& a, i64 count) = 0;
  // Variant 2: every step of a layer's directions in one persistent launch.
  virtual void persistent_layer(int lane, const PersistentLayerArgs& a) = 0;
};

// What a node body receives: the run's pointers, the ops and the node's
// lane (set by whoever issues the node).
struct Play {
  Bindings b;
  RnnDeviceOps* ops = nullptr;
  mutable int lane = 0;
};

inline const Play& played(const void* p) { return *static_cast<const Play*>(p); }

// The problem's fixed shape, arena layout, graphs and lanes.
struct Design {
  RnnParams params;
  // HP: the columns of h, the output's per direction, h0 and hy: the
  // projection's P when proj_size > 0, else H.
  i64 T = 1, N = 1, H = 1, G = 1, GH = 1, P = 0, HP = 1;
  int L = 1, D = 1;
  Packing pack;
  i64 chunk_steps = 1;
  std::vector<Unit> units;        // [layer * D + direction]
  std::vector<i64> layer_output;  // [layer] padded [T, N, D*HP] (all but the last layer)
  i64 forward_floats = 0, total_floats = 0;
  Tables tables;  // set by the engine once the tables are where its kernels read them
  int lanes = 1;
  // 1: a recurrent GEMM and a cell kernel per step; 2: a persistent kernel
  // per layer over `persistent_blocks` blocks per direction (rnn_persistent.hpp).
  // Set by whoever builds the graphs, before building them.
  int variant = 1;
  i64 persistent_blocks = 1;

  explicit Design(const RnnProblem& problem) : params(problem.params), pack(problem.lengths) {
    T = problem.T, N = problem.N;
    H = params.hidden_size;
    G = rnn_gate_count(params.cell), GH = G * H;
    P = params.proj_size, HP = P > 0 ? P : H;
    L = params.num_layers, D = params.bidirectional ? 2 : 1;
    chunk_steps = (pack.steps + kStepChunks - 1) / kStepChunks;
    lanes = std::min(2 * L * D, kMaxLanes);

    const std::vector<RnnWeight> layout = rnn_weight_layout(params);
    units.resize(static_cast<std::size_t>(L * D));
    for (const RnnWeight& piece : layout) {
      Unit& u = units[piece.layer * D + piece.direction];
      if (piece.name.starts_with("weight_ih")) u.w_ih = piece.offset, u.in = piece.shape[1];
      if (piece.name.starts_with("weight_hh")) u.w_hh = piece.offset;
      if (piece.name.starts_with("bias_ih")) u.b_ih = piece.offset;
      if (piece.name.starts_with("bias_hh")) u.b_hh = piece.offset;
      if (piece.name.starts_with("weight_hr")) u.w_hr = piece.offset;
    }
    // Each buffer starts on 256 bytes, so that rows of different buffers
    // never share a memory transaction.
    i64 next = 0;
    auto carve = [&](i64 floats) {
      const i64 at = next;
      next += (floats + 63) / 64 * 64;
      return at;
    };
    const i64 R = pack.total;
    const bool lstm = params.cell == RnnCell::Lstm, gru = params.cell == RnnCell::Gru;
    for (Unit& u : units) {
      u.xp = carve(R * u.in);
      u.gates = carve(R * GH);
      if (gru) u.gru = carve(R * 4 * H);
      u.h = carve(R * HP);
      if (lstm) u.c = carve(R * H);
      if (P > 0) u.m = carve(R * H);
      u.h0 = carve(N * HP);
      if (lstm) u.c0 = carve(N * H);
    }
    layer_output.assign(static_cast<std::size_t>(L), -1);
    for (int l = 0; l + 1 < L; ++l) layer_output[l] = carve(T * N * D * HP);
    forward_floats = next;
    for (Unit& u : units) {
      u.dgates = carve(R * GH);
      if (gru) u.dhidden = carve(R * GH);
      u.dxp = carve(R * u.in);
      u.carry_h = carve(N * HP);
      if (lstm) u.carry_c = carve(N * H);
      if (P > 0) u.dh = carve(R * P), u.dm = carve(N * H);
    }
    total_floats = next;
  }

  const Unit& unit(int l, int d) const { return units[l * D + d]; }
  i64 chunks() const { return (pack.steps + chunk_steps - 1) / chunk_steps; }
  i64 chunk_of(i64 s) const { return s / chunk_steps; }
  // The recurrence of unit k, and its input GEMMs (and the graph's gathers and scatters).
  int step_lane(int k) const { return (2 * k) % lanes; }
  int input_lane(int k) const { return (2 * k + 1) % lanes; }

  float* output(const Bindings& b, int l) const {
    return l + 1 == L ? b.y : b.arena + layer_output[l];
  }
  const float* input(const Bindings& b, int l) const {
    return l == 0 ? b.x : b.arena + layer_output[l - 1];
  }
  // The state rows of step s - 1 (the initial state at s = 0).
  i64 prev_h(const Unit& u, i64 s) const { return s == 0 ? u.h0 : u.h + pack.offset[s - 1] * HP; }
  i64 prev_c(const Unit& u, i64 s) const { return s == 0 ? u.c0 : u.c + pack.offset[s - 1] * H; }
};

inline RowMajorGemm gemm_of(bool ta, bool tb, i64 M, i64 N, i64 K, const float* A, i64 lda,
                            const float* B, i64 ldb, float beta, float* C, i64 ldc) {
  RowMajorGemm g;
  g.trans_a = ta, g.trans_b = tb;
  g.M = M, g.N = N, g.K = K;
  g.A = A, g.lda = lda, g.B = B, g.ldb = ldb, g.beta = beta, g.C = C, g.ldc = ldc;
  return g;
}

// ---- forward nodes -----------------------------------------------------------------

// Gathers chunk [s0, s1) of the layer's input into packed rows and projects
// it: gates = xp W_ih^T (the biases join in the cell kernel).
inline void forward_input(const Design& g, int l, int d, i64 s0, i64 s1, const Play& p) {
  const Unit& u = g.unit(l, d);
  const i64 r0 = g.pack.offset[s0], rows = g.pack.offset[s1] - r0;
  GatherArgs a;
  a.t = g.tables, a.d = d, a.r0 = r0, a.in = u.in, a.N = g.N;
  a.src = g.input(p.b, l), a.xp = p.b.arena + u.xp;
  p.ops->gather(p.lane, a, rows * u.in);
  p.ops->gemm(p.lane, gemm_of(false, true, rows, g.GH, u.in, p.b.arena + u.xp + r0 * u.in, u.in,
                              p.b.w + u.w_ih, u.in, 0.0f, p.b.arena + u.gates + r0 * g.GH, g.GH));
}

// One step: the initial state (at s = 0), the recurrent GEMM onto the
// projected input, and the fused cell kernel; with a projection then h =
// m W_hr^T and the writes of h to the output and hy.
inline void forward_step(const Design& g, int l, int d, i64 s, const Play& p) {
  const Unit& u = g.unit(l, d);
  const i64 H = g.H, HP = g.HP, GH = g.GH, batch = g.pack.active[s], row0 = g.pack.offset[s];
  const bool proj = g.P > 0;
  const bool lstm = g.params.cell == RnnCell::Lstm, gru = g.params.cell == RnnCell::Gru;
  const int k = l * g.D + d;
  float* arena = p.b.arena;
  if (s == 0) {
    InitStateArgs a;
    a.t = g.tables, a.k = k, a.N = g.N, a.H = H, a.hw = HP;
    a.h0 = p.b.h0, a.c0 = lstm ? p.b.c0 : nullptr;
    a.h = arena + u.h0, a.c = lstm ? arena + u.c0 : nullptr;
    p.ops->init_state(p.lane, a, g.N * H);
  }
  const float* h_prev = arena + g.prev_h(u, s);
  float* gates = arena + u.gates + row0 * GH;
  const float* w_hh = p.b.w + u.w_hh;
  if (gru) {
    float* saved = arena + u.gru + row0 * 4 * H;
    p.ops->gemm(p.lane, gemm_of(false, true, batch, 2 * H, H, h_prev, H, w_hh, H, 1.0f, gates, GH));
    p.ops->gemm(p.lane, gemm_of(false, true, batch, H, H, h_prev, H, w_hh + 2 * H * H, H, 0.0f,
                                saved + 3 * H, 4 * H));
  } else {
    p.ops->gemm(p.lane, gemm_of(false, true, batch, GH, HP, h_prev, HP, w_hh, HP, 1.0f, gates, GH));
  }
  ForwardStepArgs a;
  a.t = g.tables, a.cell = g.params.cell, a.d = d;
  a.s = s, a.batch = batch, a.N = g.N, a.H = H, a.GH = GH, a.width = g.D * H, a.k = k;
  a.gates = gates;
  a.b_ih = u.b_ih >= 0 ? p.b.w + u.b_ih : nullptr;
  a.b_hh = u.b_hh >= 0 ? p.b.w + u.b_hh : nullptr;
  a.gru = gru ? arena + u.gru + row0 * 4 * H : nullptr;
  a.h_prev = h_prev;
  a.c_prev = lstm ? arena + g.prev_c(u, s) : nullptr;
  a.h = proj ? arena + u.m + row0 * H : arena + u.h + row0 * H;
  a.c = lstm ? arena + u.c + row0 * H : nullptr;
  a.out = proj ? nullptr : g.output(p.b, l);
  a.hy = proj ? nullptr : p.b.hy, a.cy = lstm ? p.b.cy : nullptr;
  p.ops->forward_step(p.lane, a, batch * H);
  if (!proj) return;
  float* h = arena + u.h + row0 * HP;
  p.ops->gemm(p.lane, gemm_of(false, true, batch, HP, H, a.h, H, p.b.w + u.w_hr, H, 0.0f, h, HP));
  ForwardStepArgs o = a;
  o.hw = HP, o.width = g.D * HP;
  o.h = h, o.out = g.output(p.b, l), o.hy = p.b.hy;
  p.ops->forward_proj(p.lane, o, batch * HP);
}

// Variant 2: the initial states of the layer's directions, then one
// persistent launch over all its steps (both directions), which writes what
// forward_step writes.
inline void forward_persistent(const Design& g, int l, const Play& p) {
  const bool lstm = g.params.cell == RnnCell::Lstm, gru = g.params.cell == RnnCell::Gru;
  float* arena = p.b.arena;
  PersistentLayerArgs a;
  a.t = g.tables, a.cell = g.params.cell;
  a.steps = g.pack.steps, a.N = g.N, a.H = g.H, a.GH = g.GH, a.width = g.D * g.H;
  a.blocks = g.persistent_blocks, a.units = persistent_units(g.H, g.persistent_blocks);
  a.D = g.D;
  a.out = g.output(p.b, l);
  a.hy = p.b.hy, a.cy = lstm ? p.b.cy : nullptr;
  for (int d = 0; d < g.D; ++d) {
    const Unit& u = g.unit(l, d);
    const int k = l * g.D + d;
    InitStateArgs init;
    init.t = g.tables, init.k = k, init.N = g.N, init.H = g.H;
    init.h0 = p.b.h0, init.c0 = lstm ? p.b.c0 : nullptr;
    init.h = arena + u.h0, init.c = lstm ? arena + u.c0 : nullptr;
    p.ops->init_state(p.lane, init, g.N * g.H);
    PersistentDirection& pd = a.dir[d];
    pd.k = k;
    pd.w_hh = p.b.w + u.w_hh;
    pd.b_ih = u.b_ih >= 0 ? p.b.w + u.b_ih : nullptr;
    pd.b_hh = u.b_hh >= 0 ? p.b.w + u.b_hh : nullptr;
    pd.gates = arena + u.gates;
    pd.gru = gru ? arena + u.gru : nullptr;
    pd.h = arena + u.h;
    pd.c = lstm ? arena + u.c : nullptr;
    pd.h0 = arena + u.h0;
    pd.c0 = lstm ? arena + u.c0 : nullptr;
  }
  p.ops->persistent_layer(p.lane, a);
}

// ---- backward-data nodes -----------------------------------------------------------

// One reverse step: the cell's backward (with a projection after the
// gradient reaching h and its product with W_hr), then the recurrent
// product into the carry, and at s = 0 dh0 and dc0.
inline void backward_step(const Design& g, int l, int d, i64 s, const Play& p) {
  const Unit& u = g.unit(l, d);
  const i64 H = g.H, HP = g.HP, GH = g.GH, batch = g.pack.active[s], row0 = g.pack.offset[s];
  const bool lstm = g.params.cell == RnnCell::Lstm, gru = g.params.cell == RnnCell::Gru;
  const bool proj = g.P > 0;
  const int k = l * g.D + d;
  float* arena = p.b.arena;
  BackwardStepArgs a;
  a.t = g.tables, a.cell = g.params.cell, a.d = d;
  a.s = s, a.batch = batch, a.next_batch = g.pack.active[s + 1], a.N = g.N, a.H = H, a.GH = GH;
  a.width = g.D * HP, a.k = k, a.hw = HP;
  if (l + 1 == g.L) {
    a.dy = p.b.dy;
  } else {
    a.dxp_above0 = arena + g.unit(l + 1, 0).dxp;
    a.dxp_above1 = g.D == 2 ? arena + g.unit(l + 1, 1).dxp : nullptr;
    a.in_above = g.unit(l + 1, 0).in;
  }
  a.dhy = p.b.dhy, a.dcy = lstm ? p.b.dcy : nullptr;
  a.carry_h = arena + u.carry_h;
  a.carry_c = lstm ? arena + u.carry_c : nullptr;
  a.gates = arena + u.gates + row0 * GH;
  a.gru = gru ? arena + u.gru + row0 * 4 * H : nullptr;
  a.h = arena + u.h + row0 * HP;
  a.h_prev = arena + g.prev_h(u, s);
  a.c_prev = lstm ? arena + g.prev_c(u, s) : nullptr;
  a.c = lstm ? arena + u.c + row0 * H : nullptr;
  a.dgates = arena + u.dgates + row0 * GH;
  a.dhidden = gru ? arena + u.dhidden + row0 * GH : nullptr;
  if (proj) {
    // dh (kept for dW_hr), then dm = dh W_hr for the cell.
    a.dh = arena + u.dh + row0 * HP;
    p.ops->backward_proj(p.lane, a, batch * HP);
    float* dm = arena + u.dm;
    p.ops->gemm(p.lane,
                gemm_of(false, false, batch, H, HP, a.dh, HP, p.b.w + u.w_hr, H, 0.0f, dm, H));
    a.dm = dm;
  }
  p.ops->backward_step(p.lane, a, batch * H);
  // GRU's carry already holds z * dh; the others' is replaced.
  p.ops->gemm(p.lane, gemm_of(false, false, batch, HP, GH, gru ? a.dhidden : a.dgates, GH,
                              p.b.w + u.w_hh, HP, gru ? 1.0f : 0.0f, a.carry_h, HP));
  if (s != 0 || (p.b.dh0 == nullptr && (p.b.dc0 == nullptr || !lstm))) return;
  StateOutArgs o;
  o.t = g.tables, o.k = k, o.N = g.N, o.H = H, o.hw = HP;
  o.carry_h = a.carry_h, o.carry_c = a.carry_c;
  o.dh0 = p.b.dh0, o.dc0 = lstm ? p.b.dc0 : nullptr;
  p.ops->state_out(p.lane, o, g.N * H);
}

// dxp = dgates W_ih over chunk [s0, s1): the gradient of the layer's input.
inline void backward_input(const Design& g, int l, int d, i64 s0, i64 s1, const Play& p) {
  const Unit& u = g.unit(l, d);
  const i64 r0 = g.pack.offset[s0], rows = g.pack.offset[s1] - r0;
  p.ops->gemm(p.lane,
              gemm_of(false, false, rows, u.in, g.GH, p.b.arena + u.dgates + r0 * g.GH, g.GH,
                      p.b.w + u.w_ih, u.in, 0.0f, p.b.arena + u.dxp + r0 * u.in, u.in));
}

inline void scatter_dx(const Design& g, i64 t0, i64 t1, const Play& p) {
  ScatterDxArgs a;
  a.t = g.tables, a.t0 = t0, a.N = g.N, a.I = g.params.input_size;
  a.dxp0 = p.b.arena + g.unit(0, 0).dxp;
  a.dxp1 = g.D == 2 ? p.b.arena + g.unit(0, 1).dxp : nullptr;
  a.dx = p.b.dx;
  p.ops->scatter_dx(p.lane, a, (t1 - t0) * g.N * a.I);
}

// ---- backward-weights nodes --------------------------------------------------------

// dW_ih = dgates^T xp.
inline void weights_input(const Design& g, int l, int d, const Play& p) {
  const Unit& u = g.unit(l, d);
  p.ops->gemm(p.lane,
              gemm_of(true, false, g.GH, u.in, g.pack.total, p.b.arena + u.dgates, g.GH,
                      p.b.arena + u.xp, u.in, p.b.accumulate ? 1.0f : 0.0f, p.b.dw + u.w_ih, u.in));
}

// dW_hh = sum over steps of dhidden_s^T h_{s-1}, one GEMM per run of steps
// whose batches (and their previous steps') are equal: contiguous on both sides.
inline void weights_hidden(const Design& g, int l, int d, const Play& p) {
  const Unit& u = g.unit(l, d);
  const Packing& pk = g.pack;
  const i64 GH = g.GH, H = g.HP;  // the columns of h
  const float* dhidden = p.b.arena + (u.dhidden >= 0 ? u.dhidden : u.dgates);
  float* dw = p.b.dw + u.w_hh;
  p.ops->gemm(p.lane, gemm_of(true, false, GH, H, pk.active[0], dhidden, GH, p.b.arena + u.h0, H,
                              p.b.accumulate ? 1.0f : 0.0f, dw, H));
  i64 s = 1;
  while (s < pk.steps) {
    const i64 batch = pk.active[s];
    i64 e = s + 1;
    if (pk.active[s - 1] == batch)
      while (e < pk.steps && pk.active[e] == batch) ++e;
    p.ops->gemm(p.lane, gemm_of(true, false, GH, H, (e - s) * batch, dhidden + pk.offset[s] * GH,
                                GH, p.b.arena + u.h + pk.offset[s - 1] * H, H, 1.0f, dw, H));
    s = e;
  }
}

// With a projection: dW_hr = dh^T m over every packed row, one GEMM (a
// fixed order: deterministic).
inline void weights_proj(const Design& g, int l, int d, const Play& p) {
  const Unit& u = g.unit(l, d);
  p.ops->gemm(p.lane,
              gemm_of(true, false, g.P, g.H, g.pack.total, p.b.arena + u.dh, g.P, p.b.arena + u.m,
                      g.H, p.b.accumulate ? 1.0f : 0.0f, p.b.dw + u.w_hr, g.H));
}

inline void weights_bias(const Design& g, int l, int d, const Play& p) {
  const Unit& u = g.unit(l, d);
  BiasSumsArgs a;
  a.rows = g.pack.total, a.GH = g.GH, a.accumulate = p.b.accumulate;
  a.d_in = p.b.arena + u.dgates;
  a.d_hidden = p.b.arena + (u.dhidden >= 0 ? u.dhidden : u.dgates);
  a.db_ih = p.b.dw + u.b_ih, a.db_hh = p.b.dw + u.b_hh;
  p.ops->bias_sums(p.lane, a, g.GH);
}

// ---- the graphs ---------------------------------------------------------------------

inline std::string unit_name(const char* phase, int l, int d) {
  std::string name = phase;
  name.append(" L").append(std::to_string(l)).append(d == 0 ? " fwd" : " rev");
  return name;
}

inline std::string problem_name(const Design& g, const char* phase) {
  return "rnn " + std::string(to_string(g.params.cell)) + " " + phase + " L" + std::to_string(g.L) +
         " D" + std::to_string(g.D) + " T" + std::to_string(g.T) + " N" + std::to_string(g.N) +
         " H" + std::to_string(g.H) + (g.P > 0 ? " P" + std::to_string(g.P) : std::string());
}

inline std::string range_name(i64 s0, i64 s1) {
  return std::to_string(s0) + ".." + std::to_string(s1 - 1);
}

// A graph and the lane of each of its nodes.
struct LanedGraph {
  TaskGraph graph;
  std::vector<int> lane;

  explicit LanedGraph(std::string name) : graph(std::move(name)) {}
  std::int32_t add(int on, std::string name, std::vector<std::int32_t> deps, TaskGraph::Body body) {
    lane.push_back(on);
    return graph.add(std::move(name), std::move(deps), std::move(body));
  }
};

inline LanedGraph build_forward(const Design* gp) {
  const Design& g = *gp;
  LanedGraph out(problem_name(g, "forward"));
  std::vector<std::vector<std::int32_t>> steps(g.units.size(),
                                               std::vector<std::int32_t>(g.pack.steps, -1));
  const bool padded =
      std::any_of(g.pack.length.begin(), g.pack.length.end(), [&](int v) { return v != g.T; });
  if (padded)
    out.add(g.input_lane(g.L * g.D - 1), "fwd zero y padding", {}, [gp](const void* v) {
      const Play& p = played(v);
      ZeroPaddingArgs a;
      a.t = gp->tables, a.N = gp->N, a.width = gp->D * gp->HP, a.y = p.b.y;
      p.ops->zero_padding(p.lane, a, gp->T * gp->N * a.width);
    });
  for (int l = 0; l < g.L; ++l) {
    std::vector<std::int32_t> layer_inputs;  // variant 2
    for (int d = 0; d < g.D; ++d) {
      const int k = l * g.D + d;
      std::vector<std::int32_t> inputs;
      for (i64 c = 0; c < g.chunks(); ++c) {
        const i64 s0 = c * g.chunk_steps, s1 = std::min(g.pack.steps, s0 + g.chunk_steps);
        std::vector<std::int32_t> deps;
        if (l > 0) {
          // The layer below's same direction up to s1 - 1; its other
          // direction wrote these times at its steps up to steps - 1 - s0.
          deps.push_back(steps[(l - 1) * g.D + d][s1 - 1]);
          if (g.D == 2) deps.push_back(steps[(l - 1) * g.D + 1 - d][g.pack.steps - 1 - s0]);
        }
        inputs.push_back(out.add(
            g.input_lane(k), unit_name("fwd", l, d) + " x-proj s=" + range_name(s0, s1),
            std::move(deps),
            [gp, l, d, s0, s1](const void* v) { forward_input(*gp, l, d, s0, s1, played(v)); }));
      }
      if (g.variant == 2) {
        layer_inputs.insert(layer_inputs.end(), inputs.begin(), inputs.end());
        continue;
      }
      for (i64 s = 0; s < g.pack.steps; ++s) {
        std::vector<std::int32_t> deps{inputs[g.chunk_of(s)]};
        if (s > 0) deps.push_back(steps[k][s - 1]);
        steps[k][s] = out.add(
            g.step_lane(k), unit_name("fwd", l, d) + " t=" + std::to_string(s), std::move(deps),
            [gp, l, d, s](const void* v) { forward_step(*gp, l, d, s, played(v)); });
      }
    }
    if (g.variant != 2) continue;
    // One node per layer, on its forward direction's step lane, after every
    // input chunk of both directions: it stands for every step of both.
    const std::int32_t node =
        out.add(g.step_lane(l * g.D), "fwd L" + std::to_string(l) + " persistent", layer_inputs,
                [gp, l](const void* v) { forward_persistent(*gp, l, played(v)); });
    for (int d = 0; d < g.D; ++d)
      std::fill(steps[l * g.D + d].begin(), steps[l * g.D + d].end(), node);
  }
  return out;
}

inline LanedGraph build_backward_data(const Design* gp) {
  const Design& g = *gp;
  LanedGraph out(problem_name(g, "backward_data"));
  std::vector<std::vector<std::int32_t>> steps(g.units.size(),
                                               std::vector<std::int32_t>(g.pack.steps, -1));
  std::vector<std::vector<std::int32_t>> dx_chunks(g.units.size());
  for (int l = g.L - 1; l >= 0; --l) {
    for (int d = 0; d < g.D; ++d) {
      const int k = l * g.D + d;
      for (i64 s = g.pack.steps - 1; s >= 0; --s) {
        std::vector<std::int32_t> deps;
        if (s + 1 < g.pack.steps) deps.push_back(steps[k][s + 1]);
        if (l + 1 < g.L) {
          // The layer above's dx: the same direction's chunk holding step
          // s, and every chunk of the other direction up to step steps-1-s.
          deps.push_back(dx_chunks[(l + 1) * g.D + d][g.chunk_of(s)]);
          if (g.D == 2)
            for (i64 c = 0; c <= g.chunk_of(g.pack.steps - 1 - s); ++c)
              deps.push_back(dx_chunks[(l + 1) * g.D + 1 - d][c]);
        }
        steps[k][s] = out.add(
            g.step_lane(k), unit_name("bwd", l, d) + " t=" + std::to_string(s), std::move(deps),
            [gp, l, d, s](const void* v) { backward_step(*gp, l, d, s, played(v)); });
      }
    }
    for (int d = 0; d < g.D; ++d) {
      const int k = l * g.D + d;
      for (i64 c = 0; c < g.chunks(); ++c) {
        const i64 s0 = c * g.chunk_steps, s1 = std::min(g.pack.steps, s0 + g.chunk_steps);
        dx_chunks[k].push_back(out.add(
            g.input_lane(k), unit_name("bwd", l, d) + " dx-proj s=" + range_name(s0, s1),
            {steps[k][s0]},
            [gp, l, d, s0, s1](const void* v) { backward_input(*gp, l, d, s0, s1, played(v)); }));
      }
    }
  }
  std::vector<std::int32_t> all_dx;
  for (int d = 0; d < g.D; ++d)
    all_dx.insert(all_dx.end(), dx_chunks[d].begin(), dx_chunks[d].end());
  const i64 time_chunk = (g.T + kStepChunks - 1) / kStepChunks;
  for (i64 t0 = 0; t0 < g.T; t0 += time_chunk) {
    const i64 t1 = std::min(g.T, t0 + time_chunk);
    out.add(g.input_lane(0), "bwd dx t=" + range_name(t0, t1), all_dx,
            [gp, t0, t1](const void* v) { scatter_dx(*gp, t0, t1, played(v)); });
  }
  return out;
}

inline LanedGraph build_backward_weights(const Design* gp) {
  const Design& g = *gp;
  LanedGraph out(problem_name(g, "backward_weights"));
  for (int l = 0; l < g.L; ++l)
    for (int d = 0; d < g.D; ++d) {
      const int k = l * g.D + d;
      out.add(g.input_lane(k), unit_name("wgrad", l, d) + " dW_ih", {},
              [gp, l, d](const void* v) { weights_input(*gp, l, d, played(v)); });
      out.add(g.step_lane(k), unit_name("wgrad", l, d) + " dW_hh", {},
              [gp, l, d](const void* v) { weights_hidden(*gp, l, d, played(v)); });
      if (g.P > 0)
        out.add(g.input_lane(k), unit_name("wgrad", l, d) + " dW_hr", {},
                [gp, l, d](const void* v) { weights_proj(*gp, l, d, played(v)); });
      if (g.unit(l, d).b_ih >= 0)
        out.add(g.step_lane(k), unit_name("wgrad", l, d) + " db", {},
                [gp, l, d](const void* v) { weights_bias(*gp, l, d, played(v)); });
    }
  return out;
}

// ---- one cell step (rnn_cell_forward / rnn_cell_backward) --------------------------
//
// The same GEMMs and kernels on one step of N sequences of length 1
// (tables: order the identity, every length 1), on lane 0.

inline i64 cell_workspace_floats(const RnnCellProblem& p) {
  const i64 N = p.N, H = p.H, GH = rnn_gate_count(p.cell) * H;
  if (!p.backward) return N * GH + (p.cell == RnnCell::Gru ? N * 4 * H : 0);
  return N * GH + (p.cell == RnnCell::Gru ? N * GH : 0) + (p.cell == RnnCell::Lstm ? N * H : 0);
}

inline void cell_forward(const RnnCellProblem& p, const RnnCellArgs& a, float* ws, const Tables& t,
                         RnnDeviceOps& ops) {
  const i64 N = p.N, I = p.I, H = p.H, GH = rnn_gate_count(p.cell) * H;
  const bool lstm = p.cell == RnnCell::Lstm, gru = p.cell == RnnCell::Gru;
  // LSTM's saved gates are its activations, written over the pre-activations.
  float* gates = lstm && a.saved ? a.saved : ws;
  float* gru_saved = gru ? (a.saved ? a.saved : ws + N * GH) : nullptr;
  ops.gemm(0, gemm_of(false, true, N, GH, I, a.x, I, a.w_ih, I, 0.0f, gates, GH));
  if (gru) {
    ops.gemm(0, gemm_of(false, true, N, 2 * H, H, a.h, H, a.w_hh, H, 1.0f, gates, GH));
    ops.gemm(0, gemm_of(false, true, N, H, H, a.h, H, a.w_hh + 2 * H * H, H, 0.0f,
                        gru_saved + 3 * H, 4 * H));
  } else {
    ops.gemm(0, gemm_of(false, true, N, GH, H, a.h, H, a.w_hh, H, 1.0f, gates, GH));
  }
  ForwardStepArgs f;
  f.t = t, f.cell = p.cell, f.batch = N, f.N = N, f.H = H, f.GH = GH, f.width = H;
  f.gates = gates, f.b_ih = a.b_ih, f.b_hh = a.b_hh, f.gru = gru_saved;
  f.h_prev = a.h, f.c_prev = a.c;
  // The packed state and the output are the same rows here.
  f.h = a.h_out, f.c = a.c_out, f.out = a.h_out;
  ops.forward_step(0, f, N * H);
}

inline void cell_backward(const RnnCellProblem& p, const RnnCellArgs& a, float* ws, const Tables& t,
                          RnnDeviceOps& ops) {
  const i64 N = p.N, I = p.I, H = p.H, GH = rnn_gate_count(p.cell) * H;
  const bool lstm = p.cell == RnnCell::Lstm, gru = p.cell == RnnCell::Gru;
  float* d_in = ws;
  float* d_hidden = gru ? ws + N * GH : d_in;
  BackwardStepArgs b;
  b.t = t, b.cell = p.cell, b.batch = N, b.N = N, b.H = H, b.GH = GH, b.width = H;
  // dh_out arrives as "dy"; dh is the carry (zeroed by the kernel: no dhy),
  // which the hidden product then completes.
  b.dy = a.dh_out;
  b.dcy = lstm ? a.dc_out : nullptr;
  b.carry_h = a.dh;
  b.carry_c = lstm ? (a.dc ? a.dc : ws + N * GH) : nullptr;
  b.gates = a.saved_in, b.gru = a.saved_in, b.h = a.h_out_in;
  b.h_prev = a.h, b.c_prev = a.c, b.c = a.c_out_in;
  b.dgates = d_in, b.dhidden = gru ? d_hidden : nullptr;
  ops.backward_step(0, b, N * H);
  ops.gemm(0, gemm_of(false, false, N, H, GH, d_hidden, GH, a.w_hh, H, gru ? 1.0f : 0.0f, a.dh, H));
  if (a.dx) ops.gemm(0, gemm_of(false, false, N, I, GH, d_in, GH, a.w_ih, I, 0.0f, a.dx, I));
  // The weight gradients are added to, as over the steps of a sequence.
  if (a.dw_ih) ops.gemm(0, gemm_of(true, false, GH, I, N, d_in, GH, a.x, I, 1.0f, a.dw_ih, I));
  if (a.dw_hh) ops.gemm(0, gemm_of(true, false, GH, H, N, d_hidden, GH, a.h, H, 1.0f, a.dw_hh, H));
  if (a.db_ih || a.db_hh) {
    BiasSumsArgs s;
    s.rows = N, s.GH = GH, s.accumulate = true;
    s.d_in = d_in, s.d_hidden = d_hidden, s.db_ih = a.db_ih, s.db_hh = a.db_hh;
    ops.bias_sums(0, s, GH);
  }
}

}  // namespace dlrt::detail::cuda_rnn
