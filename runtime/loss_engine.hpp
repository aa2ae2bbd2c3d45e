// The interface every Loss engine implements (softmax cross-entropy): plan a
// problem once, then run the plan. Pointers are on the engine's device;
// shapes have been validated, outputs do not overlap inputs, and every output
// element must be written. Labels of rows whose mask is 0 are never read;
// a label outside [0, C) (possible only for device tensors, which are not
// checked up front) makes its row contribute nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "dlrt/nn_ops.hpp"
#include "runtime/registry.hpp"

namespace dlrt::detail {

enum class LossOp { Forward, Backward };

struct LossProblem {
  LossOp op = LossOp::Forward;
  std::int64_t N = 0, C = 0;
  bool mask = false;
  ContextOptions options;
  int threads = 1;
};

// Forward: logits, labels, mask -> loss [1], probs [N, C].
// Backward: probs_in, labels, mask, dloss -> dlogits [N, C].
struct LossArgs {
  const float* logits = nullptr;
  const std::int32_t* labels = nullptr;
  const float* mask = nullptr;
  float* loss = nullptr;
  float* probs = nullptr;
  const float* probs_in = nullptr;
  float dloss = 1.0f;
  float* dlogits = nullptr;
};

class LossKernel : public KernelBase {
public:
  using KernelBase::KernelBase;
  virtual void run(Context& ctx, const LossArgs& args, void* workspace) const = 0;
};

class LossEngine : public EngineImpl {
public:
  static constexpr OpFamily kFamily = OpFamily::Loss;
  virtual Planned<LossKernel> plan(Context& ctx, const LossProblem& problem) const = 0;
};

template <class Run>
std::shared_ptr<const LossKernel> make_loss_kernel(Engine engine, std::size_t workspace_bytes,
                                                   std::string description, Run run) {
  class Lambda final : public LossKernel {
  public:
    Lambda(Engine e, std::size_t bytes, std::string text, Run r)
        : LossKernel(e, bytes, std::move(text)), run_(std::move(r)) {}
    void run(Context& ctx, const LossArgs& args, void* workspace) const override {
      run_(ctx, args, workspace);
    }

  private:
    Run run_;
  };
  return std::make_shared<Lambda>(engine, workspace_bytes, std::move(description), std::move(run));
}

}  // namespace dlrt::detail
