// Optimizers: SGD with momentum (and Nesterov's form), Adam and AdamW,
// gradient-norm clipping and learning-rate schedules, over named parameters
// (a value tensor and its gradient tensor of the same shape).
//
// Weight decay is MAP estimation. With data D and a Gaussian prior
// theta ~ N(0, I / lambda) on the weights, the log-posterior is
//   log p(theta | D) = log p(D | theta) + log p(theta) + const
//                    = log p(D | theta) - (lambda / 2) ||theta||^2 + const,
// so maximising it (MAP) instead of the likelihood alone (MLE) adds
// lambda * theta to the gradient of the loss -log p(D | theta): that is
// `weight_decay = lambda` of Sgd and of Adam (coupled). AdamW decays the
// weights apart from the adaptive step (Loshchilov and Hutter, 2019), which
// is a MAP step only for plain SGD; it is the better regulariser in
// practice and offered as such.
//
// The parameters of one optimizer live on one device (CPU or a CUDA GPU),
// their state (momentum, Adam's moments) beside them; step() and
// zero_grad() take a Context of that device and run on its engines (family
// Optimizer: Cpu, Cuda), which apply the same float formulas element by
// element.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dlrt/context.hpp"
#include "dlrt/export.hpp"
#include "dlrt/tensor.hpp"

namespace dlrt::optim {

struct Parameter {
  std::string name;
  Tensor value;  // updated in place (shares storage with the model's tensor)
  Tensor grad;   // read by step(); same shape
};

struct SgdOptions {
  float learning_rate = 0.01f;
  float momentum = 0.0f;      // in [0, 1)
  float dampening = 0.0f;     // in [0, 1]
  bool nesterov = false;      // needs momentum > 0 and dampening = 0
  float weight_decay = 0.0f;  // lambda >= 0: the Gaussian prior's precision (MAP)
};

// PyTorch's torch.optim.SGD: g = grad + lambda * theta; with momentum
// v = mu v + (1 - dampening) g (v = g on the first step); the step is
// g + mu v (Nesterov) or v; theta -= lr * step.
class DLRT_EXPORT Sgd {
public:
  Sgd(std::vector<Parameter> parameters, const SgdOptions& options);
  void step(Context& ctx);
  void zero_grad(Context& ctx);
  float learning_rate() const { return options_.learning_rate; }
  void set_learning_rate(float lr);
  const std::vector<Parameter>& parameters() const { return parameters_; }

private:
  std::vector<Parameter> parameters_;
  SgdOptions options_;
  Device device_;
  std::vector<Tensor> velocity_;
  bool started_ = false;
};

struct AdamOptions {
  float learning_rate = 1e-3f;
  float beta1 = 0.9f;     // in [0, 1)
  float beta2 = 0.999f;   // in [0, 1)
  float epsilon = 1e-8f;  // > 0
  float weight_decay = 0.0f;
  bool decoupled_weight_decay = false;  // false: Adam (L2 in the gradient), true: AdamW
};

// Kingma and Ba, "Adam" (2015), Algorithm 1, with bias correction; AdamW
// as torch.optim.AdamW: theta -= lr * lambda * theta before the Adam step.
class DLRT_EXPORT Adam {
public:
  Adam(std::vector<Parameter> parameters, const AdamOptions& options);
  void step(Context& ctx);
  void zero_grad(Context& ctx);
  float learning_rate() const { return options_.learning_rate; }
  void set_learning_rate(float lr);
  std::int64_t steps() const { return t_; }
  const std::vector<Parameter>& parameters() const { return parameters_; }

private:
  std::vector<Parameter> parameters_;
  AdamOptions options_;
  Device device_;
  std::vector<Tensor> m_, v_;
  std::int64_t t_ = 0;
};

// Scales every gradient by max_norm / ||g|| when the global L2 norm ||g||
// over all of them exceeds max_norm (> 0); returns ||g|| before clipping
// (on a GPU this waits for ctx's stream: the host needs the norm).
// A non-finite norm raises Error(InvalidArgument) naming the first
// parameter holding a NaN or infinity, and changes nothing.
DLRT_EXPORT float clip_grad_norm(Context& ctx, std::span<const Parameter> parameters,
                                 float max_norm);

// Learning-rate schedules: the rate at `step` (0-based) of `total` steps.
// Linear warm-up over `warmup` steps, then cosine decay from `base` to
// `minimum`, reached at the last step (Loshchilov and Hutter, SGDR, 2017,
// without restarts).
DLRT_EXPORT float cosine_schedule(std::int64_t step, std::int64_t total, float base,
                                  float minimum = 0.0f, std::int64_t warmup = 0);
// base * gamma^(step / step_size), as torch.optim.lr_scheduler.StepLR.
DLRT_EXPORT float step_schedule(std::int64_t step, std::int64_t step_size, float base,
                                float gamma = 0.1f);

}  // namespace dlrt::optim
