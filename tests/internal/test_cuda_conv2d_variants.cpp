// Every numbered kernel variant of the Cuda convolution engine against the
// Reference engine, forced one at a time through the plan option. Runs where
// a GPU is; elsewhere the tests skip with the reason (the variants' index
// arithmetic is covered on the CPU by test_cuda_conv2d_tiling.cpp).
#include <gtest/gtest.h>

#include <tuple>

#include "support/test_support.hpp"

namespace dlrt {
namespace {

struct VariantCase {
  const char* name;
  Shape x, w;
  Conv2dParams params;
};

const VariantCase kVariantCases[] = {
    {"3x3_pad1", {2, 5, 13, 11}, {7, 5, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},
    {"5x5_stride2_dil2", {1, 3, 19, 17}, {4, 3, 5, 5}, {3, 2, 2, 2, 2, 2, 1}},
    {"pointwise_wide", {2, 70, 6, 6}, {66, 70, 1, 1}, {0, 0, 1, 1, 1, 1, 1}},
    {"groups3_stride3", {1, 9, 14, 14}, {6, 3, 3, 3}, {1, 1, 3, 3, 1, 1, 3}},
    {"depthwise", {2, 8, 9, 9}, {8, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 8}},
};

class CudaConv2dVariants : public ::testing::TestWithParam<std::tuple<int, VariantCase>> {};

TEST_P(CudaConv2dVariants, MatchReference) {
  DLRT_SKIP_UNLESS_ENGINE_RUNS(Engine::Cuda);
  const auto& [variant, c] = GetParam();
  const Conv2dPlanOptions forced{Engine::Cuda, variant};
  const Shape ys = conv2d_output_shape(c.x, c.w, c.params);
  const Device gpu = Device::cuda(0);
  Context ref, ctx(gpu);
  Tensor x = test::random_tensor(c.x, 1), w = test::random_tensor(c.w, 2),
         dy = test::random_tensor(ys, 3);
  Tensor bias = test::random_tensor({c.w[0]}, 4);

  Tensor y_ref(ys), dx_ref(c.x), dw_ref(c.w);
  conv2d_forward(ref, x, w, &bias, y_ref, c.params, Engine::Reference);
  conv2d_backward_data(ref, dy, w, dx_ref, c.params, Engine::Reference);
  conv2d_backward_filter(ref, x, dy, dw_ref, c.params, Engine::Reference);

  Tensor xg = x.to(gpu), wg = w.to(gpu), dyg = dy.to(gpu), bg = bias.to(gpu);
  Tensor y = test::poisoned(ys, gpu), dx = test::poisoned(c.x, gpu), dw = test::poisoned(c.w, gpu);
  Conv2dPlan(ctx, Conv2dOp::Forward, c.x, c.w, c.params, forced).forward(ctx, xg, wg, &bg, y);
  Conv2dPlan(ctx, Conv2dOp::BackwardData, c.x, c.w, c.params, forced)
      .backward_data(ctx, dyg, wg, dx);
  Conv2dPlan(ctx, Conv2dOp::BackwardFilter, c.x, c.w, c.params, forced)
      .backward_filter(ctx, xg, dyg, dw);
  const std::int64_t crs = c.w[1] * c.w[2] * c.w[3];
  EXPECT_TRUE(test::all_close(y.to_vector(), y_ref.to_vector(), crs));
  EXPECT_TRUE(test::all_close(dx.to_vector(), dx_ref.to_vector(), c.w[0] * c.w[2] * c.w[3]));
  EXPECT_TRUE(test::all_close(dw.to_vector(), dw_ref.to_vector(), ys[0] * ys[2] * ys[3]));
}

INSTANTIATE_TEST_SUITE_P(Forced, CudaConv2dVariants,
                         ::testing::Combine(::testing::Values(1, 2),
                                            ::testing::ValuesIn(kVariantCases)),
                         [](const auto& param_info) {
                           return "variant" + std::to_string(std::get<0>(param_info.param)) + "_" +
                                  std::get<1>(param_info.param).name;
                         });

TEST(CudaConv2dVariantSetting, UnknownVariantsAreDeclinedWithTheReason) {
  DLRT_SKIP_UNLESS_ENGINE_RUNS(Engine::Cuda);
  Context ctx(Device::cuda(0));
  EXPECT_TRUE(test::throws_error(
      [&] {
        Conv2dPlan(ctx, Conv2dOp::Forward, {1, 2, 5, 5}, {2, 2, 3, 3}, {}, {Engine::Cuda, 7});
      },
      Error::Kind::Unsupported, {"variant", "7", "1 (direct)"}));
  EXPECT_TRUE(test::throws_error(
      [&] {
        Conv2dPlan(ctx, Conv2dOp::BackwardBias, {1, 2, 5, 5}, {2, 2, 3, 3}, {}, {Engine::Cuda, 2});
      },
      Error::Kind::Unsupported, {"single Cuda kernel"}));
  const Conv2dPlan plan(ctx, Conv2dOp::Forward, {1, 2, 5, 5}, {2, 2, 3, 3}, {}, {Engine::Cuda, 1});
  EXPECT_NE(plan.description().find("variant 1"), std::string::npos) << plan.description();
}

}  // namespace
}  // namespace dlrt
