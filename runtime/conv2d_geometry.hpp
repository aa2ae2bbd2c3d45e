// A validated convolution problem as every engine sees it.
#pragma once

#include <cstdint>

#include "dlrt/conv.hpp"

namespace dlrt::detail {

struct Conv2dGeometry {
  std::int64_t N = 1, C = 1, H = 1, W = 1;  // input
  std::int64_t K = 1, R = 1, S = 1;         // filter: K x C/groups x R x S
  std::int64_t P = 1, Q = 1;                // output
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  int groups = 1;

  std::int64_t c_per_group() const { return C / groups; }
  std::int64_t k_per_group() const { return K / groups; }
  std::int64_t x_elements() const { return N * C * H * W; }
  std::int64_t w_elements() const { return K * c_per_group() * R * S; }
  std::int64_t y_elements() const { return N * K * P * Q; }
  // Multiply-adds of forward (and of each backward op but bias), times two.
  double flops() const {
    return 2.0 * static_cast<double>(N) * static_cast<double>(K) *
           static_cast<double>(c_per_group()) * static_cast<double>(R * S) *
           static_cast<double>(P * Q);
  }
  bool is_pointwise() const {
    return R == 1 && S == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 && pad_w == 0;
  }
};

// Shapes must already have passed conv2d_output_shape.
Conv2dGeometry conv2d_geometry(const Shape& x, const Shape& w, const Conv2dParams& params);

}  // namespace dlrt::detail
