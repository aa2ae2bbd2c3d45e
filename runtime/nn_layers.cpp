// dlrt::nn's feed-forward layers and the loss, each a thin composition of
// the public ops: the ops validate and choose engines, the layers keep what
// backward needs and accumulate parameter gradients.
#include <cmath>

#include "dlrt/error.hpp"
#include "dlrt/nn.hpp"
#include "runtime/validate.hpp"

namespace dlrt::nn {

using detail::invalid_argument;

namespace {

// PyTorch's default bound for Linear and Conv2d weights and biases:
// kaiming_uniform_(a = sqrt(5)) is U(-b, b) with b = gain * sqrt(3 / fan_in),
// gain = sqrt(2 / (1 + a^2)) = sqrt(1 / 3), hence b = 1 / sqrt(fan_in).
float fan_in_bound(std::int64_t fan_in) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in)));
}

// Adds `increment` into `sum` (same shape) on ctx: sum += increment.
void accumulate(Context& ctx, Tensor& sum, const Tensor& increment, Engine engine) {
  add(ctx, sum, increment, sum, 1.0f, 1.0f, engine);
}

std::string layer_op(const char* type, const char* what) {
  return std::string("nn::") + type + "::" + what;
}

}  // namespace

// ---- Conv2d ---------------------------------------------------------------------

Conv2d::Conv2d(const Conv2dOptions& options, Generator& generator, Device device)
    : Layer(device), options_(options) {
  const std::string op = layer_op("Conv2d", "Conv2d");
  const Conv2dParams& p = options.params;
  if (options.in_channels < 1)
    invalid_argument(op, "in_channels", options.in_channels, "must be >= 1");
  if (options.out_channels < 1)
    invalid_argument(op, "out_channels", options.out_channels, "must be >= 1");
  if (options.kernel_h < 1 || options.kernel_w < 1)
    invalid_argument(op, "kernel",
                     std::to_string(options.kernel_h) + "x" + std::to_string(options.kernel_w),
                     "both extents must be >= 1");
  if (p.groups < 1 || options.in_channels % p.groups != 0 || options.out_channels % p.groups != 0)
    invalid_argument(op, "params.groups", p.groups,
                     "must be >= 1 and divide in_channels and out_channels");
  if (p.pad_h < 0 || p.pad_w < 0)
    invalid_argument(op, "params.pad", std::to_string(p.pad_h) + "x" + std::to_string(p.pad_w),
                     "must be >= 0");
  if (p.stride_h < 1 || p.stride_w < 1)
    invalid_argument(op, "params.stride",
                     std::to_string(p.stride_h) + "x" + std::to_string(p.stride_w), "must be >= 1");
  if (p.dilation_h < 1 || p.dilation_w < 1)
    invalid_argument(op, "params.dilation",
                     std::to_string(p.dilation_h) + "x" + std::to_string(p.dilation_w),
                     "must be >= 1");
  const Shape w_shape{options.out_channels, options.in_channels / p.groups, options.kernel_h,
                      options.kernel_w};
  const float bound = fan_in_bound(w_shape[1] * w_shape[2] * w_shape[3]);
  auto weight = register_parameter("weight", w_shape);
  weight_ = weight.value;
  weight_grad_ = weight.grad;
  uniform_(weight_, -bound, bound, generator);
  if (options.bias) {
    auto bias = register_parameter("bias", Shape{options.out_channels});
    bias_ = bias.value;
    bias_grad_ = bias.grad;
    uniform_(bias_, -bound, bound, generator);
  }
}

void Conv2d::check_input(const Tensor& x) const {
  const std::string op = layer_op(type(), "forward");
  if (x.rank() != 4 || x.size(1) != options_.in_channels)
    invalid_argument(op, "x", x.shape().to_string(),
                     "must be [N, " + std::to_string(options_.in_channels) + ", H, W]");
  (void)conv2d_output_shape(x.shape(), weight_.shape(), options_.params);
}

Tensor Conv2d::run_forward(Context& ctx, const Tensor& x) {
  Tensor y(conv2d_output_shape(x.shape(), weight_.shape(), options_.params), ctx);
  conv2d_forward(ctx, x, weight_, bias(), y, options_.params, engine());
  if (is_training()) x_ = x;
  return y;
}

Tensor Conv2d::run_backward(Context& ctx, const Tensor& dy) {
  Tensor dx(x_.shape(), ctx);
  conv2d_backward_data(ctx, dy, weight_, dx, options_.params, engine());
  // The conv ops overwrite their outputs; the layer's gradients accumulate.
  Tensor dw(weight_.shape(), ctx);
  conv2d_backward_filter(ctx, x_, dy, dw, options_.params, engine());
  accumulate(ctx, weight_grad_, dw, engine());
  if (bias_.defined()) {
    Tensor db(bias_.shape(), ctx);
    conv2d_backward_bias(ctx, dy, db, engine());
    accumulate(ctx, bias_grad_, db, engine());
  }
  return dx;
}

// ---- pooling --------------------------------------------------------------------

MaxPool2d::MaxPool2d(const Pool2dParams& params, Device device) : Layer(device), params_(params) {
  if (params.mode != PoolMode::Max)
    invalid_argument(layer_op("MaxPool2d", "MaxPool2d"), "params.mode", to_string(params.mode),
                     "must be max (AvgPool2d takes the average modes)");
  (void)pool2d_output_shape(Shape{1, 1, params.window_h, params.window_w}, params);
}

namespace {

// Both pooling layers take [N, C, H, W] inputs that their window fits.
void check_pool_input(const char* type, const Tensor& x, const Pool2dParams& params) {
  if (x.rank() != 4)
    invalid_argument(layer_op(type, "forward"), "x", x.shape().to_string(), "must be [N, C, H, W]");
  (void)pool2d_output_shape(x.shape(), params);
}

}  // namespace

void MaxPool2d::check_input(const Tensor& x) const { check_pool_input(type(), x, params_); }

Tensor MaxPool2d::run_forward(Context& ctx, const Tensor& x) {
  const Shape y_shape = pool2d_output_shape(x.shape(), params_);
  Tensor y(y_shape, ctx);
  if (is_training()) {
    indices_ = Tensor(y_shape, ctx, DType::I32);
    pool2d_forward(ctx, x, y, params_, engine(), &indices_);
    x_shape_ = x.shape();
  } else {
    pool2d_forward(ctx, x, y, params_, engine());
  }
  return y;
}

Tensor MaxPool2d::run_backward(Context& ctx, const Tensor& dy) {
  Tensor dx(x_shape_, ctx);
  Pool2dSaved saved;
  saved.indices = &indices_;
  pool2d_backward(ctx, dy, dx, params_, saved, engine());
  return dx;
}

AvgPool2d::AvgPool2d(const Pool2dParams& params, Device device) : Layer(device), params_(params) {
  if (params.mode == PoolMode::Max)
    invalid_argument(layer_op("AvgPool2d", "AvgPool2d"), "params.mode", to_string(params.mode),
                     "must be an average mode (MaxPool2d takes max)");
  (void)pool2d_output_shape(Shape{1, 1, params.window_h, params.window_w}, params);
}

void AvgPool2d::check_input(const Tensor& x) const { check_pool_input(type(), x, params_); }

Tensor AvgPool2d::run_forward(Context& ctx, const Tensor& x) {
  Tensor y(pool2d_output_shape(x.shape(), params_), ctx);
  pool2d_forward(ctx, x, y, params_, engine());
  x_shape_ = x.shape();
  return y;
}

Tensor AvgPool2d::run_backward(Context& ctx, const Tensor& dy) {
  Tensor dx(x_shape_, ctx);
  pool2d_backward(ctx, dy, dx, params_, {}, engine());
  return dx;
}

// ---- Linear ---------------------------------------------------------------------

Linear::Linear(int in_features, int out_features, Generator& generator, bool bias, Device device)
    : Layer(device), in_features_(in_features), out_features_(out_features) {
  const std::string op = layer_op("Linear", "Linear");
  if (in_features < 1) invalid_argument(op, "in_features", in_features, "must be >= 1");
  if (out_features < 1) invalid_argument(op, "out_features", out_features, "must be >= 1");
  const float bound = fan_in_bound(in_features);
  auto weight = register_parameter("weight", Shape{out_features, in_features});
  weight_ = weight.value;
  weight_grad_ = weight.grad;
  uniform_(weight_, -bound, bound, generator);
  if (bias) {
    auto b = register_parameter("bias", Shape{out_features});
    bias_ = b.value;
    bias_grad_ = b.grad;
    uniform_(bias_, -bound, bound, generator);
  }
}

namespace {

// [d0, ..., dk, last] as [d0 * ... * dk, last].
Shape as_rows(const Shape& shape) {
  std::int64_t rows = 1;
  for (int i = 0; i + 1 < shape.rank(); ++i) rows *= shape[i];
  return Shape{rows, shape[shape.rank() - 1]};
}

}  // namespace

void Linear::check_input(const Tensor& x) const {
  if (x.rank() < 2 || x.size(x.rank() - 1) != in_features_)
    invalid_argument(layer_op(type(), "forward"), "x", x.shape().to_string(),
                     "must be [..., " + std::to_string(in_features_) + "] (rank >= 2)");
}

Tensor Linear::run_forward(Context& ctx, const Tensor& x) {
  const Tensor rows = x.view(as_rows(x.shape()));
  Tensor y(Shape{rows.size(0), out_features_}, ctx);
  linear_forward(ctx, rows, weight_, bias(), y, engine());
  if (is_training()) x_ = rows;
  Shape y_shape = x.shape();
  y_shape[y_shape.rank() - 1] = out_features_;
  return y.view(y_shape);
}

Tensor Linear::run_backward(Context& ctx, const Tensor& dy) {
  const Tensor dy_rows = dy.view(as_rows(dy.shape()));
  Tensor dx(x_.shape(), ctx);
  linear_backward_data(ctx, dy_rows, weight_, dx, engine());
  linear_backward_weights(ctx, x_, dy_rows, weight_grad_, bias_.defined() ? &bias_grad_ : nullptr,
                          /*accumulate=*/true, engine());
  Shape dx_shape = dy.shape();
  dx_shape[dx_shape.rank() - 1] = in_features_;
  return dx.view(dx_shape);
}

// ---- activations and Flatten ----------------------------------------------------

ActivationLayer::ActivationLayer(Activation activation, Device device)
    : Layer(device), activation_(activation) {
  if (activation != Activation::Relu && activation != Activation::Tanh &&
      activation != Activation::Sigmoid)
    invalid_argument("nn::ActivationLayer", "activation", static_cast<int>(activation),
                     "must be an Activation enumerator");
}

const char* ActivationLayer::type() const {
  switch (activation_) {
    case Activation::Relu:
      return "ReLU";
    case Activation::Tanh:
      return "Tanh";
    case Activation::Sigmoid:
      return "Sigmoid";
  }
  return "Activation";
}

void ActivationLayer::check_input(const Tensor& x) const {
  if (x.rank() < 1)
    invalid_argument(layer_op(type(), "forward"), "x", x.shape().to_string(),
                     "must have rank >= 1");
}

Tensor ActivationLayer::run_forward(Context& ctx, const Tensor& x) {
  Tensor y(x.shape(), ctx);
  activation_forward(ctx, activation_, x, y, engine());
  if (is_training()) y_ = y;
  return y;
}

Tensor ActivationLayer::run_backward(Context& ctx, const Tensor& dy) {
  Tensor dx(dy.shape(), ctx);
  activation_backward(ctx, activation_, y_, dy, dx, engine());
  return dx;
}

void Flatten::check_input(const Tensor& x) const {
  if (x.rank() < 2)
    invalid_argument(layer_op(type(), "forward"), "x", x.shape().to_string(),
                     "must have rank >= 2");
}

Tensor Flatten::run_forward(Context&, const Tensor& x) {
  x_shape_ = x.shape();
  return x.view(Shape{x.size(0), x.numel() / x.size(0)});
}

Tensor Flatten::run_backward(Context&, const Tensor& dy) { return dy.view(x_shape_); }

// ---- Sequential -----------------------------------------------------------------

void Sequential::append(std::unique_ptr<Layer> layer) {
  if (!(layer->device() == device()))
    invalid_argument("nn::Sequential::add", "layer", to_string(layer->device()),
                     "must be on the Sequential's device " + to_string(device()));
  register_module(std::to_string(layers_.size()), *layer);
  layers_.push_back(std::move(layer));
}

void Sequential::check_input(const Tensor& x) const {
  if (layers_.empty())
    invalid_argument(layer_op(type(), "forward"), "x", x.shape().to_string(),
                     "needs at least one layer in the Sequential");
}

Tensor Sequential::run_forward(Context& ctx, const Tensor& x) {
  Tensor h = x;
  for (auto& layer : layers_) h = layer->forward(ctx, h);
  return h;
}

Tensor Sequential::run_backward(Context& ctx, const Tensor& dy) {
  Tensor g = dy;
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) g = (*it)->backward(ctx, g);
  return g;
}

// ---- loss -----------------------------------------------------------------------

float SoftmaxCrossEntropy::forward(Context& ctx, const Tensor& logits, const Tensor& labels,
                                   const Tensor& mask, Engine engine) {
  constexpr std::string_view op = "nn::SoftmaxCrossEntropy::forward";
  ready_for_backward_ = false;
  if (!logits.defined() || logits.rank() < 2)
    invalid_argument(op, "logits", logits.shape().to_string(), "must be [..., C] of rank >= 2");
  const Shape rows = as_rows(logits.shape());
  if (!labels.defined() || labels.numel() != rows[0])
    invalid_argument(op, "labels", labels.shape().to_string(),
                     "must hold one label per row (" + std::to_string(rows[0]) + ")");
  if (mask.defined() && mask.numel() != rows[0])
    invalid_argument(op, "mask", mask.shape().to_string(),
                     "must hold one value per row (" + std::to_string(rows[0]) + ")");
  const Tensor logit_rows = logits.view(rows);
  const Tensor label_rows = labels.view(Shape{rows[0]});
  const Tensor mask_rows = mask.defined() ? mask.view(Shape{rows[0]}) : Tensor();
  Tensor loss(Shape{1}, ctx);
  Tensor probs(rows, ctx);
  softmax_cross_entropy_forward(ctx, logit_rows, label_rows,
                                mask_rows.defined() ? &mask_rows : nullptr, loss, probs, engine);
  logits_shape_ = logits.shape();
  probs_ = probs;
  labels_ = label_rows;
  mask_ = mask_rows;
  ready_for_backward_ = true;
  return loss.to_vector(ctx)[0];
}

Tensor SoftmaxCrossEntropy::backward(Context& ctx, float dloss, Engine engine) {
  if (!ready_for_backward_)
    invalid_argument("nn::SoftmaxCrossEntropy::backward", "dloss", dloss,
                     "needs a forward first (each forward allows one backward)");
  Tensor dlogits(probs_.shape(), ctx);
  softmax_cross_entropy_backward(ctx, probs_, labels_, mask_.defined() ? &mask_ : nullptr, dloss,
                                 dlogits, engine);
  ready_for_backward_ = false;
  return dlogits.view(logits_shape_);
}

std::vector<int> argmax_rows(const Tensor& scores) {
  constexpr std::string_view op = "nn::argmax_rows";
  if (!scores.defined() || scores.rank() != 2 || scores.dtype() != DType::F32)
    invalid_argument(op, "scores", scores.shape().to_string(), "must be an f32 [rows, C] tensor");
  const std::vector<float> values = scores.to_vector();
  const std::int64_t rows = scores.size(0), classes = scores.size(1);
  std::vector<int> best(static_cast<std::size_t>(rows), 0);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = values.data() + r * classes;
    std::int64_t arg = 0;
    for (std::int64_t c = 1; c < classes && !std::isnan(row[arg]); ++c)
      if (row[c] > row[arg] || std::isnan(row[c])) arg = c;
    best[static_cast<std::size_t>(r)] = static_cast<int>(arg);
  }
  return best;
}

}  // namespace dlrt::nn
