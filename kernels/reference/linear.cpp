// The Reference Linear engine: the definitions in include/dlrt/nn_ops.hpp
// written as loops with double accumulation. Every other engine is tested
// against it, so it stays obvious rather than fast.
#include "runtime/linear_engine.hpp"

namespace dlrt::detail {
namespace {

using i64 = std::int64_t;

void forward(const LinearProblem& p, const LinearArgs& a) {
  for (i64 n = 0; n < p.N; ++n)
    for (i64 o = 0; o < p.out; ++o) {
      double sum = a.bias ? a.bias[o] : 0.0;
      for (i64 i = 0; i < p.in; ++i) sum += double{a.x[n * p.in + i]} * a.w[o * p.in + i];
      a.y[n * p.out + o] = static_cast<float>(sum);
    }
}

void backward_data(const LinearProblem& p, const LinearArgs& a) {
  for (i64 n = 0; n < p.N; ++n)
    for (i64 i = 0; i < p.in; ++i) {
      double sum = 0.0;
      for (i64 o = 0; o < p.out; ++o) sum += double{a.dy[n * p.out + o]} * a.w[o * p.in + i];
      a.dx[n * p.in + i] = static_cast<float>(sum);
    }
}

void backward_weights(const LinearProblem& p, const LinearArgs& a) {
  for (i64 o = 0; o < p.out; ++o) {
    for (i64 i = 0; i < p.in; ++i) {
      double sum = p.accumulate ? a.dw[o * p.in + i] : 0.0;
      for (i64 n = 0; n < p.N; ++n) sum += double{a.dy[n * p.out + o]} * a.x[n * p.in + i];
      a.dw[o * p.in + i] = static_cast<float>(sum);
    }
    if (a.db) {
      double sum = p.accumulate ? a.db[o] : 0.0;
      for (i64 n = 0; n < p.N; ++n) sum += a.dy[n * p.out + o];
      a.db[o] = static_cast<float>(sum);
    }
  }
}

// f [C, P] = x [N, in]; g [C, C] = y.
void gram(const LinearProblem& p, const LinearArgs& a) {
  const i64 C = p.N, P = p.in;
  for (i64 r = 0; r < C; ++r)
    for (i64 c = 0; c < C; ++c) {
      double sum = 0.0;
      for (i64 k = 0; k < P; ++k) sum += double{a.x[r * P + k]} * a.x[c * P + k];
      a.y[r * C + c] = static_cast<float>(a.scale * sum);
    }
}

// df[r, k] = scale * sum_c (dg[r, c] + dg[c, r]) f[c, k].
void gram_backward(const LinearProblem& p, const LinearArgs& a) {
  const i64 C = p.N, P = p.in;
  for (i64 r = 0; r < C; ++r)
    for (i64 k = 0; k < P; ++k) {
      double sum = 0.0;
      for (i64 c = 0; c < C; ++c)
        sum += (double{a.dy[r * C + c]} + a.dy[c * C + r]) * a.x[c * P + k];
      a.dx[r * P + k] = static_cast<float>(a.scale * sum);
    }
}

class ReferenceLinear final : public LinearEngine {
public:
  Engine engine() const override { return Engine::Reference; }

  Planned<LinearKernel> plan(Context&, const LinearProblem& p) const override {
    static constexpr LinearFunctions kFunctions{forward, backward_data, backward_weights, gram,
                                                gram_backward};
    return {make_linear_kernel(
                engine(), 0, "reference loops, double accumulation",
                [p](Context&, const LinearArgs& a, void*) { run_linear_op(kFunctions, p, a); }),
            {}};
  }
};

const Registrar<LinearEngine> registrar{std::make_unique<ReferenceLinear>()};

}  // namespace
}  // namespace dlrt::detail
