// The interface every Linear engine implements (fully connected layers and
// the Gram matrix): plan a problem once, then run the plan. Pointers are on
// the engine's device; shapes and parameters have been validated, outputs do
// not overlap inputs, and every output element must be written (tests poison
// outputs to prove it), except that with accumulate dw and db are added to.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "dlrt/nn_ops.hpp"
#include "runtime/registry.hpp"

namespace dlrt::detail {

enum class LinearOp { Forward, BackwardData, BackwardWeights, Gram, GramBackward };

// Forward and backward: x [N, in], w [out, in], y [N, out].
// Gram: f [N, in] (N = C feature maps, in = P positions), g [N, N].
struct LinearProblem {
  LinearOp op = LinearOp::Forward;
  std::int64_t N = 0, in = 0, out = 0;
  bool bias = false;        // Forward: bias given; BackwardWeights: db given
  bool accumulate = false;  // BackwardWeights only
  ContextOptions options;
  int threads = 1;
};

// Forward: x, w, bias -> y. BackwardData: dy, w -> dx. BackwardWeights:
// x, dy -> dw, db. Gram: x (f) -> y (g), scale. GramBackward: x (f), dy (dg)
// -> dx (df), scale.
struct LinearArgs {
  const float* x = nullptr;
  const float* w = nullptr;
  const float* bias = nullptr;
  float* y = nullptr;
  const float* dy = nullptr;
  float* dx = nullptr;
  float* dw = nullptr;
  float* db = nullptr;
  float scale = 1.0f;
};

class LinearKernel : public KernelBase {
public:
  using KernelBase::KernelBase;
  virtual void run(Context& ctx, const LinearArgs& args, void* workspace) const = 0;
};

class LinearEngine : public EngineImpl {
public:
  static constexpr OpFamily kFamily = OpFamily::Linear;
  virtual Planned<LinearKernel> plan(Context& ctx, const LinearProblem& problem) const = 0;
};

// One host function per op, for the engines that run each op as a plain
// function call (Reference, Cpu); run_linear_op picks the one of p.op.
struct LinearFunctions {
  using Fn = void (*)(const LinearProblem&, const LinearArgs&);
  Fn forward, backward_data, backward_weights, gram, gram_backward;
};

inline void run_linear_op(const LinearFunctions& f, const LinearProblem& p, const LinearArgs& a) {
  switch (p.op) {
    case LinearOp::Forward:
      return f.forward(p, a);
    case LinearOp::BackwardData:
      return f.backward_data(p, a);
    case LinearOp::BackwardWeights:
      return f.backward_weights(p, a);
    case LinearOp::Gram:
      return f.gram(p, a);
    case LinearOp::GramBackward:
      return f.gram_backward(p, a);
  }
}

template <class Run>
std::shared_ptr<const LinearKernel> make_linear_kernel(Engine engine, std::size_t workspace_bytes,
                                                       std::string description, Run run) {
  class Lambda final : public LinearKernel {
  public:
    Lambda(Engine e, std::size_t bytes, std::string text, Run r)
        : LinearKernel(e, bytes, std::move(text)), run_(std::move(r)) {}
    void run(Context& ctx, const LinearArgs& args, void* workspace) const override {
      run_(ctx, args, workspace);
    }

  private:
    Run run_;
  };
  return std::make_shared<Lambda>(engine, workspace_bytes, std::move(description), std::move(run));
}

}  // namespace dlrt::detail
