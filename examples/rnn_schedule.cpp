// The scheduler at work: by default a 2-layer bidirectional LSTM (hidden
// 256, batch 16, 50 steps, ragged lengths) trained one step through time, played by the
// Sequential executor (the per-step loop) and by CpuTasks (independent nodes
// at once on dlrt's threads). Prints both times and their ratio, checks that
// the two give the same bits, and writes the CpuTasks play as Chrome
// trace-event JSON (open it in Perfetto; tools/trace_timeline.py draws it).
//
//   dlrt_rnn_schedule [--out DIR] [--reps N] [--hidden H] [--steps T] [--batch N]
//                     [--layers L] [--unidirectional] [--equal-lengths]
//
// With --hidden 512 --steps 25 --layers 1 --unidirectional --equal-lengths
// it is the LSTM that docs/benchmarks.md compares with PyTorch.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "dlrt/dlrt.hpp"

namespace {

struct Options {
  std::string out = ".";
  int reps = 5;
  int hidden = 256;
  int steps = 50;
  int batch = 16;
  int layers = 2;
  bool bidirectional = true;
  bool ragged = true;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--out") {
      o.out = value("--out");
    } else if (arg == "--reps") {
      o.reps = std::max(1, std::atoi(value("--reps").c_str()));
    } else if (arg == "--hidden") {
      o.hidden = std::max(1, std::atoi(value("--hidden").c_str()));
    } else if (arg == "--steps") {
      o.steps = std::max(1, std::atoi(value("--steps").c_str()));
    } else if (arg == "--batch") {
      o.batch = std::max(1, std::atoi(value("--batch").c_str()));
    } else if (arg == "--layers") {
      o.layers = std::max(1, std::atoi(value("--layers").c_str()));
    } else if (arg == "--unidirectional") {
      o.bidirectional = false;
    } else if (arg == "--equal-lengths") {
      o.ragged = false;
    } else {
      std::fprintf(stderr,
                   "usage: dlrt_rnn_schedule [--out DIR] [--reps N] [--hidden H] [--steps T]\n");
      std::exit(2);
    }
  }
  return o;
}

dlrt::Tensor random_tensor(const dlrt::Shape& shape, unsigned seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-scale, scale);
  std::vector<float> values(static_cast<std::size_t>(shape.numel()));
  for (float& v : values) v = uniform(rng);
  return dlrt::Tensor::from_vector(shape, values);
}

struct Timing {
  double forward_ms = 0, training_ms = 0;
  std::vector<float> dw;
  dlrt::Trace trace;
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    dlrt::Context ctx;
    dlrt::RnnParams p;
    p.cell = dlrt::RnnCell::Lstm;
    p.input_size = o.hidden;
    p.hidden_size = o.hidden;
    p.num_layers = o.layers;
    p.bidirectional = o.bidirectional;
    const std::int64_t T = o.steps, N = o.batch, H = o.hidden, D = o.bidirectional ? 2 : 1;
    // Ragged, unsorted lengths: the plan orders the sequences once and
    // shrinks the batch step by step.
    std::vector<int> lengths(N);
    for (std::int64_t n = 0; n < N; ++n)
      lengths[n] = o.ragged ? static_cast<int>(std::max<std::int64_t>(1, T - (n * 7) % (T / 2 + 1)))
                            : static_cast<int>(T);
    const float scale = 1.0f / std::sqrt(static_cast<float>(H));
    const dlrt::Tensor x = random_tensor({T, N, H}, 1, 1.0f);
    const dlrt::Tensor w = random_tensor({dlrt::rnn_weight_count(p)}, 2, scale);
    const dlrt::Tensor dy = random_tensor({T, N, D * H}, 3, 1.0f);
    dlrt::Tensor y({T, N, D * H}), dx({T, N, H}), dw({dlrt::rnn_weight_count(p)});

    auto play = [&](dlrt::Executor executor) {
      dlrt::RnnPlanOptions options;
      options.engine = dlrt::Engine::Cpu;
      options.executor = executor;
      const dlrt::RnnPlan plan(ctx, p, T, N, lengths, options);
      dlrt::RnnTrainingState saved;
      Timing best{1e30, 1e30, {}, {}};
      for (int r = 0; r < o.reps + 1; ++r) {  // the first run allocates the arena
        const auto t0 = std::chrono::steady_clock::now();
        plan.forward(ctx, x, w, nullptr, nullptr, y, nullptr, nullptr, &saved);
        const auto t1 = std::chrono::steady_clock::now();
        if (r == o.reps) best.trace = plan.last_trace();
        plan.backward_data(ctx, saved, dy, nullptr, nullptr, dx, nullptr, nullptr);
        plan.backward_weights(ctx, saved, dw);
        const auto t2 = std::chrono::steady_clock::now();
        if (r == 0) continue;
        best.forward_ms =
            std::min(best.forward_ms, std::chrono::duration<double, std::milli>(t1 - t0).count());
        best.training_ms =
            std::min(best.training_ms, std::chrono::duration<double, std::milli>(t2 - t0).count());
      }
      best.dw = dw.to_vector();
      std::printf("  %-11s forward %8.2f ms   forward+backward %8.2f ms   (%s)\n",
                  dlrt::to_string(executor), best.forward_ms, best.training_ms,
                  plan.description().c_str());
      return best;
    };

    std::printf(
        "LSTM, %d layers, %s, hidden %lld, batch %lld, %lld steps, %s lengths; %d "
        "threads, best of %d\n",
        o.layers, o.bidirectional ? "bidirectional" : "unidirectional", static_cast<long long>(H),
        static_cast<long long>(N), static_cast<long long>(T), o.ragged ? "ragged" : "equal",
        dlrt::num_threads(), o.reps);
    const Timing sequential = play(dlrt::Executor::Sequential);
    const Timing tasks = play(dlrt::Executor::CpuTasks);
    const bool same = sequential.dw.size() == tasks.dw.size() &&
                      std::memcmp(sequential.dw.data(), tasks.dw.data(),
                                  sequential.dw.size() * sizeof(float)) == 0;
    std::printf(
        "  cpu_tasks vs sequential: %.2fx forward, %.2fx forward+backward; weight "
        "gradients %s\n",
        sequential.forward_ms / tasks.forward_ms, sequential.training_ms / tasks.training_ms,
        same ? "bitwise equal" : "DIFFER");
    std::filesystem::create_directories(o.out);
    const std::string path = o.out + "/rnn_forward_trace.json";
    std::ofstream(path) << dlrt::to_chrome_json({tasks.trace});
    std::printf("  trace of the cpu_tasks forward (%zu nodes): %s\n", tasks.trace.events.size(),
                path.c_str());
    return same ? 0 : 1;
  } catch (const dlrt::Error& e) {
    std::fprintf(stderr, "dlrt_rnn_schedule: %s\n", e.what());
    return 1;
  }
}
