// The Reference pooling engine: the definitions written as loops, averages
// accumulated in double. Every other engine is tested against it, so it stays
// obvious rather than fast. Backward is written as the adjoint of forward:
// each output scatters its gradient into the inputs it read.
#include <algorithm>

#include "runtime/pool2d_engine.hpp"

namespace dlrt::detail {
namespace {

// The input elements output (p, q) reads, and its area counting padding.
struct Window {
  std::int64_t h0, h1, w0, w1;  // [h0, h1) x [w0, w1), inside the input
  std::int64_t padded_area;     // the window clipped to the padded input
};

Window window_of(const Pool2dGeometry& g, std::int64_t p, std::int64_t q) {
  const std::int64_t hs = p * g.stride_h - g.pad_h, ws = q * g.stride_w - g.pad_w;
  const std::int64_t he = std::min(hs + g.window_h, g.H + g.pad_h);
  const std::int64_t we = std::min(ws + g.window_w, g.W + g.pad_w);
  return {std::max<std::int64_t>(hs, 0), std::min(he, g.H), std::max<std::int64_t>(ws, 0),
          std::min(we, g.W), (he - hs) * (we - ws)};
}

std::int64_t divisor(const Pool2dGeometry& g, const Window& w) {
  return g.mode == PoolMode::AverageIncludePad ? w.padded_area : (w.h1 - w.h0) * (w.w1 - w.w0);
}

// The first maximum in row-major order; a NaN replaces a number, never a NaN.
std::int64_t argmax(const Pool2dGeometry& g, const float* plane, const Window& w) {
  std::int64_t best = w.h0 * g.W + w.w0;
  for (std::int64_t h = w.h0; h < w.h1; ++h)
    for (std::int64_t c = w.w0; c < w.w1; ++c) {
      const float v = plane[h * g.W + c], b = plane[best];
      if (!(v <= b) && b == b) best = h * g.W + c;
    }
  return best;
}

bool inside(const Pool2dGeometry& g, const Window& w, std::int64_t index) {
  if (index < 0) return false;
  const std::int64_t h = index / g.W, c = index % g.W;
  return h >= w.h0 && h < w.h1 && c >= w.w0 && c < w.w1;
}

void forward(const Pool2dGeometry& g, const float* x, float* y, std::int32_t* indices) {
  for (std::int64_t plane = 0; plane < g.planes(); ++plane) {
    const float* in = x + plane * g.x_plane();
    for (std::int64_t p = 0; p < g.P; ++p)
      for (std::int64_t q = 0; q < g.Q; ++q) {
        const std::int64_t out = plane * g.y_plane() + p * g.Q + q;
        const Window w = window_of(g, p, q);
        if (g.mode == PoolMode::Max) {
          const std::int64_t best = argmax(g, in, w);
          y[out] = in[best];
          if (indices) indices[out] = static_cast<std::int32_t>(best);
          continue;
        }
        double sum = 0.0;
        for (std::int64_t h = w.h0; h < w.h1; ++h)
          for (std::int64_t c = w.w0; c < w.w1; ++c) sum += in[h * g.W + c];
        y[out] = static_cast<float>(sum / static_cast<double>(divisor(g, w)));
      }
  }
}

// sums: x_plane() doubles of scratch (the averages' double accumulation).
void backward(const Pool2dGeometry& g, const float* dy, float* dx, const std::int32_t* indices,
              const float* x, double* sums) {
  const bool average = g.mode != PoolMode::Max;
  for (std::int64_t plane = 0; plane < g.planes(); ++plane) {
    float* grad = dx + plane * g.x_plane();
    std::fill_n(grad, g.x_plane(), 0.0f);
    if (average) std::fill_n(sums, g.x_plane(), 0.0);
    for (std::int64_t p = 0; p < g.P; ++p)
      for (std::int64_t q = 0; q < g.Q; ++q) {
        const std::int64_t out = plane * g.y_plane() + p * g.Q + q;
        const Window w = window_of(g, p, q);
        if (g.mode == PoolMode::Max) {
          // Float, in row-major output order: the order every engine uses.
          if (indices) {
            if (inside(g, w, indices[out])) grad[indices[out]] += dy[out];
          } else {
            grad[argmax(g, x + plane * g.x_plane(), w)] += dy[out];
          }
          continue;
        }
        const double share = double(dy[out]) / static_cast<double>(divisor(g, w));
        for (std::int64_t h = w.h0; h < w.h1; ++h)
          for (std::int64_t c = w.w0; c < w.w1; ++c) sums[h * g.W + c] += share;
      }
    if (average)
      for (std::int64_t i = 0; i < g.x_plane(); ++i) grad[i] = static_cast<float>(sums[i]);
  }
}

class ReferencePool2d final : public Pool2dEngine {
public:
  Engine engine() const override { return Engine::Reference; }

  Planned<Pool2dKernel> plan(Context&, const Pool2dProblem& p) const override {
    if (p.variant != 0) return Planned<Pool2dKernel>::no(no_kernel_variants(engine(), p.variant));
    const bool sums = p.op == Pool2dOp::Backward && p.g.mode != PoolMode::Max;
    const std::size_t bytes = sums ? static_cast<std::size_t>(p.g.x_plane()) * sizeof(double) : 0;
    return {make_pool2d_kernel(engine(), bytes, "reference loops, double accumulation",
                               [g = p.g, op = p.op](Context&, const Pool2dArgs& a, void* scratch) {
                                 if (op == Pool2dOp::Forward)
                                   return forward(g, a.x, a.y, a.indices_out);
                                 backward(g, a.dy, a.dx, a.indices, a.saved_x,
                                          static_cast<double*>(scratch));
                               }),
            {}};
  }
};

const Registrar<Pool2dEngine> registrar{std::make_unique<ReferencePool2d>()};

}  // namespace
}  // namespace dlrt::detail
