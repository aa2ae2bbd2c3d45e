// dlrt::nn's base classes: the generator, parameter registration and naming,
// training mode, state dicts, and the validating Layer entry points.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "dlrt/error.hpp"
#include "dlrt/nn.hpp"
#include "runtime/validate.hpp"

namespace dlrt::nn {

using detail::invalid_argument;

// ---- Generator ------------------------------------------------------------------

std::uint64_t Generator::next() {
  // SplitMix64's increment and finaliser constants (Steele et al. 2014).
  std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float Generator::uniform(float low, float high) {
  const float unit = static_cast<float>(next() >> 40) * 0x1.0p-24f;  // [0, 1)
  const float value = low + (high - low) * unit;
  return value < high ? value : low;  // rounding may land on high
}

float Generator::normal() {
  // Box-Muller; 1 - u1 keeps the logarithm's argument in (0, 1].
  const double u1 = 1.0 - static_cast<double>(next() >> 11) * 0x1.0p-53;
  const double u2 = static_cast<double>(next() >> 11) * 0x1.0p-53;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) *
                            std::cos(6.283185307179586476925 * u2));
}

std::uint64_t Generator::below(std::uint64_t n) {
  if (n == 0) invalid_argument("nn::Generator::below", "n", n, "must be >= 1");
  // The high 64 bits of next() * n, from 32-bit halves (no 128-bit type in ISO C++).
  const std::uint64_t x = next();
  const std::uint64_t x_lo = x & 0xFFFFFFFFu, x_hi = x >> 32;
  const std::uint64_t n_lo = n & 0xFFFFFFFFu, n_hi = n >> 32;
  const std::uint64_t lo_lo = x_lo * n_lo, hi_lo = x_hi * n_lo, lo_hi = x_lo * n_hi;
  const std::uint64_t middle = (lo_lo >> 32) + (hi_lo & 0xFFFFFFFFu) + lo_hi;
  return x_hi * n_hi + (hi_lo >> 32) + (middle >> 32);
}

void uniform_(Tensor& t, float low, float high, Generator& generator) {
  constexpr std::string_view op = "nn::uniform_";
  if (!t.defined()) invalid_argument(op, "t", "undefined", "must be a defined tensor");
  if (t.dtype() != DType::F32) invalid_argument(op, "t", to_string(t.dtype()), "must be f32");
  if (!std::isfinite(low) || !std::isfinite(high) || !(low < high))
    invalid_argument(op, "low, high", std::to_string(low) + ", " + std::to_string(high),
                     "must be finite with low < high");
  std::vector<float> values(static_cast<std::size_t>(t.numel()));
  for (float& v : values) v = generator.uniform(low, high);
  t.copy_from(Tensor::from_vector(t.shape(), values));
}

// ---- Module ---------------------------------------------------------------------

Module::Module(Device device) : device_(device) {
  if (device.is_cpu() && device.index != 0)
    invalid_argument("nn::Module", "device", to_string(device), "the CPU device has index 0");
}

Module::~Module() = default;

Module::ParameterTensors Module::register_parameter(std::string name, const Shape& shape) {
  Entry entry{std::move(name), Tensor::zeros(shape, device_), Tensor::zeros(shape, device_)};
  parameters_.push_back(entry);
  return {entry.value, entry.grad};
}

void Module::register_parameter_view(std::string name, Tensor value, Tensor grad) {
  parameters_.push_back(Entry{std::move(name), std::move(value), std::move(grad)});
}

void Module::register_module(std::string name, Module& child) {
  if (&child == this) invalid_argument("nn::Module", "child", name, "may not be the module itself");
  for (const auto& [existing, _] : children_)
    if (existing == name) invalid_argument("nn::Module", "name", name, "is already a child's name");
  child.engine_ = engine_;
  child.training_ = training_;
  children_.emplace_back(std::move(name), &child);
}

void Module::collect(const std::string& prefix, std::vector<optim::Parameter>& out) const {
  for (const Entry& entry : parameters_)
    out.push_back(optim::Parameter{prefix + entry.name, entry.value, entry.grad});
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

std::vector<optim::Parameter> Module::parameters(const std::string& prefix) const {
  std::vector<optim::Parameter> out;
  collect(prefix, out);
  return out;
}

std::int64_t Module::parameter_count() const {
  std::int64_t count = 0;
  for (const optim::Parameter& p : parameters()) count += p.value.numel();
  return count;
}

void Module::zero_grad() {
  for (optim::Parameter& p : parameters()) p.grad.fill(0.0f);
}

void Module::train(bool on) {
  training_ = on;
  if (!on) release_saved();
  for (auto& [_, child] : children_) child->train(on);
}

void Module::set_engine(Engine engine) {
  const std::vector<Engine> known = known_engines();
  if (engine != Engine::Auto && std::find(known.begin(), known.end(), engine) == known.end())
    invalid_argument("nn::Module::set_engine", "engine", static_cast<int>(engine),
                     "must be an Engine enumerator");
  engine_ = engine;
  for (auto& [_, child] : children_) child->set_engine(engine);
}

std::vector<NamedTensor> Module::state_dict(const std::string& prefix) const {
  std::vector<NamedTensor> out;
  for (const optim::Parameter& p : parameters(prefix)) out.push_back({p.name, p.value});
  return out;
}

void Module::load_state_dict(std::span<const NamedTensor> tensors, bool strict) {
  constexpr std::string_view op = "nn::Module::load_state_dict";
  const std::vector<optim::Parameter> mine = parameters();
  std::map<std::string, const optim::Parameter*> by_name;
  for (const optim::Parameter& p : mine) by_name.emplace(p.name, &p);

  // Everything is checked first, so a bad file changes nothing.
  std::set<std::string> seen;
  std::vector<std::pair<const optim::Parameter*, const Tensor*>> copies;
  for (const NamedTensor& t : tensors) {
    if (!seen.insert(t.name).second)
      invalid_argument(op, "tensors", t.name, "names a parameter twice");
    const auto it = by_name.find(t.name);
    if (it == by_name.end()) {
      if (strict)
        invalid_argument(op, "tensors", t.name,
                         std::string("is not a parameter of this ") + type() + " (strict loading)");
      continue;
    }
    if (!t.tensor.defined() || t.tensor.dtype() != DType::F32)
      invalid_argument(op, t.name, t.tensor.defined() ? to_string(t.tensor.dtype()) : "undefined",
                       "must be an f32 tensor");
    if (!(t.tensor.shape() == it->second->value.shape()))
      invalid_argument(op, t.name, t.tensor.shape().to_string(),
                       "must have the parameter's shape " + it->second->value.shape().to_string());
    copies.emplace_back(it->second, &t.tensor);
  }
  if (strict)
    for (const optim::Parameter& p : mine)
      if (!seen.contains(p.name))
        invalid_argument(op, "tensors", p.name, "is missing (strict loading)");
  for (auto& [parameter, source] : copies) {
    Tensor value = parameter->value;
    value.copy_from(*source);
  }
}

void Module::save(const std::string& path,
                  const std::map<std::string, std::string>& metadata) const {
  save_safetensors(path, state_dict(), metadata);
}

void Module::load(const std::string& path, bool strict) {
  const SafetensorsFile file = load_safetensors(path);
  load_state_dict(file.tensors, strict);
}

// ---- Layer ----------------------------------------------------------------------

namespace {

void check_context_and_tensor(std::string_view op, const Context& ctx, Device device,
                              std::string_view name, const Tensor& t) {
  if (!(ctx.device() == device))
    invalid_argument(op, "ctx", to_string(ctx.device()),
                     "must be a context of the module's device " + std::string(to_string(device)));
  if (!t.defined()) invalid_argument(op, name, "undefined", "must be a defined tensor");
  if (t.dtype() != DType::F32) invalid_argument(op, name, to_string(t.dtype()), "must be f32");
  if (!(t.device() == device))
    invalid_argument(op, name, to_string(t.device()),
                     "must be on the module's device " + std::string(to_string(device)));
}

}  // namespace

Tensor Layer::forward(Context& ctx, const Tensor& x) {
  const std::string op = std::string("nn::") + type() + "::forward";
  check_context_and_tensor(op, ctx, device(), "x", x);
  check_input(x);
  // A forward that fails half way must not leave a backward to run on a mix.
  ready_for_backward_ = false;
  clear_saved();
  Tensor y = run_forward(ctx, x);
  if (is_training()) {
    input_shape_ = x.shape();
    output_shape_ = y.shape();
    ready_for_backward_ = true;
  } else {
    clear_saved();
  }
  return y;
}

Tensor Layer::backward(Context& ctx, const Tensor& dy) {
  const std::string op = std::string("nn::") + type() + "::backward";
  check_context_and_tensor(op, ctx, device(), "dy", dy);
  if (!ready_for_backward_)
    invalid_argument(op, "dy", dy.shape().to_string(),
                     "needs a forward in training mode first (each forward allows one backward)");
  if (!(dy.shape() == output_shape_))
    invalid_argument(op, "dy", dy.shape().to_string(),
                     "must have the shape of the forward's output " + output_shape_.to_string());
  ready_for_backward_ = false;
  Tensor dx = run_backward(ctx, dy);
  clear_saved();
  if (!(dx.shape() == input_shape_))
    throw Error(Error::Kind::Internal, op + ": dx has shape " + dx.shape().to_string() +
                                           ", not the input's " + input_shape_.to_string());
  return dx;
}

void Layer::release_saved() {
  ready_for_backward_ = false;
  clear_saved();
}

}  // namespace dlrt::nn
