// dlrt_bench_pool: every (shape from a table) x (forward, backward) x (max,
// average including padding, average excluding padding) x (engine) of 2-D
// pooling. Shapes come from CSV tables read at run time
// (bench/shapes/*_pool.csv); see docs/benchmarks.md.
#include <cstdio>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"

namespace {

using dlrt::Engine;
using dlrt::Pool2dOp;
using dlrt::PoolMode;
using dlrt::Shape;
using dlrt::Tensor;
using dlrt_bench::Family;

struct PoolCase {
  std::string table, label, note;
  Shape x, y;
  dlrt::Pool2dParams params;  // mode set per registered case
};

const char* op_name(Pool2dOp op) { return op == Pool2dOp::Forward ? "fwd" : "bwd"; }

const char* mode_name(PoolMode mode) {
  switch (mode) {
    case PoolMode::Max:
      return "max";
    case PoolMode::AverageIncludePad:
      return "avg_incl";
    case PoolMode::AverageExcludePad:
      return "avg_excl";
  }
  return "?";
}

// "n32_c64_h112_w112_k3x3_s2_p1": batch, channels, input size, window,
// stride and padding (h x w when they differ), "_ceil" for ceil mode.
std::string label_of(const Shape& x, const dlrt::Pool2dParams& p) {
  // Appended piece by piece: "literal" + std::string&& trips a false
  // -Wrestrict in GCC 12 at -O3.
  std::string s = dlrt_bench::input_label(x);
  s += "_k";
  s += std::to_string(p.window_h);
  s += "x";
  s += std::to_string(p.window_w);
  s += "_s";
  s += dlrt_bench::pair_label(p.stride_h, p.stride_w);
  s += "_p";
  s += dlrt_bench::pair_label(p.pad_h, p.pad_w);
  if (p.ceil_mode) s += "_ceil";
  return s;
}

std::vector<PoolCase> load_cases(const std::vector<dlrt_bench::Table>& tables) {
  std::vector<PoolCase> cases;
  for (const dlrt_bench::Table& t : tables) {
    std::map<std::string, std::size_t> seen;
    for (const dlrt_bench::CsvRow& row : t.rows) {
      PoolCase c;
      c.table = t.name;
      c.x = Shape{t.get(row, "N"), t.get(row, "C"), t.get(row, "H"), t.get(row, "W")};
      auto as_int = [&](const char* column, std::int64_t fallback) {
        return static_cast<int>(t.get(row, column, fallback));
      };
      c.params.window_h = as_int("window_h", 2);
      c.params.window_w = as_int("window_w", c.params.window_h);
      c.params.stride_h = as_int("stride_h", c.params.window_h);
      c.params.stride_w = as_int("stride_w", c.params.stride_h);
      c.params.pad_h = as_int("pad_h", 0);
      c.params.pad_w = as_int("pad_w", c.params.pad_h);
      c.params.ceil_mode = t.get(row, "ceil_mode", 0) != 0;
      try {
        c.y = dlrt::pool2d_output_shape(c.x, c.params);
      } catch (const dlrt::Error& e) {
        throw std::runtime_error(t.path + ":" + std::to_string(row.line) + ": " + e.what());
      }
      c.label = label_of(c.x, c.params);
      if (seen.count(c.label)) continue;
      seen[c.label] = cases.size();
      c.note = t.text(row, "layer");
      cases.push_back(std::move(c));
    }
  }
  return cases;
}

struct PoolData {
  std::string key;
  Tensor x, dy;  // random inputs
  Tensor y, dx;  // outputs
  Tensor indices;
};

PoolData& data_for(const PoolCase& c, dlrt::Device device) {
  static std::map<int, PoolData> cache;
  PoolData& d = cache[static_cast<int>(device.kind)];
  const std::string key = c.table + "/" + c.label;
  if (d.key == key) return d;
  d = PoolData{};
  const std::uint64_t seed = std::hash<std::string>{}(key);
  d.x = dlrt_bench::random_tensor(c.x, device, seed + 1);
  d.dy = dlrt_bench::random_tensor(c.y, device, seed + 2);
  d.y = Tensor(c.y, device);
  d.dx = Tensor(c.x, device);
  if (dlrt_bench::options().pool_indices) d.indices = Tensor(c.y, device, dlrt::DType::I32);
  d.key = key;
  return d;
}

bool uses_indices(PoolMode mode) {
  return mode == PoolMode::Max && dlrt_bench::options().pool_indices;
}

// Compulsory traffic: forward reads x and writes y (and the indices);
// backward reads dy and writes dx, and max pooling also reads what locates
// each window's maximum (the indices, or x and y).
double bytes_of(const PoolCase& c, Pool2dOp op, PoolMode mode) {
  const double x = double(c.x.numel()), y = double(c.y.numel());
  double elements = x + y;
  if (op == Pool2dOp::Backward && mode == PoolMode::Max)
    elements += uses_indices(mode) ? y : x + y;
  else if (op == Pool2dOp::Forward && uses_indices(mode))
    elements += y;
  return 4.0 * elements;
}

void run_case(benchmark::State& state, const std::string& name, const PoolCase& c, Pool2dOp op,
              PoolMode mode, Engine engine) {
  dlrt::Context& ctx = dlrt_bench::context_for(engine);
  dlrt::Pool2dParams params = c.params;
  params.mode = mode;
  PoolData* d = nullptr;
  try {
    d = &data_for(c, ctx.device());
    if (op == Pool2dOp::Backward && mode == PoolMode::Max) {
      // What backward consumes: the forward result of this very input.
      dlrt::pool2d_forward(ctx, d->x, d->y, params, engine,
                           uses_indices(mode) ? &d->indices : nullptr);
      ctx.synchronize();
    }
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("failed: setting up the tensors: ") + e.what()).c_str());
    return;
  }
  if (!c.note.empty()) state.SetLabel(c.note);
  std::function<void()> launch;
  if (op == Pool2dOp::Forward) {
    Tensor* indices = uses_indices(mode) ? &d->indices : nullptr;
    launch = [&ctx, d, params, engine, indices] {
      dlrt::pool2d_forward(ctx, d->x, d->y, params, engine, indices);
    };
  } else {
    dlrt::Pool2dSaved saved;
    if (mode == PoolMode::Max) {
      if (uses_indices(mode)) {
        saved.indices = &d->indices;
      } else {
        saved.x = &d->x;
        saved.y = &d->y;
      }
    }
    launch = [&ctx, d, params, engine, saved] {
      dlrt::pool2d_backward(ctx, d->dy, d->dx, params, saved, engine);
    };
  }
  dlrt_bench::measure(state, name, ctx, {0.0, bytes_of(c, op, mode)}, launch);
}

void register_cases(const std::vector<PoolCase>& cases) {
  const auto& engines = dlrt_bench::options().engines;
  for (const PoolCase& c : cases) {
    for (Pool2dOp op : {Pool2dOp::Forward, Pool2dOp::Backward}) {
      for (PoolMode mode :
           {PoolMode::Max, PoolMode::AverageIncludePad, PoolMode::AverageExcludePad}) {
        dlrt::Pool2dParams params = c.params;
        params.mode = mode;
        for (Engine engine : engines) {
          const std::string name = std::string("pool/") + op_name(op) + "/" + mode_name(mode) +
                                   "/" + dlrt::to_string(engine) + "/" + c.table + "/" + c.label;
          dlrt::EngineQuery q;
          try {
            q = dlrt::pool2d_query(dlrt_bench::context_for(engine), op, c.x, params,
                                   uses_indices(mode), engine);
          } catch (const std::exception& e) {
            dlrt_bench::register_skip(name, std::string("failed: pool2d_query: ") + e.what());
            continue;
          }
          if (!q.supported) {
            dlrt_bench::register_skip(name, "unsupported: " + q.reason);
            continue;
          }
          const std::string cap =
              dlrt_bench::cap_reason(Family::Pool, engine, bytes_of(c, op, mode) / 1e6);
          if (!cap.empty()) {
            dlrt_bench::register_skip(name, cap);
            continue;
          }
          auto* bench = benchmark::RegisterBenchmark(
              name.c_str(), [name, c, op, mode, engine](benchmark::State& state) {
                run_case(state, name, c, op, mode, engine);
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
      argc, argv, Family::Pool, "dlrt_bench_pool",
      [](const std::vector<dlrt_bench::Table>& tables) { register_cases(load_cases(tables)); });
}
