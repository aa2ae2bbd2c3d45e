// dlrt::nn: layers with explicit forward and backward (no tape), named
// parameters and PyTorch's default initialisation, built on the public ops.
//
// A Module owns parameters (a value and a gradient tensor of one shape) and
// child modules, each under a name, so that parameters() lists them under
// the dotted names a PyTorch state_dict uses ("cnn.0.weight",
// "lstm.weight_ih_l0_reverse") and checkpoints move between the two.
//
// A Layer maps one tensor to one tensor. forward() in training mode (the
// default) keeps what backward() needs; backward(dy) returns dx and ADDS
// the parameter gradients to their grad tensors, as PyTorch does, so
// gradients of several batches accumulate until the optimizer's zero_grad().
// Each training forward allows one backward. In evaluation mode
// (train(false)) forward keeps nothing and backward is an error.
//
// Initialisation follows PyTorch's defaults in distribution (not in the
// random numbers themselves: dlrt has its own documented generator):
//   Conv2d, Linear   weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
//                    fan_in = in_features, or in_channels/groups * R * S
//                    (kaiming_uniform_ with a = sqrt(5) gives that bound)
//   RNN, LSTM, GRU   every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))
//
// Tensors live on the device the module was made for; forward and backward
// run on a Context of that device with the module's engine (Auto unless
// set_engine() chose one). Modules are not thread-safe: one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dlrt/checkpoint.hpp"
#include "dlrt/context.hpp"
#include "dlrt/conv.hpp"
#include "dlrt/engine.hpp"
#include "dlrt/export.hpp"
#include "dlrt/nn_ops.hpp"
#include "dlrt/optim.hpp"
#include "dlrt/pool.hpp"
#include "dlrt/rnn.hpp"
#include "dlrt/tensor.hpp"

namespace dlrt::nn {

// ---- random numbers -------------------------------------------------------------

// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014): the same seed gives the same numbers with any
// compiler and standard library, which std::uniform_real_distribution does not.
class DLRT_EXPORT Generator {
public:
  explicit Generator(std::uint64_t seed = 0) : state_(seed) {}
  std::uint64_t next();
  // Uniform in [low, high), from the top 24 bits (every float step of [0, 1) equally likely).
  float uniform(float low, float high);
  // A standard normal (Box-Muller on two uniforms).
  float normal();
  // An integer in [0, n), n >= 1 (Lemire's multiply-shift; bias below 2^-32 for n < 2^32).
  std::uint64_t below(std::uint64_t n);

private:
  std::uint64_t state_;
};

// Fills t (f32, any device) with U(low, high) drawn on the host; low < high, both finite.
DLRT_EXPORT void uniform_(Tensor& t, float low, float high, Generator& generator);

// ---- modules --------------------------------------------------------------------

class DLRT_EXPORT Module {
public:
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module();

  // "Conv2d", "LSTM", ...: PyTorch's class names.
  virtual const char* type() const = 0;
  Device device() const { return device_; }

  // Every parameter of this module and its children, depth first in
  // registration order, named prefix + dotted path. The tensors share
  // storage with the module's: an optimizer built on them updates the module.
  std::vector<optim::Parameter> parameters(const std::string& prefix = "") const;
  std::int64_t parameter_count() const;  // elements, over all parameters
  // Sets every gradient to zero.
  void zero_grad();

  // Training mode (the default) keeps what backward needs; false is evaluation.
  void train(bool on = true);
  bool is_training() const { return training_; }
  // The engine every op of this module and its children runs on (Auto by default).
  void set_engine(Engine engine);
  Engine engine() const { return engine_; }

  // The parameters (values only) as named tensors, for save_safetensors.
  std::vector<NamedTensor> state_dict(const std::string& prefix = "") const;
  // Copies every tensor of `tensors` into the parameter of that name.
  // Everything is checked before anything is written: with strict, the
  // names must be exactly the module's; otherwise unknown names are
  // ignored and missing ones keep their values. Dtype and shape must
  // match. Throws dlrt::Error naming the parameter.
  void load_state_dict(std::span<const NamedTensor> tensors, bool strict = true);
  // save_safetensors(path, state_dict()) with `metadata`, and
  // load_state_dict(load_safetensors(path).tensors, strict).
  void save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const;
  void load(const std::string& path, bool strict = true);

protected:
  explicit Module(Device device);
  // A parameter of `shape` with zero value and gradient, both returned
  // (sharing storage with the registered ones).
  struct ParameterTensors {
    Tensor value, grad;
  };
  ParameterTensors register_parameter(std::string name, const Shape& shape);
  // A view of another parameter's storage registered under its own name
  // (the RNN modules' per-layer pieces of one flat weight tensor).
  void register_parameter_view(std::string name, Tensor value, Tensor grad);
  // `child` must outlive this module (typically a member).
  void register_module(std::string name, Module& child);
  // Drops what a training forward kept (called by train(false)).
  virtual void release_saved() {}

private:
  struct Entry {
    std::string name;
    Tensor value, grad;
  };
  void collect(const std::string& prefix, std::vector<optim::Parameter>& out) const;

  Device device_;
  bool training_ = true;
  Engine engine_ = Engine::Auto;
  std::vector<Entry> parameters_;
  std::vector<std::pair<std::string, Module*>> children_;
};

// One tensor in, one tensor out. forward and backward are the public,
// validating entry points; subclasses implement run_forward/run_backward.
class DLRT_EXPORT Layer : public Module {
public:
  // x on the module's device, ctx of that device; throws dlrt::Error naming
  // the argument and the rule (shape, device) before anything runs.
  Tensor forward(Context& ctx, const Tensor& x);
  // dy of the last training forward's output shape; returns dx of its input
  // shape and adds to the parameter gradients.
  Tensor backward(Context& ctx, const Tensor& dy);

protected:
  using Module::Module;
  // Throws for an x this layer cannot take (called before run_forward).
  virtual void check_input(const Tensor& x) const = 0;
  virtual Tensor run_forward(Context& ctx, const Tensor& x) = 0;
  virtual Tensor run_backward(Context& ctx, const Tensor& dy) = 0;
  // Drops what run_forward kept for backward.
  virtual void clear_saved() {}

private:
  void release_saved() final;

  bool ready_for_backward_ = false;
  Shape input_shape_, output_shape_;
};

// ---- layers ---------------------------------------------------------------------

struct Conv2dOptions {
  int in_channels = 1, out_channels = 1;
  int kernel_h = 3, kernel_w = 3;
  Conv2dParams params = {};  // padding, stride, dilation, groups
  bool bias = true;
};

// x [N, in_channels, H, W] -> conv2d_forward. Parameters "weight" [K, C/groups, R, S], "bias" [K].
class DLRT_EXPORT Conv2d : public Layer {
public:
  Conv2d(const Conv2dOptions& options, Generator& generator, Device device = Device::cpu());
  const char* type() const override { return "Conv2d"; }
  const Conv2dOptions& options() const { return options_; }
  Tensor& weight() { return weight_; }
  Tensor* bias() { return bias_.defined() ? &bias_ : nullptr; }

protected:
  void check_input(const Tensor& x) const override;
  Tensor run_forward(Context& ctx, const Tensor& x) override;
  Tensor run_backward(Context& ctx, const Tensor& dy) override;
  void clear_saved() override { x_ = Tensor(); }

private:
  Conv2dOptions options_;
  Tensor weight_, weight_grad_, bias_, bias_grad_;
  Tensor x_;
};

// Max (indices kept for backward) or average pooling over [N, C, H, W].
class DLRT_EXPORT MaxPool2d : public Layer {
public:
  // params.mode must be Max.
  explicit MaxPool2d(const Pool2dParams& params, Device device = Device::cpu());
  const char* type() const override { return "MaxPool2d"; }

protected:
  void check_input(const Tensor& x) const override;
  Tensor run_forward(Context& ctx, const Tensor& x) override;
  Tensor run_backward(Context& ctx, const Tensor& dy) override;
  void clear_saved() override { indices_ = Tensor(); }

private:
  Pool2dParams params_;
  Tensor indices_;
  Shape x_shape_;
};

class DLRT_EXPORT AvgPool2d : public Layer {
public:
  // params.mode must be AverageIncludePad (PyTorch's default) or AverageExcludePad.
  explicit AvgPool2d(const Pool2dParams& params, Device device = Device::cpu());
  const char* type() const override { return "AvgPool2d"; }

protected:
  void check_input(const Tensor& x) const override;
  Tensor run_forward(Context& ctx, const Tensor& x) override;
  Tensor run_backward(Context& ctx, const Tensor& dy) override;

private:
  Pool2dParams params_;
  Shape x_shape_;
};

// x [..., in_features] -> [..., out_features] (leading extents kept).
// Parameters "weight" [out, in], "bias" [out].
class DLRT_EXPORT Linear : public Layer {
public:
  Linear(int in_features, int out_features, Generator& generator, bool bias = true,
         Device device = Device::cpu());
  const char* type() const override { return "Linear"; }
  Tensor& weight() { return weight_; }
  Tensor* bias() { return bias_.defined() ? &bias_ : nullptr; }

protected:
  void check_input(const Tensor& x) const override;
  Tensor run_forward(Context& ctx, const Tensor& x) override;
  Tensor run_backward(Context& ctx, const Tensor& dy) override;
  void clear_saved() override { x_ = Tensor(); }

private:
  int in_features_, out_features_;
  Tensor weight_, weight_grad_, bias_, bias_grad_;
  Tensor x_;  // viewed as [rows, in]
};

// Elementwise ReLU, Tanh or Sigmoid (activation_forward/backward); any shape.
class DLRT_EXPORT ActivationLayer : public Layer {
public:
  explicit ActivationLayer(Activation activation, Device device = Device::cpu());
  const char* type() const override;

protected:
  void check_input(const Tensor& x) const override;
  Tensor run_forward(Context& ctx, const Tensor& x) override;
  Tensor run_backward(Context& ctx, const Tensor& dy) override;
  void clear_saved() override { y_ = Tensor(); }

private:
  Activation activation_;
  Tensor y_;
};

class DLRT_EXPORT ReLU : public ActivationLayer {
public:
  explicit ReLU(Device device = Device::cpu()) : ActivationLayer(Activation::Relu, device) {}
};
class DLRT_EXPORT Tanh : public ActivationLayer {
public:
  explicit Tanh(Device device = Device::cpu()) : ActivationLayer(Activation::Tanh, device) {}
};
class DLRT_EXPORT Sigmoid : public ActivationLayer {
public:
  explicit Sigmoid(Device device = Device::cpu()) : ActivationLayer(Activation::Sigmoid, device) {}
};

// [N, d1, d2, ...] -> [N, d1 * d2 * ...], a view (no copy).
class DLRT_EXPORT Flatten : public Layer {
public:
  explicit Flatten(Device device = Device::cpu()) : Layer(device) {}
  const char* type() const override { return "Flatten"; }

protected:
  void check_input(const Tensor& x) const override;
  Tensor run_forward(Context& ctx, const Tensor& x) override;
  Tensor run_backward(Context& ctx, const Tensor& dy) override;

private:
  Shape x_shape_;
};

// Layers applied in order; children are named "0", "1", ... as in PyTorch.
class DLRT_EXPORT Sequential : public Layer {
public:
  explicit Sequential(Device device = Device::cpu()) : Layer(device) {}
  const char* type() const override { return "Sequential"; }
  // Appends the layer L(args...), which must be on this module's device:
  // add<ReLU>(), add<Linear>(8, 4, generator).
  template <class L, class... Args>
  L& add(Args&&... args) {
    auto layer = std::make_unique<L>(std::forward<Args>(args)...);
    L& ref = *layer;
    append(std::move(layer));
    return ref;
  }
  std::size_t size() const { return layers_.size(); }
  Layer& operator[](std::size_t i) { return *layers_.at(i); }

protected:
  void check_input(const Tensor& x) const override;
  Tensor run_forward(Context& ctx, const Tensor& x) override;
  Tensor run_backward(Context& ctx, const Tensor& dy) override;

private:
  void append(std::unique_ptr<Layer> layer);
  std::vector<std::unique_ptr<Layer>> layers_;
};

// ---- recurrent layers -----------------------------------------------------------

struct RecurrentOptions {
  int input_size = 1, hidden_size = 1;
  int num_layers = 1;
  bool bidirectional = false;
  bool bias = true;
  int proj_size = 0;  // LSTM only
  // How the scheduler plays the unrolled network (Default: the device's best).
  Executor executor = Executor::Default;
};

// torch.nn.RNN / LSTM / GRU over padded time-major x [T, N, input_size]
// with per-sequence lengths (any order): y [T, N, D * H_out], zero past
// each length (see dlrt/rnn.hpp for the equations). The parameters are
// named as PyTorch's ("weight_ih_l0", "bias_hh_l1_reverse", ...), each a view
// of one flat weight tensor (flat_weights()), so the scheduler reads one
// buffer. Initial states are zero; hy/cy of the last forward are kept.
class DLRT_EXPORT Recurrent : public Layer {
public:
  Recurrent(RnnCell cell, const RecurrentOptions& options, Generator& generator,
            Device device = Device::cpu());
  const char* type() const override;
  const RnnParams& params() const { return params_; }

  // lengths: N values in [1, T]; empty: every sequence has T steps. Layer's
  // forward(ctx, x) is this with empty lengths.
  Tensor forward(Context& ctx, const Tensor& x, std::span<const int> lengths);
  using Layer::forward;
  // The final states of the last forward: [L * D, N, H_out] and (LSTM) [L * D, N, H].
  const Tensor& hy() const { return hy_; }
  const Tensor& cy() const { return cy_; }
  Tensor& flat_weights() { return weights_; }

protected:
  void check_input(const Tensor& x) const override;
  Tensor run_forward(Context& ctx, const Tensor& x) override;
  Tensor run_backward(Context& ctx, const Tensor& dy) override;
  void clear_saved() override;

private:
  RnnParams params_;
  Executor executor_;
  Tensor weights_, weights_grad_, hy_, cy_, x_;
  std::vector<int> pending_lengths_;  // of the forward under way
  std::vector<int> plan_lengths_;     // the plan's, one per sequence
  RnnTrainingState saved_;
  std::unique_ptr<RnnPlan> plan_;  // remade when T, N or the lengths change
};

class DLRT_EXPORT RNN : public Recurrent {
public:
  // nonlinearity: RnnCell::Tanh (PyTorch's default) or RnnCell::Relu.
  RNN(const RecurrentOptions& options, Generator& generator, RnnCell nonlinearity = RnnCell::Tanh,
      Device device = Device::cpu());
};
class DLRT_EXPORT LSTM : public Recurrent {
public:
  LSTM(const RecurrentOptions& options, Generator& generator, Device device = Device::cpu())
      : Recurrent(RnnCell::Lstm, options, generator, device) {}
};
class DLRT_EXPORT GRU : public Recurrent {
public:
  GRU(const RecurrentOptions& options, Generator& generator, Device device = Device::cpu())
      : Recurrent(RnnCell::Gru, options, generator, device) {}
};

// ---- loss -----------------------------------------------------------------------

// Mean softmax cross-entropy over the rows whose mask is 1 (the negative
// log-likelihood of the labels: minimising it is maximum likelihood):
// logits [N, C] (or [..., C], viewed as rows), labels i32 of N values, mask
// f32 of N values or undefined (every row counts). forward returns the loss
// and keeps the softmax; backward returns dlogits for d(loss) = dloss.
class DLRT_EXPORT SoftmaxCrossEntropy {
public:
  float forward(Context& ctx, const Tensor& logits, const Tensor& labels,
                const Tensor& mask = Tensor(), Engine engine = Engine::Auto);
  Tensor backward(Context& ctx, float dloss = 1.0f, Engine engine = Engine::Auto);
  // The softmax of the last forward, [rows, C].
  const Tensor& probabilities() const { return probs_; }

private:
  Shape logits_shape_;
  Tensor probs_, labels_, mask_;
  bool ready_for_backward_ = false;
};

// The index of each row's largest value of a [rows, C] f32 tensor (the
// first one on ties, NaN counts as largest), copied to the host.
DLRT_EXPORT std::vector<int> argmax_rows(const Tensor& scores);

}  // namespace dlrt::nn
