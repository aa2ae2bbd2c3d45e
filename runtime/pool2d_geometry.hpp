// A validated pooling problem as every engine sees it.
#pragma once

#include <cstdint>

#include "dlrt/pool.hpp"

namespace dlrt::detail {

struct Pool2dGeometry {
  PoolMode mode = PoolMode::Max;
  std::int64_t N = 1, C = 1, H = 1, W = 1;  // input
  std::int64_t P = 1, Q = 1;                // output
  int window_h = 1, window_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  bool ceil_mode = false;

  std::int64_t planes() const { return N * C; }
  std::int64_t x_plane() const { return H * W; }
  std::int64_t y_plane() const { return P * Q; }
  std::int64_t x_elements() const { return planes() * x_plane(); }
  std::int64_t y_elements() const { return planes() * y_plane(); }
};

// What an op has besides its main operand. Forward: whether it also writes
// the argmax indices (None or Indices). Backward: what max pooling uses to
// find where each gradient goes (Indices, or Input = x and y); None for the
// averages, which need neither.
enum class Pool2dSavedKind { None, Indices, Input };

// The output extent along one dimension, by the rule in dlrt/pool.hpp.
// Arguments must already be valid (window <= input + 2*pad, pad <= window/2).
std::int64_t pool2d_output_extent(std::int64_t input, int window, int stride, int pad,
                                  bool ceil_mode);

// Shapes and parameters must already have passed pool2d_output_shape.
Pool2dGeometry pool2d_geometry(const Shape& x, const Pool2dParams& params);

}  // namespace dlrt::detail
