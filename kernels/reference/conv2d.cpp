// The Reference convolution engine: the definition written as loops, with
// double accumulation. Every other engine is tested against it, so it stays
// obvious rather than fast.
#include <vector>

#include "runtime/conv2d_engine.hpp"

namespace dlrt::detail {
namespace {

class ReferenceConv2d final : public Conv2dEngine {
public:
  Engine engine() const override { return Engine::Reference; }
  Device::Kind device_kind() const override { return Device::Kind::Cpu; }

  Support supports(const Context&, Conv2dOp, const Conv2dGeometry&) const override {
    return Support::yes();
  }

  void forward(Context&, const Conv2dGeometry& g, const float* x, const float* w,
               const float* bias, float* y) const override {
    const std::int64_t Cg = g.c_per_group(), Kg = g.k_per_group();
    for (std::int64_t n = 0; n < g.N; ++n)
      for (std::int64_t k = 0; k < g.K; ++k) {
        const std::int64_t group = k / Kg;
        for (std::int64_t p = 0; p < g.P; ++p)
          for (std::int64_t q = 0; q < g.Q; ++q) {
            double sum = bias ? bias[k] : 0.0;
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
            y[((n * g.K + k) * g.P + p) * g.Q + q] = static_cast<float>(sum);
          }
      }
  }

  // dx[n,c,h,w] gathers every (k, r, s) whose output position lands on it.
  void backward_data(Context&, const Conv2dGeometry& g, const float* dy, const float* w,
                     float* dx) const override {
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
            dx[((n * g.C + c) * g.H + h) * g.W + wi] = static_cast<float>(sum);
          }
      }
  }

  void backward_filter(Context&, const Conv2dGeometry& g, const float* x, const float* dy,
                       float* dw) const override {
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
            dw[((k * Cg + c) * g.R + r) * g.S + s] = static_cast<float>(sum);
          }
    }
  }

  void backward_bias(Context&, const Conv2dGeometry& g, const float* dy, float* db) const override {
    for (std::int64_t k = 0; k < g.K; ++k) {
      double sum = 0.0;
      for (std::int64_t n = 0; n < g.N; ++n)
        for (std::int64_t i = 0; i < g.P * g.Q; ++i) sum += dy[(n * g.K + k) * g.P * g.Q + i];
      db[k] = static_cast<float>(sum);
    }
  }
};

const Registrar<Conv2dEngine> registrar{std::make_unique<ReferenceConv2d>()};

}  // namespace
}  // namespace dlrt::detail
