// The interface every pooling engine implements: plan a problem once, then
// run the plan. Pointers are on the engine's device; shapes and parameters
// have been validated, outputs do not overlap inputs, and every output
// element must be written (tests poison outputs to prove it).
//
// Shared contract, so that engines agree bitwise on max pooling:
//  - the argmax of a window is its first maximum in row-major order, or its
//    first NaN;
//  - max backward adds, in float and starting from 0, the gradients of the
//    outputs that chose an input element, in row-major output order;
//  - an index that does not point into its own window contributes nothing
//    (never an out-of-bounds write).
#pragma once

#include <cstdint>

#include "runtime/pool2d_geometry.hpp"
#include "runtime/registry.hpp"

namespace dlrt::detail {

struct Pool2dProblem {
  Pool2dOp op = Pool2dOp::Forward;
  Pool2dGeometry g;
  // Forward: None or Indices (indices are written). Backward: None for the
  // averages; Indices or Input (x and y) for max.
  Pool2dSavedKind saved = Pool2dSavedKind::None;
  int variant = 0;
  ContextOptions options;
  int threads = 1;
};

// The operands of one run. Forward: x -> y (and indices when planned).
// Backward: dy -> dx, with indices or x and y for max.
struct Pool2dArgs {
  const float* x = nullptr;
  float* y = nullptr;
  std::int32_t* indices_out = nullptr;
  const float* dy = nullptr;
  float* dx = nullptr;
  const std::int32_t* indices = nullptr;
  const float* saved_x = nullptr;
  const float* saved_y = nullptr;
};

class Pool2dKernel : public KernelBase {
public:
  using KernelBase::KernelBase;
  virtual void run(Context& ctx, const Pool2dArgs& args, void* workspace) const = 0;
};

class Pool2dEngine : public EngineImpl {
public:
  static constexpr OpFamily kFamily = OpFamily::Pool2d;
  virtual Planned<Pool2dKernel> plan(Context& ctx, const Pool2dProblem& problem) const = 0;
};

template <class Run>
std::shared_ptr<const Pool2dKernel> make_pool2d_kernel(Engine engine, std::size_t workspace_bytes,
                                                       std::string description, Run run) {
  class Lambda final : public Pool2dKernel {
  public:
    Lambda(Engine e, std::size_t bytes, std::string text, Run r)
        : Pool2dKernel(e, bytes, std::move(text)), run_(std::move(r)) {}
    void run(Context& ctx, const Pool2dArgs& args, void* workspace) const override {
      run_(ctx, args, workspace);
    }

  private:
    Run run_;
  };
  return std::make_shared<Lambda>(engine, workspace_bytes, std::move(description), std::move(run));
}

}  // namespace dlrt::detail
