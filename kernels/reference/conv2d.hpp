// The convolution definition written as loops, templated on the element type
// so that the gradient checks can run it in double. Accumulation is always in
// double. The Reference engine instantiates it for float.
#pragma once

#include <cstdint>

#include "runtime/conv2d_geometry.hpp"

namespace dlrt::detail::reference {

template <class T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  const std::int64_t Cg = g.c_per_group(), Kg = g.k_per_group();
  for (std::int64_t n = 0; n < g.N; ++n)
    for (std::int64_t k = 0; k < g.K; ++k) {
      const std::int64_t group = k / Kg;
      for (std::int64_t p = 0; p < g.P; ++p)
        for (std::int64_t q = 0; q < g.Q; ++q) {
          double sum = bias ? double(bias[k]) : 0.0;
          for (std::int64_t c = 0; c < Cg; ++c)
            for (std::int64_t r = 0; r < g.R; ++r) {
              const std::int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
              if (h < 0 || h >= g.H) continue;
              for (std::int64_t s = 0; s < g.S; ++s) {
                const std::int64_t wi = q * g.stride_w - g.pad_w + s * g.dilation_w;
                if (wi < 0 || wi >= g.W) continue;
                sum += double(x[((n * g.C + group * Cg + c) * g.H + h) * g.W + wi]) *
                       double(w[((k * Cg + c) * g.R + r) * g.S + s]);
              }
            }
          y[((n * g.K + k) * g.P + p) * g.Q + q] = static_cast<T>(sum);
        }
    }
}

// dx[n,c,h,w] gathers every (k, r, s) whose output position lands on it:
// p = (h + pad_h - r*dilation_h) / stride_h when that division is exact.
template <class T>
void conv2d_backward_data(const Conv2dGeometry& g, const T* dy, const T* w, T* dx) {
  const std::int64_t Cg = g.c_per_group(), Kg = g.k_per_group();
  for (std::int64_t n = 0; n < g.N; ++n)
    for (std::int64_t c = 0; c < g.C; ++c) {
      const std::int64_t group = c / Cg, cg = c % Cg;
      for (std::int64_t h = 0; h < g.H; ++h)
        for (std::int64_t wi = 0; wi < g.W; ++wi) {
          double sum = 0.0;
          for (std::int64_t kg = 0; kg < Kg; ++kg) {
            const std::int64_t k = group * Kg + kg;
            for (std::int64_t r = 0; r < g.R; ++r) {
              const std::int64_t ph = h + g.pad_h - r * g.dilation_h;
              if (ph < 0 || ph % g.stride_h != 0) continue;
              const std::int64_t p = ph / g.stride_h;
              if (p >= g.P) continue;
              for (std::int64_t s = 0; s < g.S; ++s) {
                const std::int64_t qw = wi + g.pad_w - s * g.dilation_w;
                if (qw < 0 || qw % g.stride_w != 0) continue;
                const std::int64_t q = qw / g.stride_w;
                if (q >= g.Q) continue;
                sum += double(dy[((n * g.K + k) * g.P + p) * g.Q + q]) *
                       double(w[((k * Cg + cg) * g.R + r) * g.S + s]);
              }
            }
          }
          dx[((n * g.C + c) * g.H + h) * g.W + wi] = static_cast<T>(sum);
        }
    }
}

template <class T>
void conv2d_backward_filter(const Conv2dGeometry& g, const T* x, const T* dy, T* dw) {
  const std::int64_t Cg = g.c_per_group(), Kg = g.k_per_group();
  for (std::int64_t k = 0; k < g.K; ++k) {
    const std::int64_t group = k / Kg;
    for (std::int64_t c = 0; c < Cg; ++c)
      for (std::int64_t r = 0; r < g.R; ++r)
        for (std::int64_t s = 0; s < g.S; ++s) {
          double sum = 0.0;
          for (std::int64_t n = 0; n < g.N; ++n)
            for (std::int64_t p = 0; p < g.P; ++p) {
              const std::int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
              if (h < 0 || h >= g.H) continue;
              for (std::int64_t q = 0; q < g.Q; ++q) {
                const std::int64_t wi = q * g.stride_w - g.pad_w + s * g.dilation_w;
                if (wi < 0 || wi >= g.W) continue;
                sum += double(x[((n * g.C + group * Cg + c) * g.H + h) * g.W + wi]) *
                       double(dy[((n * g.K + k) * g.P + p) * g.Q + q]);
              }
            }
          dw[((k * Cg + c) * g.R + r) * g.S + s] = static_cast<T>(sum);
        }
  }
}

template <class T>
void conv2d_backward_bias(const Conv2dGeometry& g, const T* dy, T* db) {
  for (std::int64_t k = 0; k < g.K; ++k) {
    double sum = 0.0;
    for (std::int64_t n = 0; n < g.N; ++n)
      for (std::int64_t i = 0; i < g.P * g.Q; ++i) sum += double(dy[(n * g.K + k) * g.P * g.Q + i]);
    db[k] = static_cast<T>(sum);
  }
}

}  // namespace dlrt::detail::reference
