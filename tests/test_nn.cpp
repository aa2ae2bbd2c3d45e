// dlrt::nn: every layer's backward against central differences of its
// forward (on the Reference engine), PyTorch's parameter names and default
// initialisation bounds, gradient accumulation, state dicts and
// checkpoints, the validation of every entry point, and small training runs
// whose loss must fall by a stated factor.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "dlrt/nn.hpp"
#include "support/test_support.hpp"

namespace dlrt {
namespace {

using test::throws_error;

std::vector<std::string> names_of(const nn::Module& module, const std::string& prefix = "") {
  std::vector<std::string> names;
  for (const optim::Parameter& p : module.parameters(prefix)) names.push_back(p.name);
  return names;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += double(a[i]) * double(b[i]);
  return sum;
}

// ---- finite differences ---------------------------------------------------------

// The loss L = sum(r * layer(x)) for a fixed random r: dL/dy = r, so
// backward(r) must give dL/dx and add dL/dtheta to the gradients. Checks
// up to `samples` coordinates of x and of every parameter against central
// differences with step eps, in evaluation mode (the forwards of the
// differences keep nothing), and that the gradients are not all zero.
void expect_gradients_match(nn::Layer& layer, const Tensor& x, double tolerance = 2e-3,
                            float eps = 1e-3f, int samples = 12) {
  Context ctx;
  layer.set_engine(Engine::Reference);
  layer.train(true);
  layer.zero_grad();
  const Tensor y = layer.forward(ctx, x);
  const Tensor r = test::random_tensor(y.shape(), 77);
  const std::vector<float> rv = r.to_vector();
  const std::vector<float> dx = layer.backward(ctx, r).to_vector();
  layer.train(false);

  auto loss = [&]() { return dot(rv, layer.forward(ctx, x).to_vector()); };
  auto check = [&](float* value, std::int64_t count, const std::vector<float>& analytic,
                   const std::string& what) {
    double largest = 0.0;
    for (float g : analytic) largest = std::max(largest, std::fabs(double(g)));
    EXPECT_GT(largest, 0.0) << what << ": the gradient is all zero";
    const std::int64_t stride = std::max<std::int64_t>(1, count / samples);
    for (std::int64_t i = 0; i < count; i += stride) {
      const float saved = value[i];
      value[i] = saved + eps;
      const double up = loss();
      value[i] = saved - eps;
      const double down = loss();
      value[i] = saved;
      const double numeric = (up - down) / (2.0 * double(eps));
      const double want = analytic[static_cast<std::size_t>(i)];
      EXPECT_NEAR(want, numeric, tolerance * (1.0 + std::fabs(numeric))) << what << "[" << i << "]";
    }
  };
  Tensor x_copy = x;
  check(x_copy.data(), x.numel(), dx, "dx");
  for (optim::Parameter& p : layer.parameters())
    check(p.value.data(), p.value.numel(), p.grad.to_vector(), p.name);
  layer.train(true);
}

Tensor random_input(const Shape& shape, std::uint64_t seed, float scale = 1.0f) {
  std::vector<float> v = test::random_values(shape.numel(), seed, -scale, scale);
  return Tensor::from_vector(shape, v);
}

TEST(NnGradients, Conv2dWithPaddingStrideAndGroups) {
  nn::Generator g(1);
  Conv2dParams params;
  params.pad_h = 1;
  params.pad_w = 2;
  params.stride_h = 2;
  params.groups = 2;
  nn::Conv2d conv(
      {.in_channels = 4, .out_channels = 6, .kernel_h = 3, .kernel_w = 3, .params = params}, g);
  expect_gradients_match(conv, random_input({2, 4, 7, 6}, 2));
}

TEST(NnGradients, LinearOverLeadingDimensions) {
  nn::Generator g(3);
  nn::Linear linear(5, 4, g);
  expect_gradients_match(linear, random_input({3, 2, 5}, 4));
}

TEST(NnGradients, Activations) {
  nn::ReLU relu;
  nn::Tanh tanh_layer;
  nn::Sigmoid sigmoid;
  // Away from ReLU's kink: |x| >= 0.1 > eps.
  std::vector<float> v = test::random_values(40, 5, 0.1f, 1.0f);
  for (std::size_t i = 0; i < v.size(); i += 2) v[i] = -v[i];
  const Tensor x = Tensor::from_vector({4, 10}, v);
  expect_gradients_match(relu, x);
  expect_gradients_match(tanh_layer, x);
  expect_gradients_match(sigmoid, x);
}

TEST(NnGradients, PoolingAndFlatten) {
  // Distinct values a grid apart, so no max is within eps of another.
  std::vector<float> v(2 * 3 * 6 * 6);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = float((i * 37) % v.size()) * 0.01f;
  const Tensor x = Tensor::from_vector({2, 3, 6, 6}, v);
  nn::MaxPool2d max_pool(Pool2dParams{
      .window_h = 3, .window_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1});
  nn::AvgPool2d avg_pool(Pool2dParams{.mode = PoolMode::AverageIncludePad});
  nn::Flatten flatten;
  expect_gradients_match(max_pool, x);
  expect_gradients_match(avg_pool, x);
  expect_gradients_match(flatten, x);
  Context ctx;
  EXPECT_EQ(flatten.forward(ctx, x).shape(), (Shape{2, 108}));
}

TEST(NnGradients, SequentialConvNet) {
  nn::Generator g(6);
  nn::Sequential net;
  net.add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 2, .out_channels = 3, .params = {1, 1}}, g);
  net.add<nn::Tanh>();
  net.add<nn::AvgPool2d>(Pool2dParams{.mode = PoolMode::AverageExcludePad});
  net.add<nn::Flatten>();
  net.add<nn::Linear>(3 * 2 * 2, 5, g);
  expect_gradients_match(net, random_input({2, 2, 4, 4}, 7));
}

// Bidirectional, stacked, lengths in no order: padding gets no gradient.
TEST(NnGradients, RecurrentLayersOverVariableLengths) {
  const std::vector<int> lengths = {2, 4, 1};
  for (RnnCell cell : {RnnCell::Tanh, RnnCell::Relu, RnnCell::Lstm, RnnCell::Gru}) {
    SCOPED_TRACE(to_string(cell));
    nn::Generator g(8);
    nn::RecurrentOptions options{
        .input_size = 3, .hidden_size = 4, .num_layers = 2, .bidirectional = true};
    std::unique_ptr<nn::Recurrent> rnn;
    if (cell == RnnCell::Lstm)
      rnn = std::make_unique<nn::LSTM>(options, g);
    else if (cell == RnnCell::Gru)
      rnn = std::make_unique<nn::GRU>(options, g);
    else
      rnn = std::make_unique<nn::RNN>(options, g, cell);

    // A Layer whose forward passes the lengths, for the generic check.
    struct WithLengths : nn::Layer {
      nn::Recurrent& inner;
      std::vector<int> lengths;
      WithLengths(nn::Recurrent& r, std::vector<int> l)
          : Layer(Device::cpu()), inner(r), lengths(std::move(l)) {
        register_module("rnn", inner);
      }
      const char* type() const override { return "WithLengths"; }
      void check_input(const Tensor&) const override {}
      Tensor run_forward(Context& ctx, const Tensor& x) override {
        return inner.forward(ctx, x, lengths);
      }
      Tensor run_backward(Context& ctx, const Tensor& dy) override {
        return inner.backward(ctx, dy);
      }
    } layer(*rnn, lengths);
    // ReLU's kinks are rarely within eps of a pre-activation at this scale.
    expect_gradients_match(layer, random_input({4, 3, 3}, 9));

    Context ctx;
    layer.train(true);
    const Tensor y = layer.forward(ctx, random_input({4, 3, 3}, 9));
    const std::vector<float> dx =
        layer.backward(ctx, test::random_tensor(y.shape(), 10)).to_vector();
    // x[t, n, :] past lengths[n] gets a zero gradient, and y is zero there.
    const std::vector<float> yv = y.to_vector();
    for (int t = 0; t < 4; ++t)
      for (int n = 0; n < 3; ++n)
        if (t >= lengths[static_cast<std::size_t>(n)]) {
          for (int i = 0; i < 3; ++i)
            EXPECT_EQ(dx[static_cast<std::size_t>((t * 3 + n) * 3 + i)], 0.0f);
          for (int i = 0; i < 8; ++i)
            EXPECT_EQ(yv[static_cast<std::size_t>((t * 3 + n) * 8 + i)], 0.0f);
        }
  }
}

TEST(NnGradients, SoftmaxCrossEntropyWithAMask) {
  Context ctx;
  const Tensor logits = random_input({3, 2, 5}, 11, 2.0f);
  Tensor labels({6}, Device::cpu(), DType::I32);
  const std::int32_t values[] = {0, 4, -1, 2, 3, 1};  // row 2 is padding
  std::copy(values, values + 6, labels.data_i32());
  const Tensor mask = Tensor::from_vector({6}, std::vector<float>{1, 1, 0, 1, 1, 1});
  nn::SoftmaxCrossEntropy loss;
  loss.forward(ctx, logits, labels, mask, Engine::Reference);
  const std::vector<float> analytic = loss.backward(ctx, 1.0f, Engine::Reference).to_vector();
  EXPECT_EQ(loss.probabilities().shape(), (Shape{6, 5}));
  Tensor perturbed = logits.clone();
  for (std::int64_t i = 0; i < 30; ++i) {
    const float saved = perturbed.data()[i];
    perturbed.data()[i] = saved + 1e-3f;
    const double up = loss.forward(ctx, perturbed, labels, mask, Engine::Reference);
    perturbed.data()[i] = saved - 1e-3f;
    const double down = loss.forward(ctx, perturbed, labels, mask, Engine::Reference);
    perturbed.data()[i] = saved;
    EXPECT_NEAR(analytic[static_cast<std::size_t>(i)], (up - down) / 2e-3, 2e-3) << i;
    if (i / 5 == 2) {
      EXPECT_EQ(analytic[static_cast<std::size_t>(i)], 0.0f);
    }
  }
}

// ---- names, initialisation, accumulation -----------------------------------------

TEST(NnModules, ParameterNamesArePyTorchs) {
  nn::Generator g(0);
  nn::Sequential net;
  net.add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 1, .out_channels = 2}, g);
  net.add<nn::ReLU>();
  net.add<nn::Linear>(4, 3, g, /*bias=*/false);
  EXPECT_EQ(names_of(net, "cnn."),
            (std::vector<std::string>{"cnn.0.weight", "cnn.0.bias", "cnn.2.weight"}));

  nn::LSTM lstm({.input_size = 3, .hidden_size = 4, .num_layers = 2, .bidirectional = true}, g);
  const std::vector<std::string> names = names_of(lstm);
  ASSERT_EQ(names.size(), 16u);
  EXPECT_EQ(names[0], "weight_ih_l0");
  EXPECT_EQ(names[3], "bias_hh_l0");
  EXPECT_EQ(names[4], "weight_ih_l0_reverse");
  EXPECT_EQ(names[13], "weight_hh_l1_reverse");
  // weight_ih_l1 reads both directions of layer 0: [4 gates * 4, 2 * 4].
  EXPECT_EQ(lstm.parameters()[8].value.shape(), (Shape{16, 8}));
  EXPECT_EQ(lstm.parameter_count(), rnn_weight_count(lstm.params()));
  EXPECT_STREQ(lstm.type(), "LSTM");
}

// PyTorch's defaults: U(-1/sqrt(fan_in), +) for Linear and Conv2d, U(-1/sqrt(H), +) for RNNs.
TEST(NnModules, InitialisationBoundsAndReproducibility) {
  auto range = [](const Tensor& t) {
    const std::vector<float> v = t.to_vector();
    return std::make_pair(*std::min_element(v.begin(), v.end()),
                          *std::max_element(v.begin(), v.end()));
  };
  nn::Generator g(42);
  nn::Linear linear(400, 300, g);
  const float bound = 1.0f / 20.0f;
  auto [lo, hi] = range(linear.weight());
  EXPECT_GE(lo, -bound);
  EXPECT_LT(hi, bound);
  EXPECT_LT(lo, -0.99f * bound);  // 120000 draws reach the ends
  EXPECT_GT(hi, 0.99f * bound);

  nn::Conv2d conv(
      {.in_channels = 8, .out_channels = 64, .kernel_h = 3, .kernel_w = 3, .params = {.groups = 2}},
      g);
  auto [clo, chi] = range(conv.weight());
  EXPECT_GE(clo, -1.0f / 6.0f);  // fan_in = 8/2 * 3 * 3 = 36
  EXPECT_GT(chi, 0.95f / 6.0f);

  nn::GRU gru({.input_size = 10, .hidden_size = 25}, g);
  auto [glo, ghi] = range(gru.flat_weights());
  EXPECT_GE(glo, -0.2f);
  EXPECT_LT(ghi, 0.2f);
  EXPECT_GT(ghi, 0.19f);

  nn::Generator a(7), b(7);
  nn::Linear first(6, 5, a), second(6, 5, b);
  EXPECT_TRUE(test::bitwise_equal(first.weight().to_vector(), second.weight().to_vector()));
  nn::Generator c(8);
  nn::Linear third(6, 5, c);
  EXPECT_FALSE(test::bitwise_equal(first.weight().to_vector(), third.weight().to_vector()));
}

TEST(NnModules, GeneratorIsFixedAndInRange) {
  // SplitMix64 from seed 0: its first output is a published constant.
  nn::Generator g(0);
  EXPECT_EQ(g.next(), 0xE220A8397B1DCDAFull);
  double sum = 0.0, sum_sq = 0.0;
  for (int i = 0; i < 20000; ++i) {
    const float u = g.uniform(-2.0f, 3.0f);
    ASSERT_GE(u, -2.0f);
    ASSERT_LT(u, 3.0f);
    const double z = g.normal();
    sum += z;
    sum_sq += z * z;
    ASSERT_LT(g.below(7), 7u);
  }
  EXPECT_NEAR(sum / 20000, 0.0, 0.03);
  EXPECT_NEAR(sum_sq / 20000, 1.0, 0.05);
  EXPECT_TRUE(throws_error([&] { g.below(0); }, Error::Kind::InvalidArgument, {"'n'"}));
}

TEST(NnModules, BackwardAddsToTheGradients) {
  Context ctx;
  nn::Generator g(1);
  nn::Linear linear(3, 2, g);
  const Tensor x = random_input({4, 3}, 2);
  const Tensor dy = random_input({4, 2}, 3);
  linear.forward(ctx, x);
  linear.backward(ctx, dy);
  const std::vector<float> once = linear.parameters()[0].grad.to_vector();
  linear.forward(ctx, x);
  linear.backward(ctx, dy);
  const std::vector<float> twice = linear.parameters()[0].grad.to_vector();
  for (std::size_t i = 0; i < once.size(); ++i) EXPECT_FLOAT_EQ(twice[i], 2.0f * once[i]);
  linear.zero_grad();
  for (float v : linear.parameters()[0].grad.to_vector()) EXPECT_EQ(v, 0.0f);
}

// ---- validation -----------------------------------------------------------------

TEST(NnValidation, EveryEntryPointNamesTheProblem) {
  Context ctx;
  nn::Generator g(1);
  nn::Conv2d conv({.in_channels = 3, .out_channels = 4}, g);
  const Tensor x = random_input({1, 3, 5, 5}, 1);
  EXPECT_TRUE(throws_error(
      [&] {
        conv.forward(ctx, random_input({1, 2, 5, 5}, 1));
      },
      Error::Kind::InvalidArgument, {"nn::Conv2d::forward", "'x'", "[N, 3, H, W]"}));
  EXPECT_TRUE(throws_error([&] { conv.forward(ctx, Tensor()); }, Error::Kind::InvalidArgument,
                           {"'x'", "undefined"}));
  EXPECT_TRUE(throws_error(
      [&] {
        conv.backward(ctx, random_input({1, 4, 3, 3}, 2));
      },
      Error::Kind::InvalidArgument, {"'dy'", "forward in training mode first"}));
  const Tensor y = conv.forward(ctx, x);
  EXPECT_TRUE(throws_error(
      [&] {
        conv.backward(ctx, random_input({1, 4, 2, 3}, 2));
      },
      Error::Kind::InvalidArgument, {"'dy'", "[1, 4, 3, 3]"}));
  conv.backward(ctx, y);
  EXPECT_TRUE(
      throws_error([&] { conv.backward(ctx, y); }, Error::Kind::InvalidArgument, {"one backward"}));
  conv.train(false);
  conv.forward(ctx, x);
  EXPECT_TRUE(throws_error([&] { conv.backward(ctx, y); }, Error::Kind::InvalidArgument,
                           {"training mode"}));

  EXPECT_TRUE(throws_error(
      [&] { nn::Conv2d bad({.in_channels = 3, .out_channels = 4, .params = {.groups = 2}}, g); },
      Error::Kind::InvalidArgument, {"params.groups"}));
  EXPECT_TRUE(throws_error([&] { nn::Linear bad(0, 3, g); }, Error::Kind::InvalidArgument,
                           {"in_features"}));
  EXPECT_TRUE(
      throws_error([&] { nn::MaxPool2d bad(Pool2dParams{.mode = PoolMode::AverageIncludePad}); },
                   Error::Kind::InvalidArgument, {"params.mode"}));
  EXPECT_TRUE(throws_error([&] { nn::LSTM bad({.input_size = 3, .hidden_size = 0}, g); },
                           Error::Kind::InvalidArgument, {"hidden_size"}));
  EXPECT_TRUE(
      throws_error([&] { nn::RNN bad({.input_size = 3, .hidden_size = 2}, g, RnnCell::Gru); },
                   Error::Kind::InvalidArgument, {"nonlinearity"}));
  nn::LSTM lstm({.input_size = 3, .hidden_size = 2}, g);
  const std::vector<int> too_long = {5, 1};
  EXPECT_TRUE(throws_error(
      [&] {
        lstm.forward(ctx, random_input({4, 2, 3}, 3), too_long);
      },
      Error::Kind::InvalidArgument, {"lengths"}));
  EXPECT_TRUE(throws_error(
      [&] {
        lstm.forward(ctx, random_input({4, 2, 2}, 3));
      },
      Error::Kind::InvalidArgument, {"[T, N, 3]"}));
  nn::Sequential empty;
  EXPECT_TRUE(throws_error([&] { empty.forward(ctx, x); }, Error::Kind::InvalidArgument,
                           {"at least one layer"}));
  EXPECT_TRUE(throws_error([&] { conv.set_engine(static_cast<Engine>(99)); },
                           Error::Kind::InvalidArgument, {"'engine'"}));

  nn::SoftmaxCrossEntropy loss;
  EXPECT_TRUE(
      throws_error([&] { loss.backward(ctx); }, Error::Kind::InvalidArgument, {"forward first"}));
  Tensor labels({3}, Device::cpu(), DType::I32);
  EXPECT_TRUE(throws_error(
      [&] {
        loss.forward(ctx, random_input({2, 4}, 1), labels);
      },
      Error::Kind::InvalidArgument, {"'labels'", "one label per row (2)"}));
  EXPECT_TRUE(throws_error([&] { nn::argmax_rows(random_input({3}, 1)); },
                           Error::Kind::InvalidArgument, {"'scores'"}));
}

TEST(NnModules, ArgmaxTakesTheFirstMaximumAndNaN) {
  const float nan = std::nanf("");
  const Tensor scores =
      Tensor::from_vector({3, 3}, std::vector<float>{1, 3, 3, 0, nan, 5, -1, -2, -3});
  EXPECT_EQ(nn::argmax_rows(scores), (std::vector<int>{1, 1, 0}));
}

// ---- state dicts and checkpoints -----------------------------------------------------

TEST(NnCheckpoints, SaveLoadRoundTripAndBadStateDicts) {
  nn::Generator g(5);
  nn::Sequential a;
  a.add<nn::Linear>(3, 4, g);
  a.add<nn::Tanh>();
  a.add<nn::Linear>(4, 2, g);
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("dlrt_nn_" + std::to_string(::getpid()) + ".safetensors"))
                               .string();
  a.save(path, {{"note", "round trip"}});

  nn::Generator other(6);
  nn::Sequential b;
  b.add<nn::Linear>(3, 4, other);
  b.add<nn::Tanh>();
  b.add<nn::Linear>(4, 2, other);
  const std::vector<float> before = b.parameters()[0].value.to_vector();
  b.load(path);
  for (std::size_t i = 0; i < 4; ++i)
    EXPECT_TRUE(test::bitwise_equal(a.parameters()[i].value.to_vector(),
                                    b.parameters()[i].value.to_vector()))
        << a.parameters()[i].name;
  EXPECT_EQ(load_safetensors(path).metadata.at("note"), "round trip");
  std::filesystem::remove(path);

  // A bad state dict changes nothing, even where its first entries were fine.
  nn::Generator third(7);
  nn::Sequential c;
  c.add<nn::Linear>(3, 4, third);
  c.add<nn::Tanh>();
  c.add<nn::Linear>(4, 2, third);
  const std::vector<float> c_before = c.parameters()[0].value.to_vector();
  std::vector<NamedTensor> wrong_shape = a.state_dict();
  wrong_shape.back().tensor = Tensor::zeros({3, 4});
  EXPECT_TRUE(throws_error([&] { c.load_state_dict(wrong_shape); }, Error::Kind::InvalidArgument,
                           {"2.bias", "[3, 4]", "[2]"}));
  std::vector<NamedTensor> extra = a.state_dict();
  extra.push_back({"3.weight", Tensor::zeros({1})});
  EXPECT_TRUE(throws_error([&] { c.load_state_dict(extra); }, Error::Kind::InvalidArgument,
                           {"3.weight", "not a parameter"}));
  c.load_state_dict(std::vector<NamedTensor>(extra.begin(), extra.end()), /*strict=*/false);
  EXPECT_TRUE(test::bitwise_equal(c.parameters()[0].value.to_vector(),
                                  a.parameters()[0].value.to_vector()));
  std::vector<NamedTensor> missing = a.state_dict();
  missing.pop_back();
  nn::Generator fourth(8);
  nn::Sequential d;
  d.add<nn::Linear>(3, 4, fourth);
  d.add<nn::Tanh>();
  d.add<nn::Linear>(4, 2, fourth);
  const std::vector<float> d_before = d.parameters()[0].value.to_vector();
  EXPECT_TRUE(throws_error([&] { d.load_state_dict(missing); }, Error::Kind::InvalidArgument,
                           {"2.bias", "missing"}));
  EXPECT_TRUE(test::bitwise_equal(d.parameters()[0].value.to_vector(), d_before));
  (void)c_before;
  (void)before;
}

// ---- training -------------------------------------------------------------------

// Two interleaved spirals, the classic non-linear toy problem: an MLP
// trained with Adam must cut its loss by 10x.
TEST(NnTraining, MlpLearnsTwoSpirals) {
  Context ctx;
  nn::Generator g(3);
  nn::Sequential mlp;
  mlp.add<nn::Linear>(2, 32, g);
  mlp.add<nn::Tanh>();
  mlp.add<nn::Linear>(32, 32, g);
  mlp.add<nn::Tanh>();
  mlp.add<nn::Linear>(32, 2, g);
  constexpr int kPoints = 128;
  std::vector<float> xy;
  Tensor labels({kPoints}, Device::cpu(), DType::I32);
  for (int i = 0; i < kPoints; ++i) {
    const int cls = i % 2;
    const float t = 0.5f + 3.0f * float(i / 2) / float(kPoints / 2);
    const float sign = cls ? -1.0f : 1.0f;
    xy.push_back(sign * t * std::cos(t) / 3.5f);
    xy.push_back(sign * t * std::sin(t) / 3.5f);
    labels.data_i32()[i] = cls;
  }
  const Tensor x = Tensor::from_vector({kPoints, 2}, xy);
  std::vector<optim::Parameter> parameters = mlp.parameters();
  optim::Adam adam(parameters, {.learning_rate = 0.01f});
  nn::SoftmaxCrossEntropy loss;
  float first = 0.0f, last = 0.0f;
  for (int step = 0; step < 600; ++step) {
    adam.zero_grad(ctx);
    const float value = loss.forward(ctx, mlp.forward(ctx, x), labels);
    mlp.backward(ctx, loss.backward(ctx));
    adam.step(ctx);
    if (step == 0) first = value;
    last = value;
  }
  EXPECT_LT(last, first / 10.0f) << "first " << first << ", last " << last;
}

// A recurrence that needs memory: every step's label is the first step's
// class, over sequences of different lengths. A bidirectional LSTM trained
// through time must cut its loss by 5x.
TEST(NnTraining, LstmRemembersTheFirstStep) {
  Context ctx;
  nn::Generator g(4);
  nn::LSTM lstm({.input_size = 3, .hidden_size = 12, .bidirectional = true}, g);
  nn::Linear head(24, 3, g);
  constexpr int T = 6, N = 12;
  std::vector<int> lengths(N);
  std::vector<float> x(T * N * 3, 0.0f), mask(T * N, 0.0f);
  Tensor labels({T * N}, Device::cpu(), DType::I32);
  for (int n = 0; n < N; ++n) {
    lengths[n] = 2 + n % (T - 1);
    const int cls = n % 3;
    x[static_cast<std::size_t>(n * 3 + cls)] = 1.0f;  // one-hot at t = 0 only
    for (int t = 0; t < T; ++t) {
      labels.data_i32()[t * N + n] = cls;
      if (t < lengths[static_cast<std::size_t>(n)])
        mask[static_cast<std::size_t>(t * N + n)] = 1.0f;
      if (t > 0)  // noise elsewhere
        for (int i = 0; i < 3; ++i)
          x[static_cast<std::size_t>((t * N + n) * 3 + i)] = 0.3f * g.uniform(-1.0f, 1.0f);
    }
  }
  const Tensor input = Tensor::from_vector({T, N, 3}, x);
  const Tensor mask_tensor = Tensor::from_vector({T * N}, mask);
  std::vector<optim::Parameter> parameters = lstm.parameters("lstm.");
  for (optim::Parameter& p : head.parameters("head.")) parameters.push_back(p);
  optim::Adam adam(parameters, {.learning_rate = 0.02f});
  nn::SoftmaxCrossEntropy loss;
  float first = 0.0f, last = 0.0f;
  for (int step = 0; step < 150; ++step) {
    adam.zero_grad(ctx);
    const Tensor logits = head.forward(ctx, lstm.forward(ctx, input, lengths));
    const float value = loss.forward(ctx, logits, labels, mask_tensor);
    lstm.backward(ctx, head.backward(ctx, loss.backward(ctx)));
    adam.step(ctx);
    if (step == 0) first = value;
    last = value;
  }
  EXPECT_LT(last, first / 5.0f) << "first " << first << ", last " << last;
  EXPECT_EQ(lstm.hy().shape(), (Shape{2, N, 12}));
  EXPECT_EQ(lstm.cy().shape(), (Shape{2, N, 12}));
}

}  // namespace
}  // namespace dlrt
