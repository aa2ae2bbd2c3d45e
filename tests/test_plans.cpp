// Plans and the engine table: choosing once and running many times, the
// validation of a plan's runs, kernel-variant options, and the one table
// that tests, benchmarks and tools read the engines from.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "support/test_support.hpp"

namespace dlrt {
namespace {

TEST(EngineTable, EveryFamilyListsItsEnginesInAutoOrder) {
  for (OpFamily family : {OpFamily::Conv2d, OpFamily::Pool2d}) {
    const std::vector<Engine> engines = registered_engines(family);
    // Every engine implements convolution and pooling.
    EXPECT_EQ(engines.size(), known_engines().size()) << to_string(family);
    for (Engine e : engines) {
      EXPECT_NE(e, Engine::Auto);
      // Onednn is built where oneDNN was found, an optional dependency.
      if (e == Engine::Onednn) continue;
      // Every other CPU engine is built; the GPU ones exactly with CUDA.
      const bool gpu = engine_device(e) == Device::Kind::Cuda;
      EXPECT_EQ(engine_built(e, family), gpu ? built_with_cuda() : true) << to_string(e);
    }
    // The CPU engines in Auto's order: the fast one before the oracle.
    const auto cpu = std::find(engines.begin(), engines.end(), Engine::Cpu);
    const auto reference = std::find(engines.begin(), engines.end(), Engine::Reference);
    EXPECT_LT(cpu, reference);
  }
  // The recurrent family: both CPU engines built (its GPU engines come
  // with CUDA builds as they land), the fast one first.
  const std::vector<Engine> rnn = registered_engines(OpFamily::Rnn);
  EXPECT_TRUE(engine_built(Engine::Cpu, OpFamily::Rnn));
  EXPECT_TRUE(engine_built(Engine::Reference, OpFamily::Rnn));
  EXPECT_LT(std::find(rnn.begin(), rnn.end(), Engine::Cpu),
            std::find(rnn.begin(), rnn.end(), Engine::Reference));
  EXPECT_STREQ(to_string(OpFamily::Rnn), "rnn");
  EXPECT_STREQ(to_string(OpFamily::Conv2d), "conv2d");
  EXPECT_TRUE(test::throws_error([] { registered_engines(static_cast<OpFamily>(42)); },
                                 Error::Kind::InvalidArgument, {"'family'", "42"}));
  for (const EngineComparison& c : engine_comparisons()) EXPECT_NE(c.own, c.yardstick);
}

TEST(EngineTable, StrayEngineValuesAreRejected) {
  Context ctx;
  Tensor x = test::random_tensor({1, 1, 4, 4}, 1), w = test::random_tensor({1, 1, 3, 3}, 2);
  Tensor y({1, 1, 2, 2});
  EXPECT_TRUE(test::throws_error(
      [&] { conv2d_forward(ctx, x, w, nullptr, y, {}, static_cast<Engine>(17)); },
      Error::Kind::InvalidArgument, {"'engine'", "17", "reference"}));
}

class Conv2dPlans : public ::testing::Test {
protected:
  const Shape xs{2, 3, 9, 8}, ws{4, 3, 3, 3};
  Conv2dParams params{1, 1, 1, 1, 1, 1, 1};
  Shape ys = conv2d_output_shape(xs, ws, params);
  Context ctx;
};

// One plan, many runs with fresh inputs: fresh results each time (the same
// as the one-shot function's), and no allocation after the first run.
TEST_F(Conv2dPlans, ReuseGivesFreshResultsWithoutAllocating) {
  const Conv2dPlan plan(ctx, Conv2dOp::Forward, xs, ws, params);
  EXPECT_EQ(plan.engine(), Engine::Cpu);
  EXPECT_EQ(plan.y_shape(), ys);
  EXPECT_FALSE(plan.description().empty());
  Tensor x(xs), w = test::random_tensor(ws, 3), y(ys), want(ys);
  plan.forward(ctx, x, w, nullptr, y);  // the first run may size the workspace
  const std::uint64_t allocations = memory_stats(Device::cpu()).allocations;
  for (std::uint64_t seed = 10; seed < 15; ++seed) {
    const std::vector<float> values = test::random_values(xs.numel(), seed);
    std::copy(values.begin(), values.end(), x.data());
    plan.forward(ctx, x, w, nullptr, y);
    const std::uint64_t after_run = memory_stats(Device::cpu()).allocations;
    EXPECT_EQ(after_run, allocations) << "a plan run allocated";
    conv2d_forward(ctx, x, w, nullptr, want, params, Engine::Reference);
    EXPECT_TRUE(test::all_close(y.to_vector(), want.to_vector(), 27));
  }
}

TEST_F(Conv2dPlans, RunsWithOtherTensorsAreErrorsNamingTheArgument) {
  const Conv2dPlan plan(ctx, Conv2dOp::Forward, xs, ws, params);
  Tensor x = test::random_tensor(xs, 1), w = test::random_tensor(ws, 2);
  Tensor y = test::poisoned(ys);
  const std::vector<float> before = y.to_vector();
  Tensor wrong_x = test::random_tensor({2, 3, 9, 9}, 3);
  Tensor wrong_w = test::random_tensor({4, 3, 1, 1}, 4);
  Tensor i32_x(xs, Device::cpu(), DType::I32);
  EXPECT_TRUE(test::throws_error([&] { plan.forward(ctx, wrong_x, w, nullptr, y); },
                                 Error::Kind::InvalidArgument,
                                 {"Conv2dPlan::forward", "'x'", "[2, 3, 9, 9]", "planned"}));
  EXPECT_TRUE(test::throws_error([&] { plan.forward(ctx, x, wrong_w, nullptr, y); },
                                 Error::Kind::InvalidArgument, {"'w'", "planned filter"}));
  EXPECT_TRUE(test::throws_error([&] { plan.forward(ctx, i32_x, w, nullptr, y); },
                                 Error::Kind::InvalidArgument, {"'x.dtype'", "i32"}));
  EXPECT_TRUE(test::throws_error([&] { plan.backward_data(ctx, y, w, x); },
                                 Error::Kind::InvalidArgument,
                                 {"'this'", "conv2d_forward", "conv2d_backward_data"}));
  Tensor small_workspace({1});
  if (plan.workspace_bytes() > 4) {
    EXPECT_TRUE(test::throws_error([&] { plan.forward(ctx, x, w, nullptr, y, &small_workspace); },
                                   Error::Kind::InvalidArgument, {"'workspace'", "at least"}));
  }
  EXPECT_TRUE(test::bitwise_equal(y.to_vector(), before)) << "a refused run wrote y";
}

TEST_F(Conv2dPlans, ACallerWorkspaceIsUsed) {
  const Conv2dPlan plan(ctx, Conv2dOp::BackwardFilter, xs, ws, params);
  Tensor x = test::random_tensor(xs, 1), dy = test::random_tensor(ys, 2);
  Tensor dw = test::poisoned(ws), want(ws);
  Tensor scratch({static_cast<std::int64_t>(plan.workspace_bytes() / 4 + 1)});
  plan.backward_filter(ctx, x, dy, dw, &scratch);
  conv2d_backward_filter(ctx, x, dy, want, params, Engine::Reference);
  EXPECT_TRUE(test::all_close(dw.to_vector(), want.to_vector(), 2 * 9 * 8));
}

TEST_F(Conv2dPlans, VariantsNeedAnEngineThatHasThem) {
  EXPECT_TRUE(test::throws_error(
      [&] {
        Conv2dPlan(ctx, Conv2dOp::Forward, xs, ws, params, {Engine::Auto, 1});
      },
      Error::Kind::InvalidArgument, {"'options.variant'", "explicit options.engine"}));
  EXPECT_TRUE(test::throws_error(
      [&] {
        Conv2dPlan(ctx, Conv2dOp::Forward, xs, ws, params, {Engine::Cpu, 2});
      },
      Error::Kind::Unsupported, {"engine cpu", "no kernel variants", "variant 2"}));
  Conv2dPlanOptions cuda{Engine::Cuda, 1};
  if (!cuda_available()) {
    EXPECT_TRUE(
        test::throws_error([&] { Conv2dPlan(ctx, Conv2dOp::Forward, xs, ws, params, cuda); },
                           Error::Kind::Unsupported, {"engine cuda"}));
  }
}

TEST_F(Conv2dPlans, QueryRejectsAnOpThatIsNoConv2dOp) {
  EXPECT_TRUE(
      test::throws_error([&] { conv2d_query(ctx, static_cast<Conv2dOp>(9), xs, ws, params); },
                         Error::Kind::InvalidArgument, {"conv2d_query", "'op'", "9"}));
}

// The one-shot functions cache plans per context: many distinct problems
// must neither grow the cache without bound nor stop working.
TEST_F(Conv2dPlans, TheContextCacheStaysBounded) {
  Tensor w = test::random_tensor({1, 1, 1, 1}, 1);
  for (std::int64_t width = 1; width <= 600; ++width) {
    Tensor x = test::random_tensor({1, 1, 1, width}, 2), y({1, 1, 1, width});
    conv2d_forward(ctx, x, w, nullptr, y);
    if (width % 150 == 0) {
      EXPECT_FLOAT_EQ(y.to_vector()[0], x.to_vector()[0] * w.to_vector()[0]);
    }
  }
  EXPECT_LE(memory_stats(Device::cpu()).in_use_bytes, std::size_t{64} << 20);
}

TEST(Pool2dPlans, IndicesMustMatchThePlan) {
  Context ctx;
  Pool2dParams params;
  const Shape xs{1, 2, 6, 6};
  const Pool2dPlan with(ctx, Pool2dOp::Forward, xs, params, true);
  const Pool2dPlan without(ctx, Pool2dOp::Forward, xs, params, false);
  EXPECT_TRUE(with.with_indices());
  Tensor x = test::random_tensor(xs, 1), y(with.y_shape()),
         indices(with.y_shape(), Device::cpu(), DType::I32);
  EXPECT_TRUE(test::throws_error([&] { with.forward(ctx, x, y); }, Error::Kind::InvalidArgument,
                                 {"'indices'", "with_indices"}));
  EXPECT_TRUE(test::throws_error([&] { without.forward(ctx, x, y, &indices); },
                                 Error::Kind::InvalidArgument, {"'indices'", "without indices"}));
  with.forward(ctx, x, y, &indices);
  const Pool2dPlan back(ctx, Pool2dOp::Backward, xs, params, true);
  Tensor dy = test::random_tensor(with.y_shape(), 2), dx = test::poisoned(xs), want(xs);
  back.backward(ctx, dy, dx, {&indices, nullptr, nullptr});
  pool2d_backward(ctx, dy, want, params, {nullptr, &x, &y}, Engine::Reference);
  EXPECT_TRUE(test::bitwise_equal(dx.to_vector(), want.to_vector()));
  EXPECT_TRUE(test::throws_error(
      [&] {
        back.backward(ctx, dy, dx, {nullptr, &x, &y});
      },
      Error::Kind::InvalidArgument, {"'saved.indices'", "with_indices"}));
}

}  // namespace
}  // namespace dlrt
