// The optimizers: validation, state and schedules here; the element
// updates are the Optimizer family's engines (Cpu: loops on dlrt's threads,
// Cuda: kernels), planned once per parameter size and cached in the context.
#include "dlrt/optim.hpp"

#include <cmath>
#include <set>
#include <string>

#include "dlrt/error.hpp"
#include "runtime/op_support.hpp"
#include "runtime/optimizer_engine.hpp"
#include "runtime/parallel.hpp"
#include "runtime/validate.hpp"

namespace dlrt::optim {
namespace {

using detail::invalid_argument;
using detail::OptimizerArgs;
using detail::OptimizerOp;

// Every value and gradient defined, f32, of one shape, apart, unique names,
// all on one device (the first parameter's, or the CPU when there is none).
Device check_parameters(std::string_view op, const std::vector<Parameter>& parameters) {
  std::set<std::string> names;
  const Device device = !parameters.empty() && parameters[0].value.defined()
                            ? parameters[0].value.device()
                            : Device::cpu();
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    const Parameter& p = parameters[i];
    const std::string at = "parameters[" + std::to_string(i) + "]";
    if (!names.insert(p.name).second)
      invalid_argument(op, at + ".name", p.name, "must be unique among the parameters");
    if (p.value.defined() && !(p.value.device() == device))
      invalid_argument(op, at + ".value", to_string(p.value.device()),
                       "must be on the first parameter's device " + to_string(device));
    detail::check_tensor(op, at + ".value", p.value, p.value.rank(), device);
    detail::check_tensor(op, at + ".grad", p.grad, p.value.rank(), device);
    detail::check_shape_is(op, at + ".grad", p.grad, p.value.shape(), "the value's shape");
    detail::check_no_overlap(op, at + ".value", p.value, at + ".grad", p.grad);
  }
  return device;
}

void check_rate(std::string_view op, const char* name, float v) {
  if (!std::isfinite(v) || v < 0.0f) invalid_argument(op, name, v, "must be finite and >= 0");
}

void check_unit(std::string_view op, const char* name, float v, bool closed) {
  const bool ok = closed ? (v >= 0.0f && v <= 1.0f) : (v >= 0.0f && v < 1.0f);
  if (!ok) invalid_argument(op, name, v, closed ? "must be in [0, 1]" : "must be in [0, 1)");
}

void check_context(std::string_view op, const Context& ctx, Device device) {
  if (!(ctx.device() == device))
    invalid_argument(op, "ctx", to_string(ctx.device()),
                     "must be a context of the parameters' device " + to_string(device));
}

struct OptimizerPlanState {
  Device device;
  std::shared_ptr<const detail::OptimizerKernel> kernel;
  std::string reason;

  static std::shared_ptr<const OptimizerPlanState> cached(Context& ctx, OptimizerOp op,
                                                          std::int64_t count) {
    detail::PlanKey key;
    key.add(static_cast<int>(OpFamily::Optimizer)).add(static_cast<int>(op)).add(count);
    detail::add_context_settings(key, ctx);
    return detail::cached_state<OptimizerPlanState>(ctx, key, [&] {
      auto state = std::make_shared<OptimizerPlanState>();
      state->device = ctx.device();
      detail::OptimizerProblem problem;
      problem.op = op;
      problem.count = count;
      problem.options = ctx.options();
      problem.threads = detail::available_threads();
      auto r = detail::resolve<detail::OptimizerEngine, detail::OptimizerKernel>(
          ctx.device(), Engine::Auto,
          [&](const detail::OptimizerEngine& e) { return e.plan(ctx, problem); });
      state->kernel = std::move(r.kernel);
      state->reason = std::move(r.reason);
      return std::shared_ptr<const OptimizerPlanState>(std::move(state));
    });
  }
};

// Runs one update of `count` elements on ctx's device.
void run_update(std::string_view caller, Context& ctx, OptimizerOp op, std::int64_t count,
                const OptimizerArgs& args) {
  const auto plan = OptimizerPlanState::cached(ctx, op, count);
  if (!plan->kernel) detail::throw_unsupported(caller, Engine::Auto, plan->device, plan->reason);
  detail::translate_exceptions(caller, [&] {
    void* scratch = detail::run_workspace(caller, ctx, plan->kernel->workspace_bytes(), nullptr);
    plan->kernel->run(ctx, args, scratch);
  });
}

void zero(std::string_view caller, Context& ctx, std::vector<Parameter>& parameters) {
  for (Parameter& p : parameters) {
    OptimizerArgs a;
    a.grad = p.grad.data();
    run_update(caller, ctx, OptimizerOp::Zero, p.grad.numel(), a);
  }
}

std::vector<Tensor> zeros_like(const std::vector<Parameter>& parameters) {
  std::vector<Tensor> state;
  for (const Parameter& p : parameters)
    state.push_back(Tensor::zeros(p.value.shape(), p.value.device()));
  return state;
}

}  // namespace

// ---- SGD ---------------------------------------------------------------------

Sgd::Sgd(std::vector<Parameter> parameters, const SgdOptions& options)
    : parameters_(std::move(parameters)), options_(options) {
  constexpr const char* op = "Sgd";
  device_ = check_parameters(op, parameters_);
  check_rate(op, "options.learning_rate", options.learning_rate);
  check_unit(op, "options.momentum", options.momentum, false);
  check_unit(op, "options.dampening", options.dampening, true);
  check_rate(op, "options.weight_decay", options.weight_decay);
  if (options.nesterov && (options.momentum <= 0.0f || options.dampening != 0.0f))
    invalid_argument(op, "options.nesterov", "true",
                     "needs momentum > 0 and dampening = 0 (as torch.optim.SGD)");
  if (options.momentum > 0.0f) velocity_ = zeros_like(parameters_);
}

void Sgd::set_learning_rate(float lr) {
  check_rate("Sgd::set_learning_rate", "lr", lr);
  options_.learning_rate = lr;
}

void Sgd::zero_grad(Context& ctx) {
  detail::ContextUse use(ctx, "Sgd::zero_grad");
  check_context("Sgd::zero_grad", ctx, device_);
  zero("Sgd::zero_grad", ctx, parameters_);
}

void Sgd::step(Context& ctx) {
  detail::ContextUse use(ctx, "Sgd::step");
  check_context("Sgd::step", ctx, device_);
  for (std::size_t k = 0; k < parameters_.size(); ++k) {
    OptimizerArgs a;
    a.theta = parameters_[k].value.data();
    a.grad = parameters_[k].grad.data();
    a.velocity = options_.momentum > 0.0f ? velocity_[k].data() : nullptr;
    a.learning_rate = options_.learning_rate;
    a.weight_decay = options_.weight_decay;
    a.momentum = options_.momentum;
    a.dampening = options_.dampening;
    a.nesterov = options_.nesterov;
    a.first = !started_;
    run_update("Sgd::step", ctx, OptimizerOp::Sgd, parameters_[k].value.numel(), a);
  }
  started_ = true;
}

// ---- Adam ---------------------------------------------------------------------

Adam::Adam(std::vector<Parameter> parameters, const AdamOptions& options)
    : parameters_(std::move(parameters)), options_(options) {
  constexpr const char* op = "Adam";
  device_ = check_parameters(op, parameters_);
  check_rate(op, "options.learning_rate", options.learning_rate);
  check_unit(op, "options.beta1", options.beta1, false);
  check_unit(op, "options.beta2", options.beta2, false);
  if (!std::isfinite(options.epsilon) || options.epsilon <= 0.0f)
    invalid_argument(op, "options.epsilon", options.epsilon, "must be finite and > 0");
  check_rate(op, "options.weight_decay", options.weight_decay);
  m_ = zeros_like(parameters_);
  v_ = zeros_like(parameters_);
}

void Adam::set_learning_rate(float lr) {
  check_rate("Adam::set_learning_rate", "lr", lr);
  options_.learning_rate = lr;
}

void Adam::zero_grad(Context& ctx) {
  detail::ContextUse use(ctx, "Adam::zero_grad");
  check_context("Adam::zero_grad", ctx, device_);
  zero("Adam::zero_grad", ctx, parameters_);
}

void Adam::step(Context& ctx) {
  detail::ContextUse use(ctx, "Adam::step");
  check_context("Adam::step", ctx, device_);
  const AdamOptions o = options_;
  ++t_;
  const double t = static_cast<double>(t_);
  OptimizerArgs a;
  a.learning_rate = o.learning_rate;
  a.beta1 = o.beta1;
  a.beta2 = o.beta2;
  a.epsilon = o.epsilon;
  a.correction1 = static_cast<float>(1.0 - std::pow(double{o.beta1}, t));
  a.correction2 = static_cast<float>(1.0 - std::pow(double{o.beta2}, t));
  a.coupled = o.decoupled_weight_decay ? 0.0f : o.weight_decay;
  a.decoupled = o.decoupled_weight_decay ? o.learning_rate * o.weight_decay : 0.0f;
  for (std::size_t k = 0; k < parameters_.size(); ++k) {
    a.theta = parameters_[k].value.data();
    a.grad = parameters_[k].grad.data();
    a.m = m_[k].data();
    a.v = v_[k].data();
    run_update("Adam::step", ctx, OptimizerOp::Adam, parameters_[k].value.numel(), a);
  }
}

// ---- clipping and schedules ---------------------------------------------------------

float clip_grad_norm(Context& ctx, std::span<const Parameter> parameters, float max_norm) {
  constexpr const char* op = "clip_grad_norm";
  detail::ContextUse use(ctx, op);
  if (!std::isfinite(max_norm) || max_norm <= 0.0f)
    invalid_argument(op, "max_norm", max_norm, "must be finite and > 0");
  const std::vector<Parameter> checked(parameters.begin(), parameters.end());
  const Device device = check_parameters(op, checked);
  check_context(op, ctx, device);
  // Every part first: a non-finite one changes nothing.
  std::vector<double> parts(parameters.size(), 0.0);
  for (std::size_t k = 0; k < parameters.size(); ++k) {
    Tensor grad = parameters[k].grad;
    OptimizerArgs a;
    a.grad = grad.data();
    a.sum = &parts[k];
    run_update(op, ctx, OptimizerOp::SumOfSquares, grad.numel(), a);
    if (!std::isfinite(parts[k]))
      invalid_argument(op, "parameters[" + std::to_string(k) + "].grad", parameters[k].name,
                       "holds a NaN or an infinity: the gradient norm is not finite");
  }
  double sum = 0.0;
  for (double part : parts) sum += part;
  const double norm = std::sqrt(sum);
  if (norm > max_norm) {
    for (const Parameter& p : parameters) {
      Tensor grad = p.grad;  // the same storage, written through
      OptimizerArgs a;
      a.grad = grad.data();
      a.scale = static_cast<float>(max_norm / (norm + 1e-6));
      run_update(op, ctx, OptimizerOp::Scale, grad.numel(), a);
    }
  }
  return static_cast<float>(norm);
}

float cosine_schedule(std::int64_t step, std::int64_t total, float base, float minimum,
                      std::int64_t warmup) {
  constexpr const char* op = "cosine_schedule";
  if (total < 1) invalid_argument(op, "total", total, "must be >= 1");
  if (step < 0 || step >= total)
    invalid_argument(op, "step", step,
                     "must be in [0, total) = [0, " + std::to_string(total) + ")");
  if (warmup < 0 || warmup >= total)
    invalid_argument(op, "warmup", warmup, "must be in [0, total)");
  check_rate(op, "base", base);
  check_rate(op, "minimum", minimum);
  if (step < warmup) return base * static_cast<float>(step + 1) / static_cast<float>(warmup);
  // The last step (total - 1) is at the minimum.
  const double progress = static_cast<double>(step - warmup) /
                          static_cast<double>(std::max<std::int64_t>(1, total - 1 - warmup));
  constexpr double kPi = 3.14159265358979323846;
  return static_cast<float>(minimum + 0.5 * (base - minimum) * (1.0 + std::cos(kPi * progress)));
}

float step_schedule(std::int64_t step, std::int64_t step_size, float base, float gamma) {
  constexpr const char* op = "step_schedule";
  if (step < 0) invalid_argument(op, "step", step, "must be >= 0");
  if (step_size < 1) invalid_argument(op, "step_size", step_size, "must be >= 1");
  check_rate(op, "base", base);
  check_rate(op, "gamma", gamma);
  return base * static_cast<float>(std::pow(double{gamma}, static_cast<double>(step / step_size)));
}

}  // namespace dlrt::optim
