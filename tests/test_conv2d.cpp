// Convolution on every engine: the lecture's worked examples, then every
// engine against the Reference engine on a table of shapes, all four ops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "support/test_support.hpp"

namespace dlrt {
namespace {

using test::engine_name;

// ------------------------------------------------- the lecture's examples

// The 6x6 image and the 3x3 Laplacian of the lecture's convolution slides.
const std::vector<float> kImage = {0, 0, 0, 0, 0, 0,  //
                                   0, 1, 2, 2, 1, 0,  //
                                   0, 2, 4, 4, 2, 0,  //
                                   0, 1, 3, 3, 1, 0,  //
                                   0, 1, 2, 3, 1, 0,  //
                                   0, 0, 1, 1, 0, 0};
const std::vector<float> kLaplacian = {0, 1, 0, 1, -4, 1, 0, 1, 0};

// The slide's tables as printed. Each carries one arithmetic slip: the
// unpadded output at row 3, column 4 (1-based) is 2, not 3 — the window's
// centre is 1 and its neighbours are 2 (up), 1 (down), 3 (left) and 0
// (right): 2 + 1 + 3 + 0 - 4*1 = 2 — and the padded table repeats it at
// row 4, column 5.
const std::vector<float> kSlideUnpadded = {0,  -1, -1, 0,   //
                                           -2, -5, -5, -2,  //
                                           2,  -2, -1, 3,   //
                                           -1, 0,  -5, 0};
const std::vector<float> kSlidePadded = {0, 1,  2,  2,  1,  0,  //
                                         1, 0,  -1, -1, 0,  1,  //
                                         2, -2, -5, -5, -2, 2,  //
                                         1, 2,  -2, -1, 3,  1,  //
                                         1, -1, 0,  -5, 0,  1,  //
                                         0, 2,  -1, 0,  2,  0};

class LectureExamples : public ::testing::TestWithParam<Engine> {
protected:
  std::vector<float> run(const std::vector<float>& image, int size,
                         const std::vector<float>& filter, int filter_size,
                         const Conv2dParams& params) {
    const Device device = test::device_for(GetParam());
    Context ctx(device);
    Tensor x = Tensor::from_vector({1, 1, size, size}, image, device);
    Tensor w = Tensor::from_vector({1, 1, filter_size, filter_size}, filter, device);
    Tensor y = test::poisoned(conv2d_output_shape(x.shape(), w.shape(), params), device);
    EXPECT_EQ(conv2d_forward(ctx, x, w, nullptr, y, params, GetParam()), GetParam());
    return y.to_vector();
  }
  // Every product and partial sum here is a small integer, which the
  // Reference, Cpu and Cuda engines (direct or GEMM sums of products) carry
  // exactly: they must give the table exactly. cuDNN may pick an FFT or a
  // Winograd algorithm, whose transforms multiply by constants that are not
  // integers (roots of unity, Winograd's matrices) and round on the way back,
  // so its results land a few ulps off the integers: Cudnn must be within
  // kTransformSlack of each entry, which still pins the integer (they are
  // 1 apart), and round to it.
  void expect_table(const std::vector<float>& got, const std::vector<float>& want) {
    if (GetParam() != Engine::Cudnn) {
      EXPECT_EQ(got, want);
      return;
    }
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], kTransformSlack) << "element " << i;
      EXPECT_EQ(std::round(got[i]), want[i]) << "element " << i;
    }
  }
  // An FFT or Winograd transform of these 6x6 images with entries up to 4
  // is off by 1e-5 or less; 1e-3 leaves room and is far from the 0.5 that
  // would make the integer ambiguous.
  static constexpr float kTransformSlack = 1e-3f;
};

TEST_P(LectureExamples, LaplacianWithoutPadding) {
  DLRT_SKIP_UNLESS_ENGINE_RUNS(GetParam());
  const std::vector<float> y = run(kImage, 6, kLaplacian, 3, {});
  std::vector<float> corrected = kSlideUnpadded;
  corrected[2 * 4 + 3] = 2;  // the slip
  expect_table(y, corrected);
  // The slide differs from the computation in that one element only.
  int differences = 0;
  for (std::size_t i = 0; i < y.size(); ++i) differences += std::round(y[i]) != kSlideUnpadded[i];
  EXPECT_EQ(differences, 1);
}

TEST_P(LectureExamples, LaplacianWithPaddingOneKeepsTheSize) {
  DLRT_SKIP_UNLESS_ENGINE_RUNS(GetParam());
  Conv2dParams params;
  params.pad_h = params.pad_w = 1;
  const std::vector<float> y = run(kImage, 6, kLaplacian, 3, params);
  ASSERT_EQ(y.size(), 36u);
  std::vector<float> corrected = kSlidePadded;
  corrected[3 * 6 + 4] = 2;  // the same slip, shifted by the padding
  expect_table(y, corrected);
}

TEST_P(LectureExamples, StrideTwoHalvesTheOutput) {
  DLRT_SKIP_UNLESS_ENGINE_RUNS(GetParam());
  Conv2dParams params;
  params.stride_h = params.stride_w = 2;
  const std::vector<float> y = run(kImage, 6, {0, 1, 1, -2}, 2, params);
  expect_table(y, {-2, -2, 1, 0, 1, 1, 1, 2, 0});
}

INSTANTIATE_TEST_SUITE_P(Conv2d, LectureExamples,
                         ::testing::ValuesIn(test::engines_of(OpFamily::Conv2d)), engine_name);

// ------------------------------------------------- engines vs Reference

struct ConvCase {
  const char* name;
  std::int64_t N, C, H, W, K, R, S;
  Conv2dParams params;
};

Conv2dParams p(int pad_h, int pad_w, int stride_h, int stride_w, int dil_h = 1, int dil_w = 1,
               int groups = 1) {
  return {pad_h, pad_w, stride_h, stride_w, dil_h, dil_w, groups};
}

// Batch 1 and > 1, odd sizes, 1x1 to 7x7, strides 1-3, padding 0-3,
// dilation 1-2, rectangular filters, channels 1-64, groups and depthwise.
const ConvCase kCases[] = {
    {"single_pixel_filter", 1, 1, 5, 5, 1, 1, 1, p(0, 0, 1, 1)},
    {"pointwise_batch", 3, 16, 7, 9, 8, 1, 1, p(0, 0, 1, 1)},
    {"pointwise_stride2", 2, 8, 9, 9, 16, 1, 1, p(0, 0, 2, 2)},
    {"pointwise_padded", 2, 4, 5, 5, 4, 1, 1, p(1, 1, 1, 1)},
    {"3x3_same", 2, 3, 11, 13, 5, 3, 3, p(1, 1, 1, 1)},
    {"3x3_valid_batch1", 1, 7, 9, 8, 3, 3, 3, p(0, 0, 1, 1)},
    {"3x3_stride2", 2, 8, 15, 15, 8, 3, 3, p(1, 1, 2, 2)},
    {"3x3_stride3_pad2", 1, 4, 17, 14, 6, 3, 3, p(2, 2, 3, 3)},
    {"3x3_dilation2", 2, 4, 13, 11, 4, 3, 3, p(2, 2, 1, 1, 2, 2)},
    {"5x5_pad2", 2, 6, 12, 12, 7, 5, 5, p(2, 2, 1, 1)},
    {"5x5_stride2_pad3", 1, 3, 19, 17, 4, 5, 5, p(3, 3, 2, 2)},
    {"7x7_stem", 2, 3, 23, 23, 8, 7, 7, p(3, 3, 2, 2)},
    {"7x7_valid", 1, 2, 9, 10, 3, 7, 7, p(0, 0, 1, 1)},
    {"rect_1x7", 2, 4, 9, 15, 4, 1, 7, p(0, 3, 1, 1)},
    {"rect_7x1", 2, 4, 15, 9, 4, 7, 1, p(3, 0, 1, 1)},
    {"rect_3x5_asym_stride", 1, 5, 13, 16, 3, 3, 5, p(1, 2, 2, 3)},
    {"asym_dilation", 1, 3, 14, 12, 2, 3, 3, p(1, 2, 1, 2, 2, 1)},
    {"stride_bigger_than_filter", 2, 3, 11, 11, 4, 2, 2, p(0, 0, 3, 3)},
    {"wide_channels", 2, 64, 8, 8, 64, 3, 3, p(1, 1, 1, 1)},
    {"channels_1_to_64", 1, 1, 12, 12, 64, 3, 3, p(1, 1, 1, 1)},
    {"channels_64_to_1", 2, 64, 6, 7, 1, 3, 3, p(0, 1, 1, 1)},
    {"groups2", 2, 8, 9, 9, 6, 3, 3, p(1, 1, 1, 1, 1, 1, 2)},
    {"groups4_stride2", 1, 16, 10, 11, 8, 3, 3, p(1, 1, 2, 2, 1, 1, 4)},
    {"depthwise", 2, 12, 10, 10, 12, 3, 3, p(1, 1, 1, 1, 1, 1, 12)},
    {"depthwise_multiplier2", 1, 6, 9, 8, 12, 5, 5, p(2, 2, 2, 1, 1, 1, 6)},
    {"pad_larger_than_filter", 1, 2, 5, 5, 2, 2, 2, p(3, 3, 1, 1)},
    {"filter_equals_input", 3, 4, 5, 5, 2, 5, 5, p(0, 0, 1, 1)},
    {"tall_thin_input", 1, 3, 31, 3, 2, 3, 3, p(1, 1, 2, 1)},
};

using EngineCase = std::tuple<Engine, ConvCase>;

class Conv2dAgainstReference : public ::testing::TestWithParam<EngineCase> {
protected:
  void SetUp() override {
    engine_ = std::get<0>(GetParam());
    c_ = std::get<1>(GetParam());
    DLRT_SKIP_UNLESS_ENGINE_RUNS(engine_);
    device_ = test::device_for(engine_);
    x_shape_ = Shape{c_.N, c_.C, c_.H, c_.W};
    w_shape_ = Shape{c_.K, c_.C / c_.params.groups, c_.R, c_.S};
    y_shape_ = conv2d_output_shape(x_shape_, w_shape_, c_.params);
  }
  // Skips with the registry's reason when the engine declines this case.
  bool declined(Conv2dOp op) {
    Context ctx(device_);
    EngineQuery answer = conv2d_query(ctx, op, x_shape_, w_shape_, c_.params, engine_);
    if (!answer.supported) reason_ = answer.reason;
    return !answer.supported;
  }
  std::int64_t reduction_length(Conv2dOp op) const {
    switch (op) {
      case Conv2dOp::Forward:
        return c_.C / c_.params.groups * c_.R * c_.S;
      case Conv2dOp::BackwardData:
        return c_.K / c_.params.groups * c_.R * c_.S;
      case Conv2dOp::BackwardFilter:
        return c_.N * y_shape_[2] * y_shape_[3];
      case Conv2dOp::BackwardBias:
        return c_.N * y_shape_[2] * y_shape_[3];
    }
    return 1;
  }
  // The accumulation length all_close scales its tolerance with (4 eps
  // sqrt(L)). That models a direct or GEMM convolution, one rounding per
  // multiply-add. cuDNN may also run the convolution ops as an FFT (any
  // filter) or a Winograd algorithm (3x3, 5x5), whose error does not follow
  // sqrt(L): an FFT rounds in every butterfly of the transform of a whole
  // tile, so its error grows with the transform size and the norms of the
  // whole tile, and Winograd's transform matrices amplify the rounding of
  // their input, the more the larger the filter and tile. With 5x5 filters
  // and up (1x7 and 7x1 too) the transforms are large next to the sum they
  // replace, and 4 eps sqrt(L) is too tight for them: Cudnn gets 8x the
  // tolerance there (64 L under the square root). Every other engine, the
  // smaller filters and the bias sum keep 4 eps sqrt(L).
  std::int64_t tolerance_length(Conv2dOp op) const {
    const std::int64_t length = reduction_length(op);
    const bool transform_sized = std::max(c_.R, c_.S) >= 5;
    if (engine_ == Engine::Cudnn && transform_sized && op != Conv2dOp::BackwardBias)
      return 64 * length;
    return length;
  }

  Engine engine_ = Engine::Reference;
  ConvCase c_{};
  Device device_;
  Shape x_shape_, w_shape_, y_shape_;
  std::string reason_;
  Context reference_ctx_;
};

TEST_P(Conv2dAgainstReference, Forward) {
  if (declined(Conv2dOp::Forward)) GTEST_SKIP() << reason_;
  Tensor x = test::random_tensor(x_shape_, 11), w = test::random_tensor(w_shape_, 12);
  Tensor bias = test::random_tensor({c_.K}, 13);
  Tensor want = test::poisoned(y_shape_);
  conv2d_forward(reference_ctx_, x, w, &bias, want, c_.params, Engine::Reference);

  Context ctx(device_);
  Tensor xd = x.to(device_), wd = w.to(device_), bd = bias.to(device_);
  Tensor got = test::poisoned(y_shape_, device_);
  EXPECT_EQ(conv2d_forward(ctx, xd, wd, &bd, got, c_.params, engine_), engine_);
  EXPECT_TRUE(
      test::all_close(got.to_vector(), want.to_vector(), tolerance_length(Conv2dOp::Forward)));

  // Without a bias too: a separate code path in several engines.
  conv2d_forward(reference_ctx_, x, w, nullptr, want, c_.params, Engine::Reference);
  got.fill(std::numeric_limits<float>::quiet_NaN());
  conv2d_forward(ctx, xd, wd, nullptr, got, c_.params, engine_);
  EXPECT_TRUE(
      test::all_close(got.to_vector(), want.to_vector(), tolerance_length(Conv2dOp::Forward)));
}

TEST_P(Conv2dAgainstReference, BackwardData) {
  if (declined(Conv2dOp::BackwardData)) GTEST_SKIP() << reason_;
  Tensor dy = test::random_tensor(y_shape_, 21), w = test::random_tensor(w_shape_, 22);
  Tensor want = test::poisoned(x_shape_);
  conv2d_backward_data(reference_ctx_, dy, w, want, c_.params, Engine::Reference);

  Context ctx(device_);
  Tensor got = test::poisoned(x_shape_, device_);
  EXPECT_EQ(conv2d_backward_data(ctx, dy.to(device_), w.to(device_), got, c_.params, engine_),
            engine_);
  EXPECT_TRUE(
      test::all_close(got.to_vector(), want.to_vector(), tolerance_length(Conv2dOp::BackwardData)));
}

TEST_P(Conv2dAgainstReference, BackwardFilter) {
  if (declined(Conv2dOp::BackwardFilter)) GTEST_SKIP() << reason_;
  Tensor x = test::random_tensor(x_shape_, 31), dy = test::random_tensor(y_shape_, 32);
  Tensor want = test::poisoned(w_shape_);
  conv2d_backward_filter(reference_ctx_, x, dy, want, c_.params, Engine::Reference);

  Context ctx(device_);
  Tensor got = test::poisoned(w_shape_, device_);
  EXPECT_EQ(conv2d_backward_filter(ctx, x.to(device_), dy.to(device_), got, c_.params, engine_),
            engine_);
  EXPECT_TRUE(test::all_close(got.to_vector(), want.to_vector(),
                              tolerance_length(Conv2dOp::BackwardFilter)));
}

TEST_P(Conv2dAgainstReference, BackwardBias) {
  if (declined(Conv2dOp::BackwardBias)) GTEST_SKIP() << reason_;
  Tensor dy = test::random_tensor(y_shape_, 41);
  Tensor want = test::poisoned({c_.K});
  conv2d_backward_bias(reference_ctx_, dy, want, Engine::Reference);

  Context ctx(device_);
  Tensor got = test::poisoned({c_.K}, device_);
  EXPECT_EQ(conv2d_backward_bias(ctx, dy.to(device_), got, engine_), engine_);
  EXPECT_TRUE(
      test::all_close(got.to_vector(), want.to_vector(), reduction_length(Conv2dOp::BackwardBias)));
}

// Bitwise identical results run to run, for every op.
TEST_P(Conv2dAgainstReference, Deterministic) {
  if (declined(Conv2dOp::Forward) || declined(Conv2dOp::BackwardData) ||
      declined(Conv2dOp::BackwardFilter))
    GTEST_SKIP() << reason_;
  Context ctx(device_);
  ctx.set_deterministic(true);
  Tensor x = test::random_tensor(x_shape_, 51, device_),
         w = test::random_tensor(w_shape_, 52, device_);
  Tensor dy = test::random_tensor(y_shape_, 53, device_);
  std::vector<float> first[3];
  for (int run = 0; run < 2; ++run) {
    Tensor y = test::poisoned(y_shape_, device_), dx = test::poisoned(x_shape_, device_);
    Tensor dw = test::poisoned(w_shape_, device_);
    conv2d_forward(ctx, x, w, nullptr, y, c_.params, engine_);
    conv2d_backward_data(ctx, dy, w, dx, c_.params, engine_);
    conv2d_backward_filter(ctx, x, dy, dw, c_.params, engine_);
    std::vector<float> now[3] = {y.to_vector(), dx.to_vector(), dw.to_vector()};
    for (int i = 0; i < 3; ++i) {
      if (run == 0)
        first[i] = now[i];
      else
        EXPECT_TRUE(test::bitwise_equal(first[i], now[i]))
            << "output " << i << " changed between runs";
    }
  }
}

std::string case_name(const ::testing::TestParamInfo<EngineCase>& info) {
  return std::string(to_string(std::get<0>(info.param))) + "_" + std::get<1>(info.param).name;
}

INSTANTIATE_TEST_SUITE_P(Conv2d, Conv2dAgainstReference,
                         ::testing::Combine(::testing::ValuesIn(test::engines_of(OpFamily::Conv2d,
                                                                                 true)),
                                            ::testing::ValuesIn(kCases)),
                         case_name);

// ------------------------------------------------- dispatch

TEST(Conv2dDispatch, AutoPicksTheBestEngineOnTheTensorsDevice) {
  Context ctx;
  Tensor x = test::random_tensor({1, 2, 6, 6}, 1), w = test::random_tensor({3, 2, 3, 3}, 2);
  Tensor y({1, 3, 4, 4});
  EXPECT_EQ(conv2d_forward(ctx, x, w, nullptr, y), Engine::Cpu);
  EngineQuery q = conv2d_query(ctx, Conv2dOp::Forward, x.shape(), w.shape(), {});
  EXPECT_TRUE(q.supported);
  EXPECT_EQ(q.engine, Engine::Cpu);
}

TEST(Conv2dDispatch, AGpuEngineOnCpuTensorsIsAnErrorThatSaysWhy) {
  Context ctx;
  Tensor x = test::random_tensor({1, 2, 6, 6}, 1), w = test::random_tensor({3, 2, 3, 3}, 2);
  Tensor y = test::poisoned({1, 3, 4, 4});
  const std::vector<float> before = y.to_vector();
  for (Engine e : registered_engines(OpFamily::Conv2d)) {
    if (engine_device(e) != Device::Kind::Cuda) continue;
    EXPECT_TRUE(test::throws_error([&] { conv2d_forward(ctx, x, w, nullptr, y, {}, e); },
                                   Error::Kind::Unsupported, {to_string(e), "cpu"}));
    EngineQuery q = conv2d_query(ctx, Conv2dOp::Forward, x.shape(), w.shape(), {}, e);
    EXPECT_FALSE(q.supported);
    EXPECT_FALSE(q.reason.empty());
  }
  EXPECT_TRUE(test::bitwise_equal(y.to_vector(), before));
}

TEST(Conv2dDispatch, WithoutAGpuCudaContextsAreRefused) {
  if (cuda_available()) GTEST_SKIP() << "this machine has a GPU; the no-GPU path is not reachable";
  EXPECT_TRUE(test::throws_error([] { Context ctx(Device::cuda(0)); }, Error::Kind::InvalidArgument,
                                 {"cuda:0", "no CUDA device"}));
}

TEST(Conv2dDispatch, TheCpuEngineBandsTheOutputUnderASmallWorkspaceLimit) {
  // A limit that holds only two output rows of the im2col buffer forces the
  // banded path; the result must not change.
  const Shape xs{2, 3, 17, 15}, ws{4, 3, 3, 3};
  Conv2dParams params;
  params.pad_h = params.pad_w = 1;
  Tensor x = test::random_tensor(xs, 3), w = test::random_tensor(ws, 4), dy;
  const Shape ys = conv2d_output_shape(xs, ws, params);
  dy = test::random_tensor(ys, 5);
  Context wide, narrow;
  narrow.set_workspace_limit(3 * 3 * 3 * 15 * sizeof(float) * 2);
  for (int op = 0; op < 3; ++op) {
    Tensor a = test::poisoned(op == 0 ? ys : op == 1 ? xs : ws), b = test::poisoned(a.shape());
    for (auto* pair : {&wide, &narrow}) {
      Tensor& out = pair == &wide ? a : b;
      if (op == 0) conv2d_forward(*pair, x, w, nullptr, out, params, Engine::Cpu);
      if (op == 1) conv2d_backward_data(*pair, dy, w, out, params, Engine::Cpu);
      if (op == 2) conv2d_backward_filter(*pair, x, dy, out, params, Engine::Cpu);
    }
    EXPECT_TRUE(test::all_close(b.to_vector(), a.to_vector(), 2 * 17 * 15)) << "op " << op;
  }
  narrow.set_workspace_limit(16);  // not even one row fits: the engine declines
  EngineQuery q = conv2d_query(narrow, Conv2dOp::Forward, xs, ws, params, Engine::Cpu);
  EXPECT_FALSE(q.supported);
  EXPECT_NE(q.reason.find("workspace"), std::string::npos) << q.reason;
  // ... and Auto falls back to the Reference engine, which needs no workspace.
  q = conv2d_query(narrow, Conv2dOp::Forward, xs, ws, params);
  EXPECT_TRUE(q.supported);
  EXPECT_EQ(q.engine, Engine::Reference);
}

}  // namespace
}  // namespace dlrt
