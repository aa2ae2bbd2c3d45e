// dlrt_cpu_latency: how the CPU engines' ops behave on a shared machine.
//
// Runs a set of small and large ops, each in several fresh processes, idle
// and with a CPU hog running (a child of this tool that spins on one core
// and is killed when its measurement ends, and kills itself after a time
// limit in any case), at one thread and at every thread, and prints the
// median and worst latency per op and configuration, with the ratios the
// threading layer is judged by:
//   - under one hog, small ops within 2x of their idle one-thread latency;
//   - under one hog, large ops no slower than at one thread under the same hog;
//   - idle, large ops at least 1.8x faster on all threads than on one.
//
//   dlrt_cpu_latency [--processes N] [--reps N] [--threads N] [--quick] [--engine E]
//
// E is cpu (the default), onednn or auto; an op the engine declines is
// listed as declined, with the reason.
//
// The thread count reaches each worker process through DLRT_NUM_THREADS and
// OMP_NUM_THREADS, so the tool also measures builds older than
// dlrt::set_num_threads (the before/after table in docs/results/).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "dlrt/dlrt.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// The engine every op runs on (--engine; the workers get it on their command line).
dlrt::Engine g_engine = dlrt::Engine::Cpu;

struct Op {
  const char* name;
  bool large;
  std::function<std::function<void()>(dlrt::Context&)> prepare;  // returns one call of the op
};

dlrt::Tensor random_tensor(const dlrt::Shape& shape, unsigned seed) {
  std::vector<float> values(static_cast<std::size_t>(shape.numel()));
  unsigned state = seed * 2654435761u + 1;
  for (float& v : values) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<float>(state >> 8) / static_cast<float>(1u << 24) - 0.5f;
  }
  return dlrt::Tensor::from_vector(shape, values);
}

std::function<void()> conv_forward(dlrt::Context& ctx, dlrt::Shape x_shape, std::int64_t K, int R,
                                   int pad) {
  dlrt::Conv2dParams params;
  params.pad_h = params.pad_w = pad;
  auto x = std::make_shared<dlrt::Tensor>(random_tensor(x_shape, 1));
  auto w = std::make_shared<dlrt::Tensor>(random_tensor({K, x_shape[1], R, R}, 2));
  auto y =
      std::make_shared<dlrt::Tensor>(dlrt::conv2d_output_shape(x->shape(), w->shape(), params));
  return
      [&ctx, x, w, y, params] { dlrt::conv2d_forward(ctx, *x, *w, nullptr, *y, params, g_engine); };
}

std::function<void()> conv_backward_filter(dlrt::Context& ctx, dlrt::Shape x_shape, std::int64_t K,
                                           int R, int pad) {
  dlrt::Conv2dParams params;
  params.pad_h = params.pad_w = pad;
  auto x = std::make_shared<dlrt::Tensor>(random_tensor(x_shape, 3));
  auto dw = std::make_shared<dlrt::Tensor>(dlrt::Shape{K, x_shape[1], R, R});
  auto dy = std::make_shared<dlrt::Tensor>(
      random_tensor(dlrt::conv2d_output_shape(x->shape(), dw->shape(), params), 4));
  return [&ctx, x, dw, dy, params] {
    dlrt::conv2d_backward_filter(ctx, *x, *dy, *dw, params, g_engine);
  };
}

std::function<void()> pool_forward(dlrt::Context& ctx, dlrt::Shape x_shape,
                                   dlrt::Pool2dParams params) {
  auto x = std::make_shared<dlrt::Tensor>(random_tensor(x_shape, 5));
  auto y = std::make_shared<dlrt::Tensor>(dlrt::pool2d_output_shape(x->shape(), params));
  return [&ctx, x, y, params] { dlrt::pool2d_forward(ctx, *x, *y, params, g_engine); };
}

std::vector<Op> ops() {
  dlrt::Pool2dParams global7 = dlrt::Pool2dParams::global(dlrt::PoolMode::Max, {2, 64, 7, 7});
  dlrt::Pool2dParams global7_average = global7;
  global7_average.mode = dlrt::PoolMode::AverageExcludePad;
  dlrt::Pool2dParams window3;
  window3.window_h = window3.window_w = 3;
  window3.pad_h = window3.pad_w = 1;
  dlrt::Pool2dParams window3_average = window3;
  window3_average.mode = dlrt::PoolMode::AverageIncludePad;
  return {
      {"pool max global 7x7, 2x64x7x7", false,
       [=](dlrt::Context& c) {
         return pool_forward(c, {2, 64, 7, 7}, global7);
       }},
      {"pool avg global 7x7, 2x64x7x7", false,
       [=](dlrt::Context& c) {
         return pool_forward(c, {2, 64, 7, 7}, global7_average);
       }},
      {"conv 3x3 fwd, 2x16x32x32 k32", false,
       [](dlrt::Context& c) {
         return conv_forward(c, {2, 16, 32, 32}, 32, 3, 1);
       }},
      {"conv 1x1 fwd, 1x64x14x14 k64", false,
       [](dlrt::Context& c) {
         return conv_forward(c, {1, 64, 14, 14}, 64, 1, 0);
       }},
      {"conv 3x3 fwd, 8x64x56x56 k64", true,
       [](dlrt::Context& c) {
         return conv_forward(c, {8, 64, 56, 56}, 64, 3, 1);
       }},
      {"conv 3x3 bwd filter, 8x64x56x56 k64", true,
       [](dlrt::Context& c) {
         return conv_backward_filter(c, {8, 64, 56, 56}, 64, 3, 1);
       }},
      {"pool max 3x3 s2, 8x64x112x112", true,
       [=](dlrt::Context& c) {
         return pool_forward(c, {8, 64, 112, 112}, window3);
       }},
      {"pool avg 3x3 s2, 8x64x112x112", true,
       [=](dlrt::Context& c) {
         return pool_forward(c, {8, 64, 112, 112}, window3_average);
       }},
  };
}

// ---- the worker: one process, one thread count, every op -----------------

int run_worker(int reps) {
  dlrt::Context ctx;
  for (const Op& op : ops()) {
    std::function<void()> call = op.prepare(ctx);
    try {
      call();  // warm-up: caches, the thread pool, the workspace, the plan
    } catch (const dlrt::Error& e) {
      // "name <tab> declined: reason", the reason on one line.
      std::string reason = e.what();
      std::replace(reason.begin(), reason.end(), '\t', ' ');
      std::replace(reason.begin(), reason.end(), '\n', ' ');
      std::printf("%s\tdeclined: %s\n", op.name, reason.c_str());
      continue;
    }
    std::printf("%s", op.name);
    for (int r = 0; r < reps; ++r) {
      const auto start = Clock::now();
      call();
      std::printf("\t%.1f",
                  std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    }
    std::printf("\n");
  }
  return 0;
}

// ---- the driver ------------------------------------------------------------

struct Config {
  const char* label;
  bool hog;
  bool all_threads;
};

pid_t start_hog(int seconds) {
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(static_cast<unsigned>(seconds));  // never outlives its time limit
    volatile unsigned long spin = 0;
    for (;;) spin = spin + 1;
  }
  return pid;
}

void stop_hog(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

// op name -> latencies (us) of every repetition of every process.
using Samples = std::map<std::string, std::vector<double>>;
// op name -> why the engine declined it.
std::map<std::string, std::string> g_declined;

bool run_processes(const char* self, int processes, int reps, int threads, Samples* samples) {
  const std::string count = std::to_string(threads);
  for (int p = 0; p < processes; ++p) {
    int pipe_fd[2];
    if (pipe(pipe_fd) != 0) return false;
    const pid_t pid = fork();
    if (pid == 0) {
      dup2(pipe_fd[1], STDOUT_FILENO);
      close(pipe_fd[0]);
      close(pipe_fd[1]);
      setenv("DLRT_NUM_THREADS", count.c_str(), 1);
      setenv("OMP_NUM_THREADS", count.c_str(), 1);
      const std::string reps_text = std::to_string(reps);
      execl(self, self, "--engine", dlrt::to_string(g_engine), "--worker", reps_text.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(pipe_fd[1]);
    std::string out;
    char buffer[4096];
    ssize_t got = 0;
    while ((got = read(pipe_fd[0], buffer, sizeof(buffer))) > 0)
      out.append(buffer, static_cast<std::size_t>(got));
    close(pipe_fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "worker process failed (status %d)\n", status);
      return false;
    }
    std::size_t line_start = 0;
    while (line_start < out.size()) {
      std::size_t line_end = out.find('\n', line_start);
      if (line_end == std::string::npos) line_end = out.size();
      const std::string line = out.substr(line_start, line_end - line_start);
      line_start = line_end + 1;
      const std::size_t tab = line.find('\t');
      if (tab == std::string::npos) continue;
      if (line.compare(tab + 1, 9, "declined:") == 0) {
        g_declined[line.substr(0, tab)] = line.substr(tab + 11);
        continue;
      }
      std::vector<double>& into = (*samples)[line.substr(0, tab)];
      for (std::size_t at = tab; at != std::string::npos; at = line.find('\t', at + 1))
        into.push_back(std::strtod(line.c_str() + at + 1, nullptr));
    }
  }
  return true;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
double worst(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

std::string us(double value) {
  char text[32];
  if (value >= 10000)
    std::snprintf(text, sizeof(text), "%.1f ms", value / 1000);
  else if (value >= 1000)
    std::snprintf(text, sizeof(text), "%.2f ms", value / 1000);
  else
    std::snprintf(text, sizeof(text), "%.1f us", value);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  int processes = 3, reps = 20, threads = static_cast<int>(std::thread::hardware_concurrency());
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> int {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return std::atoi(argv[++i]);
    };
    if (arg == "--worker") return run_worker(value());
    if (arg == "--engine") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "--engine needs a value\n");
        return 2;
      }
      try {
        g_engine = dlrt::engine_from_string(argv[++i]);
      } catch (const dlrt::Error& e) {
        std::fprintf(stderr, "--engine: %s\n", e.what());
        return 2;
      }
      if (g_engine != dlrt::Engine::Auto &&
          dlrt::engine_device(g_engine) != dlrt::Device::Kind::Cpu) {
        std::fprintf(stderr, "--engine: %s is not a CPU engine\n", argv[i]);
        return 2;
      }
      continue;
    }
    if (arg == "--processes")
      processes = value();
    else if (arg == "--reps")
      reps = value();
    else if (arg == "--threads")
      threads = value();
    else if (arg == "--quick")
      quick = true;
    else {
      std::fprintf(stderr,
                   "usage: %s [--processes N] [--reps N] [--threads N] [--quick] [--engine E]\n"
                   "  runs each op idle and under a CPU hog, at 1 and N threads, in N processes\n",
                   argv[0]);
      return arg == "--help" ? 0 : 2;
    }
  }
  if (quick) processes = 1, reps = 3;
  if (processes < 1 || reps < 1 || threads < 1) {
    std::fprintf(stderr, "--processes, --reps and --threads must be >= 1\n");
    return 2;
  }
  char self[4096];
  const ssize_t length = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (length <= 0) return 1;
  self[length] = '\0';

  const Config configs[] = {{"idle, 1 thread", false, false},
                            {"idle, all threads", false, true},
                            {"hog, 1 thread", true, false},
                            {"hog, all threads", true, true}};
  std::vector<Samples> results;
  for (const Config& config : configs) {
    const pid_t hog = config.hog ? start_hog(600) : 0;
    if (config.hog) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Samples samples;
    const bool ok =
        run_processes(self, processes, reps, config.all_threads ? threads : 1, &samples);
    stop_hog(hog);
    if (!ok) return 1;
    results.push_back(std::move(samples));
  }

  std::printf("dlrt %s, engine %s, %d threads, %d processes x %d repetitions per configuration\n",
              dlrt::version(), dlrt::to_string(g_engine), threads, processes, reps);
  std::printf("BLAS: %s (%s)\n\n", dlrt::cpu_backend_info().blas.c_str(),
              dlrt::cpu_backend_info().blas_threading.c_str());
  std::printf(
      "| op | size | idle 1 thr (median / worst) | idle %d thr | hog 1 thr | hog %d thr "
      "| target |\n|---|---|---|---|---|---|---|\n",
      threads, threads);
  bool all_met = true;
  for (const Op& op : ops()) {
    const std::string name = op.name;
    if (const auto declined = g_declined.find(name); declined != g_declined.end()) {
      std::printf("| %s | %s | declined: %s |||||\n", name.c_str(), op.large ? "large" : "small",
                  declined->second.c_str());
      continue;
    }
    double m[4];
    std::string cells;
    for (int c = 0; c < 4; ++c) {
      const std::vector<double>& v = results[static_cast<std::size_t>(c)][name];
      m[c] = median(v);
      cells += "| " + us(m[c]) + " / " + us(worst(v)) + " ";
    }
    char target[160];
    bool met = false;
    if (op.large) {
      const double speedup = m[0] / m[1], loaded = m[3] / m[2];
      met = speedup >= 1.8 && loaded <= 1.0;
      std::snprintf(target, sizeof(target),
                    "idle speed-up %.2fx (>= 1.8), hog %d thr / hog 1 thr %.2f (<= 1) %s", speedup,
                    threads, loaded, met ? "met" : "MISSED");
    } else {
      const double loaded = m[3] / m[0];
      met = loaded <= 2.0;
      std::snprintf(target, sizeof(target), "hog %d thr / idle 1 thr %.2f (<= 2) %s", threads,
                    loaded, met ? "met" : "MISSED");
    }
    all_met = all_met && met;
    std::printf("| %s | %s %s| %s |\n", name.c_str(), op.large ? "large" : "small", cells.c_str(),
                target);
  }
  std::printf("\n%s\n", all_met ? "every target met" : "some targets missed");
  return 0;
}
