// The pointwise halves of the recurrent cells on the CPU, one row at a time,
// shared by the Cpu sequence engine (a scheduler node's fused pass) and the
// Cpu cell ops. The GEMMs are the caller's; these take the gate
// pre-activations the GEMMs left and write states, saved gates and gate
// gradients. Equations: include/dlrt/rnn.hpp (PyTorch's torch.nn.LSTM/GRU).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace dlrt::detail::cpu {

using i64 = std::int64_t;

inline float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

// ---- forward ------------------------------------------------------------------

// Tanh/Relu: h = act(pre).
inline void vanilla_forward_row(i64 H, bool relu, const float* pre, float* h) {
  if (relu)
    for (i64 j = 0; j < H; ++j) h[j] = std::max(pre[j], 0.0f);
  else
    for (i64 j = 0; j < H; ++j) h[j] = std::tanh(pre[j]);
}

// LSTM: gates holds the pre-activations [i, f, g, o] (4 blocks of H) and is
// overwritten with the activations, which backward reads. m = o * tanh(c)
// is h without a projection.
inline void lstm_forward_row(i64 H, float* gates, const float* c_prev, float* c, float* m) {
  float* gi = gates;
  float* gf = gates + H;
  float* gg = gates + 2 * H;
  float* go = gates + 3 * H;
  for (i64 j = 0; j < H; ++j) {
    const float i = sigmoid(gi[j]), f = sigmoid(gf[j]), g = std::tanh(gg[j]), o = sigmoid(go[j]);
    const float cell = f * (c_prev ? c_prev[j] : 0.0f) + i * g;
    gi[j] = i, gf[j] = f, gg[j] = g, go[j] = o;
    c[j] = cell;
    m[j] = o * std::tanh(cell);
  }
}

// GRU: pre holds [r, z] summed over both products and their biases, then
// the input part of n (W_in x + b_in); hn = W_hn h + b_hn. saved receives
// [r, z, n, hn].
inline void gru_forward_row(i64 H, const float* pre, const float* hn, const float* h_prev, float* h,
                            float* saved) {
  for (i64 j = 0; j < H; ++j) {
    const float r = sigmoid(pre[j]), z = sigmoid(pre[H + j]);
    const float hidden = hn[j];
    const float n = std::tanh(pre[2 * H + j] + r * hidden);
    const float before = h_prev ? h_prev[j] : 0.0f;
    h[j] = (1.0f - z) * n + z * before;
    saved[j] = r, saved[H + j] = z, saved[2 * H + j] = n, saved[3 * H + j] = hidden;
  }
}

// ---- backward -----------------------------------------------------------------

// Tanh/Relu: dpre = dh * act'(pre), act' from h itself.
inline void vanilla_backward_row(i64 H, bool relu, const float* h, const float* dh, float* dpre) {
  if (relu)
    for (i64 j = 0; j < H; ++j) dpre[j] = h[j] > 0.0f ? dh[j] : 0.0f;
  else
    for (i64 j = 0; j < H; ++j) dpre[j] = dh[j] * (1.0f - h[j] * h[j]);
}

// LSTM: gates are the activations [i, f, g, o]; dm the gradient reaching
// m = o * tanh(c); dc holds the gradient reaching c from the step after
// (or dcy) and leaves holding the gradient of c_prev. dpre receives the
// gradients of the four pre-activations.
inline void lstm_backward_row(i64 H, const float* gates, const float* c_prev, const float* c,
                              const float* dm, float* dc, float* dpre) {
  const float* gi = gates;
  const float* gf = gates + H;
  const float* gg = gates + 2 * H;
  const float* go = gates + 3 * H;
  for (i64 j = 0; j < H; ++j) {
    const float i = gi[j], f = gf[j], g = gg[j], o = go[j];
    const float tc = std::tanh(c[j]);
    const float dcell = dc[j] + dm[j] * o * (1.0f - tc * tc);
    const float before = c_prev ? c_prev[j] : 0.0f;
    dpre[j] = dcell * g * i * (1.0f - i);
    dpre[H + j] = dcell * before * f * (1.0f - f);
    dpre[2 * H + j] = dcell * i * (1.0f - g * g);
    dpre[3 * H + j] = dm[j] * tc * o * (1.0f - o);
    dc[j] = dcell * f;
  }
}

// GRU: from saved [r, z, n, hn] and dh, the gradients of the input-side
// pre-activations (d_in: r, z, n), of the hidden-side ones (d_hidden: r, z,
// and W_hn h + b_hn), and dh_prev's direct part z * dh (the hidden-side
// product adds the rest).
inline void gru_backward_row(i64 H, const float* saved, const float* h_prev, const float* dh,
                             float* d_in, float* d_hidden, float* dh_prev_direct) {
  for (i64 j = 0; j < H; ++j) {
    const float r = saved[j], z = saved[H + j], n = saved[2 * H + j], hn = saved[3 * H + j];
    const float before = h_prev ? h_prev[j] : 0.0f;
    const float dn = dh[j] * (1.0f - z) * (1.0f - n * n);
    const float dz = dh[j] * (before - n) * z * (1.0f - z);
    const float dr = dn * hn * r * (1.0f - r);
    d_in[j] = dr, d_in[H + j] = dz, d_in[2 * H + j] = dn;
    d_hidden[j] = dr, d_hidden[H + j] = dz, d_hidden[2 * H + j] = dn * r;
    dh_prev_direct[j] = dh[j] * z;
  }
}

}  // namespace dlrt::detail::cpu
