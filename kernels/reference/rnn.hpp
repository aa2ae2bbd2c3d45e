// The recurrent definitions of dlrt/rnn.hpp written as loops over sequences,
// templated on the element type so that the gradient checks can run them in
// double. Whatever the element type, every state, gate and sum is held in
// double; the element type is only that of the arguments. The Reference
// engine instantiates them for float (rnn.cpp instantiates float and double).
//
// Index conventions (row-major, D directions, G gates, H hidden, H_out = P or H):
//   x [T, N, I], y and each layer's output [T, N, D * H_out], h0/hy [L * D, N, H_out],
//   c0/cy [L * D, N, H], flat weights as rnn_weight_layout(params).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/rnn_engine.hpp"

namespace dlrt::detail::reference {

// Where the pieces of layer l, direction d start in the flat weights, at
// index l * D + d; -1 for a piece the parameters do not have.
struct RnnPieces {
  std::int64_t w_ih = -1, w_hh = -1, b_ih = -1, b_hh = -1, w_hr = -1;
};
std::vector<RnnPieces> rnn_pieces(const RnnParams& params);

// What forward keeps for backward. Per layer l and direction d, at index
// l * D + d, each [T, N, width] row-major; rows at t >= lengths[n] are zero.
struct RnnTape {
  std::vector<std::vector<double>> outputs;  // per layer: its output [T, N, D * H_out]
  // LSTM: i, f, g, o after their activations; GRU: r, z, n and W_hn h + b_hn
  // ([T, N, 4H]); vanilla cells keep none (their derivative comes from h).
  std::vector<std::vector<double>> gates;
  std::vector<std::vector<double>> cells;  // LSTM c_t [T, N, H]
  // Written by rnn_backward_data, read by rnn_backward_weights: the
  // gradients of the two affine maps W_ih x + b_ih and W_hh h + b_hh
  // ([T, N, G*H]; they differ for GRU's n gate), and with a projection the
  // gradient of each projected h_t ([T, N, P]).
  std::vector<std::vector<double>> d_pre_ih, d_pre_hh, d_h;
  bool has_gradients = false;
};

// h0, c0 (LSTM), hy, cy null: zeros / not wanted. Fills the tape (reusing
// its storage when it already has the problem's sizes).
template <class T>
void rnn_forward(const RnnProblem& p, const T* x, const T* w, const T* h0, const T* c0, T* y, T* hy,
                 T* cy, RnnTape& tape);

// dy [T, N, D * H_out] (ignored past each length), dhy, dcy null: zeros;
// dh0, dc0 null: not wanted. h0, c0 as given to forward.
template <class T>
void rnn_backward_data(const RnnProblem& p, const T* w, const T* h0, const T* c0, RnnTape& tape,
                       const T* dy, const T* dhy, const T* dcy, T* dx, T* dh0, T* dc0);

// dw in the flat layout: overwritten, or added to when `accumulate`. Needs
// rnn_backward_data on the tape first.
template <class T>
void rnn_backward_weights(const RnnProblem& p, const T* x, const T* h0, const RnnTape& tape, T* dw,
                          bool accumulate);

// The operands of one cell step, as RnnCellArgs but of element type T.
template <class T>
struct RnnCellOperands {
  const T* x = nullptr;
  const T* h = nullptr;
  const T* c = nullptr;
  const T* w_ih = nullptr;
  const T* w_hh = nullptr;
  const T* b_ih = nullptr;
  const T* b_hh = nullptr;
  const T* h_out_in = nullptr;
  const T* c_out_in = nullptr;
  const T* saved_in = nullptr;
  T* h_out = nullptr;
  T* c_out = nullptr;
  T* saved = nullptr;
  const T* dh_out = nullptr;
  const T* dc_out = nullptr;
  T* dx = nullptr;
  T* dh = nullptr;
  T* dc = nullptr;
  T* dw_ih = nullptr;
  T* dw_hh = nullptr;
  T* db_ih = nullptr;
  T* db_hh = nullptr;
};

// rnn_cell_forward / rnn_cell_backward of dlrt/rnn.hpp: null pointers are
// outputs not wanted, or inputs that are zeros (c, dc_out). Backward uses
// saved_in, h_out_in and c_out_in when given and recomputes them otherwise.
template <class T>
void rnn_cell_forward(const RnnCellProblem& p, const RnnCellOperands<T>& a);
template <class T>
void rnn_cell_backward(const RnnCellProblem& p, const RnnCellOperands<T>& a);

}  // namespace dlrt::detail::reference
