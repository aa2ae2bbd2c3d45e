// The public Linear entry points (linear_forward, linear_backward_*, gram,
// gram_backward): validate everything, plan once per problem (cached in the
// context), run the plan.
#include <cmath>
#include <string>

#include "runtime/linear_engine.hpp"
#include "runtime/op_support.hpp"
#include "runtime/parallel.hpp"
#include "runtime/validate.hpp"

namespace dlrt::detail {
namespace {

const char* op_name(LinearOp op) {
  switch (op) {
    case LinearOp::Forward:
      return "linear_forward";
    case LinearOp::BackwardData:
      return "linear_backward_data";
    case LinearOp::BackwardWeights:
      return "linear_backward_weights";
    case LinearOp::Gram:
      return "gram";
    case LinearOp::GramBackward:
      return "gram_backward";
  }
  return "linear";
}

struct LinearPlanState {
  Device device;
  std::shared_ptr<const LinearKernel> kernel;
  Engine requested = Engine::Auto;
  std::string reason;

  static std::shared_ptr<const LinearPlanState> cached(Context& ctx, const LinearProblem& problem,
                                                       Engine engine) {
    PlanKey key;
    key.add(static_cast<int>(OpFamily::Linear))
        .add(static_cast<int>(problem.op))
        .add(problem.N)
        .add(problem.in)
        .add(problem.out)
        .add(problem.bias)
        .add(problem.accumulate)
        .add(static_cast<int>(engine));
    add_context_settings(key, ctx);
    return cached_state<LinearPlanState>(ctx, key, [&] {
      auto state = std::make_shared<LinearPlanState>();
      state->device = ctx.device();
      state->requested = engine;
      LinearProblem p = problem;
      p.options = ctx.options();
      p.threads = available_threads();
      Resolution<LinearKernel> r = resolve<LinearEngine, LinearKernel>(
          ctx.device(), engine, [&](const LinearEngine& e) { return e.plan(ctx, p); });
      state->kernel = std::move(r.kernel);
      state->reason = std::move(r.reason);
      if (state->kernel)
        log(LogLevel::Debug, op_name(p.op), ": planned engine=", to_string(state->kernel->engine()),
            " (", state->kernel->description(), ") on ", to_string(ctx.device()));
      return std::shared_ptr<const LinearPlanState>(std::move(state));
    });
  }

  Engine run(std::string_view caller, Context& ctx, const LinearArgs& args) const {
    if (!kernel) throw_unsupported(caller, requested, device, reason);
    return translate_exceptions(caller, [&] {
      void* scratch = run_workspace(caller, ctx, kernel->workspace_bytes(), nullptr);
      kernel->run(ctx, args, scratch);
      return kernel->engine();
    });
  }
};

Engine run_linear(std::string_view op, Context& ctx, const LinearProblem& problem, Engine engine,
                  const LinearArgs& args) {
  return LinearPlanState::cached(ctx, problem, engine)->run(op, ctx, args);
}

void check_dim(std::string_view op, std::string_view name, const Tensor& t, int dim,
               std::int64_t want, std::string_view why) {
  if (t.size(dim) != want)
    invalid_argument(op, name, t.shape().to_string(),
                     "dimension " + std::to_string(dim) + " must be " + std::to_string(want) +
                         " (" + std::string(why) + ")");
}

void check_finite(std::string_view op, std::string_view name, float value) {
  if (!std::isfinite(value)) invalid_argument(op, name, value, "must be finite");
}

void check_apart(std::string_view op, std::string_view a_name, const Tensor& a,
                 std::string_view b_name, const Tensor& b) {
  if (a.overlaps(b))
    invalid_argument(op, a_name, "memory shared with '" + std::string(b_name) + "'",
                     "two outputs may not overlap");
}

}  // namespace
}  // namespace dlrt::detail

namespace dlrt {

using namespace detail;

Engine linear_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                      Engine engine) {
  constexpr const char* op = "linear_forward";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "x", x, 2, device);
  check_tensor(op, "w", w, 2, device);
  check_dim(op, "w", w, 1, x.size(1), "in = x.shape[1]");
  if (bias) {
    check_tensor(op, "bias", *bias, 1, device);
    check_dim(op, "bias", *bias, 0, w.size(0), "out = w.shape[0]");
  }
  check_tensor(op, "y", y, 2, device);
  check_shape_is(op, "y", y, Shape{x.size(0), w.size(0)}, "[N, out] = [x.shape[0], w.shape[0]]");
  check_no_overlap(op, "y", y, "x", x);
  check_no_overlap(op, "y", y, "w", w);
  if (bias) check_no_overlap(op, "y", y, "bias", *bias);
  LinearProblem p;
  p.op = LinearOp::Forward;
  p.N = x.size(0), p.in = x.size(1), p.out = w.size(0), p.bias = bias != nullptr;
  LinearArgs a;
  a.x = x.data(), a.w = w.data(), a.bias = bias ? bias->data() : nullptr, a.y = y.data();
  return run_linear(op, ctx, p, engine, a);
}

Engine linear_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx,
                            Engine engine) {
  constexpr const char* op = "linear_backward_data";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "dy", dy, 2, device);
  check_tensor(op, "w", w, 2, device);
  check_dim(op, "w", w, 0, dy.size(1), "out = dy.shape[1]");
  check_tensor(op, "dx", dx, 2, device);
  check_shape_is(op, "dx", dx, Shape{dy.size(0), w.size(1)}, "[N, in] = [dy.shape[0], w.shape[1]]");
  check_no_overlap(op, "dx", dx, "dy", dy);
  check_no_overlap(op, "dx", dx, "w", w);
  LinearProblem p;
  p.op = LinearOp::BackwardData;
  p.N = dy.size(0), p.in = w.size(1), p.out = w.size(0);
  LinearArgs a;
  a.dy = dy.data(), a.w = w.data(), a.dx = dx.data();
  return run_linear(op, ctx, p, engine, a);
}

Engine linear_backward_weights(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw,
                               Tensor* db, bool accumulate, Engine engine) {
  constexpr const char* op = "linear_backward_weights";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "x", x, 2, device);
  check_tensor(op, "dy", dy, 2, device);
  check_dim(op, "dy", dy, 0, x.size(0), "N = x.shape[0]");
  check_tensor(op, "dw", dw, 2, device);
  check_shape_is(op, "dw", dw, Shape{dy.size(1), x.size(1)},
                 "[out, in] = [dy.shape[1], x.shape[1]]");
  check_no_overlap(op, "dw", dw, "x", x);
  check_no_overlap(op, "dw", dw, "dy", dy);
  if (db) {
    check_tensor(op, "db", *db, 1, device);
    check_dim(op, "db", *db, 0, dy.size(1), "out = dy.shape[1]");
    check_no_overlap(op, "db", *db, "x", x);
    check_no_overlap(op, "db", *db, "dy", dy);
    check_apart(op, "db", *db, "dw", dw);
  }
  LinearProblem p;
  p.op = LinearOp::BackwardWeights;
  p.N = x.size(0), p.in = x.size(1), p.out = dy.size(1);
  p.bias = db != nullptr, p.accumulate = accumulate;
  LinearArgs a;
  a.x = x.data(), a.dy = dy.data(), a.dw = dw.data(), a.db = db ? db->data() : nullptr;
  return run_linear(op, ctx, p, engine, a);
}

Engine gram(Context& ctx, const Tensor& f, Tensor& g, float scale, Engine engine) {
  constexpr const char* op = "gram";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "f", f, 2, device);
  check_tensor(op, "g", g, 2, device);
  check_shape_is(op, "g", g, Shape{f.size(0), f.size(0)}, "[C, C] with C = f.shape[0]");
  check_no_overlap(op, "g", g, "f", f);
  check_finite(op, "scale", scale);
  LinearProblem p;
  p.op = LinearOp::Gram;
  p.N = f.size(0), p.in = f.size(1), p.out = f.size(0);
  LinearArgs a;
  a.x = f.data(), a.y = g.data(), a.scale = scale;
  return run_linear(op, ctx, p, engine, a);
}

Engine gram_backward(Context& ctx, const Tensor& f, const Tensor& dg, Tensor& df, float scale,
                     Engine engine) {
  constexpr const char* op = "gram_backward";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "f", f, 2, device);
  check_tensor(op, "dg", dg, 2, device);
  check_shape_is(op, "dg", dg, Shape{f.size(0), f.size(0)}, "[C, C] with C = f.shape[0]");
  check_tensor(op, "df", df, 2, device);
  check_shape_is(op, "df", df, f.shape(), "f's shape");
  check_no_overlap(op, "df", df, "f", f);
  check_no_overlap(op, "df", df, "dg", dg);
  check_finite(op, "scale", scale);
  LinearProblem p;
  p.op = LinearOp::GramBackward;
  p.N = f.size(0), p.in = f.size(1), p.out = f.size(0);
  LinearArgs a;
  a.x = f.data(), a.dy = dg.data(), a.dx = df.data(), a.scale = scale;
  return run_linear(op, ctx, p, engine, a);
}

}  // namespace dlrt
