// The Reference Pointwise engine: the definitions in include/dlrt/nn_ops.hpp
// as one loop each, computed in double. Every element reads its inputs
// before it writes its output, so add's in-place form (out is a or b) works.
#include <cmath>

#include "runtime/pointwise_engine.hpp"

namespace dlrt::detail {
namespace {

using i64 = std::int64_t;

double activate(Activation act, double x) {
  switch (act) {
    case Activation::Relu:
      return x > 0.0 ? x : 0.0;
    case Activation::Tanh:
      return std::tanh(x);
    case Activation::Sigmoid:
      return 1.0 / (1.0 + std::exp(-x));
  }
  return x;
}

// act'(x) written in terms of y = act(x).
double derivative_from_output(Activation act, double y) {
  switch (act) {
    case Activation::Relu:
      return y > 0.0 ? 1.0 : 0.0;
    case Activation::Tanh:
      return 1.0 - y * y;
    case Activation::Sigmoid:
      return y * (1.0 - y);
  }
  return 1.0;
}

void run(const PointwiseProblem& p, const PointwiseArgs& a) {
  for (i64 i = 0; i < p.count; ++i) {
    double value = 0.0;
    switch (p.op) {
      case PointwiseOp::ActivationForward:
        value = activate(p.activation, a.a[i]);
        break;
      case PointwiseOp::ActivationBackward:
        value = double{a.b[i]} * derivative_from_output(p.activation, a.a[i]);
        break;
      case PointwiseOp::Add:
        value = double{a.alpha} * a.a[i] + double{a.beta} * a.b[i];
        break;
      case PointwiseOp::Scale:
        value = double{a.alpha} * a.a[i];
        break;
    }
    a.out[i] = static_cast<float>(value);
  }
}

class ReferencePointwise final : public PointwiseEngine {
public:
  Engine engine() const override { return Engine::Reference; }

  Planned<PointwiseKernel> plan(Context&, const PointwiseProblem& p) const override {
    return {make_pointwise_kernel(engine(), 0, "reference loop, double arithmetic",
                                  [p](Context&, const PointwiseArgs& a, void*) { run(p, a); }),
            {}};
  }
};

const Registrar<PointwiseEngine> registrar{std::make_unique<ReferencePointwise>()};

}  // namespace
}  // namespace dlrt::detail
