// The interface every Optimizer engine implements: the optimizers' updates
// of one parameter tensor (SGD, Adam), zeroing a gradient, its sum of
// squares and scaling it (gradient-norm clipping). Pointers are on the
// engine's device and every element is updated independently, so results
// do not depend on how an engine splits the work.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "runtime/registry.hpp"

namespace dlrt::detail {

enum class OptimizerOp { Sgd, Adam, Zero, SumOfSquares, Scale };

struct OptimizerProblem {
  OptimizerOp op = OptimizerOp::Sgd;
  std::int64_t count = 0;  // elements of the parameter
  ContextOptions options;
  int threads = 1;
};

// The formulas of include/dlrt/optim.hpp, per element i:
//   Sgd:  g = grad + weight_decay * theta; with velocity (momentum > 0):
//         v = first ? g : momentum v + (1 - dampening) g; g = nesterov ? g + momentum v : v;
//         theta -= learning_rate * g
//   Adam: theta -= decoupled * theta; g = grad + coupled * theta;
//         m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
//         theta -= learning_rate * (m / correction1) / (sqrt(v / correction2) + epsilon)
//   Zero: grad = 0.   Scale: grad *= scale.
//   SumOfSquares: *sum (host memory) = sum of grad^2 in double.
struct OptimizerArgs {
  float* theta = nullptr;
  float* grad = nullptr;
  float* velocity = nullptr;  // Sgd with momentum
  float* m = nullptr;         // Adam
  float* v = nullptr;         // Adam
  float learning_rate = 0.0f, weight_decay = 0.0f;
  float momentum = 0.0f, dampening = 0.0f;
  bool nesterov = false, first = false;
  float beta1 = 0.0f, beta2 = 0.0f, epsilon = 0.0f;
  float correction1 = 1.0f, correction2 = 1.0f, coupled = 0.0f, decoupled = 0.0f;
  float scale = 1.0f;
  double* sum = nullptr;
};

class OptimizerKernel : public KernelBase {
public:
  using KernelBase::KernelBase;
  virtual void run(Context& ctx, const OptimizerArgs& args, void* workspace) const = 0;
};

class OptimizerEngine : public EngineImpl {
public:
  static constexpr OpFamily kFamily = OpFamily::Optimizer;
  virtual Planned<OptimizerKernel> plan(Context& ctx, const OptimizerProblem& problem) const = 0;
};

template <class Run>
std::shared_ptr<const OptimizerKernel> make_optimizer_kernel(Engine engine,
                                                             std::size_t workspace_bytes,
                                                             std::string description, Run run) {
  class Lambda final : public OptimizerKernel {
  public:
    Lambda(Engine e, std::size_t bytes, std::string text, Run r)
        : OptimizerKernel(e, bytes, std::move(text)), run_(std::move(r)) {}
    void run(Context& ctx, const OptimizerArgs& args, void* workspace) const override {
      run_(ctx, args, workspace);
    }

  private:
    Run run_;
  };
  return std::make_shared<Lambda>(engine, workspace_bytes, std::move(description), std::move(run));
}

}  // namespace dlrt::detail
