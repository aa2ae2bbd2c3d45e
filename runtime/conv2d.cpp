// The public convolution entry points: validate everything, plan once per
// problem (cached in the context), run the plan.
#include <string>

#include "dlrt/conv.hpp"
#include "runtime/conv2d_engine.hpp"
#include "runtime/op_support.hpp"
#include "runtime/parallel.hpp"
#include "runtime/validate.hpp"

namespace dlrt {
namespace detail {
namespace {

// The span a filter of `taps` covers once dilated.
std::int64_t dilated_extent(std::int64_t taps, int dilation) { return (taps - 1) * dilation + 1; }

// The shape rule of conv.hpp for one dimension; the dilated filter must fit
// the padded input (checked by the caller).
std::int64_t output_extent(std::int64_t input, std::int64_t taps, int pad, int stride,
                           int dilation) {
  return (input + 2 * std::int64_t{pad} - dilated_extent(taps, dilation)) / stride + 1;
}

void check_params(std::string_view op, const Conv2dParams& p) {
  // The upper bounds keep every derived index inside int64 and far from it.
  constexpr int kMax = 1 << 16;
  auto in_range = [&](const char* name, int value, int lowest) {
    if (value < lowest || value > kMax)
      invalid_argument(op, name, value,
                       "must be in [" + std::to_string(lowest) + ", " + std::to_string(kMax) + "]");
  };
  in_range("params.pad_h", p.pad_h, 0);
  in_range("params.pad_w", p.pad_w, 0);
  in_range("params.stride_h", p.stride_h, 1);
  in_range("params.stride_w", p.stride_w, 1);
  in_range("params.dilation_h", p.dilation_h, 1);
  in_range("params.dilation_w", p.dilation_w, 1);
  in_range("params.groups", p.groups, 1);
}

Shape output_shape(std::string_view op, std::string_view x_name, const Shape& x,
                   std::string_view w_name, const Shape& w, const Conv2dParams& p) {
  if (x.rank() != 4) invalid_argument(op, x_name, x.to_string(), "must have rank 4 (N, C, H, W)");
  if (w.rank() != 4)
    invalid_argument(op, w_name, w.to_string(), "must have rank 4 (K, C/groups, R, S)");
  check_shape(op, x_name, x);
  check_shape(op, w_name, w);
  check_params(op, p);
  const std::int64_t N = x[0], C = x[1], H = x[2], W = x[3];
  const std::int64_t K = w[0], R = w[2], S = w[3];
  if (C % p.groups != 0)
    invalid_argument(op, "params.groups", p.groups,
                     "must divide the input channels C = " + std::to_string(C));
  if (K % p.groups != 0)
    invalid_argument(op, "params.groups", p.groups,
                     "must divide the output channels K = " + std::to_string(K));
  if (w[1] != C / p.groups)
    invalid_argument(op, w_name, w.to_string(),
                     "dimension 1 must be C/groups = " + std::to_string(C / p.groups));
  const std::int64_t span_h = dilated_extent(R, p.dilation_h),
                     span_w = dilated_extent(S, p.dilation_w);
  if (span_h > H + 2 * std::int64_t{p.pad_h})
    invalid_argument(op, w_name, w.to_string(),
                     "the dilated filter height " + std::to_string(span_h) +
                         " must fit in the padded input height " + std::to_string(H + 2 * p.pad_h));
  if (span_w > W + 2 * std::int64_t{p.pad_w})
    invalid_argument(op, w_name, w.to_string(),
                     "the dilated filter width " + std::to_string(span_w) +
                         " must fit in the padded input width " + std::to_string(W + 2 * p.pad_w));
  const std::int64_t P = output_extent(H, R, p.pad_h, p.stride_h, p.dilation_h);
  const std::int64_t Q = output_extent(W, S, p.pad_w, p.stride_w, p.dilation_w);
  Shape y{N, K, P, Q};
  check_shape(op, "y (derived output shape)", y);
  return y;
}

void check_op(std::string_view op, Conv2dOp kind) {
  const int value = static_cast<int>(kind);
  if (value < static_cast<int>(Conv2dOp::Forward) ||
      value > static_cast<int>(Conv2dOp::BackwardBias))
    invalid_argument(op, "op", value, "must be one of the dlrt::Conv2dOp enumerators");
}

// The tensors of each op, checked against the shapes of its problem.
void check_forward(std::string_view op, Device device, const Tensor& x, const Tensor& w,
                   const Tensor* bias, const Tensor& y, const Shape& y_shape) {
  if (bias != nullptr) {
    check_tensor(op, "bias", *bias, 1, device);
    check_shape_is(op, "bias", *bias, Shape{w.size(0)}, "one value per output channel K");
  }
  check_tensor(op, "y", y, 4, device);
  check_shape_is(op, "y", y, y_shape, "conv2d_output_shape(x, w, params)");
  check_no_overlap(op, "y", y, "x", x);
  check_no_overlap(op, "y", y, "w", w);
  if (bias != nullptr) check_no_overlap(op, "y", y, "bias", *bias);
}

void check_backward_data(std::string_view op, const Tensor& dy, const Tensor& w, const Tensor& dx,
                         const Shape& y_shape) {
  check_shape_is(op, "dy", dy, y_shape, "conv2d_output_shape(dx, w, params)");
  check_no_overlap(op, "dx", dx, "dy", dy);
  check_no_overlap(op, "dx", dx, "w", w);
}

void check_backward_filter(std::string_view op, const Tensor& x, const Tensor& dy, const Tensor& dw,
                           const Shape& y_shape) {
  check_shape_is(op, "dy", dy, y_shape, "conv2d_output_shape(x, dw, params)");
  check_no_overlap(op, "dw", dw, "x", x);
  check_no_overlap(op, "dw", dw, "dy", dy);
}

}  // namespace

struct Conv2dPlanState {
  Conv2dOp op = Conv2dOp::Forward;
  Device device;
  Shape x, w, y;
  std::shared_ptr<const Conv2dKernel> kernel;  // null when no engine can run it
  Engine requested = Engine::Auto;
  std::string reason;

  // Plans `op` on validated shapes.
  static std::shared_ptr<const Conv2dPlanState> make(Context& ctx, Conv2dOp op, const Shape& x,
                                                     const Shape& w, const Conv2dParams& params,
                                                     const Conv2dPlanOptions& options) {
    auto state = std::make_shared<Conv2dPlanState>();
    state->op = op;
    state->device = ctx.device();
    state->x = x, state->w = w;
    state->y = output_shape(to_string(op), "x", x, "w", w, params);
    state->requested = options.engine;
    Conv2dProblem problem;
    problem.op = op;
    problem.g = conv2d_geometry(x, w, params);
    problem.variant = options.variant;
    problem.options = ctx.options();
    problem.threads = available_threads();
    Resolution<Conv2dKernel> r = resolve<Conv2dEngine, Conv2dKernel>(
        ctx.device(), options.engine, [&](const Conv2dEngine& e) { return e.plan(ctx, problem); });
    state->kernel = std::move(r.kernel);
    state->reason = std::move(r.reason);
    if (state->kernel)
      log(LogLevel::Debug, to_string(op), ": planned engine=", to_string(state->kernel->engine()),
          " (", state->kernel->description(), ") on ", to_string(ctx.device()),
          options.engine == Engine::Auto ? " (auto: " + state->reason + ")"
                                         : std::string(" (requested)"));
    return state;
  }

  // The cached plan of a one-shot call.
  static std::shared_ptr<const Conv2dPlanState> cached(Context& ctx, Conv2dOp op, const Shape& x,
                                                       const Shape& w, const Conv2dParams& p,
                                                       Engine engine) {
    PlanKey key;
    key.add(static_cast<int>(OpFamily::Conv2d)).add(static_cast<int>(op));
    for (int i = 0; i < 4; ++i) key.add(x[i]).add(w[i]);
    key.add(p.pad_h)
        .add(p.pad_w)
        .add(p.stride_h)
        .add(p.stride_w)
        .add(p.dilation_h)
        .add(p.dilation_w)
        .add(p.groups)
        .add(static_cast<int>(engine));
    add_context_settings(key, ctx);
    return cached_state<Conv2dPlanState>(ctx, key, [&] {
      return make(ctx, op, x, w, p, Conv2dPlanOptions{engine, 0});
    });
  }

  const Conv2dKernel& runnable(std::string_view caller) const {
    if (!kernel) throw_unsupported(caller, requested, device, reason);
    return *kernel;
  }

  Engine run(std::string_view caller, Context& ctx, const Conv2dArgs& args,
             Tensor* workspace) const {
    const Conv2dKernel& k = runnable(caller);
    return translate_exceptions(caller, [&] {
      void* scratch = run_workspace(caller, ctx, k.workspace_bytes(), workspace);
      log(LogLevel::Debug, caller, ": engine=", to_string(k.engine()),
          " device=", to_string(device));
      k.run(ctx, args, scratch);
      return k.engine();
    });
  }
};

Conv2dGeometry conv2d_geometry(const Shape& x, const Shape& w, const Conv2dParams& p) {
  Conv2dGeometry g;
  g.N = x[0], g.C = x[1], g.H = x[2], g.W = x[3];
  g.K = w[0], g.R = w[2], g.S = w[3];
  g.pad_h = p.pad_h, g.pad_w = p.pad_w;
  g.stride_h = p.stride_h, g.stride_w = p.stride_w;
  g.dilation_h = p.dilation_h, g.dilation_w = p.dilation_w;
  g.groups = p.groups;
  g.P = output_extent(g.H, g.R, g.pad_h, g.stride_h, g.dilation_h);
  g.Q = output_extent(g.W, g.S, g.pad_w, g.stride_w, g.dilation_w);
  return g;
}

}  // namespace detail

using namespace detail;

const char* to_string(Conv2dOp op) noexcept {
  switch (op) {
    case Conv2dOp::Forward:
      return "conv2d_forward";
    case Conv2dOp::BackwardData:
      return "conv2d_backward_data";
    case Conv2dOp::BackwardFilter:
      return "conv2d_backward_filter";
    case Conv2dOp::BackwardBias:
      return "conv2d_backward_bias";
  }
  return "unknown";
}

Shape conv2d_output_shape(const Shape& x, const Shape& w, const Conv2dParams& params) {
  return output_shape("conv2d_output_shape", "x", x, "w", w, params);
}

Engine conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                      const Conv2dParams& params, Engine engine) {
  constexpr const char* op = "conv2d_forward";
  detail::ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "x", x, 4, device);
  check_tensor(op, "w", w, 4, device);
  const Shape y_shape = output_shape(op, "x", x.shape(), "w", w.shape(), params);
  check_forward(op, device, x, w, bias, y, y_shape);
  const auto plan =
      Conv2dPlanState::cached(ctx, Conv2dOp::Forward, x.shape(), w.shape(), params, engine);
  Conv2dArgs args;
  args.x = x.data(), args.w = w.data(), args.bias = bias ? bias->data() : nullptr,
  args.y = y.data();
  return plan->run(op, ctx, args, nullptr);
}

Engine conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx,
                            const Conv2dParams& params, Engine engine) {
  constexpr const char* op = "conv2d_backward_data";
  detail::ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "dy", dy, 4, device);
  check_tensor(op, "w", w, 4, device);
  check_tensor(op, "dx", dx, 4, device);
  // dx fixes the input size: with stride > 1 several input sizes give one dy.
  const Shape y_shape = output_shape(op, "dx", dx.shape(), "w", w.shape(), params);
  check_backward_data(op, dy, w, dx, y_shape);
  const auto plan =
      Conv2dPlanState::cached(ctx, Conv2dOp::BackwardData, dx.shape(), w.shape(), params, engine);
  Conv2dArgs args;
  args.dy = dy.data(), args.w = w.data(), args.dx = dx.data();
  return plan->run(op, ctx, args, nullptr);
}

Engine conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw,
                              const Conv2dParams& params, Engine engine) {
  constexpr const char* op = "conv2d_backward_filter";
  detail::ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "x", x, 4, device);
  check_tensor(op, "dy", dy, 4, device);
  check_tensor(op, "dw", dw, 4, device);
  const Shape y_shape = output_shape(op, "x", x.shape(), "dw", dw.shape(), params);
  check_backward_filter(op, x, dy, dw, y_shape);
  const auto plan =
      Conv2dPlanState::cached(ctx, Conv2dOp::BackwardFilter, x.shape(), dw.shape(), params, engine);
  Conv2dArgs args;
  args.x = x.data(), args.dy = dy.data(), args.dw = dw.data();
  return plan->run(op, ctx, args, nullptr);
}

Engine conv2d_backward_bias(Context& ctx, const Tensor& dy, Tensor& db, Engine engine) {
  constexpr const char* op = "conv2d_backward_bias";
  detail::ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "dy", dy, 4, device);
  check_tensor(op, "db", db, 1, device);
  check_shape_is(op, "db", db, Shape{dy.size(1)}, "one value per channel of dy");
  check_no_overlap(op, "db", db, "dy", dy);
  // The problem of a 1x1 convolution that gives dy: only N, K, P, Q matter.
  const Shape x{dy.size(0), 1, dy.size(2), dy.size(3)}, w{dy.size(1), 1, 1, 1};
  const auto plan = Conv2dPlanState::cached(ctx, Conv2dOp::BackwardBias, x, w, {}, engine);
  Conv2dArgs args;
  args.dy = dy.data(), args.db = db.data();
  return plan->run(op, ctx, args, nullptr);
}

EngineQuery conv2d_query(Context& ctx, Conv2dOp op, const Shape& x, const Shape& w,
                         const Conv2dParams& params, Engine engine) {
  constexpr const char* name = "conv2d_query";
  detail::ContextUse use(ctx, name);
  check_engine_value(name, engine);
  check_op(name, op);
  output_shape(name, "x", x, "w", w, params);
  const auto plan = Conv2dPlanState::cached(ctx, op, x, w, params, engine);
  if (!plan->kernel) return {false, engine, plan->reason};
  return {true, plan->kernel->engine(), plan->reason};
}

// ---- Conv2dPlan ---------------------------------------------------------------

Conv2dPlan::Conv2dPlan(Context& ctx, Conv2dOp op, const Shape& x, const Shape& w,
                       const Conv2dParams& params, const Conv2dPlanOptions& options) {
  constexpr const char* name = "Conv2dPlan";
  detail::ContextUse use(ctx, name);
  check_engine_value(name, options.engine);
  check_op(name, op);
  output_shape(name, "x", x, "w", w, params);
  if (options.variant != 0 && options.engine == Engine::Auto)
    invalid_argument(name, "options.variant", options.variant,
                     "a kernel variant needs an explicit options.engine (variants are per engine)");
  state_ = Conv2dPlanState::make(ctx, op, x, w, params, options);
  state_->runnable(name);
}

Conv2dOp Conv2dPlan::op() const { return state_->op; }
Engine Conv2dPlan::engine() const { return state_->kernel->engine(); }
Device Conv2dPlan::device() const { return state_->device; }
const Shape& Conv2dPlan::x_shape() const { return state_->x; }
const Shape& Conv2dPlan::w_shape() const { return state_->w; }
const Shape& Conv2dPlan::y_shape() const { return state_->y; }
std::size_t Conv2dPlan::workspace_bytes() const { return state_->kernel->workspace_bytes(); }
const std::string& Conv2dPlan::description() const { return state_->kernel->description(); }

namespace {

void check_plan_op(std::string_view op, const Conv2dPlanState& s, Conv2dOp called) {
  if (s.op != called)
    invalid_argument(op, "this", std::string("a plan for ") + to_string(s.op),
                     std::string("must be a plan for ") + to_string(called));
}

}  // namespace

void Conv2dPlan::forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
                         Tensor& y, Tensor* workspace) const {
  constexpr const char* op = "Conv2dPlan::forward";
  detail::ContextUse use(ctx, op);
  const Conv2dPlanState& s = *state_;
  check_plan_op(op, s, Conv2dOp::Forward);
  check_plan_device(op, ctx, s.device);
  check_tensor(op, "x", x, 4, s.device);
  check_shape_is(op, "x", x, s.x, "the planned input shape");
  check_tensor(op, "w", w, 4, s.device);
  check_shape_is(op, "w", w, s.w, "the planned filter shape");
  check_forward(op, s.device, x, w, bias, y, s.y);
  Conv2dArgs args;
  args.x = x.data(), args.w = w.data(), args.bias = bias ? bias->data() : nullptr,
  args.y = y.data();
  s.run(op, ctx, args, workspace);
}

void Conv2dPlan::backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx,
                               Tensor* workspace) const {
  constexpr const char* op = "Conv2dPlan::backward_data";
  detail::ContextUse use(ctx, op);
  const Conv2dPlanState& s = *state_;
  check_plan_op(op, s, Conv2dOp::BackwardData);
  check_plan_device(op, ctx, s.device);
  check_tensor(op, "dy", dy, 4, s.device);
  check_tensor(op, "w", w, 4, s.device);
  check_shape_is(op, "w", w, s.w, "the planned filter shape");
  check_tensor(op, "dx", dx, 4, s.device);
  check_shape_is(op, "dx", dx, s.x, "the planned input shape");
  check_backward_data(op, dy, w, dx, s.y);
  Conv2dArgs args;
  args.dy = dy.data(), args.w = w.data(), args.dx = dx.data();
  s.run(op, ctx, args, workspace);
}

void Conv2dPlan::backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw,
                                 Tensor* workspace) const {
  constexpr const char* op = "Conv2dPlan::backward_filter";
  detail::ContextUse use(ctx, op);
  const Conv2dPlanState& s = *state_;
  check_plan_op(op, s, Conv2dOp::BackwardFilter);
  check_plan_device(op, ctx, s.device);
  check_tensor(op, "x", x, 4, s.device);
  check_shape_is(op, "x", x, s.x, "the planned input shape");
  check_tensor(op, "dy", dy, 4, s.device);
  check_tensor(op, "dw", dw, 4, s.device);
  check_shape_is(op, "dw", dw, s.w, "the planned filter shape");
  check_backward_filter(op, x, dy, dw, s.y);
  Conv2dArgs args;
  args.x = x.data(), args.dy = dy.data(), args.dw = dw.data();
  s.run(op, ctx, args, workspace);
}

void Conv2dPlan::backward_bias(Context& ctx, const Tensor& dy, Tensor& db,
                               Tensor* workspace) const {
  constexpr const char* op = "Conv2dPlan::backward_bias";
  detail::ContextUse use(ctx, op);
  const Conv2dPlanState& s = *state_;
  check_plan_op(op, s, Conv2dOp::BackwardBias);
  check_plan_device(op, ctx, s.device);
  check_tensor(op, "dy", dy, 4, s.device);
  check_shape_is(op, "dy", dy, s.y, "the planned output shape");
  check_tensor(op, "db", db, 1, s.device);
  check_shape_is(op, "db", db, Shape{s.y[1]}, "one value per channel of dy");
  check_no_overlap(op, "db", db, "dy", dy);
  Conv2dArgs args;
  args.dy = dy.data(), args.db = db.data();
  s.run(op, ctx, args, workspace);
}

}  // namespace dlrt
