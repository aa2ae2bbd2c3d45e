// The pointwise halves of the recurrent cells on the CPU, one row at a time,
// shared by the Cpu sequence engine (a scheduler node's fused pass) and the
// Cpu cell ops. The GEMMs are the caller's; these take the gate
// pre-activations the GEMMs left and write states, saved gates and gate
// gradients. Equations: include/dlrt/rnn.hpp (PyTorch's torch.nn.LSTM/GRU).
//
// The rows run in vectors of the widest instruction set the CPU has, with
// their own exp, sigmoid and tanh (kernels/cpu/rnn_cells.cpp); a column's
// value never depends on H or on where the column falls in the row.
#pragma once

#include <cstdint>

namespace dlrt::detail::cpu {

using i64 = std::int64_t;

// y = 1 / (1 + exp(-x)) and y = tanh(x) over n values, with the
// approximations the rows use. x and y may be the same array.
void sigmoid_row(i64 n, const float* x, float* y);
void tanh_row(i64 n, const float* x, float* y);

// One value through sigmoid_row, so that it matches the rows' bits.
float sigmoid(float v);

// ---- forward ------------------------------------------------------------------

// Tanh/Relu: h = act(pre).
void vanilla_forward_row(i64 H, bool relu, const float* pre, float* h);

// LSTM: gates holds the pre-activations [i, f, g, o] (4 blocks of H) and is
// overwritten with the activations, which backward reads. m = o * tanh(c)
// is h without a projection.
void lstm_forward_row(i64 H, float* gates, const float* c_prev, float* c, float* m);

// GRU: pre holds [r, z] summed over both products and their biases, then
// the input part of n (W_in x + b_in); hn = W_hn h + b_hn. saved receives
// [r, z, n, hn].
void gru_forward_row(i64 H, const float* pre, const float* hn, const float* h_prev, float* h,
                     float* saved);

// ---- backward -----------------------------------------------------------------

// Tanh/Relu: dpre = dh * act'(pre), act' from h itself.
void vanilla_backward_row(i64 H, bool relu, const float* h, const float* dh, float* dpre);

// LSTM: gates are the activations [i, f, g, o]; dm the gradient reaching
// m = o * tanh(c); dc holds the gradient reaching c from the step after
// (or dcy) and leaves holding the gradient of c_prev. dpre receives the
// gradients of the four pre-activations.
void lstm_backward_row(i64 H, const float* gates, const float* c_prev, const float* c,
                       const float* dm, float* dc, float* dpre);

// GRU: from saved [r, z, n, hn] and dh, the gradients of the input-side
// pre-activations (d_in: r, z, n), of the hidden-side ones (d_hidden: r, z,
// and W_hn h + b_hn), and dh_prev's direct part z * dh (the hidden-side
// product adds the rest).
void gru_backward_row(i64 H, const float* saved, const float* h_prev, const float* dh, float* d_in,
                      float* d_hidden, float* dh_prev_direct);

}  // namespace dlrt::detail::cpu
