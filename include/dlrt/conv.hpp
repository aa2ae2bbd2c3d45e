// 2-D convolution (cross-correlation, as in every deep-learning framework),
// NCHW activations, KCRS filters (K x C/groups x R x S), f32.
//
//   y[n,k,p,q] = bias[k] + sum_{c,r,s} x[n, g*C/G + c, p*stride_h - pad_h + r*dilation_h,
//                                               q*stride_w - pad_w + s*dilation_w]
//                                      * w[k, c, r, s]       (g = k / (K/G))
//   P = (H + 2*pad_h - dilation_h*(R-1) - 1) / stride_h + 1, and likewise Q.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

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
// tensors' device) and returns the engine that ran. Each is a Conv2dPlan
// made once per problem (and cached in ctx) and run. GPU engines run
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

// Would `engine` run this problem on ctx's device, and which engine Auto
// picks? x, w are the shapes of input and filter (for BackwardBias they fix
// y's shape). Plans the problem (and caches the plan in ctx, so the op that
// follows does not plan again). Never throws for an unsupported engine;
// throws for shapes or parameters that break a rule, or an `op` that is not
// a Conv2dOp.
DLRT_EXPORT EngineQuery conv2d_query(Context& ctx, Conv2dOp op, const Shape& x, const Shape& w,
                                     const Conv2dParams& params, Engine engine = Engine::Auto);

// ---- plans: choose once, run many times -------------------------------------

struct Conv2dPlanOptions {
  Engine engine = Engine::Auto;
  // The engine's kernel variant: 0 is the engine's own choice (for Cuda,
  // DLRT_CUDA_CONV2D_VARIANT when set); any other value needs an explicit
  // engine, which declines it with the reason when it has no such variant or
  // the variant cannot run the problem (never a silent fallback). Cuda: 1
  // direct, 2 implicit GEMM, 3 the fast fp32 kernels (pipelined implicit
  // GEMM, depthwise, split bias reduction), 4 the implicit GEMM on TF32
  // tensor cores in 3xTF32 (about fp32 accuracy; not bitwise fp32). There is
  // no math-mode option: plain TF32 is not reachable from a plan.
  int variant = 0;
};

namespace detail {
struct Conv2dPlanState;
}

// One convolution op on one problem, planned on a context: the engine, its
// kernel variant or cuDNN algorithm, its descriptors and workspace are chosen
// when the plan is made (under the context's options at that moment), and
// running it chooses and allocates nothing. A plan runs on any context of its
// device; it is immutable and may be shared between threads.
class DLRT_EXPORT Conv2dPlan {
public:
  // Throws dlrt::Error: InvalidArgument for shapes or parameters that break a
  // rule, Unsupported (with the reason) when the engine cannot run the problem.
  Conv2dPlan(Context& ctx, Conv2dOp op, const Shape& x, const Shape& w,
             const Conv2dParams& params = {}, const Conv2dPlanOptions& options = {});

  Conv2dOp op() const;
  Engine engine() const;
  Device device() const;
  const Shape& x_shape() const;
  const Shape& w_shape() const;
  const Shape& y_shape() const;
  // Scratch each run takes from the context's workspace (or `workspace`).
  std::size_t workspace_bytes() const;
  // What was chosen: "cuda variant 2 (implicit GEMM)", "cudnn algorithm IMPLICIT_PRECOMP_GEMM", ...
  const std::string& description() const;

  // Each runs the plan's op (another op's call is an Error) on tensors of the
  // planned shapes on the plan's device, validated as the one-shot functions
  // validate them. `workspace`, when given, is an f32 tensor on the plan's
  // device with at least workspace_bytes(); otherwise ctx's workspace is used.
  void forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
               Tensor* workspace = nullptr) const;
  void backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx,
                     Tensor* workspace = nullptr) const;
  void backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw,
                       Tensor* workspace = nullptr) const;
  void backward_bias(Context& ctx, const Tensor& dy, Tensor& db, Tensor* workspace = nullptr) const;

private:
  std::shared_ptr<const detail::Conv2dPlanState> state_;
};

}  // namespace dlrt
