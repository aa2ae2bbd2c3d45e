// The interface every convolution engine implements: plan a problem once,
// then run the plan. Pointers are on the engine's device; shapes and
// parameters have been validated, outputs do not overlap inputs, and every
// output element must be written (tests poison outputs to prove it).
#pragma once

#include "runtime/conv2d_geometry.hpp"
#include "runtime/registry.hpp"

namespace dlrt::detail {

// What is planned: the op, its geometry, the variant asked for and the
// context settings in force.
struct Conv2dProblem {
  Conv2dOp op = Conv2dOp::Forward;
  Conv2dGeometry g;
  int variant = 0;  // 0: the engine's choice
  ContextOptions options;
  int threads = 1;  // CPU threads the plan may use at once
};

// The operands of one run; each op reads and writes its own:
//   Forward x, w, bias (may be null) -> y;  BackwardData dy, w -> dx;
//   BackwardFilter x, dy -> dw;             BackwardBias dy -> db.
struct Conv2dArgs {
  const float* x = nullptr;
  const float* w = nullptr;
  const float* bias = nullptr;
  const float* dy = nullptr;
  float* y = nullptr;
  float* dx = nullptr;
  float* dw = nullptr;
  float* db = nullptr;
};

class Conv2dKernel : public KernelBase {
public:
  using KernelBase::KernelBase;
  // `workspace` holds workspace_bytes() on the context's device.
  virtual void run(Context& ctx, const Conv2dArgs& args, void* workspace) const = 0;
};

class Conv2dEngine : public EngineImpl {
public:
  static constexpr OpFamily kFamily = OpFamily::Conv2d;
  virtual Planned<Conv2dKernel> plan(Context& ctx, const Conv2dProblem& problem) const = 0;
};

// A kernel whose run is one callable, for engines whose plan is little more
// than the geometry: make_conv2d_kernel(engine, bytes, "text", [g](ctx, args, ws) {...}).
template <class Run>
std::shared_ptr<const Conv2dKernel> make_conv2d_kernel(Engine engine, std::size_t workspace_bytes,
                                                       std::string description, Run run) {
  class Lambda final : public Conv2dKernel {
  public:
    Lambda(Engine e, std::size_t bytes, std::string text, Run r)
        : Conv2dKernel(e, bytes, std::move(text)), run_(std::move(r)) {}
    void run(Context& ctx, const Conv2dArgs& args, void* workspace) const override {
      run_(ctx, args, workspace);
    }

  private:
    Run run_;
  };
  return std::make_shared<Lambda>(engine, workspace_bytes, std::move(description), std::move(run));
}

}  // namespace dlrt::detail
