// The Reference recurrent engine: the sequences of dlrt/rnn.hpp computed
// directly, one sequence and one step at a time, in double, with no
// scheduler and no threads. Every other recurrent engine is tested against
// it, so it stays obvious rather than fast. Backward is backpropagation
// through time written as the adjoint of each step, walked in the reverse
// of the forward's order.
#include "kernels/reference/rnn.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "dlrt/error.hpp"

namespace dlrt::detail {
namespace reference {
namespace {

using Index = std::int64_t;
using Values = std::vector<double>;

// A null pointer stands for zeros (h0, c0, dhy, dcy, a missing bias).
template <class T>
Values as_doubles(const T* values, Index count) {
  if (values == nullptr) return Values(static_cast<std::size_t>(count), 0.0);
  return Values(values, values + count);
}

template <class T>
void store(const double* values, Index count, T* out) {
  for (Index i = 0; i < count; ++i) out[i] = static_cast<T>(values[i]);
}

// Every array of `arrays` holds `size` zeros; storage of the right size is kept.
void zero_arrays(std::vector<Values>& arrays, std::size_t count, Index size) {
  arrays.resize(count);
  for (Values& a : arrays) a.assign(static_cast<std::size_t>(size), 0.0);
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// out[r] = b[r] + sum_k W[r, k] v[k] for r < rows (b null: no bias).
void affine(const double* W, const double* b, const double* v, Index rows, Index cols,
            double* out) {
  for (Index r = 0; r < rows; ++r) {
    double sum = b ? b[r] : 0.0;
    for (Index k = 0; k < cols; ++k) sum += W[r * cols + k] * v[k];
    out[r] = sum;
  }
}

// out[k] += sum_r W[r, k] g[r]: the adjoint of affine() with respect to v.
void add_transposed(const double* W, const double* g, Index rows, Index cols, double* out) {
  for (Index r = 0; r < rows; ++r)
    for (Index k = 0; k < cols; ++k) out[k] += W[r * cols + k] * g[r];
}

// dW[r, k] += g[r] v[k]: the adjoint of affine() with respect to W.
void add_outer(const double* g, const double* v, Index rows, Index cols, double* dW) {
  for (Index r = 0; r < rows; ++r)
    for (Index k = 0; k < cols; ++k) dW[r * cols + k] += g[r] * v[k];
}

void add(const double* v, Index count, double* out) {
  for (Index i = 0; i < count; ++i) out[i] += v[i];
}

// The pointwise part of one step for one batch row, from the two affine maps
// pre_ih = W_ih x + b_ih and pre_hh = W_hh h_prev + b_hh ([G*H] each).
// Writes the cell's output h (before any projection, [H]), c (LSTM) and
// gates (LSTM, GRU: the 4H values RnnTape describes).
// Equations: PyTorch's torch.nn.RNN, LSTM and GRU documentation, as quoted in dlrt/rnn.hpp.
void pointwise_forward(RnnCell cell, Index H, const double* pre_ih, const double* pre_hh,
                       const double* h_prev, const double* c_prev, double* h, double* c,
                       double* gates) {
  for (Index j = 0; j < H; ++j) {
    switch (cell) {
      case RnnCell::Tanh:
        h[j] = std::tanh(pre_ih[j] + pre_hh[j]);
        break;
      case RnnCell::Relu:
        h[j] = std::max(0.0, pre_ih[j] + pre_hh[j]);
        break;
      case RnnCell::Lstm: {
        const double i = sigmoid(pre_ih[j] + pre_hh[j]);
        const double f = sigmoid(pre_ih[H + j] + pre_hh[H + j]);
        const double g = std::tanh(pre_ih[2 * H + j] + pre_hh[2 * H + j]);
        const double o = sigmoid(pre_ih[3 * H + j] + pre_hh[3 * H + j]);
        c[j] = f * c_prev[j] + i * g;
        h[j] = o * std::tanh(c[j]);
        gates[j] = i, gates[H + j] = f, gates[2 * H + j] = g, gates[3 * H + j] = o;
        break;
      }
      case RnnCell::Gru: {
        const double r = sigmoid(pre_ih[j] + pre_hh[j]);
        const double z = sigmoid(pre_ih[H + j] + pre_hh[H + j]);
        const double hn = pre_hh[2 * H + j];  // W_hn h_prev + b_hn, which r scales
        const double n = std::tanh(pre_ih[2 * H + j] + r * hn);
        h[j] = (1.0 - z) * n + z * h_prev[j];
        gates[j] = r, gates[H + j] = z, gates[2 * H + j] = n, gates[3 * H + j] = hn;
        break;
      }
    }
  }
}

// The adjoint of pointwise_forward for one batch row. In: the forward's
// gates, h (vanilla cells), h_prev (GRU), c_prev and c (LSTM); dh = dL/dh
// (the cell's output, before any projection) and dc_next = dL/dc from later
// steps (LSTM). Out: d_pre_ih and d_pre_hh ([G*H]), dc_prev (LSTM), and the
// part of dL/dh_prev that bypasses W_hh (GRU's z * dh) added to dh_prev.
void pointwise_backward(RnnCell cell, Index H, const double* gates, const double* h,
                        const double* h_prev, const double* c_prev, const double* c,
                        const double* dh, const double* dc_next, double* d_pre_ih, double* d_pre_hh,
                        double* dh_prev, double* dc_prev) {
  for (Index j = 0; j < H; ++j) {
    switch (cell) {
      case RnnCell::Tanh:
        d_pre_ih[j] = d_pre_hh[j] = dh[j] * (1.0 - h[j] * h[j]);
        break;
      case RnnCell::Relu:
        d_pre_ih[j] = d_pre_hh[j] = h[j] > 0.0 ? dh[j] : 0.0;
        break;
      case RnnCell::Lstm: {
        const double i = gates[j], f = gates[H + j], g = gates[2 * H + j], o = gates[3 * H + j];
        const double tanh_c = std::tanh(c[j]);
        const double dc = dc_next[j] + dh[j] * o * (1.0 - tanh_c * tanh_c);
        const double di = dc * g, df = dc * c_prev[j], dg = dc * i, d_o = dh[j] * tanh_c;
        dc_prev[j] = dc * f;
        d_pre_ih[j] = di * i * (1.0 - i);
        d_pre_ih[H + j] = df * f * (1.0 - f);
        d_pre_ih[2 * H + j] = dg * (1.0 - g * g);
        d_pre_ih[3 * H + j] = d_o * o * (1.0 - o);
        for (Index gate = 0; gate < 4; ++gate) d_pre_hh[gate * H + j] = d_pre_ih[gate * H + j];
        break;
      }
      case RnnCell::Gru: {
        const double r = gates[j], z = gates[H + j], n = gates[2 * H + j], hn = gates[3 * H + j];
        const double dn = dh[j] * (1.0 - z), dz = dh[j] * (h_prev[j] - n);
        const double d_pre_n = dn * (1.0 - n * n);  // of W_in x + b_in + r * hn
        const double dr = d_pre_n * hn;
        dh_prev[j] += dh[j] * z;
        d_pre_ih[j] = d_pre_hh[j] = dr * r * (1.0 - r);
        d_pre_ih[H + j] = d_pre_hh[H + j] = dz * z * (1.0 - z);
        d_pre_ih[2 * H + j] = d_pre_n;
        d_pre_hh[2 * H + j] = d_pre_n * r;
        break;
      }
    }
  }
}

// The problem's sizes under short names.
struct Sizes {
  RnnCell cell;
  int L, D;
  Index T, N, H, H_out, P, GH, gate_width;

  explicit Sizes(const RnnProblem& p)
      : cell(p.params.cell),
        L(p.params.num_layers),
        D(p.directions()),
        T(p.T),
        N(p.N),
        H(p.hidden()),
        H_out(p.hidden_out()),
        P(p.params.proj_size),
        GH(p.gates() * p.hidden()),
        gate_width(rnn_cell_saved_size(p.params.cell, p.hidden())) {}

  bool lstm() const { return cell == RnnCell::Lstm; }
  // The offset of (layer l, direction d, sequence n) in h0/hy (width H_out) or c0/cy (H).
  Index state(int l, int d, Index n, Index width) const { return ((l * D + d) * N + n) * width; }
  // Direction d's column block of row (t, n) in a layer output.
  Index output(Index t, Index n, int d) const { return (t * N + n) * D * H_out + d * H_out; }
};

// The time index of a direction's step-th step over a sequence of `length`:
// forward from 0, reverse from the sequence's own last step.
Index time_of(int direction, Index length, Index step) {
  return direction == 0 ? step : length - 1 - step;
}

// One direction's pieces as pointers into the flat weights (null when absent).
struct PiecePointers {
  const double *w_ih, *w_hh, *b_ih, *b_hh, *w_hr;
  PiecePointers(const RnnPieces& p, const double* w)
      : w_ih(w + p.w_ih),
        w_hh(w + p.w_hh),
        b_ih(p.b_ih >= 0 ? w + p.b_ih : nullptr),
        b_hh(p.b_hh >= 0 ? w + p.b_hh : nullptr),
        w_hr(p.w_hr >= 0 ? w + p.w_hr : nullptr) {}
};

void check_tape(const Sizes& s, const RnnTape& tape, const char* who) {
  const std::size_t per_direction = static_cast<std::size_t>(s.L * s.D);
  if (tape.outputs.size() != static_cast<std::size_t>(s.L) || tape.gates.size() != per_direction ||
      tape.outputs[0].size() != static_cast<std::size_t>(s.T * s.N * s.D * s.H_out))
    throw Error(Error::Kind::Internal,
                std::string(who) + ": the saved data was not filled by a forward of this problem");
}

}  // namespace

std::vector<RnnPieces> rnn_pieces(const RnnParams& params) {
  const int D = params.bidirectional ? 2 : 1;
  std::vector<RnnPieces> pieces(static_cast<std::size_t>(params.num_layers * D));
  for (const RnnWeight& piece : rnn_weight_layout(params)) {
    RnnPieces& p = pieces[static_cast<std::size_t>(piece.layer * D + piece.direction)];
    const std::string_view name = piece.name;
    if (name.starts_with("weight_ih")) p.w_ih = piece.offset;
    if (name.starts_with("weight_hh")) p.w_hh = piece.offset;
    if (name.starts_with("bias_ih")) p.b_ih = piece.offset;
    if (name.starts_with("bias_hh")) p.b_hh = piece.offset;
    if (name.starts_with("weight_hr")) p.w_hr = piece.offset;
  }
  return pieces;
}

template <class T>
void rnn_forward(const RnnProblem& p, const T* x_in, const T* w_in, const T* h0_in, const T* c0_in,
                 T* y, T* hy, T* cy, RnnTape& tape) {
  const Sizes s(p);
  const Values x = as_doubles(x_in, s.T * s.N * p.params.input_size);
  const Values w = as_doubles(w_in, rnn_weight_count(p.params));
  const Values h0 = as_doubles(h0_in, s.L * s.D * s.N * s.H_out);
  const Values c0 = as_doubles(c0_in, s.L * s.D * s.N * s.H);
  const std::vector<RnnPieces> pieces = rnn_pieces(p.params);

  // Zeros everywhere first, so that rows past each length are zero.
  const std::size_t per_direction = static_cast<std::size_t>(s.L * s.D);
  zero_arrays(tape.outputs, static_cast<std::size_t>(s.L), s.T * s.N * s.D * s.H_out);
  zero_arrays(tape.gates, per_direction, s.T * s.N * s.gate_width);
  zero_arrays(tape.cells, per_direction, s.lstm() ? s.T * s.N * s.H : 0);
  tape.has_gradients = false;

  Values pre_ih(s.GH), pre_hh(s.GH), cell_out(s.H), c(s.H), h(s.H_out), h_prev(s.H_out),
      c_prev(s.H);
  for (int l = 0; l < s.L; ++l) {
    const Index width = p.layer_input(l);
    const double* input = l == 0 ? x.data() : tape.outputs[l - 1].data();
    for (int d = 0; d < s.D; ++d) {
      const int k = l * s.D + d;
      const PiecePointers wp(pieces[k], w.data());
      for (Index n = 0; n < s.N; ++n) {
        const Index length = p.lengths[n];
        std::copy_n(h0.data() + s.state(l, d, n, s.H_out), s.H_out, h_prev.data());
        std::copy_n(c0.data() + s.state(l, d, n, s.H), s.H, c_prev.data());
        for (Index step = 0; step < length; ++step) {
          const Index t = time_of(d, length, step), row = t * s.N + n;
          affine(wp.w_ih, wp.b_ih, input + row * width, s.GH, width, pre_ih.data());
          affine(wp.w_hh, wp.b_hh, h_prev.data(), s.GH, s.H_out, pre_hh.data());
          double* gates = s.gate_width ? tape.gates[k].data() + row * s.gate_width : nullptr;
          pointwise_forward(s.cell, s.H, pre_ih.data(), pre_hh.data(), h_prev.data(), c_prev.data(),
                            cell_out.data(), c.data(), gates);
          if (s.P > 0)
            affine(wp.w_hr, nullptr, cell_out.data(), s.P, s.H, h.data());
          else
            h = cell_out;
          std::copy(h.begin(), h.end(), tape.outputs[l].begin() + s.output(t, n, d));
          if (s.lstm()) std::copy(c.begin(), c.end(), tape.cells[k].begin() + row * s.H);
          h_prev = h;
          c_prev = c;
        }
        if (hy) store(h_prev.data(), s.H_out, hy + s.state(l, d, n, s.H_out));
        if (cy && s.lstm()) store(c_prev.data(), s.H, cy + s.state(l, d, n, s.H));
      }
    }
  }
  store(tape.outputs.back().data(), s.T * s.N * s.D * s.H_out, y);
}

template <class T>
void rnn_backward_data(const RnnProblem& p, const T* w_in, const T* h0_in, const T* c0_in,
                       RnnTape& tape, const T* dy, const T* dhy_in, const T* dcy_in, T* dx, T* dh0,
                       T* dc0) {
  const Sizes s(p);
  check_tape(s, tape, "reference rnn backward_data");
  const Values w = as_doubles(w_in, rnn_weight_count(p.params));
  const Values h0 = as_doubles(h0_in, s.L * s.D * s.N * s.H_out);
  const Values c0 = as_doubles(c0_in, s.L * s.D * s.N * s.H);
  const Values dhy = as_doubles(dhy_in, s.L * s.D * s.N * s.H_out);
  const Values dcy = as_doubles(dcy_in, s.L * s.D * s.N * s.H);
  const std::vector<RnnPieces> pieces = rnn_pieces(p.params);

  const std::size_t per_direction = static_cast<std::size_t>(s.L * s.D);
  zero_arrays(tape.d_pre_ih, per_direction, s.T * s.N * s.GH);
  zero_arrays(tape.d_pre_hh, per_direction, s.T * s.N * s.GH);
  zero_arrays(tape.d_h, per_direction, s.T * s.N * s.P);

  // dL/d(the current layer's output); y's gradient past each length is never read.
  Values d_out = as_doubles(dy, s.T * s.N * s.D * s.H_out);
  Values dh(s.H_out), d_cell_out(s.H), dh_next(s.H_out), dc_next(s.H), dc_prev(s.H);
  for (int l = s.L - 1; l >= 0; --l) {
    const Index width = p.layer_input(l);
    Values d_in(static_cast<std::size_t>(s.T * s.N * width), 0.0);
    const double* out = tape.outputs[l].data();
    for (int d = 0; d < s.D; ++d) {
      const int k = l * s.D + d;
      const PiecePointers wp(pieces[k], w.data());
      for (Index n = 0; n < s.N; ++n) {
        const Index length = p.lengths[n];
        std::copy_n(dhy.data() + s.state(l, d, n, s.H_out), s.H_out, dh_next.data());
        std::copy_n(dcy.data() + s.state(l, d, n, s.H), s.H, dc_next.data());
        for (Index step = length - 1; step >= 0; --step) {
          const Index t = time_of(d, length, step), row = t * s.N + n;
          for (Index j = 0; j < s.H_out; ++j) dh[j] = dh_next[j] + d_out[s.output(t, n, d) + j];
          if (s.P > 0) {
            std::copy(dh.begin(), dh.end(), tape.d_h[k].begin() + row * s.P);
            std::fill(d_cell_out.begin(), d_cell_out.end(), 0.0);
            add_transposed(wp.w_hr, dh.data(), s.P, s.H, d_cell_out.data());
          } else {
            d_cell_out = dh;
          }
          // The state this step started from: h0/c0 at the direction's first step.
          const double* h_prev = h0.data() + s.state(l, d, n, s.H_out);
          const double* c_prev = c0.data() + s.state(l, d, n, s.H);
          if (step > 0) {
            const Index before = time_of(d, length, step - 1);
            h_prev = out + s.output(before, n, d);
            if (s.lstm()) c_prev = tape.cells[k].data() + (before * s.N + n) * s.H;
          }
          const double* gates = s.gate_width ? tape.gates[k].data() + row * s.gate_width : nullptr;
          const double* c = s.lstm() ? tape.cells[k].data() + row * s.H : nullptr;
          double* d_pre_ih = tape.d_pre_ih[k].data() + row * s.GH;
          double* d_pre_hh = tape.d_pre_hh[k].data() + row * s.GH;
          std::fill(dh_next.begin(), dh_next.end(), 0.0);
          pointwise_backward(s.cell, s.H, gates, out + s.output(t, n, d), h_prev, c_prev, c,
                             d_cell_out.data(), dc_next.data(), d_pre_ih, d_pre_hh, dh_next.data(),
                             dc_prev.data());
          add_transposed(wp.w_hh, d_pre_hh, s.GH, s.H_out, dh_next.data());
          add_transposed(wp.w_ih, d_pre_ih, s.GH, width, d_in.data() + row * width);
          if (s.lstm()) dc_next = dc_prev;
        }
        if (dh0) store(dh_next.data(), s.H_out, dh0 + s.state(l, d, n, s.H_out));
        if (dc0 && s.lstm()) store(dc_next.data(), s.H, dc0 + s.state(l, d, n, s.H));
      }
    }
    d_out = std::move(d_in);
  }
  store(d_out.data(), s.T * s.N * p.params.input_size, dx);
  tape.has_gradients = true;
}

template <class T>
void rnn_backward_weights(const RnnProblem& p, const T* x_in, const T* h0_in, const RnnTape& tape,
                          T* dw, bool accumulate) {
  const Sizes s(p);
  check_tape(s, tape, "reference rnn backward_weights");
  if (!tape.has_gradients)
    throw Error(Error::Kind::Internal,
                "reference rnn backward_weights: backward_data has not run on this saved data");
  const Index count = rnn_weight_count(p.params);
  const Values x = as_doubles(x_in, s.T * s.N * p.params.input_size);
  const Values h0 = as_doubles(h0_in, s.L * s.D * s.N * s.H_out);
  const std::vector<RnnPieces> pieces = rnn_pieces(p.params);

  Values sum(static_cast<std::size_t>(count), 0.0), cell_out(s.H);
  for (int l = 0; l < s.L; ++l) {
    const Index width = p.layer_input(l);
    const double* input = l == 0 ? x.data() : tape.outputs[l - 1].data();
    const double* out = tape.outputs[l].data();
    for (int d = 0; d < s.D; ++d) {
      const int k = l * s.D + d;
      const RnnPieces& piece = pieces[k];
      for (Index n = 0; n < s.N; ++n) {
        const Index length = p.lengths[n];
        for (Index step = 0; step < length; ++step) {
          const Index t = time_of(d, length, step), row = t * s.N + n;
          const double* h_prev = step == 0 ? h0.data() + s.state(l, d, n, s.H_out)
                                           : out + s.output(time_of(d, length, step - 1), n, d);
          const double* d_pre_ih = tape.d_pre_ih[k].data() + row * s.GH;
          const double* d_pre_hh = tape.d_pre_hh[k].data() + row * s.GH;
          add_outer(d_pre_ih, input + row * width, s.GH, width, sum.data() + piece.w_ih);
          add_outer(d_pre_hh, h_prev, s.GH, s.H_out, sum.data() + piece.w_hh);
          if (piece.b_ih >= 0) add(d_pre_ih, s.GH, sum.data() + piece.b_ih);
          if (piece.b_hh >= 0) add(d_pre_hh, s.GH, sum.data() + piece.b_hh);
          if (s.P > 0) {
            // The projection's input o * tanh(c), from the saved gates.
            const double* gates = tape.gates[k].data() + row * s.gate_width;
            const double* c = tape.cells[k].data() + row * s.H;
            for (Index j = 0; j < s.H; ++j) cell_out[j] = gates[3 * s.H + j] * std::tanh(c[j]);
            add_outer(tape.d_h[k].data() + row * s.P, cell_out.data(), s.P, s.H,
                      sum.data() + piece.w_hr);
          }
        }
      }
    }
  }
  for (Index i = 0; i < count; ++i)
    dw[i] = static_cast<T>(accumulate ? double(dw[i]) + sum[i] : sum[i]);
}

namespace {

// One cell step's forward for batch row n, in double: the affine maps, the
// output h and c, and the gates.
struct CellRow {
  Values pre_ih, pre_hh, h_out, c_out, gates, x, h, c;
};

struct CellWeights {
  Values w_ih, w_hh, b_ih, b_hh;
  bool bias;
};

template <class T>
CellWeights cell_weights(const RnnCellProblem& p, const RnnCellOperands<T>& a) {
  const Index GH = rnn_gate_count(p.cell) * p.H;
  const bool bias = a.b_ih != nullptr;
  return {as_doubles(a.w_ih, GH * p.I), as_doubles(a.w_hh, GH * p.H),
          bias ? as_doubles(a.b_ih, GH) : Values(), bias ? as_doubles(a.b_hh, GH) : Values(), bias};
}

template <class T>
void cell_row_forward(const RnnCellProblem& p, const CellWeights& w, const RnnCellOperands<T>& a,
                      Index n, CellRow& row) {
  const Index GH = rnn_gate_count(p.cell) * p.H;
  row.x = as_doubles(a.x + n * p.I, p.I);
  row.h = as_doubles(a.h + n * p.H, p.H);
  row.c = as_doubles(a.c ? a.c + n * p.H : nullptr, p.H);
  row.pre_ih.assign(GH, 0.0), row.pre_hh.assign(GH, 0.0);
  row.h_out.assign(p.H, 0.0), row.c_out.assign(p.H, 0.0), row.gates.assign(4 * p.H, 0.0);
  affine(w.w_ih.data(), w.bias ? w.b_ih.data() : nullptr, row.x.data(), GH, p.I, row.pre_ih.data());
  affine(w.w_hh.data(), w.bias ? w.b_hh.data() : nullptr, row.h.data(), GH, p.H, row.pre_hh.data());
  pointwise_forward(p.cell, p.H, row.pre_ih.data(), row.pre_hh.data(), row.h.data(), row.c.data(),
                    row.h_out.data(), row.c_out.data(), row.gates.data());
}

// dst[i] += sum[i], the sum taken in double and added to dst once.
template <class T>
void add_into(const Values& sum, T* dst) {
  if (dst == nullptr) return;
  for (std::size_t i = 0; i < sum.size(); ++i) dst[i] = static_cast<T>(double(dst[i]) + sum[i]);
}

}  // namespace

template <class T>
void rnn_cell_forward(const RnnCellProblem& p, const RnnCellOperands<T>& a) {
  const CellWeights w = cell_weights(p, a);
  const Index saved_width = rnn_cell_saved_size(p.cell, p.H);
  CellRow row;
  for (Index n = 0; n < p.N; ++n) {
    cell_row_forward(p, w, a, n, row);
    store(row.h_out.data(), p.H, a.h_out + n * p.H);
    if (a.c_out && p.cell == RnnCell::Lstm) store(row.c_out.data(), p.H, a.c_out + n * p.H);
    if (a.saved && saved_width > 0) store(row.gates.data(), saved_width, a.saved + n * saved_width);
  }
}

template <class T>
void rnn_cell_backward(const RnnCellProblem& p, const RnnCellOperands<T>& a) {
  const CellWeights w = cell_weights(p, a);
  const Index GH = rnn_gate_count(p.cell) * p.H, saved_width = rnn_cell_saved_size(p.cell, p.H);
  const bool lstm = p.cell == RnnCell::Lstm;
  Values dw_ih(static_cast<std::size_t>(GH * p.I), 0.0),
      dw_hh(static_cast<std::size_t>(GH * p.H), 0.0);
  Values db_ih(static_cast<std::size_t>(GH), 0.0), db_hh(static_cast<std::size_t>(GH), 0.0);
  Values d_pre_ih(GH), d_pre_hh(GH), dx(p.I), dh(p.H), dc(p.H);
  CellRow row;
  for (Index n = 0; n < p.N; ++n) {
    // The forward recomputed, then replaced by what the caller's forward kept.
    cell_row_forward(p, w, a, n, row);
    if (a.saved_in && saved_width > 0)
      row.gates = as_doubles(a.saved_in + n * saved_width, saved_width);
    if (a.h_out_in) row.h_out = as_doubles(a.h_out_in + n * p.H, p.H);
    if (a.c_out_in && lstm) row.c_out = as_doubles(a.c_out_in + n * p.H, p.H);
    const Values dh_out = as_doubles(a.dh_out + n * p.H, p.H);
    const Values dc_out = as_doubles(a.dc_out ? a.dc_out + n * p.H : nullptr, p.H);

    std::fill(dh.begin(), dh.end(), 0.0);
    std::fill(dx.begin(), dx.end(), 0.0);
    pointwise_backward(p.cell, p.H, row.gates.data(), row.h_out.data(), row.h.data(), row.c.data(),
                       row.c_out.data(), dh_out.data(), dc_out.data(), d_pre_ih.data(),
                       d_pre_hh.data(), dh.data(), dc.data());
    add_transposed(w.w_hh.data(), d_pre_hh.data(), GH, p.H, dh.data());
    add_transposed(w.w_ih.data(), d_pre_ih.data(), GH, p.I, dx.data());
    store(dh.data(), p.H, a.dh + n * p.H);
    if (a.dx) store(dx.data(), p.I, a.dx + n * p.I);
    if (a.dc && lstm) store(dc.data(), p.H, a.dc + n * p.H);
    add_outer(d_pre_ih.data(), row.x.data(), GH, p.I, dw_ih.data());
    add_outer(d_pre_hh.data(), row.h.data(), GH, p.H, dw_hh.data());
    add(d_pre_ih.data(), GH, db_ih.data());
    add(d_pre_hh.data(), GH, db_hh.data());
  }
  add_into(dw_ih, a.dw_ih);
  add_into(dw_hh, a.dw_hh);
  add_into(db_ih, a.db_ih);
  add_into(db_hh, a.db_hh);
}

#define DLRT_REFERENCE_RNN_INSTANTIATE(T)                                                          \
  template void rnn_forward<T>(const RnnProblem&, const T*, const T*, const T*, const T*, T*, T*,  \
                               T*, RnnTape&);                                                      \
  template void rnn_backward_data<T>(const RnnProblem&, const T*, const T*, const T*, RnnTape&,    \
                                     const T*, const T*, const T*, T*, T*, T*);                    \
  template void rnn_backward_weights<T>(const RnnProblem&, const T*, const T*, const RnnTape&, T*, \
                                        bool);                                                     \
  template void rnn_cell_forward<T>(const RnnCellProblem&, const RnnCellOperands<T>&);             \
  template void rnn_cell_backward<T>(const RnnCellProblem&, const RnnCellOperands<T>&);

DLRT_REFERENCE_RNN_INSTANTIATE(float)
DLRT_REFERENCE_RNN_INSTANTIATE(double)
#undef DLRT_REFERENCE_RNN_INSTANTIATE

}  // namespace reference

namespace {

// The tape of one forward, kept between the forward and its backward.
class ReferenceRnnSaved final : public RnnSavedData {
public:
  reference::RnnTape tape;
};

// Saved is Saved& or const Saved&: the tape with the same constness.
template <class Saved>
auto& tape_of(Saved& saved, const char* who) {
  auto* mine = dynamic_cast<
      std::conditional_t<std::is_const_v<Saved>, const ReferenceRnnSaved, ReferenceRnnSaved>*>(
      &saved);
  if (mine == nullptr)
    throw Error(Error::Kind::Internal,
                std::string(who) + ": the saved data was not made by the Reference engine");
  return mine->tape;
}

class ReferenceRnnKernel final : public RnnKernel {
public:
  explicit ReferenceRnnKernel(RnnProblem problem)
      : RnnKernel(Engine::Reference, 0, "reference " + std::string(to_string(problem.params.cell))),
        problem_(std::move(problem)) {}

  void forward(Context&, const RnnInputs& in, const RnnOutputs& out, void*,
               std::shared_ptr<RnnSavedData>* saved) const override {
    if (saved == nullptr) {
      reference::RnnTape scratch;
      return reference::rnn_forward(problem_, in.x, in.w, in.h0, in.c0, out.y, out.hy, out.cy,
                                    scratch);
    }
    // An earlier forward's tape has this problem's sizes: reusing it allocates nothing.
    if (dynamic_cast<ReferenceRnnSaved*>(saved->get()) == nullptr)
      *saved = std::make_shared<ReferenceRnnSaved>();
    reference::rnn_forward(problem_, in.x, in.w, in.h0, in.c0, out.y, out.hy, out.cy,
                           tape_of(**saved, "reference rnn forward"));
  }

  void backward_data(Context&, const RnnInputs& in, RnnSavedData& saved, const RnnGradients& g,
                     void*) const override {
    reference::rnn_backward_data(problem_, in.w, in.h0, in.c0,
                                 tape_of(saved, "reference rnn backward_data"), g.dy, g.dhy, g.dcy,
                                 g.dx, g.dh0, g.dc0);
  }

  void backward_weights(Context&, const RnnInputs& in, const RnnSavedData& saved, float* dw,
                        bool accumulate, void*) const override {
    reference::rnn_backward_weights(
        problem_, in.x, in.h0, tape_of(saved, "reference rnn backward_weights"), dw, accumulate);
  }

private:
  RnnProblem problem_;
};

class ReferenceRnnCellKernel final : public RnnCellKernel {
public:
  explicit ReferenceRnnCellKernel(const RnnCellProblem& problem)
      : RnnCellKernel(Engine::Reference, 0,
                      "reference " + std::string(to_string(problem.cell)) + " cell " +
                          (problem.backward ? "backward" : "forward")),
        problem_(problem) {}

  void run(Context&, const RnnCellArgs& a, void*) const override {
    reference::RnnCellOperands<float> o;
    o.x = a.x, o.h = a.h, o.c = a.c;
    o.w_ih = a.w_ih, o.w_hh = a.w_hh, o.b_ih = a.b_ih, o.b_hh = a.b_hh;
    o.h_out_in = a.h_out_in, o.c_out_in = a.c_out_in, o.saved_in = a.saved_in;
    o.h_out = a.h_out, o.c_out = a.c_out, o.saved = a.saved;
    o.dh_out = a.dh_out, o.dc_out = a.dc_out;
    o.dx = a.dx, o.dh = a.dh, o.dc = a.dc;
    o.dw_ih = a.dw_ih, o.dw_hh = a.dw_hh, o.db_ih = a.db_ih, o.db_hh = a.db_hh;
    if (problem_.backward)
      reference::rnn_cell_backward(problem_, o);
    else
      reference::rnn_cell_forward(problem_, o);
  }

private:
  RnnCellProblem problem_;
};

class ReferenceRnn final : public RnnEngine {
public:
  Engine engine() const override { return Engine::Reference; }

  Planned<RnnKernel> plan(Context&, const RnnProblem& p) const override {
    if (p.variant != 0) return Planned<RnnKernel>::no(no_kernel_variants(engine(), p.variant));
    // The oracle runs the sequences directly: an executor is a request for
    // a scheduled engine, which a silent fallback here would ignore.
    if (p.executor != Executor::Default)
      return Planned<RnnKernel>::no(std::string("the Reference engine plays no graph (executor ") +
                                    to_string(p.executor) +
                                    " asked for); it takes Executor::Default");
    return {std::make_shared<ReferenceRnnKernel>(p), {}};
  }

  Planned<RnnCellKernel> plan_cell(Context&, const RnnCellProblem& p) const override {
    return {std::make_shared<ReferenceRnnCellKernel>(p), {}};
  }
};

const Registrar<RnnEngine> registrar{std::make_unique<ReferenceRnn>()};

}  // namespace
}  // namespace dlrt::detail
