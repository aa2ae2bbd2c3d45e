// The interface every Pointwise engine implements (activations, add, scale):
// plan a problem once, then run the plan. Pointers are on the engine's
// device; shapes and parameters have been validated and every output element
// must be written. Unlike the other families, add's out may be a or b
// itself, so kernels read each element's inputs before writing its output
// and never read an output element they have written.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "dlrt/nn_ops.hpp"
#include "runtime/registry.hpp"

namespace dlrt::detail {

enum class PointwiseOp { ActivationForward, ActivationBackward, Add, Scale };

struct PointwiseProblem {
  PointwiseOp op = PointwiseOp::ActivationForward;
  Activation activation = Activation::Relu;  // activations only
  std::int64_t count = 0;                    // elements
  ContextOptions options;
  int threads = 1;
};

// ActivationForward: a (x) -> out (y). ActivationBackward: a (y), b (dy) ->
// out (dx). Add: a, b -> out = alpha a + beta b. Scale: a -> out = alpha a.
struct PointwiseArgs {
  const float* a = nullptr;
  const float* b = nullptr;
  float* out = nullptr;
  float alpha = 1.0f, beta = 1.0f;
};

class PointwiseKernel : public KernelBase {
public:
  using KernelBase::KernelBase;
  virtual void run(Context& ctx, const PointwiseArgs& args, void* workspace) const = 0;
};

class PointwiseEngine : public EngineImpl {
public:
  static constexpr OpFamily kFamily = OpFamily::Pointwise;
  virtual Planned<PointwiseKernel> plan(Context& ctx, const PointwiseProblem& problem) const = 0;
};

template <class Run>
std::shared_ptr<const PointwiseKernel> make_pointwise_kernel(Engine engine,
                                                             std::size_t workspace_bytes,
                                                             std::string description, Run run) {
  class Lambda final : public PointwiseKernel {
  public:
    Lambda(Engine e, std::size_t bytes, std::string text, Run r)
        : PointwiseKernel(e, bytes, std::move(text)), run_(std::move(r)) {}
    void run(Context& ctx, const PointwiseArgs& args, void* workspace) const override {
      run_(ctx, args, workspace);
    }

  private:
    Run run_;
  };
  return std::make_shared<Lambda>(engine, workspace_bytes, std::move(description), std::move(run));
}

}  // namespace dlrt::detail
