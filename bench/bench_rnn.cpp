// dlrt_bench_rnn: every (shape from a table) x (forward, forward+backward) x
// (engine) x (executor) of the recurrent networks (tanh/ReLU RNN, LSTM,
// GRU). Shapes come from CSV tables read at run time
// (bench/shapes/*_rnn.csv); see docs/benchmarks.md.
//
// Phases:
//   fwd      inference: RnnPlan::forward with no training state (saved = null)
//   fwd_bwd  one training step through time: forward in training mode, then
//            backward_data (dx from dy) and backward_weights (dW, overwritten)
//
// Engines played by the scheduler (Cpu, Cuda) run once per executor (Cpu:
// Sequential and CpuTasks; Cuda: CudaStreams and CudaGraph), so that the
// report shows what playing independent nodes at once buys; the others
// (Reference, Cudnn) run with Executor::Default.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"

namespace {

using dlrt::Engine;
using dlrt::Executor;
using dlrt::RnnCell;
using dlrt::Shape;
using dlrt::Tensor;
using dlrt_bench::Family;

enum class Phase { Forward, Training };

const char* phase_name(Phase phase) { return phase == Phase::Forward ? "fwd" : "fwd_bwd"; }

struct RnnCase {
  std::string table, label, note;
  dlrt::RnnParams params;
  std::int64_t T = 1, N = 1;
  double forward_flop = 0;
};

int directions(const dlrt::RnnParams& p) { return p.bidirectional ? 2 : 1; }
std::int64_t hidden_out(const dlrt::RnnParams& p) {
  return p.proj_size > 0 ? p.proj_size : p.hidden_size;
}

// FLOPs of one forward call: per layer l and direction, T steps of the input
// GEMM ([N, I_l] x [I_l, G*H]) and the recurrent GEMM ([N, H_out] x [H_out,
// G*H]), 2 FLOPs per multiply-add, plus the projection ([N, H] x [H, P])
// when there is one:
//
//   forward = sum over layers, directions of 2*T*N*G*H*(I_l + H_out) (+ 2*T*N*H*P)
//
// with I_0 = input_size and I_l = D*H_out above, G the gate count (1, 1, 4,
// 3). The pointwise gate math is left out (it is O(T*N*G*H), a few percent
// at these sizes). Training (forward + backward_data + backward_weights)
// counts 3x forward: backward_data multiplies the gate gradients by both
// weight matrices (dx, dh) and backward_weights forms both weight gradients,
// each the same GEMM size as forward's.
double forward_flop_of(const dlrt::RnnParams& p, std::int64_t T, std::int64_t N) {
  const double G = dlrt::rnn_gate_count(p.cell), H = p.hidden_size, H_out = double(hidden_out(p));
  double flop = 0;
  for (int l = 0; l < p.num_layers; ++l) {
    const double I = l == 0 ? double(p.input_size) : directions(p) * H_out;
    double per_step = 2.0 * double(N) * G * H * (I + H_out);
    if (p.proj_size > 0) per_step += 2.0 * double(N) * H * double(p.proj_size);
    flop += directions(p) * double(T) * per_step;
  }
  return flop;
}

double flop_of(const RnnCase& c, Phase phase) {
  return phase == Phase::Forward ? c.forward_flop : 3.0 * c.forward_flop;
}

// The GEMM floor of a case on the CPU: its forward's multiply-adds as one
// large product, y[T*N, G*H] = x[T*N, K] w[G*H, K]^T, K chosen so that the
// FLOPs are the forward's (every layer and direction's input and recurrent
// columns side by side), on the Cpu engine's linear ops over the same
// threads; training adds the backward-data and backward-weights products
// of that size. The least of five timed calls after a warm-up, once per case
// and phase. A recurrence cannot beat it: its steps are smaller products
// in sequence.
double gemm_floor_seconds(const RnnCase& c, Phase phase) {
  static std::map<std::string, double> cache;
  const std::string key = c.table + "/" + c.label + "/" + phase_name(phase);
  const auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  dlrt::Context& ctx = dlrt_bench::context_for(Engine::Cpu);
  const std::int64_t rows = c.T * c.N;
  const std::int64_t GH = std::int64_t{dlrt::rnn_gate_count(c.params.cell)} * c.params.hidden_size;
  const std::int64_t K =
      std::max<std::int64_t>(1, std::llround(c.forward_flop / (2.0 * double(rows) * double(GH))));
  const std::uint64_t seed = std::hash<std::string>{}(key);
  const Tensor x = dlrt_bench::random_tensor(Shape{rows, K}, ctx.device(), seed + 1);
  const Tensor w = dlrt_bench::random_tensor(Shape{GH, K}, ctx.device(), seed + 2);
  Tensor y(Shape{rows, GH}, ctx.device()), dx(Shape{rows, K}, ctx.device()),
      dw(Shape{GH, K}, ctx.device());
  auto call = [&] {
    dlrt::linear_forward(ctx, x, w, nullptr, y, Engine::Cpu);
    if (phase == Phase::Training) {
      dlrt::linear_backward_data(ctx, y, w, dx, Engine::Cpu);
      dlrt::linear_backward_weights(ctx, x, y, dw, nullptr, false, Engine::Cpu);
    }
  };
  call();
  double best = 0;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = i == 0 ? seconds : std::min(best, seconds);
  }
  cache[key] = best;
  return best;
}

// Compulsory traffic: forward reads x and the weights and writes y (and hy,
// cy); training also reads dy and writes dx and dW.
double bytes_of(const RnnCase& c, Phase phase) {
  const dlrt::RnnParams& p = c.params;
  const double x = double(c.T * c.N * p.input_size);
  const double y = double(c.T * c.N * directions(p) * hidden_out(p));
  const double w = double(dlrt::rnn_weight_count(p));
  const double states = double(std::int64_t{p.num_layers} * directions(p) * c.N) *
                        double(hidden_out(p) + (p.cell == RnnCell::Lstm ? p.hidden_size : 0));
  double elements = x + w + y + states;
  if (phase == Phase::Training) elements += y + x + w;
  return 4.0 * elements;
}

RnnCell cell_of(const dlrt_bench::Table& t, const dlrt_bench::CsvRow& row) {
  const std::string name = t.text(row, "cell");
  if (name == "vanilla" || name == "tanh") return RnnCell::Tanh;  // DeepBench's "vanilla"
  if (name == "relu") return RnnCell::Relu;
  if (name == "lstm") return RnnCell::Lstm;
  if (name == "gru") return RnnCell::Gru;
  throw std::runtime_error(t.path + ":" + std::to_string(row.line) + ": column 'cell' must be " +
                           "vanilla, tanh, relu, lstm or gru, got '" + name + "'");
}

// "h512_n16_t25": hidden size, batch, steps; then "_i256" when the input
// size differs from the hidden size, "_l2" for stacked layers, "_bi" when
// bidirectional, "_p128" with a projection, "_nobias" without biases. The
// cell is a part of the case name of its own.
std::string label_of(const dlrt::RnnParams& p, std::int64_t T, std::int64_t N) {
  // Appended piece by piece: "literal" + std::string&& trips a false
  // -Wrestrict in GCC 12 at -O3.
  std::string s = "h";
  s += std::to_string(p.hidden_size);
  s += "_n";
  s += std::to_string(N);
  s += "_t";
  s += std::to_string(T);
  if (p.input_size != p.hidden_size) {
    s += "_i";
    s += std::to_string(p.input_size);
  }
  if (p.num_layers != 1) {
    s += "_l";
    s += std::to_string(p.num_layers);
  }
  if (p.bidirectional) s += "_bi";
  if (p.proj_size > 0) {
    s += "_p";
    s += std::to_string(p.proj_size);
  }
  if (!p.bias) s += "_nobias";
  return s;
}

std::vector<RnnCase> load_cases(const std::vector<dlrt_bench::Table>& tables) {
  std::vector<RnnCase> cases;
  for (const dlrt_bench::Table& t : tables) {
    std::map<std::string, std::size_t> seen;  // cell/label -> index in cases
    for (const dlrt_bench::CsvRow& row : t.rows) {
      RnnCase c;
      c.table = t.name;
      auto as_int = [&](const char* column, std::int64_t fallback) {
        return static_cast<int>(t.get(row, column, fallback));
      };
      dlrt::RnnParams& p = c.params;
      p.cell = cell_of(t, row);
      p.hidden_size = static_cast<int>(t.get(row, "hidden"));
      p.input_size = as_int("input", p.hidden_size);
      p.num_layers = as_int("layers", 1);
      p.bidirectional = t.get(row, "bidirectional", 0) != 0;
      p.bias = t.get(row, "bias", 1) != 0;
      p.proj_size = as_int("proj", 0);
      c.N = t.get(row, "batch");
      c.T = t.get(row, "timesteps");
      try {
        (void)dlrt::rnn_weight_layout(p);  // checks the parameters
        if (c.T < 1 || c.N < 1) throw std::runtime_error("batch and timesteps must be >= 1");
      } catch (const std::exception& e) {
        throw std::runtime_error(t.path + ":" + std::to_string(row.line) + ": " + e.what());
      }
      c.label = label_of(p, c.T, c.N);
      c.forward_flop = forward_flop_of(p, c.T, c.N);
      const std::string key = std::string(dlrt::to_string(p.cell)) + "/" + c.label;
      auto it = seen.find(key);
      if (it != seen.end()) {
        RnnCase& first = cases[it->second];
        first.note += (first.note.empty() ? "" : "; ") + std::string("listed again at line ") +
                      std::to_string(row.line);
        continue;
      }
      c.note = t.text(row, "note");
      seen[key] = cases.size();
      cases.push_back(std::move(c));
    }
  }
  return cases;
}

// The tensors of the case that runs now, one set per device kind; a new
// case releases the previous one's first.
struct RnnData {
  std::string key;
  Tensor x, w, dy;           // random inputs
  Tensor y, hy, cy, dx, dw;  // outputs
};

Tensor scaled_random(const Shape& shape, dlrt::Device device, std::uint64_t seed, float scale) {
  Tensor host = dlrt_bench::random_tensor(shape, dlrt::Device::cpu(), seed);
  float* p = host.data();
  for (std::int64_t i = 0; i < host.numel(); ++i) p[i] *= scale;
  return device.is_cpu() ? host : host.to(device);
}

RnnData& data_for(const RnnCase& c, dlrt::Device device) {
  static std::map<int, RnnData> cache;
  RnnData& d = cache[static_cast<int>(device.kind)];
  const std::string key = c.table + "/" + dlrt::to_string(c.params.cell) + "/" + c.label;
  if (d.key == key) return d;
  d = RnnData{};
  const dlrt::RnnParams& p = c.params;
  const std::uint64_t seed = std::hash<std::string>{}(key);
  const std::int64_t D = directions(p), H_out = hidden_out(p);
  const Shape y{c.T, c.N, D * H_out};
  const Shape h{std::int64_t{p.num_layers} * D, c.N, H_out};
  d.x = dlrt_bench::random_tensor(Shape{c.T, c.N, p.input_size}, device, seed + 1);
  // PyTorch's initialisation range, U(-1/sqrt(H), 1/sqrt(H)): the gates stay
  // away from saturation, as in a network being trained.
  d.w = scaled_random(Shape{dlrt::rnn_weight_count(p)}, device, seed + 2,
                      1.0f / std::sqrt(static_cast<float>(p.hidden_size)));
  d.dy = dlrt_bench::random_tensor(y, device, seed + 3);
  d.y = Tensor(y, device);
  d.hy = Tensor(h, device);
  if (p.cell == RnnCell::Lstm)
    d.cy = Tensor(Shape{std::int64_t{p.num_layers} * D, c.N, p.hidden_size}, device);
  d.dx = Tensor(Shape{c.T, c.N, p.input_size}, device);
  d.dw = Tensor(Shape{dlrt::rnn_weight_count(p)}, device);
  d.key = key;
  return d;
}

// The training state of the case that runs now, one per device kind: its
// arena is allocated by the first training forward (a warm-up run) and
// reused by every timed one; a new case releases the previous one's.
dlrt::RnnTrainingState& training_state_for(const std::string& name, dlrt::Device device) {
  struct Slot {
    std::string name;
    dlrt::RnnTrainingState saved;
  };
  static std::map<int, Slot> slots;
  Slot& s = slots[static_cast<int>(device.kind)];
  if (s.name != name) {
    s.saved = dlrt::RnnTrainingState();
    s.name = name;
  }
  return s.saved;
}

// The nodes one call plays (0 for an engine the scheduler does not play):
// the events of the traces of an extra, untimed call, counted once per case.
double node_count(const std::string& name, dlrt::Context& ctx, const dlrt::RnnPlan& plan,
                  Phase phase, RnnData& d, dlrt::RnnTrainingState& saved) {
  static std::map<std::string, double> counts;
  auto it = counts.find(name);
  if (it != counts.end()) return it->second;
  double nodes = 0;
  if (phase == Phase::Forward) {
    nodes = double(plan.last_trace().events.size());
  } else {
    plan.forward(ctx, d.x, d.w, nullptr, nullptr, d.y, nullptr, nullptr, &saved);
    nodes += double(plan.last_trace().events.size());
    plan.backward_data(ctx, saved, d.dy, nullptr, nullptr, d.dx, nullptr, nullptr);
    nodes += double(plan.last_trace().events.size());
    plan.backward_weights(ctx, saved, d.dw);
    nodes += double(plan.last_trace().events.size());
    ctx.synchronize();
  }
  counts[name] = nodes;
  return nodes;
}

void run_case(benchmark::State& state, const std::string& name, const RnnCase& c, Phase phase,
              Engine engine, const std::shared_ptr<const dlrt::RnnPlan>& plan) {
  dlrt::Context& ctx = dlrt_bench::context_for(engine);
  RnnData* d = nullptr;
  try {
    d = &data_for(c, ctx.device());
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("failed: setting up the tensors: ") + e.what()).c_str());
    return;
  }
  if (!c.note.empty()) state.SetLabel(c.note);
  const dlrt::RnnPlan* p = plan.get();
  Tensor* cy = c.params.cell == RnnCell::Lstm ? &d->cy : nullptr;
  std::function<void()> launch;
  dlrt::RnnTrainingState* saved = nullptr;
  if (phase == Phase::Forward) {
    launch = [&ctx, d, p, cy] {
      p->forward(ctx, d->x, d->w, nullptr, nullptr, d->y, &d->hy, cy, nullptr);
    };
  } else {
    saved = &training_state_for(name, ctx.device());
    launch = [&ctx, d, p, saved] {
      p->forward(ctx, d->x, d->w, nullptr, nullptr, d->y, nullptr, nullptr, saved);
      p->backward_data(ctx, *saved, d->dy, nullptr, nullptr, d->dx, nullptr, nullptr);
      p->backward_weights(ctx, *saved, d->dw);
    };
  }
  dlrt_bench::Cost cost{flop_of(c, phase), bytes_of(c, phase)};
  if (ctx.device().is_cpu() && engine != Engine::Reference) {
    try {
      cost.gemm_seconds = gemm_floor_seconds(c, phase);
    } catch (const std::exception& e) {
      state.SkipWithError((std::string("failed: timing the GEMM floor: ") + e.what()).c_str());
      return;
    }
  }
  dlrt_bench::measure(state, name, ctx, cost, launch);
  if (state.error_occurred()) return;
  using benchmark::Counter;
  // Seconds per time step of one layer and direction, and per played node:
  // iteration-invariant rates, inverted.
  const auto per = Counter::kIsIterationInvariantRate | Counter::kInvert;
  const double steps = double(c.T) * c.params.num_layers * directions(c.params);
  state.counters["per_step"] = Counter(steps, per);
  try {
    dlrt::RnnTrainingState scratch;
    const double nodes = node_count(name, ctx, *p, phase, *d, saved != nullptr ? *saved : scratch);
    if (nodes > 0) {
      state.counters["nodes"] = Counter(nodes);
      state.counters["per_node"] = Counter(nodes, per);
    }
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("failed: counting the played nodes: ") + e.what()).c_str());
  }
}

void register_cases(const std::vector<RnnCase>& cases) {
  const auto& engines = dlrt_bench::options().engines;
  for (const RnnCase& c : cases) {
    for (Phase phase : {Phase::Forward, Phase::Training}) {
      for (Engine engine : engines) {
        dlrt::Context& ctx = dlrt_bench::context_for(engine);
        for (Executor executor : dlrt_bench::rnn_executors(engine)) {
          std::string name = std::string("rnn/") + phase_name(phase) + "/";
          name += dlrt::to_string(c.params.cell);
          name += "/";
          name += dlrt::to_string(engine);
          name += "/";
          name += dlrt::to_string(executor);
          name += "/";
          name += c.table;
          name += "/";
          name += c.label;
          dlrt::EngineQuery q;
          try {
            q = dlrt::rnn_query(ctx, c.params, c.T, c.N, {}, engine);
          } catch (const std::exception& e) {
            dlrt_bench::register_skip(name, std::string("failed: rnn_query: ") + e.what());
            continue;
          }
          if (!q.supported) {
            dlrt_bench::register_skip(name, "unsupported: " + q.reason);
            continue;
          }
          const std::string cap =
              dlrt_bench::cap_reason(Family::Rnn, engine, flop_of(c, phase) / 1e9);
          if (!cap.empty()) {
            dlrt_bench::register_skip(name, cap);
            continue;
          }
          // The executor is a plan option: an engine that cannot play it
          // declines when the plan is made.
          std::shared_ptr<const dlrt::RnnPlan> plan;
          try {
            dlrt::RnnPlanOptions options;
            options.engine = engine;
            options.executor = executor;
            plan = std::make_shared<const dlrt::RnnPlan>(ctx, c.params, c.T, c.N,
                                                         std::span<const int>{}, options);
          } catch (const dlrt::Error& e) {
            dlrt_bench::register_skip(name, (e.kind() == dlrt::Error::Kind::Unsupported
                                                 ? std::string("unsupported: ")
                                                 : std::string("failed: RnnPlan: ")) +
                                                e.what());
            continue;
          } catch (const std::exception& e) {
            dlrt_bench::register_skip(name, std::string("failed: RnnPlan: ") + e.what());
            continue;
          }
          auto* bench = benchmark::RegisterBenchmark(
              name.c_str(), [name, c, phase, engine, plan](benchmark::State& state) {
                run_case(state, name, c, phase, engine, plan);
              });
          dlrt_bench::configure(bench, engine);
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return dlrt_bench::run_benchmarks(
      argc, argv, Family::Rnn, "dlrt_bench_rnn",
      [](const std::vector<dlrt_bench::Table>& tables) { register_cases(load_cases(tables)); });
}
