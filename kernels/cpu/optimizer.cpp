// The Cpu Optimizer engine: the updates as element loops split across
// dlrt's threads for large parameters (each element's update is
// independent); the sum of squares in double, in element order on the
// calling thread's partition of fixed blocks, so it does not depend on the
// thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/optimizer_engine.hpp"
#include "runtime/parallel.hpp"

namespace dlrt::detail {
namespace {

using i64 = std::int64_t;

// An update reads and writes a few floats per element: about 1 ns.
constexpr double kNsPerElement = 1.0;
// The sum of squares adds fixed blocks of this many elements, then the blocks in order.
constexpr i64 kSumBlock = 1 << 14;

template <class Update>
void for_each_element(i64 count, const Update& update) {
  parallel_for(0, count, grain_for(kNsPerElement), [&](i64 begin, i64 end) {
    for (i64 i = begin; i < end; ++i) update(i);
  });
}

void sgd(i64 count, const OptimizerArgs& a) {
  float* theta = a.theta;
  const float* grad = a.grad;
  float* v = a.velocity;
  for_each_element(count, [&](i64 i) {
    float g = grad[i] + a.weight_decay * theta[i];
    if (v != nullptr) {
      v[i] = a.first ? g : a.momentum * v[i] + (1.0f - a.dampening) * g;
      g = a.nesterov ? g + a.momentum * v[i] : v[i];
    }
    theta[i] -= a.learning_rate * g;
  });
}

void adam(i64 count, const OptimizerArgs& a) {
  float* theta = a.theta;
  const float* grad = a.grad;
  float* m = a.m;
  float* v = a.v;
  for_each_element(count, [&](i64 i) {
    theta[i] -= a.decoupled * theta[i];
    const float g = grad[i] + a.coupled * theta[i];
    m[i] = a.beta1 * m[i] + (1.0f - a.beta1) * g;
    v[i] = a.beta2 * v[i] + (1.0f - a.beta2) * g * g;
    const float m_hat = m[i] / a.correction1, v_hat = v[i] / a.correction2;
    theta[i] -= a.learning_rate * m_hat / (std::sqrt(v_hat) + a.epsilon);
  });
}

double sum_of_squares(i64 count, const float* g) {
  const i64 blocks = (count + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial(static_cast<std::size_t>(blocks), 0.0);
  parallel_for(0, blocks, 1, [&](i64 b0, i64 b1) {
    for (i64 b = b0; b < b1; ++b) {
      double sum = 0.0;
      for (i64 i = b * kSumBlock; i < std::min(count, (b + 1) * kSumBlock); ++i)
        sum += static_cast<double>(g[i]) * g[i];
      partial[static_cast<std::size_t>(b)] = sum;
    }
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

class CpuOptimizer final : public OptimizerEngine {
public:
  Engine engine() const override { return Engine::Cpu; }

  Planned<OptimizerKernel> plan(Context&, const OptimizerProblem& p) const override {
    return {make_optimizer_kernel(
                engine(), 0, "cpu loops on dlrt's threads",
                [op = p.op, count = p.count](Context&, const OptimizerArgs& a, void*) {
                  switch (op) {
                    case OptimizerOp::Sgd:
                      return sgd(count, a);
                    case OptimizerOp::Adam:
                      return adam(count, a);
                    case OptimizerOp::Zero:
                      return for_each_element(count, [&](i64 i) { a.grad[i] = 0.0f; });
                    case OptimizerOp::Scale:
                      return for_each_element(count, [&](i64 i) { a.grad[i] *= a.scale; });
                    case OptimizerOp::SumOfSquares:
                      *a.sum = sum_of_squares(count, a.grad);
                      return;
                  }
                }),
            {}};
  }
};

const Registrar<OptimizerEngine> registrar{std::make_unique<CpuOptimizer>()};

}  // namespace
}  // namespace dlrt::detail
