// 2-D max and average pooling, NCHW, f32.
//
// Output size per dimension (H shown; W likewise), with span = window:
//   floor mode: P = (H + 2*pad_h - window_h) / stride_h + 1
//   ceil mode:  P = ceil((H + 2*pad_h - window_h) / stride_h) + 1, then reduced by one
//               when the last window would start at or past H + pad_h (it must
//               start inside the input or its left padding), as PyTorch and cuDNN do.
// pad_h <= window_h / 2, so every window overlaps the input.
// Max ties: the first maximum in row-major window order wins, in forward and
// backward. A NaN in a window makes the output NaN (and is the argmax).
#pragma once

#include "dlrt/context.hpp"
#include "dlrt/engine.hpp"
#include "dlrt/export.hpp"
#include "dlrt/tensor.hpp"

namespace dlrt {

enum class PoolMode {
  Max,
  AverageIncludePad,  // divide by the window size, padded positions count as zeros
  AverageExcludePad,  // divide by the number of valid (non-padded) positions
};
DLRT_EXPORT const char* to_string(PoolMode mode) noexcept;

struct Pool2dParams {
  PoolMode mode = PoolMode::Max;
  int window_h = 2, window_w = 2;  // >= 1
  int stride_h = 2, stride_w = 2;  // >= 1
  int pad_h = 0, pad_w = 0;        // 0 <= pad <= window / 2
  bool ceil_mode = false;

  // The window covers the whole input: global pooling, one value per plane.
  static Pool2dParams global(PoolMode mode, const Shape& x);
};

enum class Pool2dOp { Forward, Backward };

// The one shape rule every engine uses; x is [N, C, H, W]. Throws dlrt::Error
// naming the argument that breaks a rule.
DLRT_EXPORT Shape pool2d_output_shape(const Shape& x, const Pool2dParams& params);

// y = pool(x). For Max, `indices` (optional, i32, y's shape) receives the
// argmax of every window as a flat index h*W + w into its input plane.
DLRT_EXPORT Engine pool2d_forward(Context& ctx, const Tensor& x, Tensor& y,
                                  const Pool2dParams& params, Engine engine = Engine::Auto,
                                  Tensor* indices = nullptr);

// What max-pooling backward needs to know where each gradient goes: the
// argmax indices recorded by forward, or else x and y (the argmax is found
// again, with the same tie rule). Average pooling needs neither.
struct Pool2dSaved {
  const Tensor* indices = nullptr;
  const Tensor* x = nullptr;
  const Tensor* y = nullptr;
};

// dx = d(loss)/dx from dy; dx is overwritten.
DLRT_EXPORT Engine pool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx,
                                   const Pool2dParams& params, const Pool2dSaved& saved = {},
                                   Engine engine = Engine::Auto);

// Would `engine` run this problem on ctx's device?
DLRT_EXPORT EngineQuery pool2d_query(const Context& ctx, Pool2dOp op, const Shape& x,
                                     const Pool2dParams& params, bool with_indices = false,
                                     Engine engine = Engine::Auto);

}  // namespace dlrt
