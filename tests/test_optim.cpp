// Optimizers: the lecture's coin (MLE and MAP by gradient ascent), weight
// decay as a Gaussian prior (ridge regression's closed form), the update
// rules step by step, clipping, schedules and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "dlrt/optim.hpp"
#include "support/test_support.hpp"

namespace dlrt {
namespace {

using optim::Parameter;
using test::throws_error;

Parameter scalar_parameter(float value) {
  return {"phi", Tensor::full({1}, value), Tensor::zeros({1})};
}

// The negative log-posterior of a coin's bias phi after `heads` ones and
// `tails` zeros, with a Beta(a, b) prior: its derivative in phi.
float coin_gradient(float phi, int heads, int tails, float a, float b) {
  return -(static_cast<float>(heads) / phi - static_cast<float>(tails) / (1.0f - phi)) -
         ((a - 1.0f) / phi - (b - 1.0f) / (1.0f - phi));
}

template <class Optimizer>
float fit_coin(Optimizer& opt, Context& ctx, float a, float b, int steps) {
  Parameter& p = const_cast<Parameter&>(opt.parameters()[0]);
  for (int i = 0; i < steps; ++i) {
    const float phi = p.value.to_vector()[0];
    p.grad.data()[0] = coin_gradient(phi, 10, 2, a, b);
    opt.step(ctx);
  }
  return p.value.to_vector()[0];
}

TEST(Optim, TheLecturesCoinReachesTheMleAndTheMap) {
  Context ctx;
  {
    optim::Sgd mle({scalar_parameter(0.5f)}, {.learning_rate = 0.002f});
    EXPECT_NEAR(fit_coin(mle, ctx, 1.0f, 1.0f, 4000), 10.0f / 12.0f, 1e-4);
  }
  {
    // Beta(101, 101): a prior that has seen 100 heads and 100 tails.
    optim::Sgd map({scalar_parameter(0.5f)}, {.learning_rate = 2e-4f, .momentum = 0.9f});
    EXPECT_NEAR(fit_coin(map, ctx, 101.0f, 101.0f, 4000), 110.0f / 212.0f, 1e-4);
  }
  {
    optim::Adam map({scalar_parameter(0.3f)}, {.learning_rate = 0.01f});
    EXPECT_NEAR(fit_coin(map, ctx, 101.0f, 101.0f, 3000), 110.0f / 212.0f, 1e-3);
  }
}

// Weight decay lambda is the precision of a Gaussian prior: SGD on the
// squared error with weight_decay = lambda lands on ridge regression's
// (X^T X + lambda I)^{-1} X^T y.
TEST(Optim, WeightDecayIsTheGaussianPriorsMap) {
  Context ctx;
  const int n = 12, d = 3;
  const std::vector<float> X = test::random_values(n * d, 5);
  const std::vector<float> y = test::random_values(n, 6);
  const float lambda = 2.5f;
  // The closed form by Gaussian elimination in double.
  double A[3][4] = {};
  for (int i = 0; i < d; ++i) {
    for (int j = 0; j < d; ++j) {
      for (int r = 0; r < n; ++r) A[i][j] += double(X[r * d + i]) * X[r * d + j];
      if (i == j) A[i][j] += lambda;
    }
    for (int r = 0; r < n; ++r) A[i][3] += double(X[r * d + i]) * y[r];
  }
  for (int c = 0; c < d; ++c)
    for (int r = 0; r < d; ++r)
      if (r != c) {
        const double f = A[r][c] / A[c][c];
        for (int k = 0; k < 4; ++k) A[r][k] -= f * A[c][k];
      }
  Parameter w{"w", Tensor::zeros({d}), Tensor::zeros({d})};
  optim::Sgd opt({w}, {.learning_rate = 0.02f, .momentum = 0.5f, .weight_decay = lambda});
  for (int step = 0; step < 3000; ++step) {
    const std::vector<float> wv = w.value.to_vector();
    std::vector<float> g(d, 0.0f);
    for (int r = 0; r < n; ++r) {
      float residual = -y[r];
      for (int j = 0; j < d; ++j) residual += X[r * d + j] * wv[j];
      for (int j = 0; j < d; ++j) g[j] += residual * X[r * d + j];
    }
    std::copy(g.begin(), g.end(), w.grad.data());
    opt.step(ctx);
  }
  const std::vector<float> got = w.value.to_vector();
  for (int i = 0; i < d; ++i) EXPECT_NEAR(got[i], A[i][3] / A[i][i], 1e-4) << i;
}

TEST(Optim, SgdMomentumAndNesterovFollowTorchsRule) {
  Context ctx;
  for (bool nesterov : {false, true}) {
    Parameter p = scalar_parameter(1.0f);
    optim::Sgd opt({p}, {.learning_rate = 0.1f, .momentum = 0.9f, .nesterov = nesterov});
    p.grad.data()[0] = 1.0f;
    opt.step(ctx);  // v = 1
    p.grad.data()[0] = 2.0f;
    opt.step(ctx);  // v = 0.9 + 2 = 2.9
    const float first = nesterov ? 1.0f + 0.9f * 1.0f : 1.0f;
    const float second = nesterov ? 2.0f + 0.9f * 2.9f : 2.9f;
    EXPECT_FLOAT_EQ(p.value.to_vector()[0], 1.0f - 0.1f * first - 0.1f * second) << nesterov;
  }
}

TEST(Optim, AdamsFirstStepIsTheLearningRateAndAdamWDecaysApart) {
  Context ctx;
  Parameter p{"w", Tensor::from_vector({2}, std::vector<float>{1.0f, -2.0f}), Tensor::zeros({2})};
  p.grad.data()[0] = 0.3f, p.grad.data()[1] = -40.0f;
  optim::Adam adam({p}, {.learning_rate = 0.01f});
  adam.step(ctx);
  // Bias-corrected m / sqrt(v) is sign(g) on the first step.
  EXPECT_NEAR(p.value.to_vector()[0], 1.0f - 0.01f, 1e-6);
  EXPECT_NEAR(p.value.to_vector()[1], -2.0f + 0.01f, 1e-6);
  EXPECT_EQ(adam.steps(), 1);

  Parameter q{"w", Tensor::full({1}, 2.0f), Tensor::zeros({1})};
  optim::Adam adamw({q},
                    {.learning_rate = 0.1f, .weight_decay = 0.5f, .decoupled_weight_decay = true});
  adamw.step(ctx);  // zero gradient: only the decay moves the weight
  EXPECT_NEAR(q.value.to_vector()[0], 2.0f * (1.0f - 0.1f * 0.5f), 1e-6);
}

TEST(Optim, ClippingScalesToTheBoundAndRefusesNonFiniteGradients) {
  Context ctx;
  Parameter a{"a", Tensor::zeros({2}), Tensor::from_vector({2}, std::vector<float>{3.0f, 0.0f})};
  Parameter b{"b", Tensor::zeros({1}), Tensor::from_vector({1}, std::vector<float>{4.0f})};
  const std::vector<Parameter> both{a, b};
  EXPECT_FLOAT_EQ(optim::clip_grad_norm(ctx, both, 1.0f), 5.0f);
  EXPECT_NEAR(a.grad.to_vector()[0], 0.6f, 1e-5);
  EXPECT_NEAR(b.grad.to_vector()[0], 0.8f, 1e-5);
  EXPECT_NEAR(optim::clip_grad_norm(ctx, both, 10.0f), 1.0f, 1e-5);  // under the bound: kept
  EXPECT_NEAR(a.grad.to_vector()[0], 0.6f, 1e-5);
  b.grad.data()[0] = std::nanf("");
  EXPECT_TRUE(throws_error([&] { (void)optim::clip_grad_norm(ctx, both, 1.0f); },
                           Error::Kind::InvalidArgument, {"parameters[1].grad", "not finite"}));
  EXPECT_NEAR(a.grad.to_vector()[0], 0.6f, 1e-5) << "a refused clip changed a gradient";
}

TEST(Optim, Schedules) {
  EXPECT_FLOAT_EQ(optim::cosine_schedule(0, 100, 1.0f), 1.0f);
  EXPECT_NEAR(optim::cosine_schedule(50, 101, 1.0f, 0.0f), 0.5f, 1e-6);
  EXPECT_NEAR(optim::cosine_schedule(99, 100, 1.0f, 0.1f), 0.1f, 1e-3);
  EXPECT_FLOAT_EQ(optim::cosine_schedule(1, 100, 1.0f, 0.0f, 4), 0.5f);  // warm-up
  EXPECT_FLOAT_EQ(optim::step_schedule(25, 10, 1.0f, 0.5f), 0.25f);
  EXPECT_TRUE(throws_error([] { (void)optim::cosine_schedule(100, 100, 1.0f); },
                           Error::Kind::InvalidArgument, {"'step'", "100"}));
  EXPECT_TRUE(throws_error([] { (void)optim::step_schedule(1, 0, 1.0f); },
                           Error::Kind::InvalidArgument, {"'step_size'"}));
}

TEST(Optim, BadOptionsAndParametersAreNamed) {
  Parameter p = scalar_parameter(0.5f);
  EXPECT_TRUE(throws_error([&] { optim::Sgd opt({p}, {.learning_rate = -1.0f}); },
                           Error::Kind::InvalidArgument, {"options.learning_rate", "-1"}));
  EXPECT_TRUE(throws_error([&] { optim::Sgd opt({p}, {.momentum = 1.0f}); },
                           Error::Kind::InvalidArgument, {"options.momentum", "[0, 1)"}));
  EXPECT_TRUE(throws_error([&] { optim::Sgd opt({p}, {.nesterov = true}); },
                           Error::Kind::InvalidArgument, {"options.nesterov"}));
  EXPECT_TRUE(throws_error([&] { optim::Adam opt({p}, {.epsilon = 0.0f}); },
                           Error::Kind::InvalidArgument, {"options.epsilon"}));
  EXPECT_TRUE(throws_error([&] { optim::Adam opt({p}, {.beta2 = 1.5f}); },
                           Error::Kind::InvalidArgument, {"options.beta2"}));
  Parameter mismatched{"m", Tensor::zeros({3}), Tensor::zeros({2})};
  EXPECT_TRUE(throws_error([&] { optim::Sgd opt({mismatched}, {}); }, Error::Kind::InvalidArgument,
                           {"parameters[0].grad", "[2]"}));
  EXPECT_TRUE(throws_error(
      [&] {
        optim::Sgd opt({p, p}, {});
      },
      Error::Kind::InvalidArgument, {"parameters[1].name", "unique"}));
  Parameter aliased{"x", Tensor::zeros({2}), Tensor()};
  aliased.grad = aliased.value;
  EXPECT_TRUE(throws_error([&] { optim::Adam opt({aliased}, {}); }, Error::Kind::InvalidArgument,
                           {"parameters[0].value"}));
}

TEST(Optim, TheUpdatesAreTheOptimizerFamilysEngines) {
  EXPECT_EQ(registered_engines(OpFamily::Optimizer),
            (std::vector<Engine>{Engine::Cuda, Engine::Cpu}));
  EXPECT_TRUE(engine_built(Engine::Cpu, OpFamily::Optimizer));
  EXPECT_STREQ(to_string(OpFamily::Optimizer), "optimizer");
}

// The same steps on a GPU and on the CPU: the engines share their float
// formulas (no contraction into FMAs, correctly rounded sqrt and divide),
// so the results agree to the bit.
TEST(Optim, CudaStepsMatchTheCpuBitwise) {
  DLRT_SKIP_UNLESS_ENGINE_RUNS(Engine::Cuda);
  const Device gpu = Device::cuda(0);
  Context cpu_ctx, gpu_ctx(gpu);
  const std::vector<float> start = test::random_values(1000, 3);
  const std::vector<float> grad = test::random_values(1000, 4, -5.0f, 5.0f);
  auto run = [&](Context& ctx, Device device, bool adam) {
    Parameter p{"w", Tensor::from_vector({10, 100}, start, device),
                Tensor::from_vector({10, 100}, grad, device)};
    std::vector<float> out;
    if (adam) {
      optim::Adam opt(
          {p}, {.learning_rate = 0.01f, .weight_decay = 0.1f, .decoupled_weight_decay = true});
      for (int i = 0; i < 3; ++i) opt.step(ctx);
    } else {
      optim::Sgd opt(
          {p}, {.learning_rate = 0.1f, .momentum = 0.9f, .nesterov = true, .weight_decay = 0.01f});
      for (int i = 0; i < 3; ++i) opt.step(ctx);
    }
    const std::vector<Parameter> all{p};
    const float norm = optim::clip_grad_norm(ctx, all, 1.0f);
    out = p.value.to_vector(ctx);
    for (float g : p.grad.to_vector(ctx)) out.push_back(g);
    out.push_back(norm);
    return out;
  };
  for (bool adam : {false, true}) {
    SCOPED_TRACE(adam ? "adam" : "sgd");
    EXPECT_TRUE(test::bitwise_equal(run(cpu_ctx, Device::cpu(), adam), run(gpu_ctx, gpu, adam)));
  }
}

}  // namespace
}  // namespace dlrt
