// The arithmetic of the Cuda Loss engine's block-per-row softmax
// cross-entropy, written once for the kernels and for the CPU tests that
// replay a block thread by thread: which columns a thread reads, its
// partial maximum and exponential sum, the fixed pairing of the block's
// tree reductions, and each row's loss term. Log-sum-exp with the row
// maximum subtracted (the stable softmax).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cuda/host_device.hpp"

namespace dlrt::cuda_loss {

using i64 = std::int64_t;

// Threads per row block; a power of two for the tree reductions.
inline constexpr int kRowThreads = 128;

// Thread t reads columns t, t + threads, t + 2*threads, ... of a row.
DLRT_HOST_DEVICE inline float partial_maximum(const float* z, i64 C, int t, int threads) {
  float top = -INFINITY;
  for (i64 c = t; c < C; c += threads) top = fmaxf(top, z[c]);
  return top;
}

DLRT_HOST_DEVICE inline double partial_exp_sum(const float* z, i64 C, float top, int t,
                                               int threads) {
  double sum = 0.0;
  for (i64 c = t; c < C; c += threads) sum += static_cast<double>(expf(z[c] - top));
  return sum;
}

// One level of the block's tree: slot i < half takes slot i + half.
// Levels half = threads/2, threads/4, ..., 1 leave the result in slot 0.
template <class T, class Combine>
DLRT_HOST_DEVICE inline void tree_level(T* slots, int i, int half, Combine combine) {
  if (i < half) slots[i] = combine(slots[i], slots[i + half]);
}

// The weight of a row in the mean: its mask value (1 without a mask), and
// nothing for a label outside [0, C) (device labels are not checked up front).
DLRT_HOST_DEVICE inline float row_weight(const float* mask, const std::int32_t* labels, i64 n,
                                         i64 C) {
  const float m = mask ? mask[n] : 1.0f;
  if (m == 0.0f) return 0.0f;
  return labels[n] >= 0 && labels[n] < C ? m : 0.0f;
}

// m * (log-sum-exp - z[label]) for a row of weight m (0 when m is 0).
DLRT_HOST_DEVICE inline double row_term(const float* z, float top, double exp_sum, float m,
                                        std::int32_t label) {
  if (m == 0.0f) return 0.0;
  return static_cast<double>(m) * (static_cast<double>(top) + log(exp_sum) - z[label]);
}

}  // namespace dlrt::cuda_loss
