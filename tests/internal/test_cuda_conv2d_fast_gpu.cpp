// The fast Cuda convolution launchers (conv2d_fast.hpp) on a GPU, against
// the Reference engine: every variant (3, 4 with TF32 and 3xTF32, depthwise,
// bias) on a table of shapes, the chooser's own configs on this device's SM
// count, a forced split-K, misaligned tensors (the 4-byte copy path), and
// bitwise-identical results on a second run. The launchers are reached
// through their table, which only CUDA builds fill in: elsewhere, and where
// there is no device, the tests skip with the reason. Their index arithmetic
// is replayed on the CPU by test_cuda_conv2d_fast_tiling.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "kernels/cuda/conv2d_fast.hpp"
#include "kernels/cuda/conv2d_fast_tiling.hpp"
#include "runtime/conv2d_geometry.hpp"
#include "support/test_support.hpp"

namespace dlrt::detail::cuda_conv2d_fast {
namespace {

// Empty when the launchers can run here, else why not.
std::string unavailable() {
  if (fast_conv_launchers() == nullptr) return "built without CUDA: no fast launchers";
  if (!cuda_available()) return "no CUDA device: " + cuda_unavailable_reason();
  return {};
}

#define DLRT_SKIP_WITHOUT_FAST_LAUNCHERS()   \
  do {                                       \
    const std::string why_ = unavailable();  \
    if (!why_.empty()) GTEST_SKIP() << why_; \
  } while (0)

struct GpuCase {
  const char* name;
  Shape x, w;
  Conv2dParams params;
};

const GpuCase kCases[] = {
    {"3x3_pad1", {2, 32, 13, 11}, {40, 32, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},
    {"pointwise_rows_of_8", {4, 64, 8, 8}, {96, 64, 1, 1}, {0, 0, 1, 1, 1, 1, 1}},
    {"5x5_stride2_dil2", {1, 24, 19, 17}, {32, 24, 5, 5}, {3, 2, 2, 2, 2, 2, 1}},
    {"7x7_stride2_stem", {2, 16, 33, 31}, {64, 16, 7, 7}, {3, 3, 2, 2, 1, 1, 1}},
    {"stride3_groups2", {2, 64, 14, 14}, {48, 32, 3, 3}, {1, 1, 3, 3, 1, 1, 2}},
    {"wide_rows", {1, 70, 6, 6}, {200, 70, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},
    {"late_layer_split_k", {1, 256, 7, 7}, {256, 256, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},
    {"depthwise_3x3", {2, 32, 28, 28}, {32, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 32}},
    {"depthwise_stride2_mult2", {2, 8, 23, 30}, {16, 1, 5, 5}, {2, 2, 2, 2, 1, 1, 8}},
    {"depthwise_long_planes", {3, 4, 80, 80}, {4, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 4}},
};

std::vector<float> absolute(std::vector<float> v) {
  for (float& e : v) e = std::fabs(e);
  return v;
}

// |got - want| <= bound(mode) * (the same sum over |inputs|), as in the replay tests.
::testing::AssertionResult within_bound(const std::vector<float>& got,
                                        const std::vector<float>& want,
                                        const std::vector<float>& abs_sum, std::int64_t depth,
                                        MathMode mode) {
  if (mode == MathMode::Fp32) return test::all_close(got, want, depth);
  const double u = std::ldexp(1.0, -24);
  const double per_product = mode == MathMode::Tf32 ? std::ldexp(1.0, -10) + std::ldexp(1.0, -22)
                                                    : 3 * std::ldexp(1.0, -22);
  const double additions = (mode == MathMode::Tf32 ? 1.0 : 3.0) * static_cast<double>(depth + 2);
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double bound = (per_product + 2.0 * additions * u) * abs_sum[i] * 1.01 + 1e-30;
    const double err = std::fabs(double(got[i]) - double(want[i]));
    if (!(err <= bound))
      return ::testing::AssertionFailure() << "element " << i << ": got " << got[i] << ", want "
                                           << want[i] << ", bound " << bound;
  }
  return ::testing::AssertionSuccess();
}

// Device memory for a launcher's workspace.
struct Workspace {
  Tensor storage;
  void* data = nullptr;
  std::size_t bytes = 0;
  explicit Workspace(std::size_t size) : bytes(size) {
    if (size == 0) return;
    storage = Tensor(Shape{static_cast<std::int64_t>((size + 3) / 4)}, Device::cuda(0));
    data = storage.data();
  }
};

class CudaConv2dFastGpu : public ::testing::TestWithParam<GpuCase> {};

// One op on the device, twice, through the launcher its config names.
std::vector<float> run_op(Conv2dOp op, const FastConvConfig& c, const ConvDims& d, const Tensor& x,
                          const Tensor& w, const Tensor& bias, const Tensor& dy,
                          const Shape& out_shape, int misalign) {
  const FastConvLaunchers& l = *fast_conv_launchers();
  const Device gpu = Device::cuda(0);
  Tensor out_storage = test::poisoned(Shape{out_shape.numel() + misalign}, gpu);
  float* out = out_storage.data() + misalign;
  Workspace ws(c.workspace_bytes);
  // Inputs at an odd float offset exercise the 4-byte copy path.
  auto place = [&](const Tensor& t, Tensor& keep) -> const float* {
    if (!t.defined()) return nullptr;
    if (misalign == 0) return t.data();
    std::vector<float> v(static_cast<std::size_t>(misalign), 0.0f);
    const std::vector<float> values = t.to_vector();
    v.insert(v.end(), values.begin(), values.end());
    keep = Tensor::from_vector(Shape{static_cast<std::int64_t>(v.size())}, v, gpu);
    return keep.data() + misalign;
  };
  Tensor kx, kw, kdy;
  const float* xp = place(x, kx);
  const float* wp = place(w, kw);
  const float* dyp = place(dy, kdy);
  if (op == Conv2dOp::Forward) {
    auto fn = c.kernel == FastKernel::Depthwise ? l.forward_depthwise
              : c.variant == 3                  ? l.forward_v3
                                                : l.forward_v4;
    fn(c, d, xp, wp, bias.data(), out, ws.data, ws.bytes, nullptr);
  } else if (op == Conv2dOp::BackwardData) {
    auto fn = c.kernel == FastKernel::Depthwise ? l.backward_data_depthwise
              : c.variant == 3                  ? l.backward_data_v3
                                                : l.backward_data_v4;
    fn(c, d, dyp, wp, out, ws.data, ws.bytes, nullptr);
  } else if (op == Conv2dOp::BackwardFilter) {
    auto fn = c.kernel == FastKernel::Depthwise ? l.backward_filter_depthwise
              : c.variant == 3                  ? l.backward_filter_v3
                                                : l.backward_filter_v4;
    fn(c, d, xp, dyp, out, ws.data, ws.bytes, nullptr);
  } else {
    l.backward_bias_split(c, d, dyp, out, ws.data, ws.bytes, nullptr);
  }
  std::vector<float> all = out_storage.to_vector();
  return std::vector<float>(all.begin() + misalign, all.end());
}

TEST_P(CudaConv2dFastGpu, MatchesReferenceAndRepeats) {
  DLRT_SKIP_WITHOUT_FAST_LAUNCHERS();
  const GpuCase& gc = GetParam();
  const Device gpu = Device::cuda(0);
  const int sm_count = device_info(gpu).sm_count;
  const Shape ys = conv2d_output_shape(gc.x, gc.w, gc.params);
  const ConvDims d = cuda_conv2d::make_conv_dims(conv2d_geometry(gc.x, gc.w, gc.params));

  Context ref;
  const Tensor x = test::random_tensor(gc.x, 1), w = test::random_tensor(gc.w, 2);
  const Tensor dy = test::random_tensor(ys, 3), bias = test::random_tensor({gc.w[0]}, 4);
  Tensor y_ref(ys), dx_ref(gc.x), dw_ref(gc.w), db_ref({gc.w[0]});
  conv2d_forward(ref, x, w, &bias, y_ref, gc.params, Engine::Reference);
  conv2d_backward_data(ref, dy, w, dx_ref, gc.params, Engine::Reference);
  conv2d_backward_filter(ref, x, dy, dw_ref, gc.params, Engine::Reference);
  conv2d_backward_bias(ref, dy, db_ref, Engine::Reference);
  const Tensor ax = Tensor::from_vector(gc.x, absolute(x.to_vector()));
  const Tensor aw = Tensor::from_vector(gc.w, absolute(w.to_vector()));
  const Tensor ady = Tensor::from_vector(ys, absolute(dy.to_vector()));
  const Tensor abias = Tensor::from_vector({gc.w[0]}, absolute(bias.to_vector()));
  Tensor y_abs(ys), dx_abs(gc.x), dw_abs(gc.w);
  conv2d_forward(ref, ax, aw, &abias, y_abs, gc.params, Engine::Reference);
  conv2d_backward_data(ref, ady, aw, dx_abs, gc.params, Engine::Reference);
  conv2d_backward_filter(ref, ax, ady, dw_abs, gc.params, Engine::Reference);

  const Tensor xg = x.to(gpu), wg = w.to(gpu), dyg = dy.to(gpu), bg = bias.to(gpu);
  const std::int64_t crs = gc.w[1] * gc.w[2] * gc.w[3], krs = d.Kg * gc.w[2] * gc.w[3];
  struct OpCheck {
    Conv2dOp op;
    Shape shape;
    const Tensor* want;
    const Tensor* abs_sum;
    std::int64_t depth;
  };
  const OpCheck ops[] = {
      {Conv2dOp::Forward, ys, &y_ref, &y_abs, crs},
      {Conv2dOp::BackwardData, gc.x, &dx_ref, &dx_abs, krs},
      {Conv2dOp::BackwardFilter, gc.w, &dw_ref, &dw_abs, ys[0] * ys[2] * ys[3]},
      {Conv2dOp::BackwardBias, Shape{gc.w[0]}, &db_ref, nullptr, ys[0] * ys[2] * ys[3]},
  };
  for (const OpCheck& check : ops)
    for (MathMode mode : {MathMode::Fp32, MathMode::Tf32, MathMode::Tf32x3})
      for (int forced_splits : {0, 3})
        for (int misalign : {0, 1}) {
          FastConvConfig c = choose_fast_config(check.op, d, sm_count, mode);
          if (!c.applies) continue;  // the chooser's table says why (replay tests)
          if (forced_splits > 0 && c.kernel == FastKernel::ImplicitGemm &&
              check.op != Conv2dOp::BackwardData) {
            c.splits = forced_splits;
            c.workspace_bytes = fast_workspace_bytes(check.op, d, c);
          }
          SCOPED_TRACE(std::string(to_string(check.op)) + ": " + describe(c) +
                       (misalign ? ", misaligned" : ""));
          const std::vector<float> got =
              run_op(check.op, c, d, xg, wg, bg, dyg, check.shape, misalign);
          const std::vector<float> again =
              run_op(check.op, c, d, xg, wg, bg, dyg, check.shape, misalign);
          EXPECT_TRUE(test::bitwise_equal(got, again)) << "not reproducible";
          const MathMode effective = c.kernel == FastKernel::ImplicitGemm ? c.mode : MathMode::Fp32;
          const std::vector<float> want = check.want->to_vector();
          if (check.abs_sum == nullptr) {
            EXPECT_TRUE(test::all_close(got, want, check.depth));
          } else {
            EXPECT_TRUE(
                within_bound(got, want, check.abs_sum->to_vector(), check.depth, effective));
          }
        }
}

INSTANTIATE_TEST_SUITE_P(Table, CudaConv2dFastGpu, ::testing::ValuesIn(kCases),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// A config for another launcher, or a short workspace, is refused before
// anything runs.
TEST(CudaConv2dFastGpuLaunchers, RefuseMismatchedConfigs) {
  DLRT_SKIP_WITHOUT_FAST_LAUNCHERS();
  const FastConvLaunchers& l = *fast_conv_launchers();
  const ConvDims d = cuda_conv2d::make_conv_dims(
      conv2d_geometry({1, 256, 7, 7}, {256, 256, 3, 3}, Conv2dParams{1, 1, 1, 1, 1, 1, 1}));
  const FastConvConfig c = choose_fast_config(Conv2dOp::Forward, d, 132, MathMode::Fp32);
  ASSERT_TRUE(c.applies);
  ASSERT_GT(c.workspace_bytes, 0u);
  auto expect_internal = [](auto&& call) {
    EXPECT_TRUE(test::throws_error(call, Error::Kind::Internal, {"launch_"}));
  };
  expect_internal(
      [&] { l.forward_v4(c, d, nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr); });
  expect_internal([&] {
    l.backward_filter_v3(c, d, nullptr, nullptr, nullptr, nullptr, c.workspace_bytes, nullptr);
  });
  expect_internal(
      [&] { l.forward_v3(c, d, nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr); });
}

}  // namespace
}  // namespace dlrt::detail::cuda_conv2d_fast
