#include "common.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "gpu_timer.hpp"

#ifndef DLRT_BENCH_SHAPES_DIR
#error "DLRT_BENCH_SHAPES_DIR must be defined by the build (bench/CMakeLists.txt)"
#endif

namespace dlrt_bench {
namespace {

Options g_options;
Family g_family = Family::Conv;

// ---- small string helpers -----------------------------------------------

std::string trim(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    std::size_t pos = s.find(sep, start);
    out.push_back(trim(s.substr(start, pos == std::string_view::npos ? pos : pos - start)));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string fixed(double value, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, value);
  return buf;
}

// ---- options -------------------------------------------------------------

struct BadOption : std::runtime_error {
  using std::runtime_error::runtime_error;
};

double parse_double(const std::string& name, const std::string& value) {
  try {
    std::size_t used = 0;
    double d = std::stod(value, &used);
    if (used != value.size() || !std::isfinite(d) || d < 0) throw std::invalid_argument(value);
    return d;
  } catch (const std::exception&) {
    throw BadOption(name + " needs a non-negative number, got '" + value + "'");
  }
}

bool parse_bool(const std::string& name, const std::string& value) {
  std::string v = lower(value);
  if (v.empty() || v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  throw BadOption(name + " needs true/false (or 1/0), got '" + value + "'");
}

// "reference,cpu,...": every engine of the library's table.
std::string engine_list() {
  std::string names;
  for (dlrt::Engine e : dlrt::known_engines()) {
    if (!names.empty()) names += ',';
    names += dlrt::to_string(e);
  }
  return names;
}

std::vector<dlrt::Engine> parse_engines(const std::string& name, const std::string& value) {
  std::vector<dlrt::Engine> engines;
  for (const std::string& item : split(value, ',')) {
    if (item.empty()) continue;
    if (item == "all") {
      for (dlrt::Engine e : dlrt::known_engines())
        if (std::find(engines.begin(), engines.end(), e) == engines.end()) engines.push_back(e);
      continue;
    }
    dlrt::Engine engine;
    try {
      engine = dlrt::engine_from_string(item);
    } catch (const dlrt::Error&) {
      throw BadOption(name + ": unknown engine '" + item + "' (" + engine_list() + ")");
    }
    if (std::find(engines.begin(), engines.end(), engine) == engines.end())
      engines.push_back(engine);
  }
  if (engines.empty()) throw BadOption(name + " needs at least one engine");
  // Always the table's order, so that a report's columns do not depend on
  // how the list was spelled.
  std::vector<dlrt::Engine> ordered;
  for (dlrt::Engine e : dlrt::known_engines())
    if (std::find(engines.begin(), engines.end(), e) != engines.end()) ordered.push_back(e);
  // Auto, on the CPU, last: the row that shows what a user who names no engine gets.
  if (std::find(engines.begin(), engines.end(), dlrt::Engine::Auto) != engines.end())
    ordered.push_back(dlrt::Engine::Auto);
  return ordered;
}

const char* kHelp = R"(dlrt benchmark options (besides Google Benchmark's own --benchmark_* flags):
  --dlrt_quick                 the quick shape tables (a few small shapes; 3 repetitions,
                               --benchmark_min_time=0.02 unless given)
  --dlrt_tables=A,B            shape tables: names in the shapes folder (deepbench, resnet50,
                               cnn, small_batch, quick) or paths to .csv files
                                                                     [env DLRT_BENCH_TABLES]
  --dlrt_shapes_dir=DIR        folder of the tables (default: the source tree's bench/shapes)
                                                                     [env DLRT_BENCH_SHAPES_DIR]
  --dlrt_engines=LIST          engines to register, by name (default: every engine of the
                               library's table; dlrt_engines in the JSON context lists them);
                               all names the table's engines, auto adds Engine::Auto on the
                               CPU (the report shows its ratio to the row's fastest CPU engine)
                                                                     [env DLRT_BENCH_ENGINES]
  --dlrt_l2_flush=BOOL         GPU: overwrite a buffer of twice the L2 size before each timed
                               iteration (default true)              [env DLRT_BENCH_L2_FLUSH]
  --dlrt_gpu_hold_us=US        GPU: spin this long before each start event so that host-side
                               launch costs are not timed (default 50)
  --dlrt_warmup=N              untimed runs before each timed loop (default 2)
  --dlrt_peak_tflops=T         GPU FP32 peak for the roofline (default: from the device)
                                                                     [env DLRT_PEAK_TFLOPS]
  --dlrt_peak_gbps=G           GPU memory bandwidth peak in GB/s (default: from the device)
                                                                     [env DLRT_PEAK_GBPS]
  --dlrt_cpu_peak_gflops=G     CPU peaks; without them CPU cases have no roofline counter
  --dlrt_cpu_peak_gbps=G                                   [env DLRT_CPU_PEAK_GFLOPS, _GBPS]
  --dlrt_reference_max_gflop=G convolution: Reference runs shapes up to G GFLOP (default 0.12)
  --dlrt_cpu_max_gflop=G       convolution: Cpu runs shapes up to G GFLOP (default 8)
  --dlrt_reference_max_mb=M    pooling: Reference runs shapes moving up to M MB (default 64)
  --dlrt_cpu_max_mb=M          pooling: Cpu runs shapes moving up to M MB (default 1024)
  --dlrt_rnn_reference_max_gflop=G
                               RNN: Reference runs cases up to G GFLOP per call (default 0.25)
  --dlrt_rnn_cpu_max_gflop=G   RNN: Cpu runs cases up to G GFLOP per call (default 30)
  --dlrt_algo_search=MODE      heuristic (default) or exhaustive cuDNN algorithm choice
  --dlrt_pool_indices=BOOL     max pooling: forward writes argmax indices, backward reads
                               them (default false: backward finds the argmax from x and y)
  --dlrt_help                  this text

Case names: conv/<fwd|bwd_data|bwd_filter>/<engine>/<table>/<shape>,
pool/<fwd|bwd>/<max|avg_incl|avg_excl>/<engine>/<table>/<shape> and
rnn/<fwd|fwd_bwd>/<cell>/<engine>/<executor>/<table>/<shape>; select with
--benchmark_filter=REGEX.
)";

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

void apply_option(const std::string& name, const std::string& value, bool has_value) {
  Options& o = g_options;
  auto need_value = [&] {
    if (!has_value || value.empty())
      throw BadOption("--" + name + " needs a value (--" + name + "=...)");
  };
  if (name == "dlrt_quick") {
    o.quick = parse_bool(name, value);
  } else if (name == "dlrt_tables") {
    need_value();
    o.tables.clear();
    for (const std::string& t : split(value, ','))
      if (!t.empty()) o.tables.push_back(t);
  } else if (name == "dlrt_shapes_dir") {
    need_value();
    o.shapes_dir = value;
  } else if (name == "dlrt_engines") {
    need_value();
    o.engines = parse_engines(name, value);
  } else if (name == "dlrt_l2_flush") {
    o.l2_flush = parse_bool(name, value);
  } else if (name == "dlrt_gpu_hold_us") {
    need_value();
    o.gpu_hold_us = parse_double(name, value);
  } else if (name == "dlrt_warmup") {
    need_value();
    o.warmup = static_cast<int>(parse_double(name, value));
  } else if (name == "dlrt_peak_tflops") {
    need_value();
    o.peak_tflops = parse_double(name, value);
  } else if (name == "dlrt_peak_gbps") {
    need_value();
    o.peak_gbps = parse_double(name, value);
  } else if (name == "dlrt_cpu_peak_gflops") {
    need_value();
    o.cpu_peak_gflops = parse_double(name, value);
  } else if (name == "dlrt_cpu_peak_gbps") {
    need_value();
    o.cpu_peak_gbps = parse_double(name, value);
  } else if (name == "dlrt_reference_max_gflop") {
    need_value();
    o.reference_max_gflop = parse_double(name, value);
  } else if (name == "dlrt_cpu_max_gflop") {
    need_value();
    o.cpu_max_gflop = parse_double(name, value);
  } else if (name == "dlrt_reference_max_mb") {
    need_value();
    o.reference_max_mb = parse_double(name, value);
  } else if (name == "dlrt_cpu_max_mb") {
    need_value();
    o.cpu_max_mb = parse_double(name, value);
  } else if (name == "dlrt_rnn_reference_max_gflop") {
    need_value();
    o.rnn_reference_max_gflop = parse_double(name, value);
  } else if (name == "dlrt_rnn_cpu_max_gflop") {
    need_value();
    o.rnn_cpu_max_gflop = parse_double(name, value);
  } else if (name == "dlrt_algo_search") {
    std::string v = lower(value);
    if (v == "heuristic")
      o.algo_search = dlrt::AlgoSearch::Heuristic;
    else if (v == "exhaustive")
      o.algo_search = dlrt::AlgoSearch::Exhaustive;
    else
      throw BadOption("--dlrt_algo_search needs heuristic or exhaustive, got '" + value + "'");
  } else if (name == "dlrt_pool_indices") {
    o.pool_indices = parse_bool(name, value);
  } else {
    throw BadOption("unknown option --" + name + " (see --dlrt_help)");
  }
}

void apply_environment() {
  if (const char* v = env("DLRT_BENCH_SHAPES_DIR")) apply_option("dlrt_shapes_dir", v, true);
  if (const char* v = env("DLRT_BENCH_TABLES")) apply_option("dlrt_tables", v, true);
  if (const char* v = env("DLRT_BENCH_ENGINES")) apply_option("dlrt_engines", v, true);
  if (const char* v = env("DLRT_BENCH_L2_FLUSH")) apply_option("dlrt_l2_flush", v, true);
  if (const char* v = env("DLRT_PEAK_TFLOPS")) apply_option("dlrt_peak_tflops", v, true);
  if (const char* v = env("DLRT_PEAK_GBPS")) apply_option("dlrt_peak_gbps", v, true);
  if (const char* v = env("DLRT_CPU_PEAK_GFLOPS")) apply_option("dlrt_cpu_peak_gflops", v, true);
  if (const char* v = env("DLRT_CPU_PEAK_GBPS")) apply_option("dlrt_cpu_peak_gbps", v, true);
}

bool has_flag(const std::vector<std::string>& args, std::string_view flag) {
  for (const std::string& a : args)
    if (a.rfind(flag, 0) == 0 && (a.size() == flag.size() || a[flag.size()] == '=')) return true;
  return false;
}

// ---- devices -------------------------------------------------------------

struct Devices {
  std::unique_ptr<dlrt::Context> cpu;
  std::unique_ptr<dlrt::Context> gpu;  // null without a usable GPU
  std::string gpu_reason;              // why gpu is null
  dlrt::DeviceInfo gpu_info;
  std::unique_ptr<GpuTimer> timer;
};

Devices& devices() {
  static Devices d = [] {
    Devices out;
    out.cpu = std::make_unique<dlrt::Context>(dlrt::Device::cpu());
    if (dlrt::cuda_available()) {
      try {
        dlrt::ContextOptions co;
        co.algo_search = g_options.algo_search;
        out.gpu = std::make_unique<dlrt::Context>(dlrt::Device::cuda(0), co);
        out.gpu_info = dlrt::device_info(dlrt::Device::cuda(0));
      } catch (const std::exception& e) {
        out.gpu.reset();
        out.gpu_reason = e.what();
      }
    } else {
      out.gpu_reason = dlrt::built_with_cuda() ? dlrt::cuda_unavailable_reason()
                                               : "libdlrt built with DLRT_WITH_CUDA=OFF";
    }
    return out;
  }();
  return d;
}

GpuTimer& gpu_timer(dlrt::Context& ctx) {
  Devices& d = devices();
  if (!d.timer)
    d.timer = std::make_unique<GpuTimer>(ctx.device().index, ctx.native_stream(),
                                         g_options.l2_flush, g_options.gpu_hold_us);
  return *d.timer;
}

// ---- peaks ---------------------------------------------------------------

struct Peaks {
  double flops = 0;  // FLOP/s
  double bytes = 0;  // bytes/s
  std::string flops_source, bytes_source;
};

// FP32 FMA lanes per SM, from NVIDIA's architecture whitepapers: 64 on
// Volta, Turing and GA100 (sm_70, sm_75, sm_80); 128 on GA10x, Ada, Hopper
// and Blackwell (sm_86 and later).
int fp32_lanes_per_sm(int major, int minor) {
  if (major < 8) return 64;
  if (major == 8 && minor == 0) return 64;
  return 128;
}

const Peaks& gpu_peaks() {
  static const Peaks p = [] {
    Peaks out;
    const Options& o = g_options;
    const Devices& d = devices();
    if (o.peak_tflops > 0) {
      out.flops = o.peak_tflops * 1e12;
      out.flops_source = "user (--dlrt_peak_tflops / DLRT_PEAK_TFLOPS)";
    } else if (d.gpu && d.gpu_info.sm_count > 0 && d.gpu_info.sm_clock_khz > 0) {
      const dlrt::DeviceInfo& i = d.gpu_info;
      int lanes = fp32_lanes_per_sm(i.compute_capability_major, i.compute_capability_minor);
      out.flops = double(i.sm_count) * double(i.sm_clock_khz) * 1e3 * lanes * 2.0;
      out.flops_source = "device: " + std::to_string(i.sm_count) + " SMs x " +
                         fixed(i.sm_clock_khz / 1e3, 0) + " MHz x " + std::to_string(lanes) +
                         " FP32 lanes x 2";
    }
    if (o.peak_gbps > 0) {
      out.bytes = o.peak_gbps * 1e9;
      out.bytes_source = "user (--dlrt_peak_gbps / DLRT_PEAK_GBPS)";
    } else if (d.gpu && d.gpu_info.memory_clock_khz > 0 && d.gpu_info.memory_bus_width_bits > 0) {
      const dlrt::DeviceInfo& i = d.gpu_info;
      out.bytes = i.memory_clock_khz * 1e3 * (i.memory_bus_width_bits / 8.0) * 2.0;
      out.bytes_source = "device: " + fixed(i.memory_clock_khz / 1e3, 0) + " MHz x " +
                         std::to_string(i.memory_bus_width_bits) + " bits / 8 x 2";
    }
    return out;
  }();
  return p;
}

const Peaks& cpu_peaks() {
  static const Peaks p = [] {
    Peaks out;
    if (g_options.cpu_peak_gflops > 0) {
      out.flops = g_options.cpu_peak_gflops * 1e9;
      out.flops_source = "user";
    }
    if (g_options.cpu_peak_gbps > 0) {
      out.bytes = g_options.cpu_peak_gbps * 1e9;
      out.bytes_source = "user";
    }
    return out;
  }();
  return p;
}

std::string cuda_version(int v) {
  if (v <= 0) return "n/a";
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string cudnn_version(int v) {
  if (v <= 0) return "n/a";
  // cuDNN 9 encodes MAJOR*10000 + MINOR*100 + PATCH.
  return std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." +
         std::to_string(v % 100);
}

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

const Options& options() { return g_options; }

const char* family_name(Family family) {
  switch (family) {
    case Family::Conv:
      return "conv";
    case Family::Pool:
      return "pool";
    case Family::Rnn:
      return "rnn";
  }
  return "?";
}

bool initialize(int* argc, char*** argv, Family family, int* exit_code) {
  g_family = family;
  g_options.shapes_dir = DLRT_BENCH_SHAPES_DIR;
  std::vector<std::string> rest;
  bool help = false;
  try {
    apply_environment();
    for (int i = 1; i < *argc; ++i) {
      std::string arg = (*argv)[i];
      if (arg == "--help" || arg == "-h") help = true;
      if (arg.rfind("--dlrt_", 0) != 0) {
        rest.push_back(arg);
        continue;
      }
      std::size_t eq = arg.find('=');
      std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
      std::string value = eq == std::string::npos ? std::string() : arg.substr(eq + 1);
      if (name == "dlrt_help") {
        std::fputs(kHelp, stdout);
        *exit_code = 0;
        return false;
      }
      apply_option(name, value, eq != std::string::npos);
    }
  } catch (const BadOption& e) {
    std::fprintf(stderr, "%s: %s\n", (*argv)[0], e.what());
    *exit_code = 2;
    return false;
  }
  if (help) std::fputs(kHelp, stdout);

  // Defaults that make "median" meaningful: repetitions with aggregates
  // (the JSON keeps every repetition; the console shows the aggregates).
  if (!has_flag(rest, "--benchmark_repetitions"))
    rest.push_back(g_options.quick ? "--benchmark_repetitions=3" : "--benchmark_repetitions=5");
  if (!has_flag(rest, "--benchmark_display_aggregates_only") &&
      !has_flag(rest, "--benchmark_report_aggregates_only"))
    rest.push_back("--benchmark_display_aggregates_only=true");
  if (g_options.quick && !has_flag(rest, "--benchmark_min_time"))
    rest.push_back("--benchmark_min_time=0.02");

  // benchmark::Initialize keeps pointers into argv for the whole run.
  static std::vector<std::string> storage;
  static std::vector<char*> pointers;
  storage.clear();
  storage.push_back((*argv)[0]);
  storage.insert(storage.end(), rest.begin(), rest.end());
  pointers.clear();
  for (std::string& s : storage) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  *argc = static_cast<int>(storage.size());
  *argv = pointers.data();

  benchmark::Initialize(argc, *argv);
  if (benchmark::ReportUnrecognizedArguments(*argc, *argv)) {
    *exit_code = 2;
    return false;
  }
  return true;
}

// ---- tables --------------------------------------------------------------

std::int64_t Table::get(const CsvRow& row, const std::string& column) const {
  auto it = row.cells.find(column);
  if (it == row.cells.end() || it->second.empty())
    throw std::runtime_error(path + ":" + std::to_string(row.line) + ": column '" + column +
                             "' is missing");
  try {
    std::size_t used = 0;
    long long v = std::stoll(it->second, &used);
    if (used != it->second.size()) throw std::invalid_argument(it->second);
    return v;
  } catch (const std::exception&) {
    throw std::runtime_error(path + ":" + std::to_string(row.line) + ": column '" + column +
                             "' must be an integer, got '" + it->second + "'");
  }
}

std::int64_t Table::get(const CsvRow& row, const std::string& column, std::int64_t fallback) const {
  auto it = row.cells.find(column);
  if (it == row.cells.end() || it->second.empty()) return fallback;
  return get(row, column);
}

std::string Table::text(const CsvRow& row, const std::string& column) const {
  auto it = row.cells.find(column);
  return it == row.cells.end() ? std::string() : it->second;
}

std::vector<Table> load_tables(Family family) {
  const std::string suffix = std::string("_") + family_name(family);
  std::vector<std::string> names = g_options.tables;
  if (names.empty()) {
    if (g_options.quick)
      names = {"quick"};
    else if (family == Family::Conv)
      names = {"deepbench", "resnet50"};
    else if (family == Family::Rnn)
      names = {"deepbench", "small_batch"};
    else
      names = {"cnn"};
  }
  std::vector<Table> tables;
  for (const std::string& name : names) {
    Table t;
    if (ends_with(name, ".csv")) {
      t.path = name;
      std::string base = name.substr(name.find_last_of('/') + 1);
      base = base.substr(0, base.size() - 4);
      if (ends_with(base, suffix)) base = base.substr(0, base.size() - suffix.size());
      t.name = base;
    } else {
      t.name = name;
      t.path = g_options.shapes_dir + "/" + name + suffix + ".csv";
    }
    std::ifstream in(t.path);
    if (!in)
      throw std::runtime_error("cannot open shape table '" + t.path +
                               "' (set --dlrt_shapes_dir or DLRT_BENCH_SHAPES_DIR)");
    std::vector<std::string> header;
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
      ++number;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::string stripped = trim(line);
      if (stripped.empty() || stripped[0] == '#') continue;
      std::vector<std::string> cells = split(stripped, ',');
      if (header.empty()) {
        header = cells;
        continue;
      }
      if (cells.size() != header.size())
        throw std::runtime_error(t.path + ":" + std::to_string(number) + ": " +
                                 std::to_string(cells.size()) + " cells, the header has " +
                                 std::to_string(header.size()));
      CsvRow row;
      row.line = number;
      for (std::size_t i = 0; i < cells.size(); ++i) row.cells[header[i]] = cells[i];
      t.rows.push_back(std::move(row));
    }
    if (header.empty()) throw std::runtime_error(t.path + ": no header line");
    tables.push_back(std::move(t));
  }
  return tables;
}

// ---- devices and data ------------------------------------------------------

bool is_gpu_engine(dlrt::Engine engine) {
  return engine == dlrt::Engine::Cuda || engine == dlrt::Engine::Cudnn;
}

dlrt::Context& context_for(dlrt::Engine engine) {
  Devices& d = devices();
  if (is_gpu_engine(engine) && d.gpu) return *d.gpu;
  return *d.cpu;
}

dlrt::Tensor random_tensor(const dlrt::Shape& shape, dlrt::Device device, std::uint64_t seed) {
  dlrt::Tensor host(shape, dlrt::Device::cpu());
  float* p = host.data();
  const std::int64_t n = host.numel();
  std::uint64_t state = seed * 0x2545f4914f6cdd1dULL + 0x632be59bd9b4e019ULL;
  for (std::int64_t i = 0; i < n; ++i) {
    // 24 random bits -> [0, 1) -> [-1, 1)
    const float u = static_cast<float>(splitmix64(state) >> 40) * (1.0f / 16777216.0f);
    p[i] = 2.0f * u - 1.0f;
  }
  if (device.is_cpu()) return host;
  return host.to(device);
}

// ---- measurement -----------------------------------------------------------

void measure(benchmark::State& state, const std::string& case_name, dlrt::Context& ctx,
             const Cost& cost, const std::function<void()>& launch) {
  static std::string warmed;
  try {
    if (warmed != case_name) {
      for (int i = 0; i < g_options.warmup; ++i) launch();
      ctx.synchronize();
      warmed = case_name;
    }
    double total = 0;
    const bool gpu = ctx.device().is_cuda();
    if (gpu) {
      GpuTimer& timer = gpu_timer(ctx);
      for (auto _ : state) {
        timer.start();
        launch();
        const double seconds = timer.stop();
        state.SetIterationTime(seconds);
        total += seconds;
      }
      ctx.synchronize();
    } else {
      using Clock = std::chrono::steady_clock;
      for (auto _ : state) {
        const auto t0 = Clock::now();
        launch();
        total += std::chrono::duration<double>(Clock::now() - t0).count();
      }
    }
    using benchmark::Counter;
    if (cost.flop > 0)
      state.counters["FLOP/s"] = Counter(cost.flop, Counter::kIsIterationInvariantRate);
    state.counters["bytes/s"] = Counter(cost.bytes, Counter::kIsIterationInvariantRate);
    // The roofline floor of one call: the larger of its compute and memory
    // times at peak; the counter is floor / measured, in (0, 1].
    const Peaks& peaks = gpu ? gpu_peaks() : cpu_peaks();
    double floor = 0;
    if (cost.flop > 0 && peaks.flops > 0) floor = std::max(floor, cost.flop / peaks.flops);
    if (cost.bytes > 0 && peaks.bytes > 0) floor = std::max(floor, cost.bytes / peaks.bytes);
    if (floor > 0 && total > 0)
      state.counters["roofline"] = Counter(floor * double(state.iterations()) / total);
    if (cost.gemm_seconds > 0 && total > 0)
      state.counters["gemm_floor"] =
          Counter(cost.gemm_seconds * double(state.iterations()) / total);
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("failed: ") + e.what()).c_str());
  }
}

void register_skip(const std::string& name, const std::string& message) {
  benchmark::RegisterBenchmark(name.c_str(), [message](benchmark::State& state) {
    state.SkipWithError(message.c_str());
  })->Repetitions(1);
}

void configure(benchmark::internal::Benchmark* bench, dlrt::Engine engine) {
  if (is_gpu_engine(engine))
    bench->UseManualTime()->Unit(benchmark::kMicrosecond);
  else
    bench->UseRealTime()->Unit(benchmark::kMillisecond);
}

std::string cap_reason(Family family, dlrt::Engine engine, double work) {
  const Options& o = g_options;
  if (family == Family::Rnn) {
    if (engine == dlrt::Engine::Reference && work > o.rnn_reference_max_gflop)
      return "skipped: above the Reference cap of " + fixed(o.rnn_reference_max_gflop, 2) +
             " GFLOP per call (--dlrt_rnn_reference_max_gflop)";
    if (engine == dlrt::Engine::Cpu && work > o.rnn_cpu_max_gflop)
      return "skipped: above the Cpu cap of " + fixed(o.rnn_cpu_max_gflop, 2) +
             " GFLOP per call (--dlrt_rnn_cpu_max_gflop)";
  } else if (family == Family::Conv) {
    if (engine == dlrt::Engine::Reference && work > o.reference_max_gflop)
      return "skipped: above the Reference cap of " + fixed(o.reference_max_gflop, 2) +
             " GFLOP per call (--dlrt_reference_max_gflop)";
    if (engine == dlrt::Engine::Cpu && work > o.cpu_max_gflop)
      return "skipped: above the Cpu cap of " + fixed(o.cpu_max_gflop, 2) +
             " GFLOP per call (--dlrt_cpu_max_gflop)";
  } else {
    if (engine == dlrt::Engine::Reference && work > o.reference_max_mb)
      return "skipped: above the Reference cap of " + fixed(o.reference_max_mb, 0) +
             " MB moved per call (--dlrt_reference_max_mb)";
    if (engine == dlrt::Engine::Cpu && work > o.cpu_max_mb)
      return "skipped: above the Cpu cap of " + fixed(o.cpu_max_mb, 0) +
             " MB moved per call (--dlrt_cpu_max_mb)";
  }
  return {};
}

std::vector<dlrt::Executor> rnn_executors(dlrt::Engine engine) {
  switch (engine) {
    case dlrt::Engine::Cpu:
      return {dlrt::Executor::Sequential, dlrt::Executor::CpuTasks};
    case dlrt::Engine::Cuda:
      return {dlrt::Executor::Sequential, dlrt::Executor::CudaGraph, dlrt::Executor::CudaStreams};
    default:
      return {dlrt::Executor::Default};
  }
}

void add_context(Family family, const std::vector<Table>& tables) {
  const Options& o = g_options;
  const Devices& d = devices();
  auto add = [](const std::string& key, const std::string& value) {
    benchmark::AddCustomContext(key, value);
  };
  add("dlrt_version", dlrt::version());
  add("dlrt_built_with_cuda", dlrt::built_with_cuda() ? "yes" : "no");
  add("dlrt_bench_family", family_name(family));
  add("cpu_threads", std::to_string(dlrt::num_threads()));
  // The report tool reads the engines and the pairs it compares from here.
  add("dlrt_engines", engine_list() + ",auto");
  // The engines Auto's CPU row is measured against (auto/fastest in the report).
  std::string cpu_engines;
  for (dlrt::Engine e : dlrt::known_engines())
    if (dlrt::engine_device(e) == dlrt::Device::Kind::Cpu)
      cpu_engines.append(cpu_engines.empty() ? "" : ",").append(dlrt::to_string(e));
  add("dlrt_auto_rivals", cpu_engines);
  std::string comparisons;
  for (const dlrt::EngineComparison& c : dlrt::engine_comparisons()) {
    if (!comparisons.empty()) comparisons += ',';
    comparisons.append(dlrt::to_string(c.own)).append("/").append(dlrt::to_string(c.yardstick));
  }
  add("dlrt_engine_comparisons", comparisons);
  if (family == Family::Rnn) {
    // The executors of each engine ("cpu=sequential,cpu_tasks;..."; the last
    // is the one the engine tables show) and the pairs of them compared
    // (the executor Default stands for against the plain loop, and any
    // other against the default).
    std::string executors, executor_comparisons;
    for (dlrt::Engine e : dlrt::known_engines()) {
      const std::vector<dlrt::Executor> list = rnn_executors(e);
      if (!executors.empty()) executors += ';';
      executors.append(dlrt::to_string(e)).append("=");
      for (std::size_t i = 0; i < list.size(); ++i) {
        if (i > 0) executors += ',';
        executors += dlrt::to_string(list[i]);
      }
      auto compare = [&](dlrt::Executor a, dlrt::Executor b) {
        if (!executor_comparisons.empty()) executor_comparisons += ',';
        executor_comparisons.append(dlrt::to_string(a)).append("/").append(dlrt::to_string(b));
      };
      if (list.size() > 1) compare(list.back(), list.front());
      // Any executor between them against the default (a CUDA graph's replay
      // against issuing the same streams).
      for (std::size_t i = 1; i + 1 < list.size(); ++i) compare(list[i], list.back());
    }
    add("dlrt_rnn_executors", executors);
    add("dlrt_executor_comparisons", executor_comparisons);
  }
  add("cpu_hardware_threads", std::to_string(std::thread::hardware_concurrency()));
  const dlrt::CpuBackendInfo cpu = dlrt::cpu_backend_info();
  add("cpu_blas", cpu.blas);
  add("cpu_blas_threading", cpu.blas_threading);
  if (d.gpu) {
    const dlrt::DeviceInfo& i = d.gpu_info;
    add("gpu", i.name);
    add("gpu_compute_capability", std::to_string(i.compute_capability_major) + "." +
                                      std::to_string(i.compute_capability_minor));
    add("gpu_sm_count", std::to_string(i.sm_count));
    add("gpu_sm_clock_mhz", fixed(i.sm_clock_khz / 1e3, 0));
    add("gpu_memory_clock_mhz", fixed(i.memory_clock_khz / 1e3, 0));
    add("gpu_memory_bus_width_bits", std::to_string(i.memory_bus_width_bits));
    add("gpu_memory_gib", fixed(double(i.total_memory) / double(1ULL << 30), 1));
    add("cuda_driver", cuda_version(i.driver_version));
    add("cuda_runtime", cuda_version(i.runtime_version));
    add("cudnn", cudnn_version(i.cudnn_version));
    add("gpu_l2_flush", o.l2_flush ? "on" : "off");
    add("gpu_hold_us", fixed(o.gpu_hold_us, 0));
    add("gpu_algo_search",
        o.algo_search == dlrt::AlgoSearch::Exhaustive ? "exhaustive" : "heuristic");
  } else {
    add("gpu", "none (" + d.gpu_reason + ")");
    add("cuda_driver", "n/a");
    add("cuda_runtime", "n/a");
    add("cudnn", "n/a");
  }
  const Peaks& gp = gpu_peaks();
  if (gp.flops > 0) {
    add("gpu_peak_fp32_tflops", fixed(gp.flops / 1e12, 2));
    add("gpu_peak_fp32_source", gp.flops_source);
  }
  if (gp.bytes > 0) {
    add("gpu_peak_gbps", fixed(gp.bytes / 1e9, 1));
    add("gpu_peak_gbps_source", gp.bytes_source);
  }
  const Peaks& cp = cpu_peaks();
  if (cp.flops > 0) add("cpu_peak_gflops", fixed(cp.flops / 1e9, 1));
  if (cp.bytes > 0) add("cpu_peak_gbps", fixed(cp.bytes / 1e9, 1));
  std::string list;
  for (const Table& t : tables) list += (list.empty() ? "" : ", ") + t.name + "=" + t.path;
  add("shape_tables", list);
  add("warmup_runs", std::to_string(o.warmup));
  if (family == Family::Conv)
    add("cpu_caps", "reference <= " + fixed(o.reference_max_gflop, 2) +
                        " GFLOP, cpu <= " + fixed(o.cpu_max_gflop, 2) + " GFLOP");
  else if (family == Family::Rnn)
    add("cpu_caps", "reference <= " + fixed(o.rnn_reference_max_gflop, 2) +
                        " GFLOP, cpu <= " + fixed(o.rnn_cpu_max_gflop, 2) + " GFLOP");
  else
    add("cpu_caps", "reference <= " + fixed(o.reference_max_mb, 0) +
                        " MB, cpu <= " + fixed(o.cpu_max_mb, 0) + " MB");
}

std::string pair_label(std::int64_t a, std::int64_t b) {
  std::string s = std::to_string(a);
  if (a != b) {
    s += 'x';
    s += std::to_string(b);
  }
  return s;
}

std::string input_label(const dlrt::Shape& x) {
  // Appended piece by piece: "literal" + std::string&& trips a false
  // -Wrestrict in GCC 12 at -O3.
  std::string s = "n";
  s += std::to_string(x[0]);
  s += "_c";
  s += std::to_string(x[1]);
  s += "_h";
  s += std::to_string(x[2]);
  s += "_w";
  s += std::to_string(x[3]);
  return s;
}

int run_benchmarks(int argc, char** argv, Family family, const char* program,
                   const std::function<void(const std::vector<Table>&)>& register_cases) {
  int exit_code = 0;
  if (!initialize(&argc, &argv, family, &exit_code)) return exit_code;
  try {
    const std::vector<Table> tables = load_tables(family);
    register_cases(tables);
    add_context(family, tables);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 2;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace dlrt_bench
