// The Cuda recurrent engine's per-thread arithmetic, as host/device
// functions: the pointwise cell math (forward and backward of tanh, ReLU,
// LSTM and GRU, as kernels/cpu/rnn_cells.hpp with the same saved-gate
// layout), the packed-row index arithmetic, the row-major to cuBLAS
// column-major GEMM mapping, and every kernel's body (the *_element
// functions: one thread's work at a linear index). The kernels in rnn.cu
// are grid-stride loops over these bodies, so the internal tests replay the
// very same code on the host, thread by thread.
//
// Packing (as the Cpu engine): sequences are ordered longest first; step s
// holds the B_s sequences still running, packed rows offset[s] ..
// offset[s] + B_s; the reverse direction's step s of a sequence of length L
// is its time L-1-s. Saved gates per packed row: LSTM [i, f, g, o] after
// their activations (in the gates buffer), GRU [r, z, n, W_hn h + b_hn].
#pragma once

#include <math.h>

#include <cstdint>

#include "dlrt/rnn.hpp"
#include "kernels/cuda/host_device.hpp"

namespace dlrt::detail::cuda_rnn {

using i64 = std::int64_t;

// ---- cell math -----------------------------------------------------------------

DLRT_HOST_DEVICE inline float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// Tanh/Relu: h = act(pre); the derivative from h itself.
DLRT_HOST_DEVICE inline float vanilla_forward(bool relu, float pre) {
  return relu ? fmaxf(pre, 0.0f) : tanhf(pre);
}
DLRT_HOST_DEVICE inline float vanilla_backward(bool relu, float h, float dh) {
  return relu ? (h > 0.0f ? dh : 0.0f) : dh * (1.0f - h * h);
}

struct LstmForward {
  float i, f, g, o, c, h;
};
// c = f * c_prev + i * g, h = o * tanh(c), from the four pre-activations.
DLRT_HOST_DEVICE inline LstmForward lstm_forward(float pi, float pf, float pg, float po,
                                                 float c_prev) {
  LstmForward r;
  r.i = sigmoid(pi), r.f = sigmoid(pf), r.g = tanhf(pg), r.o = sigmoid(po);
  r.c = r.f * c_prev + r.i * r.g;
  r.h = r.o * tanhf(r.c);
  return r;
}

struct LstmBackward {
  float di, df, dg, d_o, dc_prev;
};
// From the activations, c_prev, c, the gradient reaching h (dh) and the one
// reaching c from the step after (dc).
DLRT_HOST_DEVICE inline LstmBackward lstm_backward(float i, float f, float g, float o, float c_prev,
                                                   float c, float dh, float dc) {
  const float tc = tanhf(c);
  const float dcell = dc + dh * o * (1.0f - tc * tc);
  LstmBackward r;
  r.di = dcell * g * i * (1.0f - i);
  r.df = dcell * c_prev * f * (1.0f - f);
  r.dg = dcell * i * (1.0f - g * g);
  r.d_o = dh * tc * o * (1.0f - o);
  r.dc_prev = dcell * f;
  return r;
}

struct GruForward {
  float r, z, n, h;
};
// pr, pz: both products and both biases; pn_in = W_in x + b_in; hn = W_hn h
// + b_hn (the reset gate applies after the recurrent product and its bias,
// as cuDNN and PyTorch).
DLRT_HOST_DEVICE inline GruForward gru_forward(float pr, float pz, float pn_in, float hn,
                                               float h_prev) {
  GruForward o;
  o.r = sigmoid(pr), o.z = sigmoid(pz);
  o.n = tanhf(pn_in + o.r * hn);
  o.h = (1.0f - o.z) * o.n + o.z * h_prev;
  return o;
}

struct GruBackward {
  float dr, dz, dn, dhn, dh_prev_direct;
};
// d_in = (dr, dz, dn) on the input side; (dr, dz, dhn = dn * r) on the
// hidden side; dh_prev's direct part z * dh (the hidden product adds the rest).
DLRT_HOST_DEVICE inline GruBackward gru_backward(float r, float z, float n, float hn, float h_prev,
                                                 float dh) {
  GruBackward o;
  o.dn = dh * (1.0f - z) * (1.0f - n * n);
  o.dz = dh * (h_prev - n) * z * (1.0f - z);
  o.dr = o.dn * hn * r * (1.0f - r);
  o.dhn = o.dn * r;
  o.dh_prev_direct = dh * z;
  return o;
}

// ---- packed rows -----------------------------------------------------------------

// The time that packed sequence n (of this length) holds at direction d's step s.
DLRT_HOST_DEVICE inline i64 packed_time(int d, i64 s, i64 length) {
  return d == 0 ? s : length - 1 - s;
}
// Row (t, seq) of a padded time-major [T, N, width] tensor.
DLRT_HOST_DEVICE inline i64 padded_row(i64 t, i64 N, i64 seq) { return t * N + seq; }
// The packed row of (time t, packed sequence n) in direction d's packing.
DLRT_HOST_DEVICE inline i64 packed_row(int d, i64 t, i64 n, i64 length, const i64* offset) {
  return offset[d == 0 ? t : length - 1 - t] + n;
}
// Element j of gate q of a row of G*H gate values.
DLRT_HOST_DEVICE inline i64 gate_at(i64 row, i64 GH, int q, i64 H, i64 j) {
  return row * GH + q * H + j;
}
// Row k * N + seq of an [L * D, N, H] state tensor (h0, hy, c0, cy, ...).
DLRT_HOST_DEVICE inline i64 state_at(i64 k, i64 N, i64 seq, i64 H, i64 j) {
  return (k * N + seq) * H + j;
}

// ---- row-major GEMMs on cuBLAS --------------------------------------------------

// C [M, N] = alpha op(A) op(B) + beta C, every operand row-major.
struct RowMajorGemm {
  bool trans_a = false, trans_b = false;
  i64 M = 0, N = 0, K = 0;
  float alpha = 1.0f;
  const float* A = nullptr;
  i64 lda = 0;
  const float* B = nullptr;
  i64 ldb = 0;
  float beta = 0.0f;
  float* C = nullptr;
  i64 ldc = 0;
};

// The same product as cuBLAS (column-major) takes it: a row-major matrix is
// its column-major transpose, so C^T [N, M] = op(B)^T op(A)^T.
struct ColumnMajorGemm {
  bool trans_a = false, trans_b = false;
  i64 m = 0, n = 0, k = 0;
  float alpha = 1.0f;
  const float* a = nullptr;
  i64 lda = 0;
  const float* b = nullptr;
  i64 ldb = 0;
  float beta = 0.0f;
  float* c = nullptr;
  i64 ldc = 0;
};

inline ColumnMajorGemm to_column_major(const RowMajorGemm& g) {
  ColumnMajorGemm c;
  c.trans_a = g.trans_b, c.trans_b = g.trans_a;
  c.m = g.N, c.n = g.M, c.k = g.K;
  c.alpha = g.alpha, c.beta = g.beta;
  c.a = g.B, c.lda = g.ldb;
  c.b = g.A, c.ldb = g.lda;
  c.c = g.C, c.ldc = g.ldc;
  return c;
}

// ---- kernel bodies -----------------------------------------------------------------
//
// Packed tables (device memory on the GPU): order[n] (packed -> caller's
// sequence), length[n] (non-increasing), offset[s] (rows before step s),
// row_step[r] (the step of packed row r), rank[seq] (caller's -> packed),
// seq_length[seq] (the caller's lengths).
struct Tables {
  const int* order = nullptr;
  const int* length = nullptr;
  const i64* offset = nullptr;
  const int* row_step = nullptr;
  const int* rank = nullptr;
  const int* seq_length = nullptr;
};

// xp[r] = the layer input's padded row of packed row r, r in [r0, r0 + rows).
struct GatherArgs {
  Tables t;
  int d = 0;
  i64 r0 = 0, in = 0, N = 0;
  const float* src = nullptr;  // [T, N, in]
  float* xp = nullptr;         // [R, in]
};
DLRT_HOST_DEVICE inline void gather_element(const GatherArgs& a, i64 idx) {
  const i64 r = a.r0 + idx / a.in, col = idx % a.in;
  const i64 s = a.t.row_step[r], n = r - a.t.offset[s];
  const i64 time = packed_time(a.d, s, a.t.length[n]);
  a.xp[r * a.in + col] = a.src[padded_row(time, a.N, a.t.order[n]) * a.in + col];
}

// The packed initial state of unit k: h0/c0 rows in packed order, or zeros.
// One thread per (n < N, j < H); h has hw columns (the projection's P, at
// most H; 0: H).
struct InitStateArgs {
  Tables t;
  i64 k = 0, N = 0, H = 0, hw = 0;
  const float* h0 = nullptr;  // null: zeros
  const float* c0 = nullptr;  // null: zeros
  float* h = nullptr;         // [N, hw]
  float* c = nullptr;         // [N, H], null unless LSTM
};
DLRT_HOST_DEVICE inline void init_state_element(const InitStateArgs& a, i64 idx) {
  const i64 n = idx / a.H, j = idx % a.H, W = a.hw > 0 ? a.hw : a.H;
  const i64 seq = a.t.order[n];
  if (j < W) a.h[n * W + j] = a.h0 ? a.h0[state_at(a.k, a.N, seq, W, j)] : 0.0f;
  if (a.c) a.c[idx] = a.c0 ? a.c0[state_at(a.k, a.N, seq, a.H, j)] : 0.0f;
}

// One step of one unit, one thread per (packed row n < batch, j < H): the
// gate pre-activations the GEMMs left plus the biases, the cell, and the
// writes of the packed state, the layer output, hy and cy. With a
// projection the cell's output m = o * tanh(c) goes to h (out and hy null),
// the projection GEMM makes the P columns of the state, and
// forward_proj_element writes them to the output and hy.
struct ForwardStepArgs {
  Tables t;
  RnnCell cell = RnnCell::Tanh;
  int d = 0;
  i64 s = 0, batch = 0, N = 0, H = 0, GH = 0, width = 0, k = 0;
  i64 hw = 0;                   // forward_proj_element: the state's columns P
  float* gates = nullptr;       // this step's rows [batch, GH]
  const float* b_ih = nullptr;  // null: no bias
  const float* b_hh = nullptr;
  float* gru = nullptr;           // GRU: this step's saved rows [batch, 4H], hn = W_hn h in block 3
  const float* h_prev = nullptr;  // [batch, H]
  const float* c_prev = nullptr;
  float* h = nullptr;  // this step's rows [batch, H]
  float* c = nullptr;
  float* out = nullptr;  // padded [T, N, width], this direction at column d * H; null: none
  float* hy = nullptr;   // null: not wanted
  float* cy = nullptr;
};
DLRT_HOST_DEVICE inline void forward_step_element(const ForwardStepArgs& a, i64 idx) {
  const i64 n = idx / a.H, j = idx % a.H, H = a.H;
  const i64 at = n * H + j;
  auto bias = [&](int q) { return a.b_ih ? a.b_ih[q * H + j] + a.b_hh[q * H + j] : 0.0f; };
  float h = 0.0f, c = 0.0f;
  if (a.cell == RnnCell::Lstm) {
    float* g = a.gates + n * a.GH;
    const LstmForward o = lstm_forward(g[j] + bias(0), g[H + j] + bias(1), g[2 * H + j] + bias(2),
                                       g[3 * H + j] + bias(3), a.c_prev[at]);
    g[j] = o.i, g[H + j] = o.f, g[2 * H + j] = o.g, g[3 * H + j] = o.o;
    a.c[at] = c = o.c;
    h = o.h;
  } else if (a.cell == RnnCell::Gru) {
    const float* g = a.gates + n * a.GH;
    float* saved = a.gru + n * 4 * H;
    const float hn = saved[3 * H + j] + (a.b_hh ? a.b_hh[2 * H + j] : 0.0f);
    const float n_in = g[2 * H + j] + (a.b_ih ? a.b_ih[2 * H + j] : 0.0f);
    const GruForward o = gru_forward(g[j] + bias(0), g[H + j] + bias(1), n_in, hn, a.h_prev[at]);
    saved[j] = o.r, saved[H + j] = o.z, saved[2 * H + j] = o.n, saved[3 * H + j] = hn;
    h = o.h;
  } else {
    h = vanilla_forward(a.cell == RnnCell::Relu, a.gates[n * a.GH + j] + bias(0));
  }
  a.h[at] = h;
  const i64 length = a.t.length[n], seq = a.t.order[n];
  if (a.out) a.out[padded_row(packed_time(a.d, a.s, length), a.N, seq) * a.width + a.d * H + j] = h;
  if (length - 1 != a.s) return;
  if (a.hy) a.hy[state_at(a.k, a.N, seq, H, j)] = h;
  if (a.cy && a.cell == RnnCell::Lstm) a.cy[state_at(a.k, a.N, seq, H, j)] = c;
}

// The projected state's writes, one thread per (n < batch, j < hw): h (this
// step's rows [batch, hw], made by the projection GEMM) to the layer output
// (this direction at column d * hw) and to hy where the sequence ends.
DLRT_HOST_DEVICE inline void forward_proj_element(const ForwardStepArgs& a, i64 idx) {
  const i64 W = a.hw, n = idx / W, j = idx % W;
  const float h = a.h[n * W + j];
  const i64 length = a.t.length[n], seq = a.t.order[n];
  a.out[padded_row(packed_time(a.d, a.s, length), a.N, seq) * a.width + a.d * W + j] = h;
  if (length - 1 == a.s && a.hy) a.hy[state_at(a.k, a.N, seq, W, j)] = h;
}

// y is zero past each sequence's length.
struct ZeroPaddingArgs {
  Tables t;
  i64 N = 0, width = 0;
  float* y = nullptr;
};
DLRT_HOST_DEVICE inline void zero_padding_element(const ZeroPaddingArgs& a, i64 idx) {
  const i64 row = idx / a.width, t = row / a.N, seq = row % a.N;
  if (t >= a.t.seq_length[seq]) a.y[idx] = 0.0f;
}

// One reverse step of one unit, one thread per (n < batch, j < H): the
// gradient reaching h (carried from the step after, or dhy where the
// sequence ends here, plus dy or the layer above's input gradients), then
// the cell's backward. The recurrent product that carries dh to the step
// before follows as a GEMM into carry_h. With a projection (LSTM) the
// gradient reaching the P columns of h is gathered first
// (backward_proj_element, hw = P, into dh), the GEMM dm = dh W_hr makes the
// gradient reaching the cell's output, and the cell's backward reads dm.
struct BackwardStepArgs {
  Tables t;
  RnnCell cell = RnnCell::Tanh;
  int d = 0;
  i64 s = 0, batch = 0, next_batch = 0, N = 0, H = 0, GH = 0, width = 0, k = 0;
  i64 hw = 0;                         // the columns of h, carry_h, dhy and dy's parts (0: H)
  float* dh = nullptr;                // backward_proj_element: this step's rows [batch, hw]
  const float* dm = nullptr;          // the cell's backward: the gradient reaching m [batch, H]
  const float* dy = nullptr;          // top layer: padded [T, N, width]
  const float* dxp_above0 = nullptr;  // otherwise: the layer above's packed input gradients
  const float* dxp_above1 = nullptr;  // (its reverse direction; null unless bidirectional)
  i64 in_above = 0;
  const float* dhy = nullptr;  // null: zeros
  const float* dcy = nullptr;
  float* carry_h = nullptr;      // [N, hw]
  float* carry_c = nullptr;      // LSTM [N, H]
  const float* gates = nullptr;  // LSTM activations, this step's rows
  const float* gru = nullptr;    // GRU saved, this step's rows
  const float* h = nullptr;      // this step's h rows (tanh, relu)
  const float* h_prev = nullptr;
  const float* c_prev = nullptr;
  const float* c = nullptr;
  float* dgates = nullptr;   // this step's rows [batch, GH]: input-side gradients
  float* dhidden = nullptr;  // GRU: hidden-side gradients
};
// The gradient reaching element (n, j < W) of this step's h: carried from
// the step after (dhy where the sequence ends here, which starts the
// carry), plus dy or the layer above's input gradients.
DLRT_HOST_DEVICE inline float incoming_dh(const BackwardStepArgs& a, i64 n, i64 j, i64 W) {
  const i64 at = n * W + j;
  const i64 length = a.t.length[n], seq = a.t.order[n];
  if (n >= a.next_batch)  // the sequence's last step: start from dhy
    a.carry_h[at] = a.dhy ? a.dhy[state_at(a.k, a.N, seq, W, j)] : 0.0f;
  const i64 time = packed_time(a.d, a.s, length);
  float dh = a.carry_h[at];
  if (a.dy) {
    dh += a.dy[padded_row(time, a.N, seq) * a.width + a.d * W + j];
  } else {
    // The layer above read this output through each of its directions.
    dh += a.dxp_above0[packed_row(0, time, n, length, a.t.offset) * a.in_above + a.d * W + j];
    if (a.dxp_above1)
      dh += a.dxp_above1[packed_row(1, time, n, length, a.t.offset) * a.in_above + a.d * W + j];
  }
  return dh;
}

// With a projection: one thread per (n < batch, j < hw), dh = the gradient
// reaching the projected h.
DLRT_HOST_DEVICE inline void backward_proj_element(const BackwardStepArgs& a, i64 idx) {
  const i64 W = a.hw, n = idx / W, j = idx % W;
  a.dh[n * W + j] = incoming_dh(a, n, j, W);
}

DLRT_HOST_DEVICE inline void backward_step_element(const BackwardStepArgs& a, i64 idx) {
  const i64 n = idx / a.H, j = idx % a.H, H = a.H, GH = a.GH;
  const i64 at = n * H + j;
  const i64 seq = a.t.order[n];
  const bool lstm = a.cell == RnnCell::Lstm;
  // the sequence's last step: the cell's carry starts from dcy
  if (lstm && n >= a.next_batch)
    a.carry_c[at] = a.dcy ? a.dcy[state_at(a.k, a.N, seq, H, j)] : 0.0f;
  const float dh = a.dm ? a.dm[at] : incoming_dh(a, n, j, H);
  if (lstm) {
    const float* g = a.gates + n * GH;
    const LstmBackward o = lstm_backward(g[j], g[H + j], g[2 * H + j], g[3 * H + j], a.c_prev[at],
                                         a.c[at], dh, a.carry_c[at]);
    float* dg = a.dgates + n * GH;
    dg[j] = o.di, dg[H + j] = o.df, dg[2 * H + j] = o.dg, dg[3 * H + j] = o.d_o;
    a.carry_c[at] = o.dc_prev;
  } else if (a.cell == RnnCell::Gru) {
    const float* saved = a.gru + n * 4 * H;
    const GruBackward o =
        gru_backward(saved[j], saved[H + j], saved[2 * H + j], saved[3 * H + j], a.h_prev[at], dh);
    float* d_in = a.dgates + n * GH;
    float* d_hidden = a.dhidden + n * GH;
    d_in[j] = o.dr, d_in[H + j] = o.dz, d_in[2 * H + j] = o.dn;
    d_hidden[j] = o.dr, d_hidden[H + j] = o.dz, d_hidden[2 * H + j] = o.dhn;
    a.carry_h[at] = o.dh_prev_direct;  // the hidden GEMM adds onto it
  } else {
    a.dgates[n * GH + j] = vanilla_backward(a.cell == RnnCell::Relu, a.h[at], dh);
  }
}

// dh0 and dc0 from the carries after step 0 (every sequence runs at step 0),
// one thread per (n < N, j < H); dh0 and carry_h have hw columns (0: H).
struct StateOutArgs {
  Tables t;
  i64 k = 0, N = 0, H = 0, hw = 0;
  const float* carry_h = nullptr;
  const float* carry_c = nullptr;
  float* dh0 = nullptr;  // null: not wanted
  float* dc0 = nullptr;
};
DLRT_HOST_DEVICE inline void state_out_element(const StateOutArgs& a, i64 idx) {
  const i64 n = idx / a.H, j = idx % a.H, W = a.hw > 0 ? a.hw : a.H;
  const i64 seq = a.t.order[n];
  if (a.dh0 && j < W) a.dh0[state_at(a.k, a.N, seq, W, j)] = a.carry_h[n * W + j];
  if (a.dc0) a.dc0[state_at(a.k, a.N, seq, a.H, j)] = a.carry_c[idx];
}

// dx [T, N, I]: the sum of both directions' packed gradients, zero past each length.
struct ScatterDxArgs {
  Tables t;
  i64 t0 = 0, N = 0, I = 0;
  const float* dxp0 = nullptr;
  const float* dxp1 = nullptr;  // null unless bidirectional
  float* dx = nullptr;
};
DLRT_HOST_DEVICE inline void scatter_dx_element(const ScatterDxArgs& a, i64 idx) {
  const i64 i = idx + a.t0 * a.N * a.I;
  const i64 row = i / a.I, col = i % a.I, time = row / a.N, seq = row % a.N;
  const i64 n = a.t.rank[seq], length = a.t.length[n];
  if (time >= length) {
    a.dx[i] = 0.0f;
    return;
  }
  float sum = a.dxp0[packed_row(0, time, n, length, a.t.offset) * a.I + col];
  if (a.dxp1) sum += a.dxp1[packed_row(1, time, n, length, a.t.offset) * a.I + col];
  a.dx[i] = sum;
}

// db_ih[j] and db_hh[j]: column sums over every packed row, in row order in
// double (fixed order: deterministic), one thread per column.
struct BiasSumsArgs {
  i64 rows = 0, GH = 0;
  bool accumulate = false;
  const float* d_in = nullptr;
  const float* d_hidden = nullptr;
  float* db_ih = nullptr;  // null: not wanted
  float* db_hh = nullptr;
};
DLRT_HOST_DEVICE inline void bias_sums_element(const BiasSumsArgs& a, i64 j) {
  double in = 0.0, hidden = 0.0;
  for (i64 r = 0; r < a.rows; ++r) {
    in += a.d_in[r * a.GH + j];
    hidden += a.d_hidden[r * a.GH + j];
  }
  if (a.db_ih)
    a.db_ih[j] = a.accumulate ? a.db_ih[j] + static_cast<float>(in) : static_cast<float>(in);
  if (a.db_hh)
    a.db_hh[j] =
        a.accumulate ? a.db_hh[j] + static_cast<float>(hidden) : static_cast<float>(hidden);
}

}  // namespace dlrt::detail::cuda_rnn
