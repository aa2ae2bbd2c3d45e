// dlrt::nn's recurrent layers: one flat weight tensor (the layout of
// dlrt/rnn.hpp, PyTorch's parameter order) seen as named pieces, run through
// an RnnPlan that the scheduler plays; the plan is kept while the batch
// shape and lengths stay the same.
#include <cmath>
#include <limits>

#include "dlrt/error.hpp"
#include "dlrt/nn.hpp"
#include "runtime/validate.hpp"

namespace dlrt::nn {

using detail::invalid_argument;

namespace {

RnnParams to_params(RnnCell cell, const RecurrentOptions& options) {
  RnnParams params;
  params.cell = cell;
  params.input_size = options.input_size;
  params.hidden_size = options.hidden_size;
  params.num_layers = options.num_layers;
  params.bidirectional = options.bidirectional;
  params.bias = options.bias;
  params.proj_size = options.proj_size;
  return params;
}

const char* recurrent_type(RnnCell cell) {
  switch (cell) {
    case RnnCell::Tanh:
    case RnnCell::Relu:
      return "RNN";
    case RnnCell::Lstm:
      return "LSTM";
    case RnnCell::Gru:
      return "GRU";
  }
  return "Recurrent";
}

}  // namespace

Recurrent::Recurrent(RnnCell cell, const RecurrentOptions& options, Generator& generator,
                     Device device)
    : Layer(device), params_(to_params(cell, options)), executor_(options.executor) {
  // rnn_weight_layout validates every field and names the one that breaks a rule.
  const std::vector<RnnWeight> layout = rnn_weight_layout(params_);
  const std::int64_t count = rnn_weight_count(params_);
  weights_ = Tensor::zeros(Shape{count}, device);
  weights_grad_ = Tensor::zeros(Shape{count}, device);
  // PyTorch's RNNBase.reset_parameters: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)).
  const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(options.hidden_size)));
  uniform_(weights_, -bound, bound, generator);
  for (const RnnWeight& piece : layout) {
    const std::int64_t end = piece.offset + piece.shape.numel();
    register_parameter_view(piece.name, weights_.slice(piece.offset, end).view(piece.shape),
                            weights_grad_.slice(piece.offset, end).view(piece.shape));
  }
}

const char* Recurrent::type() const { return recurrent_type(params_.cell); }

Tensor Recurrent::forward(Context& ctx, const Tensor& x, std::span<const int> lengths) {
  pending_lengths_.assign(lengths.begin(), lengths.end());
  struct Reset {
    std::vector<int>& lengths;
    ~Reset() { lengths.clear(); }
  } reset{pending_lengths_};
  return Layer::forward(ctx, x);
}

void Recurrent::check_input(const Tensor& x) const {
  if (x.rank() != 3 || x.size(2) != params_.input_size)
    invalid_argument(std::string("nn::") + type() + "::forward", "x", x.shape().to_string(),
                     "must be [T, N, " + std::to_string(params_.input_size) + "]");
}

Tensor Recurrent::run_forward(Context& ctx, const Tensor& x) {
  const std::int64_t T = x.size(0), N = x.size(1);
  std::vector<int> lengths = pending_lengths_;
  if (lengths.empty() && T <= std::numeric_limits<int>::max())
    lengths.assign(static_cast<std::size_t>(N), static_cast<int>(T));
  if (!plan_ || plan_->steps() != T || plan_->batch() != N || plan_lengths_ != lengths) {
    plan_.reset();
    RnnPlanOptions options;
    options.engine = engine();
    options.executor = executor_;
    // The plan validates the lengths (count, range) and says which one breaks the rule.
    plan_ = std::make_unique<RnnPlan>(ctx, params_, T, N, lengths, options);
    plan_lengths_ = std::move(lengths);
  }
  const int directions = params_.bidirectional ? 2 : 1;
  const int h_out = params_.proj_size > 0 ? params_.proj_size : params_.hidden_size;
  const std::int64_t states = std::int64_t{params_.num_layers} * directions;
  Tensor y(Shape{T, N, std::int64_t{directions} * h_out}, ctx);
  hy_ = Tensor(Shape{states, N, h_out}, ctx);
  const bool lstm = params_.cell == RnnCell::Lstm;
  cy_ = lstm ? Tensor(Shape{states, N, params_.hidden_size}, ctx) : Tensor();
  plan_->forward(ctx, x, weights_, nullptr, nullptr, y, &hy_, lstm ? &cy_ : nullptr,
                 is_training() ? &saved_ : nullptr);
  if (is_training()) x_ = x;
  return y;
}

Tensor Recurrent::run_backward(Context& ctx, const Tensor& dy) {
  Tensor dx(x_.shape(), ctx);
  plan_->backward_data(ctx, saved_, dy, nullptr, nullptr, dx, nullptr, nullptr);
  plan_->backward_weights(ctx, saved_, weights_grad_, /*accumulate=*/true);
  return dx;
}

void Recurrent::clear_saved() {
  // The training state keeps its buffers for the next forward; only the
  // reference to the input goes.
  x_ = Tensor();
}

RNN::RNN(const RecurrentOptions& options, Generator& generator, RnnCell nonlinearity, Device device)
    : Recurrent(nonlinearity, options, generator, device) {
  if (nonlinearity != RnnCell::Tanh && nonlinearity != RnnCell::Relu)
    invalid_argument("nn::RNN", "nonlinearity", to_string(nonlinearity), "must be tanh or relu");
}

}  // namespace dlrt::nn
