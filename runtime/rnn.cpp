// The public recurrent entry points: validate everything, plan once per
// problem (cached in the context), run the plan. The weight layout is
// written here once and every engine reads it through rnn_weight_layout().
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dlrt/rnn.hpp"
#include "runtime/op_support.hpp"
#include "runtime/parallel.hpp"
#include "runtime/rnn_engine.hpp"
#include "runtime/validate.hpp"

namespace dlrt {

const char* to_string(RnnCell cell) noexcept {
  switch (cell) {
    case RnnCell::Tanh:
      return "tanh";
    case RnnCell::Relu:
      return "relu";
    case RnnCell::Lstm:
      return "lstm";
    case RnnCell::Gru:
      return "gru";
  }
  return "unknown";
}

int rnn_gate_count(RnnCell cell) noexcept {
  switch (cell) {
    case RnnCell::Lstm:
      return 4;
    case RnnCell::Gru:
      return 3;
    default:
      return 1;
  }
}

std::int64_t rnn_cell_saved_size(RnnCell cell, std::int64_t hidden_size) noexcept {
  return cell == RnnCell::Lstm || cell == RnnCell::Gru ? 4 * hidden_size : 0;
}

namespace detail {
namespace {

constexpr int kMaxRnnSize = 1 << 20;
constexpr int kMaxRnnLayers = 64;

void check_cell(std::string_view op, std::string_view name, RnnCell cell) {
  const int value = static_cast<int>(cell);
  if (value < static_cast<int>(RnnCell::Tanh) || value > static_cast<int>(RnnCell::Gru))
    invalid_argument(op, name, value, "must be one of the dlrt::RnnCell enumerators");
}

void check_params(std::string_view op, const RnnParams& p) {
  check_cell(op, "params.cell", p.cell);
  auto in_range = [&](const char* name, int value, int high) {
    if (value < 1 || value > high)
      invalid_argument(op, name, value, "must be in [1, " + std::to_string(high) + "]");
  };
  in_range("params.input_size", p.input_size, kMaxRnnSize);
  in_range("params.hidden_size", p.hidden_size, kMaxRnnSize);
  in_range("params.num_layers", p.num_layers, kMaxRnnLayers);
  if (p.proj_size != 0) {
    if (p.cell != RnnCell::Lstm)
      invalid_argument(op, "params.proj_size", p.proj_size,
                       std::string("must be 0 unless params.cell is lstm (it is ") +
                           to_string(p.cell) + ", which has no projection)");
    if (p.proj_size < 0 || p.proj_size >= p.hidden_size)
      invalid_argument(
          op, "params.proj_size", p.proj_size,
          "must be 0 or in [1, hidden_size) = [1, " + std::to_string(p.hidden_size) + ")");
  }
}

void check_steps(std::string_view op, std::int64_t T, std::int64_t N) {
  // The bound keeps T*N*width far inside the element limit checked later
  // and the lengths in int.
  constexpr std::int64_t kMaxSteps = std::int64_t{1} << 24;
  if (T < 1 || T > kMaxSteps) invalid_argument(op, "T", T, "must be in [1, 2^24]");
  if (N < 1 || N > kMaxSteps) invalid_argument(op, "N", N, "must be in [1, 2^24]");
}

std::vector<int> checked_lengths(std::string_view op, std::span<const int> lengths, std::int64_t T,
                                 std::int64_t N) {
  if (lengths.empty()) return std::vector<int>(static_cast<std::size_t>(N), static_cast<int>(T));
  if (static_cast<std::int64_t>(lengths.size()) != N)
    invalid_argument(
        op, "lengths", std::to_string(lengths.size()) + " values",
        "must hold one length per sequence (N = " + std::to_string(N) + ") or be empty");
  for (std::size_t n = 0; n < lengths.size(); ++n)
    if (lengths[n] < 1 || lengths[n] > T)
      invalid_argument(op, "lengths[" + std::to_string(n) + "]", lengths[n],
                       "must be in [1, T] = [1, " + std::to_string(T) + "]");
  return {lengths.begin(), lengths.end()};
}

std::string direction_suffix(int direction) { return direction == 1 ? "_reverse" : ""; }

void check_outputs_apart(std::string_view op, std::string_view a_name, const Tensor& a,
                         std::string_view b_name, const Tensor* b) {
  if (b != nullptr && a.overlaps(*b))
    invalid_argument(op, a_name, "memory shared with '" + std::string(b_name) + "'",
                     "two outputs may not overlap");
}

void check_apart_from(std::string_view op, std::string_view out_name, const Tensor* out,
                      std::string_view in_name, const Tensor* in) {
  if (out != nullptr && in != nullptr) check_no_overlap(op, out_name, *out, in_name, *in);
}

}  // namespace

// ---- plan state ------------------------------------------------------------------

struct RnnPlanState {
  RnnProblem problem;
  Device device;
  std::shared_ptr<const RnnKernel> kernel;
  Engine requested = Engine::Auto;
  std::string reason;
  std::int64_t weight_count = 0;

  const RnnParams& params() const { return problem.params; }
  Shape x_shape() const { return {problem.T, problem.N, problem.params.input_size}; }
  Shape y_shape() const {
    return {problem.T, problem.N, problem.directions() * problem.hidden_out()};
  }
  Shape h_shape() const {
    return {std::int64_t{problem.params.num_layers} * problem.directions(), problem.N,
            problem.hidden_out()};
  }
  Shape c_shape() const {
    return {std::int64_t{problem.params.num_layers} * problem.directions(), problem.N,
            problem.hidden()};
  }
  bool lstm() const { return problem.params.cell == RnnCell::Lstm; }

  static std::shared_ptr<const RnnPlanState> make(Context& ctx, const char* op,
                                                  const RnnParams& params, std::int64_t T,
                                                  std::int64_t N, std::vector<int> lengths,
                                                  const RnnPlanOptions& options) {
    auto state = std::make_shared<RnnPlanState>();
    state->device = ctx.device();
    state->requested = options.engine;
    state->weight_count = rnn_weight_count(params);
    RnnProblem& problem = state->problem;
    problem.params = params;
    problem.T = T;
    problem.N = N;
    problem.lengths = std::move(lengths);
    problem.variant = options.variant;
    problem.executor = options.executor;
    problem.options = ctx.options();
    problem.threads = available_threads();
    Resolution<RnnKernel> r = resolve<RnnEngine, RnnKernel>(
        ctx.device(), options.engine, [&](const RnnEngine& e) { return e.plan(ctx, problem); });
    state->kernel = std::move(r.kernel);
    state->reason = std::move(r.reason);
    if (state->kernel)
      log(LogLevel::Debug, op, ": planned engine=", to_string(state->kernel->engine()), " (",
          state->kernel->description(), ") executor=", to_string(state->kernel->executor()), " on ",
          to_string(ctx.device()),
          options.engine == Engine::Auto ? " (auto: " + state->reason + ")"
                                         : std::string(" (requested)"));
    return state;
  }

  static std::shared_ptr<const RnnPlanState> cached(Context& ctx, const char* op,
                                                    const RnnParams& p, std::int64_t T,
                                                    std::int64_t N, std::vector<int> lengths,
                                                    Engine engine) {
    PlanKey key;
    key.add(static_cast<int>(OpFamily::Rnn))
        .add(0)  // sequences (1: cell steps)
        .add(static_cast<int>(p.cell))
        .add(p.input_size)
        .add(p.hidden_size)
        .add(p.num_layers)
        .add(p.bidirectional)
        .add(p.bias)
        .add(p.proj_size)
        .add(T)
        .add(N);
    for (int length : lengths) key.add(length);
    key.add(static_cast<int>(engine));
    add_context_settings(key, ctx);
    return cached_state<RnnPlanState>(ctx, key, [&] {
      return make(ctx, op, p, T, N, std::move(lengths), RnnPlanOptions{engine});
    });
  }

  const RnnKernel& runnable(std::string_view caller) const {
    if (!kernel) throw_unsupported(caller, requested, device, reason);
    return *kernel;
  }
};

}  // namespace detail

// ---- training state ----------------------------------------------------------------

struct RnnTrainingState::Impl {
  std::shared_ptr<const detail::RnnPlanState> plan;
  std::shared_ptr<detail::RnnSavedData> data;
  // The forward's inputs, sharing storage, for backward to read again.
  Tensor x, w, h0, c0;
  bool has_h0 = false, has_c0 = false;
  bool backward_data_done = false;
};

RnnTrainingState::RnnTrainingState() = default;
RnnTrainingState::~RnnTrainingState() = default;
RnnTrainingState::RnnTrainingState(RnnTrainingState&&) noexcept = default;
RnnTrainingState& RnnTrainingState::operator=(RnnTrainingState&&) noexcept = default;
bool RnnTrainingState::empty() const { return impl_ == nullptr || impl_->data == nullptr; }
Engine RnnTrainingState::engine() const {
  return empty() ? Engine::Auto : impl_->plan->kernel->engine();
}
RnnTrainingState::Impl& RnnTrainingState::impl() {
  if (impl_ == nullptr) impl_ = std::make_unique<Impl>();
  return *impl_;
}
const RnnTrainingState::Impl& RnnTrainingState::impl() const {
  if (impl_ == nullptr)
    throw Error(Error::Kind::Internal, "RnnTrainingState::impl: the state is empty");
  return *impl_;
}

namespace detail {
namespace {

detail::RnnInputs inputs_of(const RnnTrainingState::Impl& s) {
  RnnInputs in;
  in.x = s.x.data();
  in.w = s.w.data();
  in.h0 = s.has_h0 ? s.h0.data() : nullptr;
  in.c0 = s.has_c0 ? s.c0.data() : nullptr;
  return in;
}

// An optional [num_layers * D, N, W] state tensor (h or c, or their
// gradients): checked when given; a cell state is refused for cells without one.
void check_state(std::string_view op, const RnnPlanState& s, const char* name, const Tensor* t,
                 bool cell_state, std::string_view why) {
  if (t == nullptr) return;
  if (cell_state && !s.lstm())
    invalid_argument(op, name, t->shape().to_string(),
                     std::string("must be null unless params.cell is lstm (it is ") +
                         to_string(s.params().cell) + ", which has no cell state)");
  check_tensor(op, name, *t, 3, s.device);
  check_shape_is(op, name, *t, cell_state ? s.c_shape() : s.h_shape(), why);
}

void check_forward(std::string_view op, const RnnPlanState& s, const Tensor& x,
                   const Tensor& weights, const Tensor* h0, const Tensor* c0, const Tensor& y,
                   const Tensor* hy, const Tensor* cy) {
  const Device device = s.device;
  check_tensor(op, "x", x, 3, device);
  check_shape_is(op, "x", x, s.x_shape(), "[T, N, input_size] of the plan");
  check_tensor(op, "weights", weights, 1, device);
  check_shape_is(op, "weights", weights, Shape{s.weight_count}, "rnn_weight_count(params)");
  check_state(op, s, "h0", h0, false, "[num_layers * D, N, H_out]");
  check_state(op, s, "c0", c0, true, "[num_layers * D, N, hidden_size]");
  check_tensor(op, "y", y, 3, device);
  check_shape_is(op, "y", y, s.y_shape(), "[T, N, D * H_out]");
  check_state(op, s, "hy", hy, false, "[num_layers * D, N, H_out]");
  check_state(op, s, "cy", cy, true, "[num_layers * D, N, hidden_size]");
  const std::pair<const char*, const Tensor*> inputs[] = {
      {"x", &x}, {"weights", &weights}, {"h0", h0}, {"c0", c0}};
  const std::pair<const char*, const Tensor*> outputs[] = {{"y", &y}, {"hy", hy}, {"cy", cy}};
  for (const auto& [out_name, out] : outputs)
    for (const auto& [in_name, in] : inputs) check_apart_from(op, out_name, out, in_name, in);
  check_outputs_apart(op, "hy", y, "y", hy);
  check_outputs_apart(op, "cy", y, "y", cy);
  if (hy != nullptr) check_outputs_apart(op, "cy", *hy, "hy", cy);
}

void check_saved(std::string_view op, const RnnPlanState& s, const RnnTrainingState& saved) {
  if (saved.empty())
    invalid_argument(op, "saved", "an empty RnnTrainingState",
                     "must be filled by a forward in training mode (saved != null)");
  if (saved.impl().plan.get() != &s)
    invalid_argument(op, "saved", "a state of another problem or plan",
                     "must be filled by a forward of this plan");
}

void check_backward_data(std::string_view op, const RnnPlanState& s,
                         const RnnTrainingState::Impl& saved, const Tensor& dy, const Tensor* dhy,
                         const Tensor* dcy, const Tensor& dx, const Tensor* dh0,
                         const Tensor* dc0) {
  const Device device = s.device;
  check_tensor(op, "dy", dy, 3, device);
  check_shape_is(op, "dy", dy, s.y_shape(), "y's shape [T, N, D * H_out]");
  check_state(op, s, "dhy", dhy, false, "hy's shape");
  check_state(op, s, "dcy", dcy, true, "cy's shape");
  check_tensor(op, "dx", dx, 3, device);
  check_shape_is(op, "dx", dx, s.x_shape(), "x's shape [T, N, input_size]");
  check_state(op, s, "dh0", dh0, false, "h0's shape");
  check_state(op, s, "dc0", dc0, true, "c0's shape");
  const std::pair<const char*, const Tensor*> inputs[] = {
      {"dy", &dy},
      {"dhy", dhy},
      {"dcy", dcy},
      {"saved x", &saved.x},
      {"saved weights", &saved.w},
      {"saved h0", saved.has_h0 ? &saved.h0 : nullptr},
      {"saved c0", saved.has_c0 ? &saved.c0 : nullptr}};
  const std::pair<const char*, const Tensor*> outputs[] = {{"dx", &dx}, {"dh0", dh0}, {"dc0", dc0}};
  for (const auto& [out_name, out] : outputs)
    for (const auto& [in_name, in] : inputs) check_apart_from(op, out_name, out, in_name, in);
  check_outputs_apart(op, "dh0", dx, "dx", dh0);
  check_outputs_apart(op, "dc0", dx, "dx", dc0);
  if (dh0 != nullptr) check_outputs_apart(op, "dc0", *dh0, "dh0", dc0);
}

void check_backward_weights(std::string_view op, const RnnPlanState& s,
                            const RnnTrainingState::Impl& saved, const Tensor& dw) {
  if (!saved.backward_data_done)
    invalid_argument(op, "saved", "a state whose backward_data has not run",
                     "backward_weights needs backward_data on this state first (it reuses "
                     "the gate gradients)");
  check_tensor(op, "dw", dw, 1, s.device);
  check_shape_is(op, "dw", dw, Shape{s.weight_count}, "rnn_weight_count(params)");
  check_no_overlap(op, "dw", dw, "saved x", saved.x);
  check_no_overlap(op, "dw", dw, "saved weights", saved.w);
  if (saved.has_h0) check_no_overlap(op, "dw", dw, "saved h0", saved.h0);
  if (saved.has_c0) check_no_overlap(op, "dw", dw, "saved c0", saved.c0);
}

Engine run_forward(std::string_view op, Context& ctx,
                   const std::shared_ptr<const RnnPlanState>& plan, const Tensor& x,
                   const Tensor& weights, const Tensor* h0, const Tensor* c0, Tensor& y, Tensor* hy,
                   Tensor* cy, RnnTrainingState* saved) {
  const RnnPlanState& s = *plan;
  const RnnKernel& k = s.runnable(op);
  check_forward(op, s, x, weights, h0, c0, y, hy, cy);
  return translate_exceptions(op, [&] {
    void* scratch = run_workspace(op, ctx, k.workspace_bytes(), nullptr);
    RnnInputs in;
    in.x = x.data();
    in.w = weights.data();
    in.h0 = h0 ? h0->data() : nullptr;
    in.c0 = c0 ? c0->data() : nullptr;
    RnnOutputs out;
    out.y = y.data();
    out.hy = hy ? hy->data() : nullptr;
    out.cy = cy ? cy->data() : nullptr;
    if (saved == nullptr) {
      k.forward(ctx, in, out, scratch, nullptr);
      return k.engine();
    }
    RnnTrainingState::Impl& state = saved->impl();
    // The engine's data is reused only by the plan that made it.
    if (state.plan.get() != &s) state.data.reset();
    state.backward_data_done = false;
    try {
      k.forward(ctx, in, out, scratch, &state.data);
    } catch (...) {
      state.data.reset();
      state.plan.reset();
      throw;
    }
    state.plan = plan;
    state.x = x;
    state.w = weights;
    state.has_h0 = h0 != nullptr;
    state.has_c0 = c0 != nullptr;
    state.h0 = h0 ? *h0 : Tensor();
    state.c0 = c0 ? *c0 : Tensor();
    return k.engine();
  });
}

Engine run_backward_data(std::string_view op, Context& ctx, const RnnPlanState& s,
                         RnnTrainingState& saved, const Tensor& dy, const Tensor* dhy,
                         const Tensor* dcy, Tensor& dx, Tensor* dh0, Tensor* dc0) {
  check_saved(op, s, saved);
  RnnTrainingState::Impl& state = saved.impl();
  check_backward_data(op, s, state, dy, dhy, dcy, dx, dh0, dc0);
  const RnnKernel& k = s.runnable(op);
  return translate_exceptions(op, [&] {
    void* scratch = run_workspace(op, ctx, k.workspace_bytes(), nullptr);
    RnnGradients g;
    g.dy = dy.data();
    g.dhy = dhy ? dhy->data() : nullptr;
    g.dcy = dcy ? dcy->data() : nullptr;
    g.dx = dx.data();
    g.dh0 = dh0 ? dh0->data() : nullptr;
    g.dc0 = dc0 ? dc0->data() : nullptr;
    state.backward_data_done = false;
    k.backward_data(ctx, inputs_of(state), *state.data, g, scratch);
    state.backward_data_done = true;
    return k.engine();
  });
}

Engine run_backward_weights(std::string_view op, Context& ctx, const RnnPlanState& s,
                            RnnTrainingState& saved, Tensor& dw, bool accumulate) {
  check_saved(op, s, saved);
  RnnTrainingState::Impl& state = saved.impl();
  check_backward_weights(op, s, state, dw);
  const RnnKernel& k = s.runnable(op);
  return translate_exceptions(op, [&] {
    void* scratch = run_workspace(op, ctx, k.workspace_bytes(), nullptr);
    k.backward_weights(ctx, inputs_of(state), *state.data, dw.data(), accumulate, scratch);
    return k.engine();
  });
}

void check_executor(std::string_view op, Executor executor) {
  const int value = static_cast<int>(executor);
  if (value < static_cast<int>(Executor::Default) || value > static_cast<int>(Executor::CudaGraph))
    invalid_argument(op, "options.executor", value,
                     "must be one of the dlrt::Executor enumerators");
}

}  // namespace
}  // namespace detail

using namespace detail;

// ---- weights ---------------------------------------------------------------------

std::vector<RnnWeight> rnn_weight_layout(const RnnParams& params) {
  check_params("rnn_weight_layout", params);
  const std::int64_t G = rnn_gate_count(params.cell), H = params.hidden_size;
  const std::int64_t P = params.proj_size, H_out = P > 0 ? P : H;
  const int D = params.bidirectional ? 2 : 1;
  std::vector<RnnWeight> layout;
  std::int64_t offset = 0;
  auto add = [&](std::string name, int layer, int direction, Shape shape) {
    const std::int64_t count = shape.numel();
    layout.push_back({std::move(name), layer, direction, offset, shape});
    offset += count;
  };
  for (int layer = 0; layer < params.num_layers; ++layer) {
    const std::int64_t input = layer == 0 ? params.input_size : D * H_out;
    for (int direction = 0; direction < D; ++direction) {
      const std::string suffix = "_l" + std::to_string(layer) + direction_suffix(direction);
      add("weight_ih" + suffix, layer, direction, Shape{G * H, input});
      add("weight_hh" + suffix, layer, direction, Shape{G * H, H_out});
      if (params.bias) {
        add("bias_ih" + suffix, layer, direction, Shape{G * H});
        add("bias_hh" + suffix, layer, direction, Shape{G * H});
      }
      if (P > 0) add("weight_hr" + suffix, layer, direction, Shape{P, H});
    }
  }
  return layout;
}

std::int64_t rnn_weight_count(const RnnParams& params) {
  const std::vector<RnnWeight> layout = rnn_weight_layout(params);
  const RnnWeight& last = layout.back();
  return last.offset + last.shape.numel();
}

Tensor rnn_weight(const Tensor& weights, const RnnParams& params, std::string_view name) {
  constexpr const char* op = "rnn_weight";
  const std::vector<RnnWeight> layout = rnn_weight_layout(params);
  const std::int64_t count = layout.back().offset + layout.back().shape.numel();
  check_tensor(op, "weights", weights, 1, weights.device());
  check_shape_is(op, "weights", weights, Shape{count}, "rnn_weight_count(params)");
  for (const RnnWeight& piece : layout)
    if (piece.name == name)
      return weights.slice(piece.offset, piece.offset + piece.shape.numel()).view(piece.shape);
  invalid_argument(
      op, "name", name,
      "must name a piece of rnn_weight_layout(params), such as '" + layout[0].name + "'");
}

// ---- RnnPlan ---------------------------------------------------------------------

RnnPlan::RnnPlan(Context& ctx, const RnnParams& params, std::int64_t T, std::int64_t N,
                 std::span<const int> lengths, const RnnPlanOptions& options) {
  constexpr const char* name = "RnnPlan";
  ContextUse use(ctx, name);
  check_engine_value(name, options.engine);
  check_executor(name, options.executor);
  check_params(name, params);
  check_steps(name, T, N);
  std::vector<int> checked = checked_lengths(name, lengths, T, N);
  if (options.variant != 0 && options.engine == Engine::Auto)
    invalid_argument(name, "options.variant", options.variant,
                     "a kernel variant needs an explicit options.engine (variants are per engine)");
  state_ = RnnPlanState::make(ctx, name, params, T, N, std::move(checked), options);
  state_->runnable(name);
}

Engine RnnPlan::engine() const { return state_->kernel->engine(); }
Executor RnnPlan::executor() const { return state_->kernel->executor(); }
const RnnParams& RnnPlan::params() const { return state_->problem.params; }
std::int64_t RnnPlan::steps() const { return state_->problem.T; }
std::int64_t RnnPlan::batch() const { return state_->problem.N; }
const std::vector<int>& RnnPlan::lengths() const { return state_->problem.lengths; }
std::size_t RnnPlan::workspace_bytes() const { return state_->kernel->workspace_bytes(); }
const std::string& RnnPlan::description() const { return state_->kernel->description(); }
Trace RnnPlan::last_trace() const { return state_->kernel->last_trace(); }

void RnnPlan::forward(Context& ctx, const Tensor& x, const Tensor& weights, const Tensor* h0,
                      const Tensor* c0, Tensor& y, Tensor* hy, Tensor* cy,
                      RnnTrainingState* saved) const {
  constexpr const char* op = "RnnPlan::forward";
  ContextUse use(ctx, op);
  check_plan_device(op, ctx, state_->device);
  run_forward(op, ctx, state_, x, weights, h0, c0, y, hy, cy, saved);
}

void RnnPlan::backward_data(Context& ctx, RnnTrainingState& saved, const Tensor& dy,
                            const Tensor* dhy, const Tensor* dcy, Tensor& dx, Tensor* dh0,
                            Tensor* dc0) const {
  constexpr const char* op = "RnnPlan::backward_data";
  ContextUse use(ctx, op);
  check_plan_device(op, ctx, state_->device);
  run_backward_data(op, ctx, *state_, saved, dy, dhy, dcy, dx, dh0, dc0);
}

void RnnPlan::backward_weights(Context& ctx, RnnTrainingState& saved, Tensor& dw,
                               bool accumulate) const {
  constexpr const char* op = "RnnPlan::backward_weights";
  ContextUse use(ctx, op);
  check_plan_device(op, ctx, state_->device);
  run_backward_weights(op, ctx, *state_, saved, dw, accumulate);
}

// ---- one-shot forms --------------------------------------------------------------

Engine rnn_forward(Context& ctx, const RnnParams& params, const Tensor& x,
                   std::span<const int> lengths, const Tensor& weights, const Tensor* h0,
                   const Tensor* c0, Tensor& y, Tensor* hy, Tensor* cy, RnnTrainingState* saved,
                   Engine engine) {
  constexpr const char* op = "rnn_forward";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  check_params(op, params);
  check_tensor(op, "x", x, 3, ctx.device());
  if (x.size(2) != params.input_size)
    invalid_argument(
        op, "x", x.shape().to_string(),
        "must be [T, N, input_size] with input_size = " + std::to_string(params.input_size));
  check_steps(op, x.size(0), x.size(1));
  std::vector<int> checked = checked_lengths(op, lengths, x.size(0), x.size(1));
  const auto plan =
      RnnPlanState::cached(ctx, op, params, x.size(0), x.size(1), std::move(checked), engine);
  return run_forward(op, ctx, plan, x, weights, h0, c0, y, hy, cy, saved);
}

Engine rnn_backward_data(Context& ctx, RnnTrainingState& saved, const Tensor& dy, const Tensor* dhy,
                         const Tensor* dcy, Tensor& dx, Tensor* dh0, Tensor* dc0) {
  constexpr const char* op = "rnn_backward_data";
  ContextUse use(ctx, op);
  if (saved.empty())
    invalid_argument(op, "saved", "an empty RnnTrainingState",
                     "must be filled by a forward in training mode (saved != null)");
  const RnnPlanState& plan = *saved.impl().plan;
  check_plan_device(op, ctx, plan.device);
  return run_backward_data(op, ctx, plan, saved, dy, dhy, dcy, dx, dh0, dc0);
}

Engine rnn_backward_weights(Context& ctx, RnnTrainingState& saved, Tensor& dw, bool accumulate) {
  constexpr const char* op = "rnn_backward_weights";
  ContextUse use(ctx, op);
  if (saved.empty())
    invalid_argument(op, "saved", "an empty RnnTrainingState",
                     "must be filled by a forward in training mode (saved != null)");
  const RnnPlanState& plan = *saved.impl().plan;
  check_plan_device(op, ctx, plan.device);
  return run_backward_weights(op, ctx, plan, saved, dw, accumulate);
}

EngineQuery rnn_query(Context& ctx, const RnnParams& params, std::int64_t T, std::int64_t N,
                      std::span<const int> lengths, Engine engine) {
  constexpr const char* op = "rnn_query";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  check_params(op, params);
  check_steps(op, T, N);
  std::vector<int> checked = checked_lengths(op, lengths, T, N);
  const auto plan = RnnPlanState::cached(ctx, op, params, T, N, std::move(checked), engine);
  if (!plan->kernel) return {false, engine, plan->reason};
  return {true, plan->kernel->engine(), plan->reason};
}

// ---- cell steps --------------------------------------------------------------------

namespace detail {
namespace {

struct RnnCellPlanState {
  std::shared_ptr<const RnnCellKernel> kernel;
  Engine requested = Engine::Auto;
  Device device;
  std::string reason;
};

std::shared_ptr<const RnnCellPlanState> cached_cell_plan(Context& ctx, const char* op,
                                                         const RnnCellProblem& p, Engine engine) {
  PlanKey key;
  key.add(static_cast<int>(OpFamily::Rnn))
      .add(1)
      .add(p.backward)
      .add(static_cast<int>(p.cell))
      .add(p.N)
      .add(p.I)
      .add(p.H)
      .add(p.bias)
      .add(p.with_saved)
      .add(p.with_dx)
      .add(p.with_dc)
      .add(p.with_dw_ih)
      .add(p.with_dw_hh)
      .add(p.with_db_ih)
      .add(p.with_db_hh)
      .add(static_cast<int>(engine));
  add_context_settings(key, ctx);
  return cached_state<RnnCellPlanState>(ctx, key, [&] {
    auto state = std::make_shared<RnnCellPlanState>();
    state->requested = engine;
    state->device = ctx.device();
    Resolution<RnnCellKernel> r = resolve<RnnEngine, RnnCellKernel>(
        ctx.device(), engine, [&](const RnnEngine& e) { return e.plan_cell(ctx, p); });
    state->kernel = std::move(r.kernel);
    state->reason = std::move(r.reason);
    if (state->kernel)
      log(LogLevel::Debug, op, ": planned engine=", to_string(state->kernel->engine()), " (",
          state->kernel->description(), ")");
    return std::shared_ptr<const RnnCellPlanState>(std::move(state));
  });
}

// The shapes every cell call shares; returns the problem's sizes.
RnnCellProblem check_cell_inputs(std::string_view op, Device device, RnnCell cell, const Tensor& x,
                                 const Tensor& h, const Tensor* c, const RnnCellWeights& weights) {
  check_cell(op, "cell", cell);
  RnnCellProblem p;
  p.cell = cell;
  check_tensor(op, "x", x, 2, device);
  check_tensor(op, "h", h, 2, device);
  p.N = x.size(0), p.I = x.size(1), p.H = h.size(1);
  if (p.I > kMaxRnnSize)
    invalid_argument(op, "x", x.shape().to_string(), "input size must be <= 2^20");
  if (p.H > kMaxRnnSize)
    invalid_argument(op, "h", h.shape().to_string(), "hidden size must be <= 2^20");
  check_shape_is(op, "h", h, Shape{p.N, p.H}, "[N, H] with x's N");
  const std::int64_t G = rnn_gate_count(cell);
  const bool lstm = cell == RnnCell::Lstm;
  if (lstm) {
    if (c == nullptr) invalid_argument(op, "c", "null", "an lstm cell needs its cell state c");
    check_tensor(op, "c", *c, 2, device);
    check_shape_is(op, "c", *c, Shape{p.N, p.H}, "h's shape");
  } else if (c != nullptr) {
    invalid_argument(
        op, "c", c->shape().to_string(),
        std::string("must be null unless cell is lstm (it is ") + to_string(cell) + ")");
  }
  if (weights.w_ih == nullptr) invalid_argument(op, "weights.w_ih", "null", "is required");
  if (weights.w_hh == nullptr) invalid_argument(op, "weights.w_hh", "null", "is required");
  check_tensor(op, "weights.w_ih", *weights.w_ih, 2, device);
  check_shape_is(op, "weights.w_ih", *weights.w_ih, Shape{G * p.H, p.I}, "[G*H, I]");
  check_tensor(op, "weights.w_hh", *weights.w_hh, 2, device);
  check_shape_is(op, "weights.w_hh", *weights.w_hh, Shape{G * p.H, p.H}, "[G*H, H]");
  if ((weights.b_ih == nullptr) != (weights.b_hh == nullptr))
    invalid_argument(op, weights.b_ih ? "weights.b_hh" : "weights.b_ih", "null",
                     "the two biases go together (both or neither)");
  p.bias = weights.b_ih != nullptr;
  if (p.bias) {
    check_tensor(op, "weights.b_ih", *weights.b_ih, 1, device);
    check_shape_is(op, "weights.b_ih", *weights.b_ih, Shape{G * p.H}, "[G*H]");
    check_tensor(op, "weights.b_hh", *weights.b_hh, 1, device);
    check_shape_is(op, "weights.b_hh", *weights.b_hh, Shape{G * p.H}, "[G*H]");
  }
  return p;
}

void check_cell_saved(std::string_view op, Device device, const RnnCellProblem& p,
                      const Tensor* saved, bool required) {
  const std::int64_t width = rnn_cell_saved_size(p.cell, p.H);
  if (width == 0) {
    if (saved != nullptr)
      invalid_argument(op, "saved", saved->shape().to_string(),
                       std::string("must be null for a ") + to_string(p.cell) +
                           " cell (its derivative comes from h_out)");
    return;
  }
  if (saved == nullptr) {
    if (required)
      invalid_argument(op, "saved", "null",
                       std::string("a ") + to_string(p.cell) +
                           " cell's backward needs the gates its forward saved");
    return;
  }
  check_tensor(op, "saved", *saved, 2, device);
  check_shape_is(op, "saved", *saved, Shape{p.N, width}, "[N, rnn_cell_saved_size(cell, H)]");
}

Engine run_cell(std::string_view op, Context& ctx, const RnnCellPlanState& plan,
                const RnnCellArgs& args) {
  if (!plan.kernel) throw_unsupported(op, plan.requested, plan.device, plan.reason);
  const RnnCellKernel& k = *plan.kernel;
  return translate_exceptions(op, [&] {
    void* scratch = run_workspace(op, ctx, k.workspace_bytes(), nullptr);
    k.run(ctx, args, scratch);
    return k.engine();
  });
}

const float* data_or_null(const Tensor* t) { return t ? t->data() : nullptr; }
float* data_or_null(Tensor* t) { return t ? t->data() : nullptr; }

}  // namespace
}  // namespace detail

Engine rnn_cell_forward(Context& ctx, RnnCell cell, const Tensor& x, const Tensor& h,
                        const Tensor* c, const RnnCellWeights& weights, Tensor& h_out,
                        Tensor* c_out, Tensor* saved, Engine engine) {
  constexpr const char* op = "rnn_cell_forward";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  RnnCellProblem p = check_cell_inputs(op, device, cell, x, h, c, weights);
  const Shape state{p.N, p.H};
  check_tensor(op, "h_out", h_out, 2, device);
  check_shape_is(op, "h_out", h_out, state, "h's shape");
  if (cell == RnnCell::Lstm) {
    if (c_out == nullptr) invalid_argument(op, "c_out", "null", "an lstm cell writes c_out");
    check_tensor(op, "c_out", *c_out, 2, device);
    check_shape_is(op, "c_out", *c_out, state, "h's shape");
  } else if (c_out != nullptr) {
    invalid_argument(
        op, "c_out", c_out->shape().to_string(),
        std::string("must be null unless cell is lstm (it is ") + to_string(cell) + ")");
  }
  check_cell_saved(op, device, p, saved, false);
  p.with_saved = saved != nullptr;
  const std::pair<const char*, const Tensor*> inputs[] = {{"x", &x},
                                                          {"h", &h},
                                                          {"c", c},
                                                          {"weights.w_ih", weights.w_ih},
                                                          {"weights.w_hh", weights.w_hh},
                                                          {"weights.b_ih", weights.b_ih},
                                                          {"weights.b_hh", weights.b_hh}};
  const std::pair<const char*, const Tensor*> outputs[] = {
      {"h_out", &h_out}, {"c_out", c_out}, {"saved", saved}};
  for (const auto& [out_name, out] : outputs)
    for (const auto& [in_name, in] : inputs) check_apart_from(op, out_name, out, in_name, in);
  check_outputs_apart(op, "c_out", h_out, "h_out", c_out);
  check_outputs_apart(op, "saved", h_out, "h_out", saved);
  if (c_out != nullptr) check_outputs_apart(op, "saved", *c_out, "c_out", saved);
  const auto plan = cached_cell_plan(ctx, op, p, engine);
  RnnCellArgs a;
  a.x = x.data(), a.h = h.data(), a.c = data_or_null(c);
  a.w_ih = weights.w_ih->data(), a.w_hh = weights.w_hh->data();
  a.b_ih = data_or_null(weights.b_ih), a.b_hh = data_or_null(weights.b_hh);
  a.h_out = h_out.data(), a.c_out = data_or_null(c_out), a.saved = data_or_null(saved);
  return run_cell(op, ctx, *plan, a);
}

Engine rnn_cell_backward(Context& ctx, RnnCell cell, const Tensor& x, const Tensor& h,
                         const Tensor* c, const RnnCellWeights& weights, const Tensor& h_out,
                         const Tensor* c_out, const Tensor* saved, const Tensor& dh_out,
                         const Tensor* dc_out, const RnnCellGradients& g, Engine engine) {
  constexpr const char* op = "rnn_cell_backward";
  ContextUse use(ctx, op);
  check_engine_value(op, engine);
  const Device device = ctx.device();
  RnnCellProblem p = check_cell_inputs(op, device, cell, x, h, c, weights);
  p.backward = true;
  const Shape state{p.N, p.H};
  const bool lstm = cell == RnnCell::Lstm;
  check_tensor(op, "h_out", h_out, 2, device);
  check_shape_is(op, "h_out", h_out, state, "h's shape");
  auto lstm_state = [&](const char* name, const Tensor* t, bool required) {
    if (!lstm) {
      if (t != nullptr)
        invalid_argument(
            op, name, t->shape().to_string(),
            std::string("must be null unless cell is lstm (it is ") + to_string(cell) + ")");
      return;
    }
    if (t == nullptr) {
      if (required) invalid_argument(op, name, "null", "an lstm cell's backward needs it");
      return;
    }
    check_tensor(op, name, *t, 2, device);
    check_shape_is(op, name, *t, state, "h's shape");
  };
  lstm_state("c_out", c_out, true);
  check_cell_saved(op, device, p, saved, true);
  p.with_saved = saved != nullptr;
  check_tensor(op, "dh_out", dh_out, 2, device);
  check_shape_is(op, "dh_out", dh_out, state, "h_out's shape");
  lstm_state("dc_out", dc_out, false);
  if (g.dh == nullptr) invalid_argument(op, "gradients.dh", "null", "is required");
  check_tensor(op, "gradients.dh", *g.dh, 2, device);
  check_shape_is(op, "gradients.dh", *g.dh, state, "h's shape");
  lstm_state("gradients.dc", g.dc, false);
  if (g.dx != nullptr) {
    check_tensor(op, "gradients.dx", *g.dx, 2, device);
    check_shape_is(op, "gradients.dx", *g.dx, x.shape(), "x's shape");
  }
  auto like = [&](const char* name, Tensor* grad, const Tensor* of, const char* of_name) {
    if (grad == nullptr) return;
    if (of == nullptr)
      invalid_argument(op, name, grad->shape().to_string(),
                       std::string("must be null when ") + of_name + " is null");
    check_tensor(op, name, *grad, of->rank(), device);
    check_shape_is(op, name, *grad, of->shape(), std::string(of_name) + "'s shape");
  };
  like("gradients.dw_ih", g.dw_ih, weights.w_ih, "weights.w_ih");
  like("gradients.dw_hh", g.dw_hh, weights.w_hh, "weights.w_hh");
  like("gradients.db_ih", g.db_ih, weights.b_ih, "weights.b_ih");
  like("gradients.db_hh", g.db_hh, weights.b_hh, "weights.b_hh");
  const std::pair<const char*, const Tensor*> inputs[] = {{"x", &x},
                                                          {"h", &h},
                                                          {"c", c},
                                                          {"weights.w_ih", weights.w_ih},
                                                          {"weights.w_hh", weights.w_hh},
                                                          {"weights.b_ih", weights.b_ih},
                                                          {"weights.b_hh", weights.b_hh},
                                                          {"h_out", &h_out},
                                                          {"c_out", c_out},
                                                          {"saved", saved},
                                                          {"dh_out", &dh_out},
                                                          {"dc_out", dc_out}};
  const std::pair<const char*, Tensor*> outputs[] = {
      {"gradients.dx", g.dx},       {"gradients.dh", g.dh},       {"gradients.dc", g.dc},
      {"gradients.dw_ih", g.dw_ih}, {"gradients.dw_hh", g.dw_hh}, {"gradients.db_ih", g.db_ih},
      {"gradients.db_hh", g.db_hh}};
  for (const auto& [out_name, out] : outputs)
    for (const auto& [in_name, in] : inputs) check_apart_from(op, out_name, out, in_name, in);
  for (std::size_t i = 0; i < std::size(outputs); ++i)
    for (std::size_t j = i + 1; j < std::size(outputs); ++j)
      if (outputs[i].second != nullptr)
        check_outputs_apart(op, outputs[j].first, *outputs[i].second, outputs[i].first,
                            outputs[j].second);
  p.with_dx = g.dx != nullptr;
  p.with_dc = g.dc != nullptr;
  p.with_dw_ih = g.dw_ih != nullptr;
  p.with_dw_hh = g.dw_hh != nullptr;
  p.with_db_ih = g.db_ih != nullptr;
  p.with_db_hh = g.db_hh != nullptr;
  const auto plan = cached_cell_plan(ctx, op, p, engine);
  RnnCellArgs a;
  a.x = x.data(), a.h = h.data(), a.c = data_or_null(c);
  a.w_ih = weights.w_ih->data(), a.w_hh = weights.w_hh->data();
  a.b_ih = data_or_null(weights.b_ih), a.b_hh = data_or_null(weights.b_hh);
  a.h_out_in = h_out.data(), a.c_out_in = data_or_null(c_out), a.saved_in = data_or_null(saved);
  a.dh_out = dh_out.data(), a.dc_out = data_or_null(dc_out);
  a.dx = data_or_null(g.dx), a.dh = g.dh->data(), a.dc = data_or_null(g.dc);
  a.dw_ih = data_or_null(g.dw_ih), a.dw_hh = data_or_null(g.dw_hh);
  a.db_ih = data_or_null(g.db_ih), a.db_hh = data_or_null(g.db_hh);
  return run_cell(op, ctx, *plan, a);
}

}  // namespace dlrt
