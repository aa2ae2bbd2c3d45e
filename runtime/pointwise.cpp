// The public Pointwise entry points (activations, add, scale): validate
// everything, plan once per problem (cached in the context), run the plan.
#include <cmath>
#include <string>

#include "runtime/op_support.hpp"
#include "runtime/parallel.hpp"
#include "runtime/pointwise_engine.hpp"
#include "runtime/validate.hpp"

namespace dlrt::detail {
namespace {

struct PointwisePlanState {
  Device device;
  std::shared_ptr<const PointwiseKernel> kernel;
  Engine requested = Engine::Auto;
  std::string reason;

  static std::shared_ptr<const PointwisePlanState> cached(Context& ctx,
                                                          const PointwiseProblem& problem,
                                                          Engine engine) {
    PlanKey key;
    key.add(static_cast<int>(OpFamily::Pointwise))
        .add(static_cast<int>(problem.op))
        .add(static_cast<int>(problem.activation))
        .add(problem.count)
        .add(static_cast<int>(engine));
    add_context_settings(key, ctx);
    return cached_state<PointwisePlanState>(ctx, key, [&] {
      auto state = std::make_shared<PointwisePlanState>();
      state->device = ctx.device();
      state->requested = engine;
      PointwiseProblem p = problem;
      p.options = ctx.options();
      p.threads = available_threads();
      Resolution<PointwiseKernel> r = resolve<PointwiseEngine, PointwiseKernel>(
          ctx.device(), engine, [&](const PointwiseEngine& e) { return e.plan(ctx, p); });
      state->kernel = std::move(r.kernel);
      state->reason = std::move(r.reason);
      return std::shared_ptr<const PointwisePlanState>(std::move(state));
    });
  }

  Engine run(std::string_view caller, Context& ctx, const PointwiseArgs& args) const {
    if (!kernel) throw_unsupported(caller, requested, device, reason);
    return translate_exceptions(caller, [&] {
      void* scratch = run_workspace(caller, ctx, kernel->workspace_bytes(), nullptr);
      kernel->run(ctx, args, scratch);
      return kernel->engine();
    });
  }
};

Engine run_pointwise(std::string_view op, Context& ctx, const PointwiseProblem& problem,
                     Engine engine, const PointwiseArgs& args) {
  return PointwisePlanState::cached(ctx, problem, engine)->run(op, ctx, args);
}

// A defined f32 tensor of any rank >= 1 on `device`.
void check_any_rank(std::string_view op, std::string_view name, const Tensor& t, Device device) {
  if (t.defined() && t.rank() < 1)
    invalid_argument(op, name, t.shape().to_string(), "must have rank >= 1");
  check_tensor(op, name, t, t.defined() ? t.rank() : 1, device);
}

void check_activation(std::string_view op, Activation activation) {
  const int value = static_cast<int>(activation);
  if (value < static_cast<int>(Activation::Relu) || value > static_cast<int>(Activation::Sigmoid))
    invalid_argument(op, "activation", value, "must be one of the dlrt::Activation enumerators");
}

void check_finite(std::string_view op, std::string_view name, float value) {
  if (!std::isfinite(value)) invalid_argument(op, name, value, "must be finite");
}

// out may be exactly `input` (in place) but not overlap it otherwise.
void check_same_or_apart(std::string_view op, const Tensor& out, std::string_view input_name,
                         const Tensor& input) {
  const Tensor& in = input;
  const Tensor& o = out;
  if (o.overlaps(in) && !(o.data() == in.data() && o.numel() == in.numel()))
    invalid_argument(op, "out", "memory shared with '" + std::string(input_name) + "'",
                     "out may be exactly a or b (in place) but may not overlap them partially");
}

}  // namespace
}  // namespace dlrt::detail

namespace dlrt {

using namespace detail;

const char* to_string(Activation activation) noexcept {
  switch (activation) {
    case Activation::Relu:
      return "relu";
    case Activation::Tanh:
      return "tanh";
    case Activation::Sigmoid:
      return "sigmoid";
  }
  return "unknown";
}

Engine activation_forward(Context& ctx, Activation activation, const Tensor& x, Tensor& y,
                          Engine engine) {
  constexpr const char* op = "activation_forward";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  check_activation(op, activation);
  const Device device = ctx.device();
  check_any_rank(op, "x", x, device);
  check_any_rank(op, "y", y, device);
  check_shape_is(op, "y", y, x.shape(), "x's shape");
  check_no_overlap(op, "y", y, "x", x);
  PointwiseProblem p;
  p.op = PointwiseOp::ActivationForward, p.activation = activation, p.count = x.numel();
  PointwiseArgs a;
  a.a = x.data(), a.out = y.data();
  return run_pointwise(op, ctx, p, engine, a);
}

Engine activation_backward(Context& ctx, Activation activation, const Tensor& y, const Tensor& dy,
                           Tensor& dx, Engine engine) {
  constexpr const char* op = "activation_backward";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  check_activation(op, activation);
  const Device device = ctx.device();
  check_any_rank(op, "y", y, device);
  check_any_rank(op, "dy", dy, device);
  check_shape_is(op, "dy", dy, y.shape(), "y's shape");
  check_any_rank(op, "dx", dx, device);
  check_shape_is(op, "dx", dx, y.shape(), "y's shape");
  check_no_overlap(op, "dx", dx, "y", y);
  check_no_overlap(op, "dx", dx, "dy", dy);
  PointwiseProblem p;
  p.op = PointwiseOp::ActivationBackward, p.activation = activation, p.count = y.numel();
  PointwiseArgs a;
  a.a = y.data(), a.b = dy.data(), a.out = dx.data();
  return run_pointwise(op, ctx, p, engine, a);
}

Engine add(Context& ctx, const Tensor& a, const Tensor& b, Tensor& out, float alpha, float beta,
           Engine engine) {
  constexpr const char* op = "add";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_any_rank(op, "a", a, device);
  check_any_rank(op, "b", b, device);
  check_shape_is(op, "b", b, a.shape(), "a's shape");
  check_any_rank(op, "out", out, device);
  check_shape_is(op, "out", out, a.shape(), "a's shape");
  check_same_or_apart(op, out, "a", a);
  check_same_or_apart(op, out, "b", b);
  check_finite(op, "alpha", alpha);
  check_finite(op, "beta", beta);
  PointwiseProblem p;
  p.op = PointwiseOp::Add, p.count = a.numel();
  PointwiseArgs args;
  args.a = a.data(), args.b = b.data(), args.out = out.data(), args.alpha = alpha, args.beta = beta;
  return run_pointwise(op, ctx, p, engine, args);
}

Engine scale(Context& ctx, const Tensor& x, Tensor& out, float alpha, Engine engine) {
  constexpr const char* op = "scale";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_any_rank(op, "x", x, device);
  check_any_rank(op, "out", out, device);
  check_shape_is(op, "out", out, x.shape(), "x's shape");
  check_no_overlap(op, "out", out, "x", x);
  check_finite(op, "alpha", alpha);
  PointwiseProblem p;
  p.op = PointwiseOp::Scale, p.count = x.numel();
  PointwiseArgs a;
  a.a = x.data(), a.out = out.data(), a.alpha = alpha;
  return run_pointwise(op, ctx, p, engine, a);
}

}  // namespace dlrt
