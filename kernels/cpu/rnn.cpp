// The Cpu recurrent engine: the scheduler plays a graph built once per
// problem. Per layer and direction, the input projection runs as GEMMs over
// chunks of steps (all the steps' rows at once), then each step runs the
// recurrent GEMM and the fused pointwise pass of its cell, as in Appleyard,
// Kocisky and Blunsom, "Optimizing Performance of Recurrent Neural Networks
// on GPUs" (2016), on CPU threads.
//
// Sequences are ordered once, longest first, and every buffer is packed by
// step: step s holds the B_s sequences still running, a prefix of that
// order, so no work is done on padding and the active batch shrinks inside
// the plan. The reverse direction's step s of a sequence of length L is its
// time L-1-s: both directions share the packing.
//
// Each step is cut into fixed pieces of the batch (rows are independent all
// along a sequence), so that one direction of one layer keeps several
// threads busy. Every node computes in the shape fixed here, on its own
// thread, so every executor gives the same bits.
#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/gemm_packed.hpp"
#include "kernels/cpu/rnn_cells.hpp"
#include "runtime/allocator.hpp"
#include "runtime/parallel.hpp"
#include "runtime/rnn_engine.hpp"
#include "runtime/rnn_packing.hpp"
#include "runtime/scheduler.hpp"

namespace dlrt::detail {
namespace {

using cpu::i64;
using cpu::Trans;

// Pieces of the batch per step: 16 rows or more each (every piece streams
// the whole packed W_hh per step, so fewer pieces read it fewer times), at
// most 4; a batch of 8-31 rows still splits in two, which measured faster
// than one piece even with both directions of a bidirectional layer to run
// at once. The rule was measured with sgemm as the step's product; the
// packed product runs at its full rate from 8 rows up, so it still holds.
constexpr i64 kPieceRows = 16;
constexpr i64 kMaxPieces = 4;
// Input-projection and dX GEMMs per layer and direction: enough for the
// recurrence to start on the first chunk while the rest is computed.
constexpr i64 kStepChunks = 4;
// Weight-gradient GEMMs are cut by gate rows into this many pieces.
constexpr i64 kWeightPieces = 4;

using Packing = RnnPacking;

// A recurrent weight matrix op(B)[K, N] packed into panels for
// gemm_packed, once per play: every step and piece reuses it.
struct PackedWeight {
  i64 at = -1;     // the panels' offset in the arena; -1: not used
  i64 source = 0;  // the matrix's offset in the weights
  i64 N = 0, K = 0, ld = 0;
  Trans trans = Trans::Yes;
  i64 panels() const { return (N + cpu::kPackedPanel - 1) / cpu::kPackedPanel; }
};

// Offsets (in floats) of one layer and direction's weights and buffers.
struct Unit {
  i64 in = 0;  // the layer's input width
  i64 w_ih = 0, w_hh = 0, b_ih = -1, b_hh = -1, w_hr = -1;
  // Forward: h W_hh^T (GRU: its r and z rows; hn its n rows), m W_hr^T.
  PackedWeight hh, hn, hr;
  // Backward: dG W_hh and dh W_hr.
  PackedWeight hh_back, hr_back;
  // forward buffers (packed rows)
  i64 xp = 0, gates = 0, gru = -1, h = 0, c = -1, m = -1, h0 = 0, c0 = -1;
  // backward buffers
  i64 dgates = 0, dhidden = -1, dxp = 0, dh = 0, dm = -1, carry_h = 0, carry_c = -1;
};

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
};

const Bindings& bound(const void* b) { return *static_cast<const Bindings*>(b); }

// The problem's fixed shape and arena layout.
struct Design {
  RnnParams params;
  i64 T = 1, N = 1, H = 1, Hout = 1, P = 0, G = 1, GH = 1;
  int L = 1, D = 1;
  Packing pack;
  i64 piece_rows = 1, pieces = 1, chunk_steps = 1;
  std::vector<Unit> units;        // [layer * D + direction]
  std::vector<i64> layer_output;  // [layer] padded [T, N, D*Hout] (all but the last layer)
  i64 forward_floats = 0, total_floats = 0;

  explicit Design(const RnnProblem& problem) : params(problem.params), pack(problem.lengths) {
    T = problem.T, N = problem.N;
    H = params.hidden_size, P = params.proj_size, Hout = P > 0 ? P : H;
    G = rnn_gate_count(params.cell), GH = G * H;
    L = params.num_layers, D = params.bidirectional ? 2 : 1;
    pieces = std::clamp<i64>(N / kPieceRows, 1, kMaxPieces);
    if (pieces == 1 && N >= 8) pieces = 2;
    piece_rows = (N + pieces - 1) / pieces;
    pieces = (N + piece_rows - 1) / piece_rows;
    chunk_steps = (pack.steps + kStepChunks - 1) / kStepChunks;

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
    // Each buffer starts on a 64-byte line, so that pieces never share one.
    i64 next = 0;
    auto carve = [&](i64 floats) {
      const i64 at = next;
      next += (floats + 15) / 16 * 16;
      return at;
    };
    const i64 R = pack.total;
    const bool lstm = params.cell == RnnCell::Lstm, gru = params.cell == RnnCell::Gru;
    auto packed = [&](PackedWeight& w, i64 source, i64 N_, i64 K_, i64 ld, Trans trans) {
      w.source = source, w.N = N_, w.K = K_, w.ld = ld, w.trans = trans;
      w.at = carve(cpu::packed_floats(N_, K_));
    };
    for (Unit& u : units) {
      if (gru) {
        packed(u.hh, u.w_hh, 2 * H, Hout, Hout, Trans::Yes);
        packed(u.hn, u.w_hh + 2 * H * Hout, H, Hout, Hout, Trans::Yes);
      } else {
        packed(u.hh, u.w_hh, GH, Hout, Hout, Trans::Yes);
      }
      if (P > 0) packed(u.hr, u.w_hr, P, H, H, Trans::Yes);
      u.xp = carve(R * u.in);
      u.gates = carve(R * GH);
      if (gru) u.gru = carve(R * 4 * H);
      u.h = carve(R * Hout);
      if (lstm) u.c = carve(R * H);
      if (P > 0) u.m = carve(R * H);
      u.h0 = carve(N * Hout);
      if (lstm) u.c0 = carve(N * H);
    }
    layer_output.assign(static_cast<std::size_t>(L), -1);
    for (int l = 0; l + 1 < L; ++l) layer_output[l] = carve(T * N * D * Hout);
    forward_floats = next;
    for (Unit& u : units) {
      packed(u.hh_back, u.w_hh, Hout, GH, Hout, Trans::No);
      if (P > 0) packed(u.hr_back, u.w_hr, H, P, H, Trans::No);
      u.dgates = carve(R * GH);
      if (gru) u.dhidden = carve(R * GH);
      u.dxp = carve(R * u.in);
      u.dh = carve(R * Hout);
      if (P > 0) u.dm = carve(R * H);
      u.carry_h = carve(N * Hout);
      if (lstm) u.carry_c = carve(N * H);
    }
    total_floats = next;
  }

  const Unit& unit(int l, int d) const { return units[l * D + d]; }
  i64 piece_begin(i64 p) const { return p * piece_rows; }
  i64 piece_end(i64 p, i64 s) const { return std::min((p + 1) * piece_rows, pack.active[s]); }
  bool piece_active(i64 p, i64 s) const {
    return s >= 0 && s < pack.steps && piece_end(p, s) > piece_begin(p);
  }
  // The last step at which piece p has a running sequence.
  i64 piece_last_step(i64 p) const { return pack.length[piece_begin(p)] - 1; }
  i64 chunks() const { return (pack.steps + chunk_steps - 1) / chunk_steps; }
  i64 chunk_of(i64 s) const { return s / chunk_steps; }

  // The padded output rows of layer l: the next layer's input, or y.
  float* output(const Bindings& b, int l) const {
    return l + 1 == L ? b.y : b.arena + layer_output[l];
  }
  const float* input(const Bindings& b, int l) const {
    return l == 0 ? b.x : b.arena + layer_output[l - 1];
  }
};

// The recurrent product of one piece: C[rows, w.N] = A[rows, w.K] op(W)
// + beta C, against the panels packed at the start of the play.
void recurrent(const PackedWeight& w, i64 rows, const float* A, i64 lda, float beta, float* C,
               i64 ldc, const Bindings& b) {
  cpu::gemm_packed(rows, w.N, w.K, A, lda, b.arena + w.at, beta, C, ldc);
}

// Panels [begin, end) of every matrix in `weights`, each matrix's range
// scaled to its own panel count: a phase's packing cut into nodes.
void pack_weights(std::initializer_list<const PackedWeight*> weights, i64 piece, i64 pieces,
                  const Bindings& b) {
  for (const PackedWeight* w : weights) {
    if (w->at < 0) continue;
    const i64 begin = w->panels() * piece / pieces, end = w->panels() * (piece + 1) / pieces;
    cpu::pack_panels(w->trans, w->N, w->K, b.w + w->source, w->ld, begin, end, b.arena + w->at);
  }
}

// ---- forward nodes -----------------------------------------------------------

// Gathers chunk [s0, s1) of the layer's input into packed rows and projects
// it: gates = xp W_ih^T + b_ih (+ b_hh, except for GRU's n gate, whose
// hidden bias stays inside r * (W_hn h + b_hn)).
void forward_input(const Design& g, int l, int d, i64 s0, i64 s1, const Bindings& b) {
  const Unit& u = g.unit(l, d);
  const Packing& pk = g.pack;
  const float* src = g.input(b, l);
  const i64 width = l == 0 ? g.params.input_size : g.D * g.Hout;
  float* xp = b.arena + u.xp;
  for (i64 s = s0; s < s1; ++s)
    for (i64 n = 0; n < pk.active[s]; ++n)
      std::memcpy(xp + (pk.offset[s] + n) * u.in,
                  src + (pk.time(d, s, n) * g.N + pk.order[n]) * width, sizeof(float) * u.in);
  const i64 r0 = pk.offset[s0], rows = pk.offset[s1] - r0;
  float* gates = b.arena + u.gates + r0 * g.GH;
  cpu::gemm_serial(Trans::No, Trans::Yes, rows, g.GH, u.in, 1.0f, xp + r0 * u.in, u.in,
                   b.w + u.w_ih, u.in, 0.0f, gates, g.GH);
  if (u.b_ih < 0) return;
  const float* b_ih = b.w + u.b_ih;
  const float* b_hh = b.w + u.b_hh;
  const i64 hidden_bias_end = g.params.cell == RnnCell::Gru ? 2 * g.H : g.GH;
  for (i64 r = 0; r < rows; ++r) {
    float* row = gates + r * g.GH;
    for (i64 j = 0; j < hidden_bias_end; ++j) row[j] += b_ih[j] + b_hh[j];
    for (i64 j = hidden_bias_end; j < g.GH; ++j) row[j] += b_ih[j];
  }
}

// One step of one piece: the recurrent GEMM onto the projected input, the
// cell's pointwise pass, and the writes of y, hy and cy.
void forward_step(const Design& g, int l, int d, i64 s, i64 p, const Bindings& b) {
  const Unit& u = g.unit(l, d);
  const Packing& pk = g.pack;
  const i64 n0 = g.piece_begin(p), n1 = g.piece_end(p, s), rows = n1 - n0;
  const i64 H = g.H, Hout = g.Hout, GH = g.GH;
  const RnnCell cell = g.params.cell;
  const bool lstm = cell == RnnCell::Lstm;
  const int k = l * g.D + d;
  float* arena = b.arena;
  if (s == 0) {
    for (i64 n = n0; n < n1; ++n) {
      float* h0 = arena + u.h0 + n * Hout;
      if (b.h0)
        std::memcpy(h0, b.h0 + (k * g.N + pk.order[n]) * Hout, sizeof(float) * Hout);
      else
        std::fill(h0, h0 + Hout, 0.0f);
      if (lstm) {
        float* c0 = arena + u.c0 + n * H;
        if (b.c0)
          std::memcpy(c0, b.c0 + (k * g.N + pk.order[n]) * H, sizeof(float) * H);
        else
          std::fill(c0, c0 + H, 0.0f);
      }
    }
  }
  const i64 row0 = pk.offset[s] + n0;
  const float* h_prev =
      s == 0 ? arena + u.h0 + n0 * Hout : arena + u.h + (pk.offset[s - 1] + n0) * Hout;
  float* gates = arena + u.gates + row0 * GH;
  float* h = arena + u.h + row0 * Hout;
  if (cell == RnnCell::Gru) {
    float* saved = arena + u.gru + row0 * 4 * H;
    recurrent(u.hh, rows, h_prev, Hout, 1.0f, gates, GH, b);
    recurrent(u.hn, rows, h_prev, Hout, 0.0f, saved + 3 * H, 4 * H, b);
    for (i64 r = 0; r < rows; ++r) {
      float* hn = saved + r * 4 * H + 3 * H;
      if (u.b_hh >= 0)
        for (i64 j = 0; j < H; ++j) hn[j] += b.w[u.b_hh + 2 * H + j];
      cpu::gru_forward_row(H, gates + r * GH, hn, h_prev + r * Hout, h + r * Hout,
                           saved + r * 4 * H);
    }
  } else {
    recurrent(u.hh, rows, h_prev, Hout, 1.0f, gates, GH, b);
    if (lstm) {
      const float* c_prev =
          s == 0 ? arena + u.c0 + n0 * H : arena + u.c + (pk.offset[s - 1] + n0) * H;
      float* c = arena + u.c + row0 * H;
      float* m = g.P > 0 ? arena + u.m + row0 * H : h;
      for (i64 r = 0; r < rows; ++r)
        cpu::lstm_forward_row(H, gates + r * GH, c_prev + r * H, c + r * H, m + r * H);
      if (g.P > 0) recurrent(u.hr, rows, m, H, 0.0f, h, g.P, b);
    } else {
      const bool relu = cell == RnnCell::Relu;
      for (i64 r = 0; r < rows; ++r) cpu::vanilla_forward_row(H, relu, gates + r * GH, h + r * H);
    }
  }
  float* out = g.output(b, l);
  const i64 width = g.D * Hout;
  for (i64 n = n0; n < n1; ++n) {
    const float* h_row = h + (n - n0) * Hout;
    std::memcpy(out + (pk.time(d, s, n) * g.N + pk.order[n]) * width + d * Hout, h_row,
                sizeof(float) * Hout);
    if (pk.length[n] - 1 != s) continue;
    if (b.hy) std::memcpy(b.hy + (k * g.N + pk.order[n]) * Hout, h_row, sizeof(float) * Hout);
    if (b.cy && lstm)
      std::memcpy(b.cy + (k * g.N + pk.order[n]) * H, arena + u.c + (row0 + n - n0) * H,
                  sizeof(float) * H);
  }
}

// y is zero past each sequence's length.
void zero_padding(const Design& g, float* y, i64 width) {
  for (i64 n = 0; n < g.N; ++n)
    for (i64 t = g.pack.length[n]; t < g.T; ++t)
      std::fill_n(y + (t * g.N + g.pack.order[n]) * width, width, 0.0f);
}

// ---- backward-data nodes -----------------------------------------------------------

// One step of one piece, in reverse: the gradient reaching h (from above
// and from the step after), the cell's pointwise backward, and the
// recurrent product that carries it to the step before.
void backward_step(const Design& g, int l, int d, i64 s, i64 p, const Bindings& b) {
  const Unit& u = g.unit(l, d);
  const Packing& pk = g.pack;
  const i64 n0 = g.piece_begin(p), n1 = g.piece_end(p, s), rows = n1 - n0;
  const i64 H = g.H, Hout = g.Hout, GH = g.GH;
  const RnnCell cell = g.params.cell;
  const bool lstm = cell == RnnCell::Lstm;
  const int k = l * g.D + d;
  float* arena = b.arena;
  float* carry_h = arena + u.carry_h;
  float* carry_c = lstm ? arena + u.carry_c : nullptr;
  // Sequences whose last step this is start with dhy and dcy.
  for (i64 n = std::max(n0, pk.active[s + 1]); n < n1; ++n) {
    float* ch = carry_h + n * Hout;
    if (b.dhy)
      std::memcpy(ch, b.dhy + (k * g.N + pk.order[n]) * Hout, sizeof(float) * Hout);
    else
      std::fill(ch, ch + Hout, 0.0f);
    if (lstm) {
      float* cc = carry_c + n * H;
      if (b.dcy)
        std::memcpy(cc, b.dcy + (k * g.N + pk.order[n]) * H, sizeof(float) * H);
      else
        std::fill(cc, cc + H, 0.0f);
    }
  }
  const i64 row0 = pk.offset[s] + n0;
  float* dh = arena + u.dh + row0 * Hout;
  const i64 width = g.D * Hout;
  for (i64 n = n0; n < n1; ++n) {
    float* total = dh + (n - n0) * Hout;
    const float* carried = carry_h + n * Hout;
    const i64 t = pk.time(d, s, n);
    if (l + 1 == g.L) {
      const float* from_y = b.dy + (t * g.N + pk.order[n]) * width + d * Hout;
      for (i64 j = 0; j < Hout; ++j) total[j] = carried[j] + from_y[j];
    } else {
      // The layer above read this output through both of its directions.
      std::copy(carried, carried + Hout, total);
      for (int above = 0; above < g.D; ++above) {
        const Unit& a = g.unit(l + 1, above);
        const float* from = arena + a.dxp + pk.row(above, t, n) * a.in + d * Hout;
        for (i64 j = 0; j < Hout; ++j) total[j] += from[j];
      }
    }
  }
  const float* h_prev =
      s == 0 ? arena + u.h0 + n0 * Hout : arena + u.h + (pk.offset[s - 1] + n0) * Hout;
  float* dgates = arena + u.dgates + row0 * GH;
  const float* dhidden = dgates;
  float beta = 0.0f;
  if (lstm) {
    const float* dm = dh;
    if (g.P > 0) {
      float* dmp = arena + u.dm + row0 * H;
      recurrent(u.hr_back, rows, dh, g.P, 0.0f, dmp, H, b);
      dm = dmp;
    }
    const float* c_prev =
        s == 0 ? arena + u.c0 + n0 * H : arena + u.c + (pk.offset[s - 1] + n0) * H;
    const float* c = arena + u.c + row0 * H;
    const float* gates = arena + u.gates + row0 * GH;
    for (i64 r = 0; r < rows; ++r)
      cpu::lstm_backward_row(H, gates + r * GH, c_prev + r * H, c + r * H, dm + r * H,
                             carry_c + (n0 + r) * H, dgates + r * GH);
  } else if (cell == RnnCell::Gru) {
    float* dh_hidden = arena + u.dhidden + row0 * GH;
    const float* saved = arena + u.gru + row0 * 4 * H;
    for (i64 r = 0; r < rows; ++r)
      cpu::gru_backward_row(H, saved + r * 4 * H, h_prev + r * Hout, dh + r * Hout, dgates + r * GH,
                            dh_hidden + r * GH, carry_h + (n0 + r) * Hout);
    dhidden = dh_hidden;
    beta = 1.0f;  // the carry already holds z * dh
  } else {
    const float* h = arena + u.h + row0 * Hout;
    const bool relu = cell == RnnCell::Relu;
    for (i64 r = 0; r < rows; ++r)
      cpu::vanilla_backward_row(H, relu, h + r * H, dh + r * H, dgates + r * GH);
  }
  recurrent(u.hh_back, rows, dhidden, GH, beta, carry_h + n0 * Hout, Hout, b);
  if (s != 0) return;
  for (i64 n = n0; n < n1; ++n) {
    if (b.dh0)
      std::memcpy(b.dh0 + (k * g.N + pk.order[n]) * Hout, carry_h + n * Hout, sizeof(float) * Hout);
    if (b.dc0 && lstm)
      std::memcpy(b.dc0 + (k * g.N + pk.order[n]) * H, carry_c + n * H, sizeof(float) * H);
  }
}

// dxp = dgates W_ih over chunk [s0, s1): the gradient of the layer's input.
void backward_input(const Design& g, int l, int d, i64 s0, i64 s1, const Bindings& b) {
  const Unit& u = g.unit(l, d);
  const i64 r0 = g.pack.offset[s0], rows = g.pack.offset[s1] - r0;
  cpu::gemm_serial(Trans::No, Trans::No, rows, u.in, g.GH, 1.0f, b.arena + u.dgates + r0 * g.GH,
                   g.GH, b.w + u.w_ih, u.in, 0.0f, b.arena + u.dxp + r0 * u.in, u.in);
}

// dx over times [t0, t1): both directions' packed gradients, zero past each length.
void scatter_dx(const Design& g, i64 t0, i64 t1, const Bindings& b) {
  const Packing& pk = g.pack;
  const i64 I = g.params.input_size;
  for (i64 t = t0; t < t1; ++t)
    for (i64 n = 0; n < g.N; ++n) {
      float* out = b.dx + (t * g.N + pk.order[n]) * I;
      if (t >= pk.length[n]) {
        std::fill_n(out, I, 0.0f);
        continue;
      }
      const float* first = b.arena + g.unit(0, 0).dxp + pk.row(0, t, n) * I;
      if (g.D == 1) {
        std::memcpy(out, first, sizeof(float) * I);
        continue;
      }
      const float* second = b.arena + g.unit(0, 1).dxp + pk.row(1, t, n) * I;
      for (i64 j = 0; j < I; ++j) out[j] = first[j] + second[j];
    }
}

// ---- backward-weights nodes -----------------------------------------------------------

// dW_ih rows [j0, j1) = dgates[:, j0:j1]^T xp.
void weights_input(const Design& g, int l, int d, i64 j0, i64 j1, const Bindings& b) {
  const Unit& u = g.unit(l, d);
  cpu::gemm_serial(Trans::Yes, Trans::No, j1 - j0, u.in, g.pack.total, 1.0f,
                   b.arena + u.dgates + j0, g.GH, b.arena + u.xp, u.in, b.accumulate ? 1.0f : 0.0f,
                   b.dw + u.w_ih + j0 * u.in, u.in);
}

// dW_hh rows [j0, j1) = sum over steps of dhidden_s^T h_{s-1}, in as few
// GEMMs as the packing allows: steps of equal batch whose previous steps
// are of that batch too are contiguous on both sides.
void weights_hidden(const Design& g, int l, int d, i64 j0, i64 j1, const Bindings& b) {
  const Unit& u = g.unit(l, d);
  const Packing& pk = g.pack;
  const i64 GH = g.GH, Hout = g.Hout;
  const float* dhidden = b.arena + (u.dhidden >= 0 ? u.dhidden : u.dgates) + j0;
  float* dw = b.dw + u.w_hh + j0 * Hout;
  const i64 rows = j1 - j0;
  cpu::gemm_serial(Trans::Yes, Trans::No, rows, Hout, pk.active[0], 1.0f, dhidden, GH,
                   b.arena + u.h0, Hout, b.accumulate ? 1.0f : 0.0f, dw, Hout);
  i64 s = 1;
  while (s < pk.steps) {
    const i64 batch = pk.active[s];
    i64 e = s + 1;
    if (pk.active[s - 1] == batch)
      while (e < pk.steps && pk.active[e] == batch) ++e;
    cpu::gemm_serial(Trans::Yes, Trans::No, rows, Hout, (e - s) * batch, 1.0f,
                     dhidden + pk.offset[s] * GH, GH, b.arena + u.h + pk.offset[s - 1] * Hout, Hout,
                     1.0f, dw, Hout);
    s = e;
  }
}

// db_ih and db_hh for gate rows [j0, j1): column sums in double, row order.
void weights_bias(const Design& g, int l, int d, i64 j0, i64 j1, const Bindings& b) {
  const Unit& u = g.unit(l, d);
  const i64 R = g.pack.total, GH = g.GH;
  // Rows outer, so that the rows stream once; each column still sums in
  // row order.
  std::vector<double> sums(static_cast<std::size_t>(j1 - j0));
  auto column_sums = [&](const float* src, float* dst) {
    std::fill(sums.begin(), sums.end(), 0.0);
    for (i64 r = 0; r < R; ++r) {
      const float* row = src + r * GH + j0;
      for (i64 j = 0; j < j1 - j0; ++j) sums[j] += row[j];
    }
    for (i64 j = j0; j < j1; ++j) {
      const float sum = static_cast<float>(sums[j - j0]);
      dst[j] = b.accumulate ? dst[j] + sum : sum;
    }
  };
  column_sums(b.arena + u.dgates, b.dw + u.b_ih);
  column_sums(b.arena + (u.dhidden >= 0 ? u.dhidden : u.dgates), b.dw + u.b_hh);
}

// dW_hr = dh^T m (LSTM projection).
void weights_projection(const Design& g, int l, int d, const Bindings& b) {
  const Unit& u = g.unit(l, d);
  cpu::gemm_serial(Trans::Yes, Trans::No, g.P, g.H, g.pack.total, 1.0f, b.arena + u.dh, g.P,
                   b.arena + u.m, g.H, b.accumulate ? 1.0f : 0.0f, b.dw + u.w_hr, g.H);
}

// ---- the graphs ------------------------------------------------------------------

std::string unit_name(const char* phase, int l, int d) {
  std::string name = phase;
  name.append(" L").append(std::to_string(l)).append(d == 0 ? " fwd" : " rev");
  return name;
}

std::string problem_name(const Design& g, const char* phase) {
  std::string name = "rnn ";
  name.append(to_string(g.params.cell))
      .append(" ")
      .append(phase)
      .append(" L")
      .append(std::to_string(g.L))
      .append(" D")
      .append(std::to_string(g.D))
      .append(" T")
      .append(std::to_string(g.T))
      .append(" N")
      .append(std::to_string(g.N))
      .append(" H")
      .append(std::to_string(g.H));
  return name;
}

// step_nodes[unit][step * pieces + piece]: -1 where the piece has no rows.
using StepNodes = std::vector<std::vector<std::int32_t>>;

// The nodes of every piece's chain at `step`, or at its last step when
// it finishes before.
void depend_on_steps(const Design& g, const std::vector<std::int32_t>& chain, i64 step,
                     std::vector<std::int32_t>& deps) {
  for (i64 p = 0; p < g.pieces; ++p) {
    const i64 at = std::min(step, g.piece_last_step(p));
    if (at >= 0) deps.push_back(chain[at * g.pieces + p]);
  }
}

// The nodes packing one layer and direction's recurrent weights for a
// phase, cut by panels into (at most) two so that packing a large W_hh
// runs on both threads while the first input chunk is projected.
std::vector<std::int32_t> add_pack_nodes(TaskGraph& graph, const Design* g, const char* phase,
                                         int l, int d, bool backward) {
  constexpr i64 kPackPieces = 2;
  const Unit& u = g->unit(l, d);
  const i64 pieces = std::min(kPackPieces, backward ? u.hh_back.panels() : u.hh.panels());
  std::vector<std::int32_t> nodes;
  for (i64 piece = 0; piece < pieces; ++piece) {
    std::string name = unit_name(phase, l, d);
    name.append(" pack W").append(std::to_string(piece));
    nodes.push_back(
        graph.add(std::move(name), {}, [g, l, d, piece, pieces, backward](const void* b) {
          const Unit& unit = g->unit(l, d);
          if (backward)
            pack_weights({&unit.hh_back, &unit.hr_back}, piece, pieces, bound(b));
          else
            pack_weights({&unit.hh, &unit.hn, &unit.hr}, piece, pieces, bound(b));
        }));
  }
  return nodes;
}

TaskGraph build_forward(const Design* g) {
  TaskGraph graph(problem_name(*g, "forward"));
  const Design& G = *g;
  StepNodes steps(G.units.size(), std::vector<std::int32_t>(G.pack.steps * G.pieces, -1));
  const bool padded = G.pack.steps < G.T || !std::all_of(G.pack.length.begin(), G.pack.length.end(),
                                                         [&](int v) { return v == G.T; });
  if (padded)
    graph.add("fwd zero y padding", {},
              [g](const void* b) { zero_padding(*g, bound(b).y, g->D * g->Hout); });
  for (int l = 0; l < G.L; ++l)
    for (int d = 0; d < G.D; ++d) {
      const int k = l * G.D + d;
      const std::vector<std::int32_t> packs = add_pack_nodes(graph, g, "fwd", l, d, false);
      std::vector<std::int32_t> inputs;
      for (i64 c = 0; c < G.chunks(); ++c) {
        const i64 s0 = c * G.chunk_steps, s1 = std::min(G.pack.steps, s0 + G.chunk_steps);
        std::vector<std::int32_t> deps;
        if (l > 0) {
          depend_on_steps(G, steps[(l - 1) * G.D + d], s1 - 1, deps);
          if (G.D == 2)
            depend_on_steps(G, steps[(l - 1) * G.D + 1 - d], G.pack.steps - 1 - s0, deps);
        }
        std::string name = unit_name("fwd", l, d);
        name.append(" x-proj s=")
            .append(std::to_string(s0))
            .append("..")
            .append(std::to_string(s1 - 1));
        inputs.push_back(graph.add(
            std::move(name), std::move(deps),
            [g, l, d, s0, s1](const void* b) { forward_input(*g, l, d, s0, s1, bound(b)); }));
      }
      for (i64 s = 0; s < G.pack.steps; ++s)
        for (i64 p = 0; p < G.pieces; ++p) {
          if (!G.piece_active(p, s)) continue;
          std::vector<std::int32_t> deps{inputs[G.chunk_of(s)]};
          if (s > 0)
            deps.push_back(steps[k][(s - 1) * G.pieces + p]);
          else
            deps.insert(deps.end(), packs.begin(), packs.end());
          std::string name = unit_name("fwd", l, d);
          name.append(" t=").append(std::to_string(s)).append(" p").append(std::to_string(p));
          steps[k][s * G.pieces + p] =
              graph.add(std::move(name), std::move(deps),
                        [g, l, d, s, p](const void* b) { forward_step(*g, l, d, s, p, bound(b)); });
        }
    }
  return graph;
}

TaskGraph build_backward_data(const Design* g) {
  TaskGraph graph(problem_name(*g, "backward_data"));
  const Design& G = *g;
  StepNodes steps(G.units.size(), std::vector<std::int32_t>(G.pack.steps * G.pieces, -1));
  std::vector<std::vector<std::int32_t>> dx_chunks(G.units.size());
  for (int l = G.L - 1; l >= 0; --l) {
    for (int d = 0; d < G.D; ++d) {
      const int k = l * G.D + d;
      const std::vector<std::int32_t> packs = add_pack_nodes(graph, g, "bwd", l, d, true);
      for (i64 s = G.pack.steps - 1; s >= 0; --s)
        for (i64 p = 0; p < G.pieces; ++p) {
          if (!G.piece_active(p, s)) continue;
          std::vector<std::int32_t> deps;
          if (G.piece_active(p, s + 1))
            deps.push_back(steps[k][(s + 1) * G.pieces + p]);
          else
            deps.insert(deps.end(), packs.begin(), packs.end());
          if (l + 1 < G.L) {
            // The layer above's dx: the same direction's chunk holding step
            // s, and every chunk of the other direction up to step T-1-s.
            deps.push_back(dx_chunks[(l + 1) * G.D + d][G.chunk_of(s)]);
            if (G.D == 2)
              for (i64 c = 0; c <= G.chunk_of(G.pack.steps - 1 - s); ++c)
                deps.push_back(dx_chunks[(l + 1) * G.D + 1 - d][c]);
          }
          std::string name = unit_name("bwd", l, d);
          name.append(" t=").append(std::to_string(s)).append(" p").append(std::to_string(p));
          steps[k][s * G.pieces + p] = graph.add(
              std::move(name), std::move(deps),
              [g, l, d, s, p](const void* b) { backward_step(*g, l, d, s, p, bound(b)); });
        }
    }
    for (int d = 0; d < G.D; ++d) {
      const int k = l * G.D + d;
      for (i64 c = 0; c < G.chunks(); ++c) {
        const i64 s0 = c * G.chunk_steps, s1 = std::min(G.pack.steps, s0 + G.chunk_steps);
        std::vector<std::int32_t> deps;
        for (i64 p = 0; p < G.pieces; ++p)
          if (G.piece_active(p, s0)) deps.push_back(steps[k][s0 * G.pieces + p]);
        std::string name = unit_name("bwd", l, d);
        name.append(" dx-proj s=")
            .append(std::to_string(s0))
            .append("..")
            .append(std::to_string(s1 - 1));
        dx_chunks[k].push_back(graph.add(
            std::move(name), std::move(deps),
            [g, l, d, s0, s1](const void* b) { backward_input(*g, l, d, s0, s1, bound(b)); }));
      }
    }
  }
  std::vector<std::int32_t> all_dx;
  for (int d = 0; d < G.D; ++d)
    all_dx.insert(all_dx.end(), dx_chunks[d].begin(), dx_chunks[d].end());
  const i64 time_chunk = (G.T + kStepChunks - 1) / kStepChunks;
  for (i64 t0 = 0; t0 < G.T; t0 += time_chunk) {
    const i64 t1 = std::min(G.T, t0 + time_chunk);
    std::string name = "bwd dx t=" + std::to_string(t0);
    name.append("..").append(std::to_string(t1 - 1));
    graph.add(std::move(name), all_dx,
              [g, t0, t1](const void* b) { scatter_dx(*g, t0, t1, bound(b)); });
  }
  return graph;
}

TaskGraph build_backward_weights(const Design* g) {
  TaskGraph graph(problem_name(*g, "backward_weights"));
  const Design& G = *g;
  const i64 block = (G.GH + kWeightPieces - 1) / kWeightPieces;
  for (int l = 0; l < G.L; ++l)
    for (int d = 0; d < G.D; ++d) {
      const Unit& u = G.unit(l, d);
      for (i64 j0 = 0; j0 < G.GH; j0 += block) {
        const i64 j1 = std::min(G.GH, j0 + block);
        const std::string range = " rows " + std::to_string(j0) + ".." + std::to_string(j1 - 1);
        graph.add(unit_name("wgrad", l, d) + " dW_ih" + range, {},
                  [g, l, d, j0, j1](const void* b) { weights_input(*g, l, d, j0, j1, bound(b)); });
        graph.add(unit_name("wgrad", l, d) + " dW_hh" + range, {},
                  [g, l, d, j0, j1](const void* b) { weights_hidden(*g, l, d, j0, j1, bound(b)); });
        if (u.b_ih >= 0)
          graph.add(unit_name("wgrad", l, d) + " db" + range, {},
                    [g, l, d, j0, j1](const void* b) { weights_bias(*g, l, d, j0, j1, bound(b)); });
      }
      if (G.P > 0)
        graph.add(unit_name("wgrad", l, d) + " dW_hr", {},
                  [g, l, d](const void* b) { weights_projection(*g, l, d, bound(b)); });
    }
  return graph;
}

// ---- the kernel --------------------------------------------------------------------

class CpuRnnKernel;

// The training arena: every activation and saved gate, and the backward
// buffers, allocated once per state and reused by every later forward of
// the same plan.
class CpuRnnSaved final : public RnnSavedData {
public:
  CpuRnnSaved(const CpuRnnKernel* owner, std::size_t bytes)
      : owner_(owner),
        arena_(static_cast<float*>(
            CachingAllocator::of(Device::cpu()).allocate(bytes, nullptr, "rnn training state"))) {}
  ~CpuRnnSaved() override { CachingAllocator::of(Device::cpu()).deallocate(arena_); }
  CpuRnnSaved(const CpuRnnSaved&) = delete;
  CpuRnnSaved& operator=(const CpuRnnSaved&) = delete;

  const CpuRnnKernel* owner() const { return owner_; }
  float* arena() const { return arena_; }

private:
  const CpuRnnKernel* owner_;
  float* arena_;
};

class CpuRnnKernel final : public RnnKernel {
public:
  CpuRnnKernel(std::unique_ptr<Design> design, Executor executor, std::string description)
      : RnnKernel(Engine::Cpu, static_cast<std::size_t>(design->forward_floats) * sizeof(float),
                  std::move(description)),
        design_(std::move(design)),
        executor_(executor),
        forward_(build_forward(design_.get())),
        backward_data_(build_backward_data(design_.get())),
        backward_weights_(build_backward_weights(design_.get())) {}

  void forward(Context&, const RnnInputs& in, const RnnOutputs& out, void* workspace,
               std::shared_ptr<RnnSavedData>* saved) const override {
    Bindings b;
    b.x = in.x, b.w = in.w, b.h0 = in.h0, b.c0 = in.c0;
    b.y = out.y, b.hy = out.hy, b.cy = out.cy;
    if (saved == nullptr) {
      b.arena = static_cast<float*>(workspace);
    } else {
      auto* mine = dynamic_cast<CpuRnnSaved*>(saved->get());
      if (mine == nullptr || mine->owner() != this) {
        saved->reset();
        auto fresh = std::make_shared<CpuRnnSaved>(
            this, static_cast<std::size_t>(design_->total_floats) * sizeof(float));
        mine = fresh.get();
        *saved = std::move(fresh);
      }
      b.arena = mine->arena();
    }
    play(forward_, &b);
  }

  void backward_data(Context&, const RnnInputs& in, RnnSavedData& saved, const RnnGradients& grad,
                     void*) const override {
    Bindings b;
    b.x = in.x, b.w = in.w, b.h0 = in.h0, b.c0 = in.c0;
    b.arena = arena_of(saved);
    b.dy = grad.dy, b.dhy = grad.dhy, b.dcy = grad.dcy;
    b.dx = grad.dx, b.dh0 = grad.dh0, b.dc0 = grad.dc0;
    play(backward_data_, &b);
  }

  void backward_weights(Context&, const RnnInputs& in, const RnnSavedData& saved, float* dw,
                        bool accumulate, void*) const override {
    Bindings b;
    b.x = in.x, b.w = in.w;
    b.arena = arena_of(saved);
    b.dw = dw;
    b.accumulate = accumulate;
    play(backward_weights_, &b);
  }

  Executor executor() const override { return executor_; }
  Trace last_trace() const override { return history_.last(); }

private:
  float* arena_of(const RnnSavedData& saved) const {
    const auto* mine = dynamic_cast<const CpuRnnSaved*>(&saved);
    if (mine == nullptr || mine->owner() != this)
      throw Error(Error::Kind::Internal, "Cpu rnn: a training state of another kernel");
    return mine->arena();
  }

  void play(const TaskGraph& graph, const Bindings* b) const {
    PlayRecord record;
    graph.play(executor_, available_threads(), b, &record);
    history_.store(graph, std::move(record));
  }

  std::unique_ptr<Design> design_;
  Executor executor_;
  TaskGraph forward_, backward_data_, backward_weights_;
  mutable PlayHistory history_;
};

// ---- one cell step ------------------------------------------------------------------

// rnn_cell_forward / rnn_cell_backward with the Cpu GEMM (split across the
// pool) and the same pointwise rows as the sequence engine.
class CpuRnnCellKernel final : public RnnCellKernel {
public:
  CpuRnnCellKernel(const RnnCellProblem& p, std::size_t workspace)
      : RnnCellKernel(Engine::Cpu, workspace,
                      std::string("cpu ") + to_string(p.cell) +
                          (p.backward ? " cell backward" : " cell forward")),
        p_(p) {}

  void run(Context&, const RnnCellArgs& a, void* workspace) const override {
    if (p_.backward)
      backward(a, static_cast<float*>(workspace));
    else
      forward(a, static_cast<float*>(workspace));
  }

  static std::size_t workspace_floats(const RnnCellProblem& p) {
    const i64 N = p.N, H = p.H, GH = rnn_gate_count(p.cell) * H;
    switch (p.cell) {
      case RnnCell::Lstm:
        return static_cast<std::size_t>(p.backward ? N * (GH + H) : N * GH);
      case RnnCell::Gru:
        return static_cast<std::size_t>(p.backward ? 2 * N * GH : N * (2 * GH + 4 * H));
      default:
        return static_cast<std::size_t>(N * H);
    }
  }

private:
  void add_bias(float* rows, i64 N, i64 width, i64 ld, const float* bias) const {
    if (bias == nullptr) return;
    for (i64 n = 0; n < N; ++n)
      for (i64 j = 0; j < width; ++j) rows[n * ld + j] += bias[j];
  }

  void forward(const RnnCellArgs& a, float* ws) const {
    const i64 N = p_.N, I = p_.I, H = p_.H, GH = rnn_gate_count(p_.cell) * H;
    if (p_.cell == RnnCell::Gru) {
      float* pre = ws;
      float* hidden = ws + N * GH;
      float* saved = a.saved ? a.saved : ws + 2 * N * GH;
      cpu::gemm(Trans::No, Trans::Yes, N, GH, I, 1.0f, a.x, I, a.w_ih, I, 0.0f, pre, GH);
      add_bias(pre, N, GH, GH, a.b_ih);
      cpu::gemm(Trans::No, Trans::Yes, N, GH, H, 1.0f, a.h, H, a.w_hh, H, 0.0f, hidden, GH);
      add_bias(hidden, N, GH, GH, a.b_hh);
      for (i64 n = 0; n < N; ++n) {
        for (i64 j = 0; j < 2 * H; ++j) pre[n * GH + j] += hidden[n * GH + j];
        cpu::gru_forward_row(H, pre + n * GH, hidden + n * GH + 2 * H, a.h + n * H, a.h_out + n * H,
                             saved + n * 4 * H);
      }
      return;
    }
    float* pre = p_.cell == RnnCell::Lstm && a.saved ? a.saved : ws;
    cpu::gemm(Trans::No, Trans::Yes, N, GH, I, 1.0f, a.x, I, a.w_ih, I, 0.0f, pre, GH);
    cpu::gemm(Trans::No, Trans::Yes, N, GH, H, 1.0f, a.h, H, a.w_hh, H, 1.0f, pre, GH);
    add_bias(pre, N, GH, GH, a.b_ih);
    add_bias(pre, N, GH, GH, a.b_hh);
    if (p_.cell == RnnCell::Lstm) {
      for (i64 n = 0; n < N; ++n)
        cpu::lstm_forward_row(H, pre + n * GH, a.c + n * H, a.c_out + n * H, a.h_out + n * H);
      return;
    }
    const bool relu = p_.cell == RnnCell::Relu;
    for (i64 n = 0; n < N; ++n) cpu::vanilla_forward_row(H, relu, pre + n * H, a.h_out + n * H);
  }

  // Column sums of `rows` added to `bias` (the cell gradients accumulate).
  static void add_column_sums(const float* rows, i64 N, i64 width, float* bias) {
    if (bias == nullptr) return;
    for (i64 j = 0; j < width; ++j) {
      double sum = 0.0;
      for (i64 n = 0; n < N; ++n) sum += rows[n * width + j];
      bias[j] += static_cast<float>(sum);
    }
  }

  void backward(const RnnCellArgs& a, float* ws) const {
    const i64 N = p_.N, I = p_.I, H = p_.H, GH = rnn_gate_count(p_.cell) * H;
    float* d_in = ws;
    float* d_hidden = d_in;
    float beta = 0.0f;
    if (p_.cell == RnnCell::Lstm) {
      float* dc = p_.with_dc ? a.dc : ws + N * GH;
      for (i64 i = 0; i < N * H; ++i) dc[i] = a.dc_out ? a.dc_out[i] : 0.0f;
      for (i64 n = 0; n < N; ++n)
        cpu::lstm_backward_row(H, a.saved_in + n * GH, a.c + n * H, a.c_out_in + n * H,
                               a.dh_out + n * H, dc + n * H, d_in + n * GH);
    } else if (p_.cell == RnnCell::Gru) {
      d_hidden = ws + N * GH;
      for (i64 n = 0; n < N; ++n)
        cpu::gru_backward_row(H, a.saved_in + n * 4 * H, a.h + n * H, a.dh_out + n * H,
                              d_in + n * GH, d_hidden + n * GH, a.dh + n * H);
      beta = 1.0f;
    } else {
      const bool relu = p_.cell == RnnCell::Relu;
      for (i64 n = 0; n < N; ++n)
        cpu::vanilla_backward_row(H, relu, a.h_out_in + n * H, a.dh_out + n * H, d_in + n * H);
    }
    cpu::gemm(Trans::No, Trans::No, N, H, GH, 1.0f, d_hidden, GH, a.w_hh, H, beta, a.dh, H);
    if (a.dx) cpu::gemm(Trans::No, Trans::No, N, I, GH, 1.0f, d_in, GH, a.w_ih, I, 0.0f, a.dx, I);
    if (a.dw_ih)
      cpu::gemm(Trans::Yes, Trans::No, GH, I, N, 1.0f, d_in, GH, a.x, I, 1.0f, a.dw_ih, I);
    if (a.dw_hh)
      cpu::gemm(Trans::Yes, Trans::No, GH, H, N, 1.0f, d_hidden, GH, a.h, H, 1.0f, a.dw_hh, H);
    add_column_sums(d_in, N, GH, a.db_ih);
    add_column_sums(d_hidden, N, GH, a.db_hh);
  }

  RnnCellProblem p_;
};

// ---- the engine --------------------------------------------------------------------

class CpuRnn final : public RnnEngine {
public:
  Engine engine() const override { return Engine::Cpu; }

  Planned<RnnKernel> plan(Context& ctx, const RnnProblem& problem) const override {
    if (problem.variant != 0)
      return Planned<RnnKernel>::no(no_kernel_variants(Engine::Cpu, problem.variant));
    Executor executor = problem.executor;
    if (executor == Executor::Default) executor = Executor::CpuTasks;
    if (executor != Executor::Sequential && executor != Executor::CpuTasks)
      return Planned<RnnKernel>::no(std::string("executor ") + to_string(executor) +
                                    " plays on a GPU; the Cpu engine plays sequential or "
                                    "cpu_tasks");
    auto design = std::make_unique<Design>(problem);
    const std::size_t bytes = static_cast<std::size_t>(design->forward_floats) * sizeof(float);
    if (bytes > ctx.options().workspace_limit_bytes)
      return Planned<RnnKernel>::no("inference needs " + std::to_string(bytes) +
                                    " bytes of activations, over the context's workspace limit "
                                    "of " +
                                    std::to_string(ctx.options().workspace_limit_bytes));
    std::string description = "cpu ";
    description.append(to_string(problem.params.cell))
        .append(" ")
        .append(to_string(executor))
        .append(", ")
        .append(std::to_string(design->pieces))
        .append(" batch pieces, ")
        .append(std::to_string(design->chunks()))
        .append(" input chunks");
    return {std::make_shared<CpuRnnKernel>(std::move(design), executor, std::move(description)),
            {}};
  }

  Planned<RnnCellKernel> plan_cell(Context&, const RnnCellProblem& problem) const override {
    const std::size_t bytes = CpuRnnCellKernel::workspace_floats(problem) * sizeof(float);
    return {std::make_shared<CpuRnnCellKernel>(problem, bytes), {}};
  }
};

const Registrar<RnnEngine> registrar{std::make_unique<CpuRnn>()};

}  // namespace
}  // namespace dlrt::detail
