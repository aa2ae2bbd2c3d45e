// Central finite differences of the double-precision reference: the
// backward ops must be the derivatives of the forward op. With the loss
//   L(x, w, b) = sum_i g_i * conv(x, w, b)_i
// dL/dx = backward_data(g), dL/dw = backward_filter(x, g), dL/db = backward_bias(g).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/reference/conv2d.hpp"

namespace dlrt::detail {
namespace {

struct GradCase {
  std::int64_t N, C, H, W, K, R, S;
  Conv2dParams params;
};

std::vector<double> random_doubles(std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> v(static_cast<std::size_t>(n));
  for (double& e : v) e = dist(rng);
  return v;
}

class Conv2dGradCheck : public ::testing::TestWithParam<GradCase> {};

TEST_P(Conv2dGradCheck, BackwardOpsAreTheDerivativesOfForward) {
  const GradCase& c = GetParam();
  const Shape x_shape{c.N, c.C, c.H, c.W}, w_shape{c.K, c.C / c.params.groups, c.R, c.S};
  const Shape y_shape = conv2d_output_shape(x_shape, w_shape, c.params);
  const Conv2dGeometry g = conv2d_geometry(x_shape, w_shape, c.params);

  std::vector<double> x = random_doubles(x_shape.numel(), 1),
                      w = random_doubles(w_shape.numel(), 2);
  std::vector<double> b = random_doubles(c.K, 3), up = random_doubles(y_shape.numel(), 4);
  std::vector<double> y(static_cast<std::size_t>(y_shape.numel()));

  auto loss = [&] {
    reference::conv2d_forward(g, x.data(), w.data(), b.data(), y.data());
    double sum = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) sum += up[i] * y[i];
    return sum;
  };

  std::vector<double> dx(x.size()), dw(w.size()), db(b.size());
  reference::conv2d_backward_data(g, up.data(), w.data(), dx.data());
  reference::conv2d_backward_filter(g, x.data(), up.data(), dw.data());
  reference::conv2d_backward_bias(g, up.data(), db.data());

  auto check = [&](const char* name, std::vector<double>& param, const std::vector<double>& grad) {
    constexpr double kStep = 1e-5;
    double largest = 0.0;
    for (std::size_t i = 0; i < param.size(); ++i) {
      const double saved = param[i];
      param[i] = saved + kStep;
      const double up_loss = loss();
      param[i] = saved - kStep;
      const double down_loss = loss();
      param[i] = saved;
      const double numeric = (up_loss - down_loss) / (2 * kStep);
      largest = std::max(largest, std::fabs(grad[i]));
      EXPECT_NEAR(grad[i], numeric, 1e-7 * (1.0 + std::fabs(numeric))) << name << "[" << i << "]";
    }
    // A check whose gradients are all zero proves nothing.
    EXPECT_GT(largest, 1e-3) << name << " gradients are (nearly) all zero";
  };
  check("dx", x, dx);
  check("dw", w, dw);
  check("db", b, db);
}

Conv2dParams params(int pad, int stride, int dilation, int groups = 1) {
  return {pad, pad, stride, stride, dilation, dilation, groups};
}

INSTANTIATE_TEST_SUITE_P(Reference, Conv2dGradCheck,
                         ::testing::Values(GradCase{1, 1, 5, 5, 1, 3, 3, params(0, 1, 1)},
                                           GradCase{2, 3, 6, 7, 4, 3, 3, params(1, 1, 1)},
                                           GradCase{2, 2, 7, 6, 3, 3, 2, params(1, 2, 1)},
                                           GradCase{1, 2, 9, 9, 2, 3, 3, params(2, 3, 2)},
                                           GradCase{2, 4, 5, 5, 4, 3, 3, params(1, 1, 1, 2)},
                                           GradCase{1, 3, 6, 6, 3, 5, 5, params(2, 2, 1, 3)},
                                           GradCase{1, 2, 4, 4, 3, 1, 1, params(0, 1, 1)},
                                           GradCase{1, 1, 8, 8, 2, 7, 7, params(3, 1, 1)}));

}  // namespace
}  // namespace dlrt::detail
