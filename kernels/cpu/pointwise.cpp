// The Cpu Pointwise engine: float loops the compiler vectorises, split
// across dlrt's threads by parallel_for. Every element reads its inputs
// before it writes its output, so add's in-place form (out is a or b) works.
#include <cmath>

#include "runtime/parallel.hpp"
#include "runtime/pointwise_engine.hpp"

namespace dlrt::detail {
namespace {

using i64 = std::int64_t;

// Single-thread cost per element: a multiply-add streams at well under a
// nanosecond; tanh and exp cost a few.
double ns_per_element(const PointwiseProblem& p) {
  const bool transcendental =
      p.op == PointwiseOp::ActivationForward && p.activation != Activation::Relu;
  return transcendental ? 5.0 : 0.3;
}

template <class Fn>
void for_each(const PointwiseProblem& p, Fn&& fn) {
  parallel_for(0, p.count, grain_for(ns_per_element(p)), [&](i64 begin, i64 end) {
    for (i64 i = begin; i < end; ++i) fn(i);
  });
}

void forward(const PointwiseProblem& p, const float* x, float* y) {
  switch (p.activation) {
    case Activation::Relu:
      return for_each(p, [&](i64 i) { y[i] = x[i] > 0.0f ? x[i] : 0.0f; });
    case Activation::Tanh:
      return for_each(p, [&](i64 i) { y[i] = std::tanh(x[i]); });
    case Activation::Sigmoid:
      return for_each(p, [&](i64 i) { y[i] = 1.0f / (1.0f + std::exp(-x[i])); });
  }
}

void backward(const PointwiseProblem& p, const float* y, const float* dy, float* dx) {
  switch (p.activation) {
    case Activation::Relu:
      return for_each(p, [&](i64 i) { dx[i] = y[i] > 0.0f ? dy[i] : 0.0f; });
    case Activation::Tanh:
      return for_each(p, [&](i64 i) { dx[i] = dy[i] * (1.0f - y[i] * y[i]); });
    case Activation::Sigmoid:
      return for_each(p, [&](i64 i) { dx[i] = dy[i] * (y[i] * (1.0f - y[i])); });
  }
}

void run(const PointwiseProblem& p, const PointwiseArgs& a) {
  switch (p.op) {
    case PointwiseOp::ActivationForward:
      return forward(p, a.a, a.out);
    case PointwiseOp::ActivationBackward:
      return backward(p, a.a, a.b, a.out);
    case PointwiseOp::Add: {
      const float alpha = a.alpha, beta = a.beta;
      const float *x = a.a, *y = a.b;
      float* out = a.out;
      return for_each(p, [&](i64 i) { out[i] = alpha * x[i] + beta * y[i]; });
    }
    case PointwiseOp::Scale: {
      const float alpha = a.alpha;
      const float* x = a.a;
      float* out = a.out;
      return for_each(p, [&](i64 i) { out[i] = alpha * x[i]; });
    }
  }
}

class CpuPointwise final : public PointwiseEngine {
public:
  Engine engine() const override { return Engine::Cpu; }

  Planned<PointwiseKernel> plan(Context&, const PointwiseProblem& p) const override {
    return {make_pointwise_kernel(engine(), 0, "cpu loops on dlrt's threads",
                                  [p](Context&, const PointwiseArgs& a, void*) { run(p, a); }),
            {}};
  }
};

const Registrar<PointwiseEngine> registrar{std::make_unique<CpuPointwise>()};

}  // namespace
}  // namespace dlrt::detail
