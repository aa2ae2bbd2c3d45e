// The optimizers' updates, elementwise on the host, split across dlrt's
// threads for large parameters (each element's update is independent, so
// the results do not depend on the split).
#include "dlrt/optim.hpp"

#include <cmath>
#include <set>
#include <string>

#include "dlrt/error.hpp"
#include "runtime/context_impl.hpp"
#include "runtime/parallel.hpp"
#include "runtime/validate.hpp"

namespace dlrt::optim {
namespace {

using detail::invalid_argument;

// An update reads and writes a few floats per element: about 1 ns.
constexpr double kNsPerElement = 1.0;

void check_parameters(std::string_view op, const std::vector<Parameter>& parameters) {
  std::set<std::string> names;
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    const Parameter& p = parameters[i];
    const std::string at = "parameters[" + std::to_string(i) + "]";
    if (!names.insert(p.name).second)
      invalid_argument(op, at + ".name", p.name, "must be unique among the parameters");
    if (p.value.defined() && p.value.device().is_cuda())
      throw Error(Error::Kind::Unsupported,
                  std::string(op) + ": argument '" + at + ".value' is on " +
                      to_string(p.value.device()) +
                      ": the optimizers update parameters on the CPU only so far");
    detail::check_tensor(op, at + ".value", p.value, p.value.rank(), Device::cpu());
    detail::check_tensor(op, at + ".grad", p.grad, p.value.rank(), Device::cpu());
    detail::check_shape_is(op, at + ".grad", p.grad, p.value.shape(), "the value's shape");
    detail::check_no_overlap(op, at + ".value", p.value, at + ".grad", p.grad);
  }
}

void check_rate(std::string_view op, const char* name, float v) {
  if (!std::isfinite(v) || v < 0.0f) invalid_argument(op, name, v, "must be finite and >= 0");
}

void check_unit(std::string_view op, const char* name, float v, bool closed) {
  const bool ok = closed ? (v >= 0.0f && v <= 1.0f) : (v >= 0.0f && v < 1.0f);
  if (!ok) invalid_argument(op, name, v, closed ? "must be in [0, 1]" : "must be in [0, 1)");
}

void check_context(std::string_view op, const Context& ctx) {
  if (!ctx.device().is_cpu())
    invalid_argument(op, "ctx", to_string(ctx.device()),
                     "must be a CPU context (the parameters are on the CPU)");
}

template <class Update>
void for_each_element(std::int64_t count, const Update& update) {
  detail::parallel_for(0, count, detail::grain_for(kNsPerElement),
                       [&](std::int64_t begin, std::int64_t end) {
                         for (std::int64_t i = begin; i < end; ++i) update(i);
                       });
}

void zero(std::vector<Parameter>& parameters) {
  for (Parameter& p : parameters) {
    float* g = p.grad.data();
    for_each_element(p.grad.numel(), [&](std::int64_t i) { g[i] = 0.0f; });
  }
}

}  // namespace

// ---- SGD ---------------------------------------------------------------------

Sgd::Sgd(std::vector<Parameter> parameters, const SgdOptions& options)
    : parameters_(std::move(parameters)), options_(options) {
  constexpr const char* op = "Sgd";
  check_parameters(op, parameters_);
  check_rate(op, "options.learning_rate", options.learning_rate);
  check_unit(op, "options.momentum", options.momentum, false);
  check_unit(op, "options.dampening", options.dampening, true);
  check_rate(op, "options.weight_decay", options.weight_decay);
  if (options.nesterov && (options.momentum <= 0.0f || options.dampening != 0.0f))
    invalid_argument(op, "options.nesterov", "true",
                     "needs momentum > 0 and dampening = 0 (as torch.optim.SGD)");
  if (options.momentum > 0.0f)
    for (const Parameter& p : parameters_)
      velocity_.emplace_back(static_cast<std::size_t>(p.value.numel()), 0.0f);
}

void Sgd::set_learning_rate(float lr) {
  check_rate("Sgd::set_learning_rate", "lr", lr);
  options_.learning_rate = lr;
}

void Sgd::zero_grad(Context& ctx) {
  detail::ContextUse use(ctx, "Sgd::zero_grad");
  check_context("Sgd::zero_grad", ctx);
  zero(parameters_);
}

void Sgd::step(Context& ctx) {
  detail::ContextUse use(ctx, "Sgd::step");
  check_context("Sgd::step", ctx);
  const SgdOptions o = options_;
  const bool first = !started_;
  for (std::size_t k = 0; k < parameters_.size(); ++k) {
    float* theta = parameters_[k].value.data();
    const float* grad = parameters_[k].grad.data();
    float* v = o.momentum > 0.0f ? velocity_[k].data() : nullptr;
    for_each_element(parameters_[k].value.numel(), [&](std::int64_t i) {
      float g = grad[i] + o.weight_decay * theta[i];
      if (v != nullptr) {
        v[i] = first ? g : o.momentum * v[i] + (1.0f - o.dampening) * g;
        g = o.nesterov ? g + o.momentum * v[i] : v[i];
      }
      theta[i] -= o.learning_rate * g;
    });
  }
  started_ = true;
}

// ---- Adam ---------------------------------------------------------------------

Adam::Adam(std::vector<Parameter> parameters, const AdamOptions& options)
    : parameters_(std::move(parameters)), options_(options) {
  constexpr const char* op = "Adam";
  check_parameters(op, parameters_);
  check_rate(op, "options.learning_rate", options.learning_rate);
  check_unit(op, "options.beta1", options.beta1, false);
  check_unit(op, "options.beta2", options.beta2, false);
  if (!std::isfinite(options.epsilon) || options.epsilon <= 0.0f)
    invalid_argument(op, "options.epsilon", options.epsilon, "must be finite and > 0");
  check_rate(op, "options.weight_decay", options.weight_decay);
  for (const Parameter& p : parameters_) {
    m_.emplace_back(static_cast<std::size_t>(p.value.numel()), 0.0f);
    v_.emplace_back(static_cast<std::size_t>(p.value.numel()), 0.0f);
  }
}

void Adam::set_learning_rate(float lr) {
  check_rate("Adam::set_learning_rate", "lr", lr);
  options_.learning_rate = lr;
}

void Adam::zero_grad(Context& ctx) {
  detail::ContextUse use(ctx, "Adam::zero_grad");
  check_context("Adam::zero_grad", ctx);
  zero(parameters_);
}

void Adam::step(Context& ctx) {
  detail::ContextUse use(ctx, "Adam::step");
  check_context("Adam::step", ctx);
  const AdamOptions o = options_;
  ++t_;
  const double t = static_cast<double>(t_);
  const auto correction1 = static_cast<float>(1.0 - std::pow(double{o.beta1}, t));
  const auto correction2 = static_cast<float>(1.0 - std::pow(double{o.beta2}, t));
  const float coupled = o.decoupled_weight_decay ? 0.0f : o.weight_decay;
  const float decoupled = o.decoupled_weight_decay ? o.learning_rate * o.weight_decay : 0.0f;
  for (std::size_t k = 0; k < parameters_.size(); ++k) {
    float* theta = parameters_[k].value.data();
    const float* grad = parameters_[k].grad.data();
    float* m = m_[k].data();
    float* v = v_[k].data();
    for_each_element(parameters_[k].value.numel(), [&](std::int64_t i) {
      theta[i] -= decoupled * theta[i];
      const float g = grad[i] + coupled * theta[i];
      m[i] = o.beta1 * m[i] + (1.0f - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1.0f - o.beta2) * g * g;
      const float m_hat = m[i] / correction1, v_hat = v[i] / correction2;
      theta[i] -= o.learning_rate * m_hat / (std::sqrt(v_hat) + o.epsilon);
    });
  }
}

// ---- clipping and schedules ---------------------------------------------------------

float clip_grad_norm(Context& ctx, std::span<const Parameter> parameters, float max_norm) {
  constexpr const char* op = "clip_grad_norm";
  detail::ContextUse use(ctx, op);
  check_context(op, ctx);
  if (!std::isfinite(max_norm) || max_norm <= 0.0f)
    invalid_argument(op, "max_norm", max_norm, "must be finite and > 0");
  check_parameters(op, {parameters.begin(), parameters.end()});
  double sum = 0.0;
  for (std::size_t k = 0; k < parameters.size(); ++k) {
    const float* g = parameters[k].grad.data();
    double part = 0.0;
    for (std::int64_t i = 0; i < parameters[k].grad.numel(); ++i)
      part += static_cast<double>(g[i]) * g[i];
    if (!std::isfinite(part))
      invalid_argument(op, "parameters[" + std::to_string(k) + "].grad", parameters[k].name,
                       "holds a NaN or an infinity: the gradient norm is not finite");
    sum += part;
  }
  const double norm = std::sqrt(sum);
  if (norm > max_norm) {
    const auto scale = static_cast<float>(max_norm / (norm + 1e-6));
    for (const Parameter& p : parameters) {
      Tensor grad = p.grad;  // the same storage, written through
      float* g = grad.data();
      for_each_element(p.grad.numel(), [&](std::int64_t i) { g[i] *= scale; });
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
