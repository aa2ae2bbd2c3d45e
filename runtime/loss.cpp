// The public Loss entry points (softmax cross-entropy forward and backward):
// validate everything (labels and mask values too, for tensors in host
// memory), plan once per problem (cached in the context), run the plan.
#include <cmath>
#include <string>
#include <utility>

#include "runtime/loss_engine.hpp"
#include "runtime/op_support.hpp"
#include "runtime/parallel.hpp"
#include "runtime/validate.hpp"

namespace dlrt::detail {
namespace {

struct LossPlanState {
  Device device;
  std::shared_ptr<const LossKernel> kernel;
  Engine requested = Engine::Auto;
  std::string reason;

  static std::shared_ptr<const LossPlanState> cached(Context& ctx, const LossProblem& problem,
                                                     Engine engine) {
    PlanKey key;
    key.add(static_cast<int>(OpFamily::Loss))
        .add(static_cast<int>(problem.op))
        .add(problem.N)
        .add(problem.C)
        .add(problem.mask)
        .add(static_cast<int>(engine));
    add_context_settings(key, ctx);
    return cached_state<LossPlanState>(ctx, key, [&] {
      auto state = std::make_shared<LossPlanState>();
      state->device = ctx.device();
      state->requested = engine;
      LossProblem p = problem;
      p.options = ctx.options();
      p.threads = available_threads();
      Resolution<LossKernel> r = resolve<LossEngine, LossKernel>(
          ctx.device(), engine, [&](const LossEngine& e) { return e.plan(ctx, p); });
      state->kernel = std::move(r.kernel);
      state->reason = std::move(r.reason);
      return std::shared_ptr<const LossPlanState>(std::move(state));
    });
  }

  Engine run(std::string_view caller, Context& ctx, const LossArgs& args) const {
    if (!kernel) throw_unsupported(caller, requested, device, reason);
    return translate_exceptions(caller, [&] {
      void* scratch = run_workspace(caller, ctx, kernel->workspace_bytes(), nullptr);
      kernel->run(ctx, args, scratch);
      return kernel->engine();
    });
  }
};

// labels i32 [N], mask f32 [N] or null, both on `device`; on the host their
// values too: mask 0 or 1, and the label of every row whose mask is not 0
// in [0, C).
void check_labels_mask(std::string_view op, Device device, const Tensor& labels, const Tensor* mask,
                       std::int64_t N, std::int64_t C) {
  check_tensor(op, "labels", labels, 1, device, DType::I32);
  check_shape_is(op, "labels", labels, Shape{N}, "[N], N = the number of rows");
  if (mask) {
    check_tensor(op, "mask", *mask, 1, device);
    check_shape_is(op, "mask", *mask, Shape{N}, "[N], N = the number of rows");
  }
  if (device.kind != Device::Kind::Cpu) return;
  const std::int32_t* label = labels.data_i32();
  const float* m = mask ? mask->data() : nullptr;
  for (std::int64_t n = 0; n < N; ++n) {
    if (m && m[n] != 0.0f && m[n] != 1.0f)
      invalid_argument(op, "mask[" + std::to_string(n) + "]", m[n], "must be 0 or 1");
    if ((m == nullptr || m[n] != 0.0f) && (label[n] < 0 || label[n] >= C))
      invalid_argument(
          op, "labels[" + std::to_string(n) + "]", label[n],
          "must be in [0, C) = [0, " + std::to_string(C) + ") (rows whose mask is 0 are not read)");
  }
}

}  // namespace
}  // namespace dlrt::detail

namespace dlrt {

using namespace detail;

Engine softmax_cross_entropy_forward(Context& ctx, const Tensor& logits, const Tensor& labels,
                                     const Tensor* mask, Tensor& loss, Tensor& probs,
                                     Engine engine) {
  constexpr const char* op = "softmax_cross_entropy_forward";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "logits", logits, 2, device);
  const std::int64_t N = logits.size(0), C = logits.size(1);
  check_tensor(op, "loss", loss, 1, device);
  check_shape_is(op, "loss", loss, Shape{1}, "a scalar");
  check_tensor(op, "probs", probs, 2, device);
  check_shape_is(op, "probs", probs, logits.shape(), "logits' shape");
  check_labels_mask(op, device, labels, mask, N, C);
  for (const auto& [name, input] : {std::pair<const char*, const Tensor*>{"logits", &logits},
                                    {"labels", &labels},
                                    {"mask", mask}}) {
    if (!input) continue;
    check_no_overlap(op, "loss", loss, name, *input);
    check_no_overlap(op, "probs", probs, name, *input);
  }
  if (loss.overlaps(probs))
    invalid_argument(op, "loss", "memory shared with 'probs'", "two outputs may not overlap");
  LossProblem p;
  p.op = LossOp::Forward, p.N = N, p.C = C, p.mask = mask != nullptr;
  LossArgs a;
  a.logits = logits.data(), a.labels = labels.data_i32(), a.mask = mask ? mask->data() : nullptr;
  a.loss = loss.data(), a.probs = probs.data();
  return LossPlanState::cached(ctx, p, engine)->run(op, ctx, a);
}

Engine softmax_cross_entropy_backward(Context& ctx, const Tensor& probs, const Tensor& labels,
                                      const Tensor* mask, float dloss, Tensor& dlogits,
                                      Engine engine) {
  constexpr const char* op = "softmax_cross_entropy_backward";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "probs", probs, 2, device);
  const std::int64_t N = probs.size(0), C = probs.size(1);
  check_tensor(op, "dlogits", dlogits, 2, device);
  check_shape_is(op, "dlogits", dlogits, probs.shape(), "probs' shape");
  check_labels_mask(op, device, labels, mask, N, C);
  if (!std::isfinite(dloss)) invalid_argument(op, "dloss", dloss, "must be finite");
  check_no_overlap(op, "dlogits", dlogits, "probs", probs);
  check_no_overlap(op, "dlogits", dlogits, "labels", labels);
  if (mask) check_no_overlap(op, "dlogits", dlogits, "mask", *mask);
  LossProblem p;
  p.op = LossOp::Backward, p.N = N, p.C = C, p.mask = mask != nullptr;
  LossArgs a;
  a.probs_in = probs.data(), a.labels = labels.data_i32(), a.mask = mask ? mask->data() : nullptr;
  a.dloss = dloss, a.dlogits = dlogits.data();
  return LossPlanState::cached(ctx, p, engine)->run(op, ctx, a);
}

}  // namespace dlrt
