// Every numbered kernel variant of the Cuda convolution engine against the
// Reference engine, forced one at a time through the plan option, and the
// engine's own choice. The GPU tests run where a GPU is; elsewhere they skip
// with the reason (the variants' index arithmetic is covered on the CPU by
// test_cuda_conv2d_tiling.cpp and test_cuda_conv2d_fast_tiling.cpp). The
// plan's rule, choose_cuda_conv2d (conv2d_variants.hpp), is plain C++ and
// tested here on the CPU in every build.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cuda/conv2d_variants.hpp"
#include "runtime/conv2d_geometry.hpp"
#include "support/test_support.hpp"

namespace dlrt {
namespace {

using detail::choose_cuda_conv2d;
using detail::CudaConv2dChoice;
using detail::CudaConv2dDevice;
using detail::cuda_conv2d::ConvDims;
namespace fast = detail::cuda_conv2d_fast;

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
    // Wide enough for the fast implicit GEMM (16 or more rows per group).
    {"3x3_wide", {2, 32, 13, 11}, {40, 32, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},
    {"3x3_stride2_groups2", {2, 64, 14, 15}, {48, 32, 3, 3}, {1, 1, 2, 2, 1, 1, 2}},
    {"late_layer_split_k", {1, 256, 7, 7}, {256, 256, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},
    {"depthwise_stride2_mult2", {2, 8, 23, 30}, {16, 1, 5, 5}, {2, 2, 2, 2, 1, 1, 8}},
};

// The problem of one op as the engine's plan sees it.
ConvDims dims(Conv2dOp op, const Shape& x, const Shape& w, const Conv2dParams& params) {
  if (op == Conv2dOp::BackwardBias) {
    const Shape y = conv2d_output_shape(x, w, params);
    return detail::cuda_conv2d::make_conv_dims(
        detail::conv2d_geometry({y[0], 1, y[2], y[3]}, {y[1], 1, 1, 1}, {}));
  }
  return detail::cuda_conv2d::make_conv_dims(detail::conv2d_geometry(x, w, params));
}

CudaConv2dDevice h200(std::size_t limit = std::size_t{512} << 20) {
  CudaConv2dDevice dev;
  dev.sm_count = 132, dev.compute_capability_major = 9, dev.workspace_limit_bytes = limit;
  dev.fast_by_default = true;  // the rule as it will be once a GPU has verified the kernels
  return dev;
}

constexpr Conv2dOp kOps[] = {Conv2dOp::Forward, Conv2dOp::BackwardData, Conv2dOp::BackwardFilter,
                             Conv2dOp::BackwardBias};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ---------------------------------------------------------------------------
// The plan's rule, on the CPU.

const Shape kConv5x{1, 512, 7, 7}, kConv5w{512, 512, 3, 3};
const Conv2dParams kPad1{1, 1, 1, 1, 1, 1, 1};

TEST(CudaConv2dChoice, VariantRangeAndEnvironmentValues) {
  EXPECT_EQ(detail::kCudaConv2dVariants, 4);
  for (int v = 0; v <= 4; ++v) EXPECT_EQ(detail::cuda_conv2d_variant_range_reason(v), "");
  for (int v : {-1, 5, 7}) {
    const std::string why = detail::cuda_conv2d_variant_range_reason(v);
    EXPECT_TRUE(contains(why, "1 (direct)") && contains(why, "4 (tensor-core") &&
                contains(why, std::to_string(v)))
        << why;
  }
  EXPECT_EQ(detail::parse_cuda_conv2d_variant("3"), 3);
  EXPECT_EQ(detail::parse_cuda_conv2d_variant("4"), 4);
  EXPECT_EQ(detail::parse_cuda_conv2d_variant("5"), -1);
}

TEST(CudaConv2dChoice, UntilVerifiedAutoKeepsTheClassicKernels) {
  CudaConv2dDevice dev = h200();
  dev.fast_by_default = detail::kFastConvByDefault;
  for (Conv2dOp op : kOps) {
    const ConvDims d = dims(op, kConv5x, kConv5w, kPad1);
    const CudaConv2dChoice c = choose_cuda_conv2d(op, d, 0, 0, dev);
    if (!detail::kFastConvByDefault) {
      EXPECT_TRUE(c.variant == 1 || c.variant == 2) << to_string(op) << ": " << c.reason;
      EXPECT_TRUE(contains(c.fast_declined, "verified")) << c.fast_declined;
    }
    EXPECT_EQ(choose_cuda_conv2d(op, d, 3, 0, dev).variant, 3) << "an explicit 3 still runs";
  }
}

TEST(CudaConv2dChoice, AutoTakesVariant3WhereTheFastChooserApplies) {
  for (Conv2dOp op : kOps) {
    const ConvDims d = dims(op, kConv5x, kConv5w, kPad1);
    const CudaConv2dChoice c = choose_cuda_conv2d(op, d, 0, 0, h200());
    EXPECT_EQ(c.variant, 3) << to_string(op) << ": " << c.reason;
    EXPECT_TRUE(c.fast.applies);
    EXPECT_EQ(c.fast.mode, fast::MathMode::Fp32);
    EXPECT_EQ(c.workspace_bytes, fast::fast_workspace_bytes(op, d, c.fast));
    EXPECT_TRUE(c.fast_declined.empty());
    EXPECT_TRUE(contains(detail::describe(op, c), "cuda variant 3")) << detail::describe(op, c);
  }
  // conv5_x at batch 1: 128x64 tiles with 16 splits, so the plan books a workspace.
  const ConvDims d = dims(Conv2dOp::Forward, kConv5x, kConv5w, kPad1);
  const CudaConv2dChoice c = choose_cuda_conv2d(Conv2dOp::Forward, d, 0, 0, h200());
  EXPECT_EQ(c.fast.kernel, fast::FastKernel::ImplicitGemm);
  EXPECT_EQ(c.fast.splits, 16);
  EXPECT_GT(c.workspace_bytes, 0u);
  EXPECT_EQ(detail::describe(Conv2dOp::Forward, c),
            "cuda variant 3 (fp32) implicit GEMM 128x64x8, 4 stages, 16 splits");
}

TEST(CudaConv2dChoice, WorkspaceStaysWithinTheContextLimit) {
  const ConvDims d = dims(Conv2dOp::Forward, kConv5x, kConv5w, kPad1);
  const std::size_t full = choose_cuda_conv2d(Conv2dOp::Forward, d, 0, 0, h200()).workspace_bytes;
  for (std::size_t limit : {full, full - 1, full / 3, std::size_t{4096}, std::size_t{0}}) {
    for (int option : {0, 3, 4}) {
      const CudaConv2dChoice c = choose_cuda_conv2d(Conv2dOp::Forward, d, option, 0, h200(limit));
      ASSERT_EQ(c.variant, option == 0 ? 3 : option) << limit << ": " << c.reason;
      EXPECT_LE(c.workspace_bytes, limit);
      EXPECT_EQ(c.workspace_bytes, fast::fast_workspace_bytes(Conv2dOp::Forward, d, c.fast));
      if (limit == 0) {
        EXPECT_EQ(c.fast.splits, 1);
      }
    }
  }
  // Every op and shape of the table, under a few limits: never over, and
  // always what the launcher checks for.
  for (const VariantCase& vc : kVariantCases)
    for (Conv2dOp op : kOps)
      for (std::size_t limit : {std::size_t{0}, std::size_t{1} << 12, std::size_t{512} << 20})
        for (int option = 0; option <= 4; ++option) {
          const ConvDims dd = dims(op, vc.x, vc.w, vc.params);
          const CudaConv2dChoice c = choose_cuda_conv2d(op, dd, option, 0, h200(limit));
          if (c.variant == 0) {
            EXPECT_NE(option, 0) << vc.name << " " << to_string(op) << ": auto always runs";
            EXPECT_FALSE(c.reason.empty());
            continue;
          }
          EXPECT_LE(c.workspace_bytes, limit) << vc.name << " " << to_string(op);
          if (c.variant >= 3) {
            EXPECT_EQ(c.workspace_bytes, fast::fast_workspace_bytes(op, dd, c.fast));
          }
          if (option == 0) {
            EXPECT_NE(c.variant, 4) << "the engine's rule is fp32 only";
          }
        }
}

TEST(CudaConv2dChoice, NarrowGemmsKeepVariants1And2AndSayWhy) {
  const Shape x{2, 5, 13, 11}, w{7, 5, 3, 3};
  const ConvDims fwd = dims(Conv2dOp::Forward, x, w, kPad1);
  const CudaConv2dChoice a = choose_cuda_conv2d(Conv2dOp::Forward, fwd, 0, 0, h200());
  EXPECT_EQ(a.variant, 1);
  EXPECT_TRUE(contains(a.fast_declined, "rows")) << a.fast_declined;
  EXPECT_EQ(detail::describe(Conv2dOp::Forward, a), "cuda variant 1 (direct)");
  const ConvDims bwf = dims(Conv2dOp::BackwardFilter, x, w, kPad1);
  EXPECT_EQ(choose_cuda_conv2d(Conv2dOp::BackwardFilter, bwf, 0, 0, h200()).variant, 2);
  for (int forced : {3, 4}) {
    const CudaConv2dChoice c = choose_cuda_conv2d(Conv2dOp::Forward, fwd, forced, 0, h200());
    EXPECT_EQ(c.variant, 0);
    EXPECT_TRUE(contains(c.reason, "variant " + std::to_string(forced) + " cannot run") &&
                contains(c.reason, "rows"))
        << c.reason;
  }
  // The environment's 3 or 4 is a preference: the engine chooses instead.
  EXPECT_EQ(choose_cuda_conv2d(Conv2dOp::Forward, fwd, 0, 4, h200()).variant, 1);
  EXPECT_EQ(choose_cuda_conv2d(Conv2dOp::Forward, fwd, 0, 3, h200()).variant, 1);
  // Backward data is declined for stride above 4 (more than 16 phases).
  const Shape xs{1, 32, 30, 30}, ws{32, 32, 3, 3};
  const Conv2dParams stride5{1, 1, 5, 5, 1, 1, 1};
  const ConvDims bwd = dims(Conv2dOp::BackwardData, xs, ws, stride5);
  const CudaConv2dChoice s = choose_cuda_conv2d(Conv2dOp::BackwardData, bwd, 0, 0, h200());
  EXPECT_EQ(s.variant, 2);
  EXPECT_TRUE(contains(s.fast_declined, "phases")) << s.fast_declined;
  EXPECT_EQ(choose_cuda_conv2d(Conv2dOp::BackwardData, bwd, 3, 0, h200()).variant, 0);
}

TEST(CudaConv2dChoice, Variant4IsTensorCoreGemmsOnly) {
  const ConvDims d = dims(Conv2dOp::BackwardData, kConv5x, kConv5w, kPad1);
  const CudaConv2dChoice c = choose_cuda_conv2d(Conv2dOp::BackwardData, d, 4, 0, h200());
  ASSERT_EQ(c.variant, 4) << c.reason;
  EXPECT_EQ(c.fast.variant, 4);
  EXPECT_EQ(c.fast.mode, fast::MathMode::Tf32x3);
  EXPECT_TRUE(contains(detail::describe(Conv2dOp::BackwardData, c), "cuda variant 4 (3xtf32)"));
  // The environment's 4 where it can run.
  EXPECT_EQ(choose_cuda_conv2d(Conv2dOp::BackwardData, d, 0, 4, h200()).variant, 4);

  CudaConv2dDevice turing = h200();
  turing.compute_capability_major = 7;
  const CudaConv2dChoice old = choose_cuda_conv2d(Conv2dOp::BackwardData, d, 4, 0, turing);
  EXPECT_EQ(old.variant, 0);
  EXPECT_TRUE(contains(old.reason, "compute capability 8.0")) << old.reason;
  EXPECT_EQ(choose_cuda_conv2d(Conv2dOp::BackwardData, d, 0, 4, turing).variant, 3);

  const Shape x{2, 8, 9, 9}, w{8, 1, 3, 3};
  const Conv2dParams p{1, 1, 1, 1, 1, 1, 8};
  for (Conv2dOp op : {Conv2dOp::Forward, Conv2dOp::BackwardData, Conv2dOp::BackwardFilter}) {
    const ConvDims dw = dims(op, x, w, p);
    const CudaConv2dChoice forced = choose_cuda_conv2d(op, dw, 4, 0, h200());
    EXPECT_EQ(forced.variant, 0) << to_string(op);
    EXPECT_TRUE(contains(forced.reason, "depthwise")) << forced.reason;
    const CudaConv2dChoice preferred = choose_cuda_conv2d(op, dw, 0, 4, h200());
    EXPECT_EQ(preferred.variant, 3) << to_string(op);
    EXPECT_EQ(preferred.fast.kernel, fast::FastKernel::Depthwise);
    EXPECT_TRUE(contains(detail::describe(op, preferred), "cuda variant 3: depthwise"))
        << detail::describe(op, preferred);
    EXPECT_EQ(choose_cuda_conv2d(op, dw, 3, 0, h200()).variant, 3);
  }
}

TEST(CudaConv2dChoice, ForcedAndPreferredClassicVariants) {
  const ConvDims d = dims(Conv2dOp::Forward, kConv5x, kConv5w, kPad1);
  for (int v : {1, 2}) {
    EXPECT_EQ(choose_cuda_conv2d(Conv2dOp::Forward, d, v, 0, h200()).variant, v);
    EXPECT_EQ(choose_cuda_conv2d(Conv2dOp::Forward, d, 0, v, h200()).variant, v);
    // The option wins over the environment.
    EXPECT_EQ(choose_cuda_conv2d(Conv2dOp::Forward, d, v, 3, h200()).variant, v);
  }
  EXPECT_EQ(choose_cuda_conv2d(Conv2dOp::Forward, d, 3, 2, h200()).variant, 3);
  // Variant 2's backward filter keeps its own depth split under the limit.
  const ConvDims f = dims(Conv2dOp::BackwardFilter, kConv5x, kConv5w, kPad1);
  const CudaConv2dChoice c = choose_cuda_conv2d(Conv2dOp::BackwardFilter, f, 2, 0, h200());
  ASSERT_EQ(c.variant, 2);
  EXPECT_EQ(c.workspace_bytes, c.splits > 1 ? std::size_t(c.splits) * 512 * 512 * 9 * 4 : 0u);
  EXPECT_EQ(choose_cuda_conv2d(Conv2dOp::BackwardFilter, f, 2, 0, h200(0)).workspace_bytes, 0u);
}

TEST(CudaConv2dChoice, BackwardBiasHasVariants1And3) {
  // 8 * 56 * 56 = 25088 values per channel: 7 chunks, so a workspace.
  const Shape x{8, 64, 56, 56}, w{64, 64, 1, 1};
  const ConvDims d = dims(Conv2dOp::BackwardBias, x, w, {});
  const Conv2dOp op = Conv2dOp::BackwardBias;
  const CudaConv2dChoice a = choose_cuda_conv2d(op, d, 0, 0, h200());
  ASSERT_EQ(a.variant, 3) << a.reason;
  EXPECT_EQ(a.fast.kernel, fast::FastKernel::BiasReduction);
  EXPECT_EQ(a.workspace_bytes, std::size_t{7} * 64 * 4);
  EXPECT_EQ(detail::describe(op, a), "cuda variant 3: bias reduction, 7 chunks per channel");
  const CudaConv2dChoice one = choose_cuda_conv2d(op, d, 1, 0, h200());
  EXPECT_EQ(one.variant, 1);
  EXPECT_EQ(one.workspace_bytes, 0u);
  EXPECT_EQ(detail::describe(op, one), "cuda variant 1 (per-channel tree reduction)");
  for (int v : {2, 4}) {
    const CudaConv2dChoice c = choose_cuda_conv2d(op, d, v, 0, h200());
    EXPECT_EQ(c.variant, 0);
    EXPECT_TRUE(contains(c.reason, "1 (one block per channel) and 3")) << c.reason;
    EXPECT_EQ(choose_cuda_conv2d(op, d, 0, v, h200()).variant, 3) << "environment " << v;
  }
  // Its chunks need a workspace: without one, auto takes variant 1 and a forced 3 declines.
  EXPECT_EQ(choose_cuda_conv2d(op, d, 0, 0, h200(0)).variant, 1);
  const CudaConv2dChoice tight = choose_cuda_conv2d(op, d, 3, 0, h200(0));
  EXPECT_EQ(tight.variant, 0);
  EXPECT_TRUE(contains(tight.reason, "workspace")) << tight.reason;
}

TEST(CudaConv2dChoice, DepthwiseBackwardFilterFallsBackWithoutWorkspace) {
  // 4 * 80 * 80 positions per filter: several 4096-position chunks.
  const Shape x{4, 4, 80, 80}, w{4, 1, 3, 3};
  const Conv2dParams p{1, 1, 1, 1, 1, 1, 4};
  const ConvDims d = dims(Conv2dOp::BackwardFilter, x, w, p);
  const CudaConv2dChoice a = choose_cuda_conv2d(Conv2dOp::BackwardFilter, d, 0, 0, h200());
  ASSERT_EQ(a.variant, 3);
  EXPECT_GT(a.fast.chunks, 1);
  EXPECT_GT(a.workspace_bytes, 0u);
  const CudaConv2dChoice none = choose_cuda_conv2d(Conv2dOp::BackwardFilter, d, 0, 0, h200(0));
  EXPECT_EQ(none.variant, 2);
  EXPECT_EQ(none.workspace_bytes, 0u);
  EXPECT_TRUE(contains(none.fast_declined, "workspace")) << none.fast_declined;
}

// ---------------------------------------------------------------------------
// On a GPU, through the public plan.

// What this device's plan chooses (the environment's preference included).
CudaConv2dChoice expected_choice(Context& ctx, Conv2dOp op, const VariantCase& c, int option) {
  const DeviceInfo info = device_info(ctx.device());
  CudaConv2dDevice dev;
  dev.fast_by_default = detail::kFastConvByDefault;
  dev.sm_count = info.sm_count;
  dev.compute_capability_major = info.compute_capability_major;
  dev.workspace_limit_bytes = ctx.options().workspace_limit_bytes;
  const int environment =
      std::max(0, detail::parse_cuda_conv2d_variant(std::getenv("DLRT_CUDA_CONV2D_VARIANT")));
  return choose_cuda_conv2d(op, dims(op, c.x, c.w, c.params), option, environment, dev);
}

class CudaConv2dVariants : public ::testing::TestWithParam<std::tuple<int, VariantCase>> {};

TEST_P(CudaConv2dVariants, MatchReference) {
  DLRT_SKIP_UNLESS_ENGINE_RUNS(Engine::Cuda);
  // Not a structured binding: lambdas capture it (clang 14 cannot).
  const int variant = std::get<0>(GetParam());
  const VariantCase& c = std::get<1>(GetParam());
  const Conv2dPlanOptions forced{Engine::Cuda, variant};
  const Shape ys = conv2d_output_shape(c.x, c.w, c.params);
  const Device gpu = Device::cuda(0);
  Context ref, ctx(gpu);
  Tensor x = test::random_tensor(c.x, 1), w = test::random_tensor(c.w, 2),
         dy = test::random_tensor(ys, 3);
  Tensor bias = test::random_tensor({c.w[0]}, 4);

  Tensor y_ref(ys), dx_ref(c.x), dw_ref(c.w), db_ref(Shape{ys[1]});
  conv2d_forward(ref, x, w, &bias, y_ref, c.params, Engine::Reference);
  conv2d_backward_data(ref, dy, w, dx_ref, c.params, Engine::Reference);
  conv2d_backward_filter(ref, x, dy, dw_ref, c.params, Engine::Reference);
  conv2d_backward_bias(ref, dy, db_ref, Engine::Reference);

  Tensor xg = x.to(gpu), wg = w.to(gpu), dyg = dy.to(gpu), bg = bias.to(gpu);
  // 3xTF32 is within a small constant of fp32 (docs/cuda-conv2d-fast.md).
  const std::int64_t widen = variant == 4 ? 9 : 1;
  const std::int64_t depth[] = {c.w[1] * c.w[2] * c.w[3], c.w[0] * c.w[2] * c.w[3],
                                ys[0] * ys[2] * ys[3], ys[0] * ys[2] * ys[3]};
  const Tensor* want[] = {&y_ref, &dx_ref, &dw_ref, &db_ref};
  const Shape out_shapes[] = {ys, c.x, c.w, Shape{ys[1]}};
  int ran = 0;
  for (int i = 0; i < 4; ++i) {
    const Conv2dOp op = kOps[i];
    const CudaConv2dChoice expect = expected_choice(ctx, op, c, variant);
    if (expect.variant == 0) {
      EXPECT_TRUE(test::throws_error([&] { Conv2dPlan(ctx, op, c.x, c.w, c.params, forced); },
                                     Error::Kind::Unsupported, {expect.reason}))
          << to_string(op);
      continue;
    }
    const Conv2dPlan plan(ctx, op, c.x, c.w, c.params, forced);
    EXPECT_EQ(plan.description(), detail::describe(op, expect));
    EXPECT_EQ(plan.workspace_bytes(), expect.workspace_bytes);
    Tensor out = test::poisoned(out_shapes[i], gpu);
    std::vector<float> first;
    for (int repeat = 0; repeat < 2; ++repeat) {
      if (op == Conv2dOp::Forward) plan.forward(ctx, xg, wg, &bg, out);
      if (op == Conv2dOp::BackwardData) plan.backward_data(ctx, dyg, wg, out);
      if (op == Conv2dOp::BackwardFilter) plan.backward_filter(ctx, xg, dyg, out);
      if (op == Conv2dOp::BackwardBias) plan.backward_bias(ctx, dyg, out);
      const std::vector<float> got = out.to_vector();
      EXPECT_TRUE(test::all_close(got, want[i]->to_vector(), depth[i] * widen))
          << to_string(op) << ": " << plan.description();
      if (repeat == 0) first = got;
      if (repeat == 1) {
        EXPECT_EQ(got, first) << to_string(op) << ": not bitwise reproducible";
      }
    }
    ++ran;
  }
  if (variant == 1 || variant == 2) {
    EXPECT_GE(ran, 3);
  }
}

INSTANTIATE_TEST_SUITE_P(Forced, CudaConv2dVariants,
                         ::testing::Combine(::testing::Values(0, 1, 2, 3, 4),
                                            ::testing::ValuesIn(kVariantCases)),
                         [](const auto& param_info) {
                           const int v = std::get<0>(param_info.param);
                           return (v == 0 ? std::string("auto") : "variant" + std::to_string(v)) +
                                  "_" + std::get<1>(param_info.param).name;
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
      Error::Kind::Unsupported, {"1 (one block per channel) and 3"}));
  EXPECT_TRUE(test::throws_error(
      [&] {
        Conv2dPlan(ctx, Conv2dOp::Forward, {1, 2, 5, 5}, {2, 2, 3, 3}, {}, {Engine::Cuda, 3});
      },
      Error::Kind::Unsupported, {"variant 3 cannot run this problem", "rows"}));
  const Conv2dPlan plan(ctx, Conv2dOp::Forward, {1, 2, 5, 5}, {2, 2, 3, 3}, {}, {Engine::Cuda, 1});
  EXPECT_NE(plan.description().find("variant 1"), std::string::npos) << plan.description();
}

// The plan books the fast kernels' split-K workspace within the context's
// limit, and runs with a caller's workspace of exactly that size.
TEST(CudaConv2dVariantSetting, FastWorkspaceFollowsTheContextLimit) {
  DLRT_SKIP_UNLESS_ENGINE_RUNS(Engine::Cuda);
  const Device gpu = Device::cuda(0);
  const VariantCase& c = kVariantCases[7];  // late_layer_split_k
  ASSERT_STREQ(c.name, "late_layer_split_k");
  const Shape ys = conv2d_output_shape(c.x, c.w, c.params);
  Context ref;
  Tensor x = test::random_tensor(c.x, 5), w = test::random_tensor(c.w, 6);
  Tensor y_ref(ys);
  conv2d_forward(ref, x, w, nullptr, y_ref, c.params, Engine::Reference);
  Tensor xg = x.to(gpu), wg = w.to(gpu);
  for (std::size_t limit : {std::size_t{512} << 20, std::size_t{64} << 10, std::size_t{0}}) {
    ContextOptions options;
    options.workspace_limit_bytes = limit;
    Context ctx(gpu, options);
    const CudaConv2dChoice expect = expected_choice(ctx, Conv2dOp::Forward, c, 3);
    ASSERT_EQ(expect.variant, 3) << expect.reason;
    const Conv2dPlan plan(ctx, Conv2dOp::Forward, c.x, c.w, c.params, {Engine::Cuda, 3});
    EXPECT_LE(plan.workspace_bytes(), limit);
    EXPECT_EQ(plan.workspace_bytes(), expect.workspace_bytes);
    Tensor ws(Shape{static_cast<std::int64_t>((plan.workspace_bytes() + 3) / 4) + 1}, gpu);
    Tensor y = test::poisoned(ys, gpu);
    plan.forward(ctx, xg, wg, nullptr, y, &ws);
    EXPECT_TRUE(test::all_close(y.to_vector(), y_ref.to_vector(), c.w[1] * c.w[2] * c.w[3]))
        << plan.description();
  }
}

}  // namespace
}  // namespace dlrt
