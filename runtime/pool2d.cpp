// The public pooling entry points: validate everything, plan once per
// problem (cached in the context), run the plan.
#include <climits>
#include <cstdint>
#include <string>

#include "dlrt/pool.hpp"
#include "runtime/op_support.hpp"
#include "runtime/parallel.hpp"
#include "runtime/pool2d_engine.hpp"
#include "runtime/validate.hpp"

namespace dlrt::detail {
namespace {

bool is_max(const Pool2dParams& p) { return p.mode == PoolMode::Max; }

void check_params(std::string_view op, const Pool2dParams& p) {
  const int mode = static_cast<int>(p.mode);
  if (mode < static_cast<int>(PoolMode::Max) ||
      mode > static_cast<int>(PoolMode::AverageExcludePad))
    invalid_argument(op, "params.mode", mode, "must be one of the dlrt::PoolMode enumerators");
  // As for convolution, the upper bound keeps every derived index far
  // inside int64 (and the engines' int arithmetic inside int).
  constexpr int kMax = 1 << 16;
  auto at_least_one = [&](const char* name, int value) {
    if (value < 1 || value > kMax)
      invalid_argument(op, name, value, "must be in [1, " + std::to_string(kMax) + "]");
  };
  at_least_one("params.window_h", p.window_h);
  at_least_one("params.window_w", p.window_w);
  at_least_one("params.stride_h", p.stride_h);
  at_least_one("params.stride_w", p.stride_w);
  // pad <= window / 2 keeps every window, ceil mode's last one included,
  // overlapping the input: no output is an empty window.
  auto pad_rule = [&](const char* name, int pad, const char* window_name, int window) {
    if (pad < 0 || pad > window / 2)
      invalid_argument(op, name, pad,
                       "must be in [0, " + std::string(window_name) + " / 2] = [0, " +
                           std::to_string(window / 2) + "]");
  };
  pad_rule("params.pad_h", p.pad_h, "window_h", p.window_h);
  pad_rule("params.pad_w", p.pad_w, "window_w", p.window_w);
}

Shape output_shape(std::string_view op, std::string_view x_name, const Shape& x,
                   const Pool2dParams& p) {
  if (x.rank() != 4) invalid_argument(op, x_name, x.to_string(), "must have rank 4 (N, C, H, W)");
  check_shape(op, x_name, x);
  check_params(op, p);
  const std::int64_t H = x[2], W = x[3];
  if (p.window_h > H + 2 * std::int64_t{p.pad_h})
    invalid_argument(op, "params.window_h", p.window_h,
                     "must fit in the padded input height H + 2*pad_h = " +
                         std::to_string(H + 2 * std::int64_t{p.pad_h}));
  if (p.window_w > W + 2 * std::int64_t{p.pad_w})
    invalid_argument(op, "params.window_w", p.window_w,
                     "must fit in the padded input width W + 2*pad_w = " +
                         std::to_string(W + 2 * std::int64_t{p.pad_w}));
  Shape y{x[0], x[1], pool2d_output_extent(H, p.window_h, p.stride_h, p.pad_h, p.ceil_mode),
          pool2d_output_extent(W, p.window_w, p.stride_w, p.pad_w, p.ceil_mode)};
  check_shape(op, "y (derived output shape)", y);
  return y;
}

// i32 indices hold h*W + w.
void check_indices_fit(std::string_view op, std::string_view name, const Shape& x) {
  if (x[2] * x[3] > INT32_MAX)
    invalid_argument(op, name, "i32 indices",
                     "need H*W <= 2^31 - 1, but the input plane has " +
                         std::to_string(x[2] * x[3]) + " elements");
}

void check_outputs_apart(std::string_view op, std::string_view a_name, const Tensor& a,
                         std::string_view b_name, const Tensor& b) {
  if (a.overlaps(b))
    invalid_argument(op, a_name, "memory shared with '" + std::string(b_name) + "'",
                     "two outputs may not overlap");
}

// The tensors of forward and backward, checked against the problem's shapes.
void check_forward(std::string_view op, Device device, const Pool2dParams& params, const Tensor& x,
                   const Tensor& y, const Tensor* indices, const Shape& y_shape) {
  check_tensor(op, "y", y, 4, device);
  check_shape_is(op, "y", y, y_shape, "pool2d_output_shape(x, params)");
  check_no_overlap(op, "y", y, "x", x);
  if (indices != nullptr) {
    if (!is_max(params))
      invalid_argument(op, "indices", indices->shape().to_string(),
                       std::string("must be null unless params.mode is max (it is ") +
                           to_string(params.mode) + ", which has no argmax)");
    check_tensor(op, "indices", *indices, 4, device, DType::I32);
    check_shape_is(op, "indices", *indices, y_shape, "y's shape");
    check_indices_fit(op, "indices", x.shape());
    check_no_overlap(op, "indices", *indices, "x", x);
    check_outputs_apart(op, "indices", *indices, "y", y);
  }
}

void check_backward(std::string_view op, Device device, const Pool2dParams& params,
                    const Tensor& dy, const Tensor& dx, const Pool2dSaved& saved,
                    const Shape& y_shape) {
  check_shape_is(op, "dy", dy, y_shape, "pool2d_output_shape(dx, params)");
  check_no_overlap(op, "dx", dx, "dy", dy);
  if (!is_max(params)) {
    const std::string rule = std::string("must be null unless params.mode is max (it is ") +
                             to_string(params.mode) + ", whose gradient needs only dy)";
    if (saved.indices)
      invalid_argument(op, "saved.indices", saved.indices->shape().to_string(), rule);
    if (saved.x) invalid_argument(op, "saved.x", saved.x->shape().to_string(), rule);
    if (saved.y) invalid_argument(op, "saved.y", saved.y->shape().to_string(), rule);
  } else {
    if (!saved.indices && !saved.x && !saved.y)
      invalid_argument(op, "saved", "{indices = null, x = null, y = null}",
                       "max-pooling backward needs saved.indices, or saved.x and saved.y");
    if ((saved.x == nullptr) != (saved.y == nullptr))
      invalid_argument(op, saved.x ? "saved.y" : "saved.x", "null",
                       "saved.x and saved.y go together (the argmax is found from both)");
  }
  if (saved.indices) {
    check_tensor(op, "saved.indices", *saved.indices, 4, device, DType::I32);
    check_shape_is(op, "saved.indices", *saved.indices, y_shape, "dy's shape");
    check_indices_fit(op, "saved.indices", dx.shape());
    check_no_overlap(op, "dx", dx, "saved.indices", *saved.indices);
  }
  if (saved.x) {
    check_tensor(op, "saved.x", *saved.x, 4, device);
    check_shape_is(op, "saved.x", *saved.x, dx.shape(), "dx's shape");
    check_tensor(op, "saved.y", *saved.y, 4, device);
    check_shape_is(op, "saved.y", *saved.y, y_shape, "dy's shape");
    check_no_overlap(op, "dx", dx, "saved.x", *saved.x);
    check_no_overlap(op, "dx", dx, "saved.y", *saved.y);
  }
}

const char* op_name(Pool2dOp op) {
  return op == Pool2dOp::Forward ? "pool2d_forward" : "pool2d_backward";
}

Pool2dSavedKind saved_kind(Pool2dOp op, const Pool2dParams& p, bool with_indices) {
  if (with_indices) return Pool2dSavedKind::Indices;
  return op == Pool2dOp::Backward && is_max(p) ? Pool2dSavedKind::Input : Pool2dSavedKind::None;
}

void check_with_indices(std::string_view op, const Shape& x, const Pool2dParams& params,
                        bool with_indices) {
  if (with_indices && !is_max(params))
    invalid_argument(op, "with_indices", "true",
                     std::string("must be false unless params.mode is max (it is ") +
                         to_string(params.mode) + ")");
  if (with_indices) check_indices_fit(op, "with_indices", x);
}

void check_op(std::string_view op, Pool2dOp kind) {
  if (kind != Pool2dOp::Forward && kind != Pool2dOp::Backward)
    invalid_argument(op, "op", static_cast<int>(kind),
                     "must be Pool2dOp::Forward or Pool2dOp::Backward");
}

}  // namespace

struct Pool2dPlanState {
  Pool2dOp op = Pool2dOp::Forward;
  Pool2dParams params;
  bool with_indices = false;
  Device device;
  Shape x, y;
  std::shared_ptr<const Pool2dKernel> kernel;
  Engine requested = Engine::Auto;
  std::string reason;

  static std::shared_ptr<const Pool2dPlanState> make(Context& ctx, Pool2dOp op, const Shape& x,
                                                     const Pool2dParams& params, bool with_indices,
                                                     const Pool2dPlanOptions& options) {
    auto state = std::make_shared<Pool2dPlanState>();
    state->op = op;
    state->params = params;
    state->with_indices = with_indices;
    state->device = ctx.device();
    state->x = x;
    state->y = output_shape(op_name(op), "x", x, params);
    state->requested = options.engine;
    Pool2dProblem problem;
    problem.op = op;
    problem.g = pool2d_geometry(x, params);
    problem.saved = saved_kind(op, params, with_indices);
    problem.variant = options.variant;
    problem.options = ctx.options();
    problem.threads = available_threads();
    Resolution<Pool2dKernel> r = resolve<Pool2dEngine, Pool2dKernel>(
        ctx.device(), options.engine, [&](const Pool2dEngine& e) { return e.plan(ctx, problem); });
    state->kernel = std::move(r.kernel);
    state->reason = std::move(r.reason);
    if (state->kernel)
      log(LogLevel::Debug, op_name(op), ": planned engine=", to_string(state->kernel->engine()),
          " (", state->kernel->description(), ") on ", to_string(ctx.device()),
          options.engine == Engine::Auto ? " (auto: " + state->reason + ")"
                                         : std::string(" (requested)"));
    return state;
  }

  static std::shared_ptr<const Pool2dPlanState> cached(Context& ctx, Pool2dOp op, const Shape& x,
                                                       const Pool2dParams& p, bool with_indices,
                                                       Engine engine) {
    PlanKey key;
    key.add(static_cast<int>(OpFamily::Pool2d)).add(static_cast<int>(op));
    for (int i = 0; i < 4; ++i) key.add(x[i]);
    key.add(static_cast<int>(p.mode))
        .add(p.window_h)
        .add(p.window_w)
        .add(p.stride_h)
        .add(p.stride_w)
        .add(p.pad_h)
        .add(p.pad_w)
        .add(p.ceil_mode)
        .add(with_indices)
        .add(static_cast<int>(engine));
    add_context_settings(key, ctx);
    return cached_state<Pool2dPlanState>(ctx, key, [&] {
      return make(ctx, op, x, p, with_indices, Pool2dPlanOptions{engine, 0});
    });
  }

  const Pool2dKernel& runnable(std::string_view caller) const {
    if (!kernel) throw_unsupported(caller, requested, device, reason);
    return *kernel;
  }

  Engine run(std::string_view caller, Context& ctx, const Pool2dArgs& args) const {
    const Pool2dKernel& k = runnable(caller);
    return translate_exceptions(caller, [&] {
      void* scratch = run_workspace(caller, ctx, k.workspace_bytes(), nullptr);
      log(LogLevel::Debug, caller, ": engine=", to_string(k.engine()),
          " device=", to_string(device));
      k.run(ctx, args, scratch);
      return k.engine();
    });
  }
};

std::int64_t pool2d_output_extent(std::int64_t input, int window, int stride, int pad,
                                  bool ceil_mode) {
  const std::int64_t span = input + 2 * std::int64_t{pad} - window;  // >= 0
  if (!ceil_mode) return span / stride + 1;
  std::int64_t extent = (span + stride - 1) / stride + 1;
  // The last window starts at (extent - 1)*stride - pad; it may not start at or after `input`.
  if ((extent - 1) * stride >= input + pad) --extent;
  return extent;
}

Pool2dGeometry pool2d_geometry(const Shape& x, const Pool2dParams& p) {
  Pool2dGeometry g;
  g.mode = p.mode;
  g.N = x[0], g.C = x[1], g.H = x[2], g.W = x[3];
  g.window_h = p.window_h, g.window_w = p.window_w;
  g.stride_h = p.stride_h, g.stride_w = p.stride_w;
  g.pad_h = p.pad_h, g.pad_w = p.pad_w;
  g.ceil_mode = p.ceil_mode;
  g.P = pool2d_output_extent(g.H, g.window_h, g.stride_h, g.pad_h, g.ceil_mode);
  g.Q = pool2d_output_extent(g.W, g.window_w, g.stride_w, g.pad_w, g.ceil_mode);
  return g;
}

}  // namespace dlrt::detail

namespace dlrt {

using namespace detail;

const char* to_string(PoolMode mode) noexcept {
  switch (mode) {
    case PoolMode::Max:
      return "max";
    case PoolMode::AverageIncludePad:
      return "average_include_pad";
    case PoolMode::AverageExcludePad:
      return "average_exclude_pad";
  }
  return "unknown";
}

Pool2dParams Pool2dParams::global(PoolMode mode, const Shape& x) {
  constexpr const char* op = "Pool2dParams::global";
  if (x.rank() != 4) invalid_argument(op, "x", x.to_string(), "must have rank 4 (N, C, H, W)");
  check_shape(op, "x", x);
  if (x[2] > INT_MAX || x[3] > INT_MAX)
    invalid_argument(op, "x", x.to_string(),
                     "H and W must be <= 2^31 - 1 to be a window extent (an int)");
  Pool2dParams p;
  p.mode = mode;
  p.window_h = static_cast<int>(x[2]);
  p.window_w = static_cast<int>(x[3]);
  p.stride_h = p.stride_w = 1;  // one window per plane whatever the stride
  p.pad_h = p.pad_w = 0;
  p.ceil_mode = false;
  return p;
}

Shape pool2d_output_shape(const Shape& x, const Pool2dParams& params) {
  return output_shape("pool2d_output_shape", "x", x, params);
}

Engine pool2d_forward(Context& ctx, const Tensor& x, Tensor& y, const Pool2dParams& params,
                      Engine engine, Tensor* indices) {
  constexpr const char* op = "pool2d_forward";
  detail::ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "x", x, 4, device);
  const Shape y_shape = output_shape(op, "x", x.shape(), params);
  check_forward(op, device, params, x, y, indices, y_shape);
  const auto plan = Pool2dPlanState::cached(ctx, Pool2dOp::Forward, x.shape(), params,
                                            indices != nullptr, engine);
  Pool2dArgs args;
  args.x = x.data(), args.y = y.data(), args.indices_out = indices ? indices->data_i32() : nullptr;
  return plan->run(op, ctx, args);
}

namespace {

Pool2dArgs backward_args(const Tensor& dy, Tensor& dx, const Pool2dSaved& saved,
                         bool with_indices) {
  Pool2dArgs args;
  args.dy = dy.data(), args.dx = dx.data();
  if (with_indices) {
    args.indices = saved.indices->data_i32();
  } else if (saved.x) {
    args.saved_x = saved.x->data(), args.saved_y = saved.y->data();
  }
  return args;
}

}  // namespace

Engine pool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx, const Pool2dParams& params,
                       const Pool2dSaved& saved, Engine engine) {
  constexpr const char* op = "pool2d_backward";
  detail::ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "dy", dy, 4, device);
  check_tensor(op, "dx", dx, 4, device);
  const Shape y_shape = output_shape(op, "dx", dx.shape(), params);
  check_backward(op, device, params, dy, dx, saved, y_shape);
  // With both the indices and x and y, the indices are used.
  const bool with_indices = saved.indices != nullptr;
  const auto plan =
      Pool2dPlanState::cached(ctx, Pool2dOp::Backward, dx.shape(), params, with_indices, engine);
  return plan->run(op, ctx, backward_args(dy, dx, saved, with_indices));
}

EngineQuery pool2d_query(Context& ctx, Pool2dOp op, const Shape& x, const Pool2dParams& params,
                         bool with_indices, Engine engine) {
  constexpr const char* name = "pool2d_query";
  detail::ContextUse use(ctx, name);
  check_engine_value(name, engine);
  check_op(name, op);
  output_shape(name, "x", x, params);
  check_with_indices(name, x, params, with_indices);
  const auto plan = Pool2dPlanState::cached(ctx, op, x, params, with_indices, engine);
  if (!plan->kernel) return {false, engine, plan->reason};
  return {true, plan->kernel->engine(), plan->reason};
}

// ---- Pool2dPlan ---------------------------------------------------------------

Pool2dPlan::Pool2dPlan(Context& ctx, Pool2dOp op, const Shape& x, const Pool2dParams& params,
                       bool with_indices, const Pool2dPlanOptions& options) {
  constexpr const char* name = "Pool2dPlan";
  detail::ContextUse use(ctx, name);
  check_engine_value(name, options.engine);
  check_op(name, op);
  output_shape(name, "x", x, params);
  check_with_indices(name, x, params, with_indices);
  if (options.variant != 0 && options.engine == Engine::Auto)
    invalid_argument(name, "options.variant", options.variant,
                     "a kernel variant needs an explicit options.engine (variants are per engine)");
  state_ = Pool2dPlanState::make(ctx, op, x, params, with_indices, options);
  state_->runnable(name);
}

Pool2dOp Pool2dPlan::op() const { return state_->op; }
Engine Pool2dPlan::engine() const { return state_->kernel->engine(); }
Device Pool2dPlan::device() const { return state_->device; }
bool Pool2dPlan::with_indices() const { return state_->with_indices; }
const Shape& Pool2dPlan::x_shape() const { return state_->x; }
const Shape& Pool2dPlan::y_shape() const { return state_->y; }
std::size_t Pool2dPlan::workspace_bytes() const { return state_->kernel->workspace_bytes(); }
const std::string& Pool2dPlan::description() const { return state_->kernel->description(); }

void Pool2dPlan::forward(Context& ctx, const Tensor& x, Tensor& y, Tensor* indices) const {
  constexpr const char* op = "Pool2dPlan::forward";
  detail::ContextUse use(ctx, op);
  const Pool2dPlanState& s = *state_;
  if (s.op != Pool2dOp::Forward)
    invalid_argument(op, "this", "a plan for pool2d_backward", "must be a plan for pool2d_forward");
  check_plan_device(op, ctx, s.device);
  check_tensor(op, "x", x, 4, s.device);
  check_shape_is(op, "x", x, s.x, "the planned input shape");
  if ((indices != nullptr) != s.with_indices)
    invalid_argument(op, "indices", indices ? "a tensor" : "null",
                     s.with_indices ? "must be given: the plan was made with_indices"
                                    : "must be null: the plan was made without indices");
  check_forward(op, s.device, s.params, x, y, indices, s.y);
  Pool2dArgs args;
  args.x = x.data(), args.y = y.data(), args.indices_out = indices ? indices->data_i32() : nullptr;
  s.run(op, ctx, args);
}

void Pool2dPlan::backward(Context& ctx, const Tensor& dy, Tensor& dx,
                          const Pool2dSaved& saved) const {
  constexpr const char* op = "Pool2dPlan::backward";
  detail::ContextUse use(ctx, op);
  const Pool2dPlanState& s = *state_;
  if (s.op != Pool2dOp::Backward)
    invalid_argument(op, "this", "a plan for pool2d_forward", "must be a plan for pool2d_backward");
  check_plan_device(op, ctx, s.device);
  check_tensor(op, "dy", dy, 4, s.device);
  check_tensor(op, "dx", dx, 4, s.device);
  check_shape_is(op, "dx", dx, s.x, "the planned input shape");
  check_backward(op, s.device, s.params, dy, dx, saved, s.y);
  if (s.with_indices && saved.indices == nullptr)
    invalid_argument(op, "saved.indices", "null", "must be given: the plan was made with_indices");
  if (!s.with_indices && saved.indices != nullptr)
    invalid_argument(op, "saved.indices", "a tensor",
                     "must be null: the plan was made to find the argmax from x and y");
  s.run(op, ctx, backward_args(dy, dx, saved, s.with_indices));
}

}  // namespace dlrt
