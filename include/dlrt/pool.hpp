// 2-D max and average pooling, NCHW, f32.
//
// Output size per dimension (H shown; W likewise):
//   floor mode: P = (H + 2*pad_h - window_h) / stride_h + 1
//   ceil mode:  P = ceil((H + 2*pad_h - window_h) / stride_h) + 1, then reduced by one
//               when the last window would start at or after H (wholly in the right
//               padding): it must start inside the input or its left padding, as
//               in PyTorch (cuDNN has no ceil mode).
// window_h <= H + 2*pad_h and pad_h <= window_h / 2, so every window overlaps the input.
//
// Output p reads input rows [p*stride_h - pad_h, p*stride_h - pad_h + window_h).
// AverageIncludePad divides by the window's area clipped to the padded input
// (it differs from window_h*window_w only for ceil mode's last window, which
// may reach past the right padding); AverageExcludePad by the number of input
// elements in the window.
//
// Max ties: the first maximum in row-major window order wins, in forward and
// backward. A NaN in a window makes the output NaN (and is the argmax; the
// first NaN wins). Max backward adds, in float, the gradients an input element
// receives in row-major output order, so every engine that honours the tie
// rule gives bitwise-identical results.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "dlrt/context.hpp"
#include "dlrt/engine.hpp"
#include "dlrt/export.hpp"
#include "dlrt/tensor.hpp"

namespace dlrt {

enum class PoolMode {
  Max,
  AverageIncludePad,  // divide by the window's area, padded positions count as zeros
  AverageExcludePad,  // divide by the number of valid (non-padded) positions
};
// "max", "average_include_pad", "average_exclude_pad".
DLRT_EXPORT const char* to_string(PoolMode mode) noexcept;

struct DLRT_EXPORT Pool2dParams {
  PoolMode mode = PoolMode::Max;
  int window_h = 2, window_w = 2;  // >= 1
  int stride_h = 2, stride_w = 2;  // >= 1
  int pad_h = 0, pad_w = 0;        // 0 <= pad <= window / 2
  bool ceil_mode = false;

  // The window covers the whole input: global pooling, one value per plane.
  // x is [N, C, H, W] with H and W representable as int; throws dlrt::Error otherwise.
  static Pool2dParams global(PoolMode mode, const Shape& x);
};

enum class Pool2dOp { Forward, Backward };

// The one shape rule every engine uses; x is [N, C, H, W]. Throws dlrt::Error
// naming the argument that breaks a rule.
DLRT_EXPORT Shape pool2d_output_shape(const Shape& x, const Pool2dParams& params);

// Every op validates all of its arguments before it writes anything, then
// runs on `engine` (Auto: the best engine that supports the problem on the
// tensors' device) and returns the engine that ran. GPU engines run
// asynchronously on ctx's stream.

// y = pool(x). For Max, `indices` (optional, i32, y's shape) receives the
// argmax of every window as a flat index h*W + w into its input plane
// (H*W must fit in int32). Giving indices for an average mode is an error.
DLRT_EXPORT Engine pool2d_forward(Context& ctx, const Tensor& x, Tensor& y,
                                  const Pool2dParams& params, Engine engine = Engine::Auto,
                                  Tensor* indices = nullptr);

// What max-pooling backward needs to know where each gradient goes: the
// argmax indices recorded by forward, or else x and y (the argmax is found
// again, with the same tie rule); with both, engines may use either. An index
// that does not point into its own window contributes nothing. Average
// pooling needs neither, and giving any of them for an average mode is an error.
struct Pool2dSaved {
  const Tensor* indices = nullptr;
  const Tensor* x = nullptr;
  const Tensor* y = nullptr;
};

// dx = d(loss)/dx from dy; dx is overwritten. dx fixes the input size: with
// stride > 1 several input sizes give one dy.
DLRT_EXPORT Engine pool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx,
                                   const Pool2dParams& params, const Pool2dSaved& saved = {},
                                   Engine engine = Engine::Auto);

// Would `engine` run this problem on ctx's device, and which engine Auto
// picks? x is the input shape. with_indices: for Forward, whether indices are
// written; for Backward of Max, whether the argmax comes from indices (true)
// or from x and y (false). It must be false for the average modes. Plans the
// problem (and caches the plan in ctx). Never throws for an unsupported
// engine; throws for shapes or parameters that break a rule.
DLRT_EXPORT EngineQuery pool2d_query(Context& ctx, Pool2dOp op, const Shape& x,
                                     const Pool2dParams& params, bool with_indices = false,
                                     Engine engine = Engine::Auto);

// ---- plans: choose once, run many times -------------------------------------

struct Pool2dPlanOptions {
  Engine engine = Engine::Auto;
  // The engine's kernel variant; 0 is the engine's own choice. Needs an
  // explicit engine. Cuda backward: 1 gather (the default, deterministic), 2
  // atomic scatter (DLRT_CUDA_POOL2D_BACKWARD_VARIANT sets the default).
  int variant = 0;
};

namespace detail {
struct Pool2dPlanState;
}

// One pooling op on one problem, planned once (see Conv2dPlan). For Forward,
// with_indices says whether runs write argmax indices; for Backward of Max,
// whether runs find the argmax from indices (true) or from x and y (false).
class DLRT_EXPORT Pool2dPlan {
public:
  Pool2dPlan(Context& ctx, Pool2dOp op, const Shape& x, const Pool2dParams& params,
             bool with_indices = false, const Pool2dPlanOptions& options = {});

  Pool2dOp op() const;
  Engine engine() const;
  Device device() const;
  bool with_indices() const;
  const Shape& x_shape() const;
  const Shape& y_shape() const;
  std::size_t workspace_bytes() const;
  const std::string& description() const;

  // indices: required exactly when the plan was made with_indices.
  void forward(Context& ctx, const Tensor& x, Tensor& y, Tensor* indices = nullptr) const;
  // saved: indices (with_indices), or x and y (Max without indices), or
  // nothing (averages).
  void backward(Context& ctx, const Tensor& dy, Tensor& dx, const Pool2dSaved& saved = {}) const;

private:
  std::shared_ptr<const detail::Pool2dPlanState> state_;
};

}  // namespace dlrt
