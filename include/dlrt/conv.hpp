// 2-D convolution (cross-correlation, as in every deep-learning framework),
// NCHW activations, KCRS filters (K x C/groups x R x S), f32.
//
//   y[n,k,p,q] = bias[k] + sum_{c,r,s} x[n, g*C/G + c, p*stride_h - pad_h + r*dilation_h,
//                                               q*stride_w - pad_w + s*dilation_w]
//                                      * w[k, c, r, s]       (g = k / (K/G))
//   P = (H + 2*pad_h - dilation_h*(R-1) - 1) / stride_h + 1, and likewise Q.
#pragma once

#include "dlrt/context.hpp"
#include "dlrt/engine.hpp"
#include "dlrt/export.hpp"
#include "dlrt/tensor.hpp"

namespace dlrt {

struct Conv2dParams {
  int pad_h = 0, pad_w = 0;            // zeros added on each side, >= 0
  int stride_h = 1, stride_w = 1;      // >= 1
  int dilation_h = 1, dilation_w = 1;  // >= 1
  int groups = 1;                      // divides C and K; groups == C == K is depthwise
};

enum class Conv2dOp { Forward, BackwardData, BackwardFilter, BackwardBias };
DLRT_EXPORT const char* to_string(Conv2dOp op) noexcept;

// The one shape rule every engine uses. x: [N, C, H, W]; w: [K, C/groups, R, S].
// Returns y's shape [N, K, P, Q]; throws dlrt::Error naming the offending
// argument when the shapes or parameters break a rule.
DLRT_EXPORT Shape conv2d_output_shape(const Shape& x, const Shape& w, const Conv2dParams& params);

// Every op validates all of its arguments before it writes anything, then
// runs on `engine` (Auto: the best engine that supports the problem on the
// tensors' device) and returns the engine that ran. GPU engines run
// asynchronously on ctx's stream.

// y = conv(x, w) + bias; bias (may be null) is [K].
DLRT_EXPORT Engine conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w,
                                  const Tensor* bias, Tensor& y, const Conv2dParams& params = {},
                                  Engine engine = Engine::Auto);

// dx = d(loss)/dx from dy = d(loss)/dy. dx is overwritten.
DLRT_EXPORT Engine conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx,
                                        const Conv2dParams& params = {},
                                        Engine engine = Engine::Auto);

// dw = d(loss)/dw. dw is overwritten.
DLRT_EXPORT Engine conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy,
                                          Tensor& dw, const Conv2dParams& params = {},
                                          Engine engine = Engine::Auto);

// db[k] = sum over n, p, q of dy[n, k, p, q]. db is [K], overwritten.
DLRT_EXPORT Engine conv2d_backward_bias(Context& ctx, const Tensor& dy, Tensor& db,
                                        Engine engine = Engine::Auto);

// Would `engine` run this problem on ctx's device? x, w, y are the shapes
// of input, filter and output (for BackwardBias only y counts). Never throws
// for an unsupported engine; throws for shapes that break the shape rule.
DLRT_EXPORT EngineQuery conv2d_query(const Context& ctx, Conv2dOp op, const Shape& x,
                                     const Shape& w, const Conv2dParams& params,
                                     Engine engine = Engine::Auto);

}  // namespace dlrt
