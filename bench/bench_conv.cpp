// dlrt_bench_conv: every (shape from a table) x (forward, backward-data,
// backward-filter) x (engine) of 2-D convolution. Shapes come from CSV tables
// read at run time (bench/shapes/*_conv.csv); see docs/benchmarks.md.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"

namespace {

using dlrt::Conv2dOp;
using dlrt::Engine;
using dlrt::Shape;
using dlrt::Tensor;
using dlrt_bench::Family;

struct ConvCase {
  std::string table, label, note;
  Shape x, w, y;
  dlrt::Conv2dParams params;
  double flop = 0;
};

const char* op_name(Conv2dOp op) {
  switch (op) {
    case Conv2dOp::Forward:
      return "fwd";
    case Conv2dOp::BackwardData:
      return "bwd_data";
    case Conv2dOp::BackwardFilter:
      return "bwd_filter";
    case Conv2dOp::BackwardBias:
      return "bwd_bias";
  }
  return "?";
}

// "n8_c64_h56_w56_k128_f3x3_p1_s2": batch, channels, input size, filters,
// filter size (R x S), padding and stride (h x w when they differ).
std::string label_of(const Shape& x, const Shape& w, const dlrt::Conv2dParams& p) {
  // Appended piece by piece: "literal" + std::string&& trips a false
  // -Wrestrict in GCC 12 at -O3.
  std::string s = dlrt_bench::input_label(x);
  s += "_k";
  s += std::to_string(w[0]);
  s += "_f";
  s += std::to_string(w[2]);
  s += "x";
  s += std::to_string(w[3]);
  s += "_p";
  s += dlrt_bench::pair_label(p.pad_h, p.pad_w);
  s += "_s";
  s += dlrt_bench::pair_label(p.stride_h, p.stride_w);
  if (p.dilation_h != 1 || p.dilation_w != 1) {
    s += "_d";
    s += dlrt_bench::pair_label(p.dilation_h, p.dilation_w);
  }
  if (p.groups != 1) {
    s += "_g";
    s += std::to_string(p.groups);
  }
  return s;
}

std::vector<ConvCase> load_cases(const std::vector<dlrt_bench::Table>& tables) {
  std::vector<ConvCase> cases;
  for (const dlrt_bench::Table& t : tables) {
    std::map<std::string, std::size_t> seen;  // label -> index in cases
    for (const dlrt_bench::CsvRow& row : t.rows) {
      ConvCase c;
      c.table = t.name;
      const std::int64_t N = t.get(row, "N"), C = t.get(row, "C"), H = t.get(row, "H"),
                         W = t.get(row, "W"), K = t.get(row, "K"), R = t.get(row, "R"),
                         S = t.get(row, "S");
      auto as_int = [&](const char* column, std::int64_t fallback) {
        return static_cast<int>(t.get(row, column, fallback));
      };
      c.params.pad_h = as_int("pad_h", 0);
      c.params.pad_w = as_int("pad_w", 0);
      c.params.stride_h = as_int("stride_h", 1);
      c.params.stride_w = as_int("stride_w", 1);
      c.params.dilation_h = as_int("dilation_h", 1);
      c.params.dilation_w = as_int("dilation_w", 1);
      c.params.groups = as_int("groups", 1);
      const std::int64_t count = t.get(row, "count", 1);
      c.x = Shape{N, C, H, W};
      c.w = Shape{K, C / std::max(c.params.groups, 1), R, S};
      try {
        c.y = dlrt::conv2d_output_shape(c.x, c.w, c.params);
      } catch (const dlrt::Error& e) {
        throw std::runtime_error(t.path + ":" + std::to_string(row.line) + ": " + e.what());
      }
      c.label = label_of(c.x, c.w, c.params);
      c.flop = 2.0 * double(N) * double(K) * double(C / c.params.groups) * double(R) * double(S) *
               double(c.y[2]) * double(c.y[3]);
      const std::string layer = t.text(row, "layer");
      // DeepBench lists a few shapes twice; each shape runs once, and its
      // note says how often the table (or the network) has it.
      auto it = seen.find(c.label);
      if (it != seen.end()) {
        ConvCase& first = cases[it->second];
        first.note += (first.note.empty() ? "" : "; ") + std::string("listed again at line ") +
                      std::to_string(row.line);
        continue;
      }
      if (!layer.empty()) c.note = layer + (count > 1 ? " (x" + std::to_string(count) + ")" : "");
      seen[c.label] = cases.size();
      cases.push_back(std::move(c));
    }
  }
  return cases;
}

// The tensors of the case that runs now, one set per device kind; a new
// case releases the previous one's first.
struct ConvData {
  std::string key;
  Tensor x, w, dy;   // random inputs
  Tensor y, dx, dw;  // outputs
};

ConvData& data_for(const ConvCase& c, dlrt::Device device) {
  static std::map<int, ConvData> cache;
  ConvData& d = cache[static_cast<int>(device.kind)];
  const std::string key = c.table + "/" + c.label;
  if (d.key == key) return d;
  d = ConvData{};
  const std::uint64_t seed = std::hash<std::string>{}(key);
  d.x = dlrt_bench::random_tensor(c.x, device, seed + 1);
  d.w = dlrt_bench::random_tensor(c.w, device, seed + 2);
  d.dy = dlrt_bench::random_tensor(c.y, device, seed + 3);
  d.y = Tensor(c.y, device);
  d.dx = Tensor(c.x, device);
  d.dw = Tensor(c.w, device);
  d.key = key;
  return d;
}

// The compulsory traffic of every op: each reads two of (x, w, y) -- or
// their gradients -- and writes the third, once.
double bytes_of(const ConvCase& c) { return 4.0 * double(c.x.numel() + c.w.numel() + c.y.numel()); }

void run_case(benchmark::State& state, const std::string& name, const ConvCase& c, Conv2dOp op,
              Engine engine) {
  dlrt::Context& ctx = dlrt_bench::context_for(engine);
  ConvData* d = nullptr;
  try {
    d = &data_for(c, ctx.device());
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("failed: setting up the tensors: ") + e.what()).c_str());
    return;
  }
  if (!c.note.empty()) state.SetLabel(c.note);
  std::function<void()> launch;
  switch (op) {
    case Conv2dOp::Forward:
      launch = [&ctx, d, &c, engine] {
        dlrt::conv2d_forward(ctx, d->x, d->w, nullptr, d->y, c.params, engine);
      };
      break;
    case Conv2dOp::BackwardData:
      launch = [&ctx, d, &c, engine] {
        dlrt::conv2d_backward_data(ctx, d->dy, d->w, d->dx, c.params, engine);
      };
      break;
    case Conv2dOp::BackwardFilter:
      launch = [&ctx, d, &c, engine] {
        dlrt::conv2d_backward_filter(ctx, d->x, d->dy, d->dw, c.params, engine);
      };
      break;
    case Conv2dOp::BackwardBias:
      state.SkipWithError("failed: backward-bias is not benchmarked");
      return;
  }
  dlrt_bench::measure(state, name, ctx, {c.flop, bytes_of(c)}, launch);
}

void register_cases(const std::vector<ConvCase>& cases) {
  const auto& engines = dlrt_bench::options().engines;
  for (const ConvCase& c : cases) {
    for (Conv2dOp op : {Conv2dOp::Forward, Conv2dOp::BackwardData, Conv2dOp::BackwardFilter}) {
      for (Engine engine : engines) {
        const std::string name = std::string("conv/") + op_name(op) + "/" +
                                 dlrt::to_string(engine) + "/" + c.table + "/" + c.label;
        dlrt::EngineQuery q;
        try {
          q = dlrt::conv2d_query(dlrt_bench::context_for(engine), op, c.x, c.w, c.params, engine);
        } catch (const std::exception& e) {
          dlrt_bench::register_skip(name, std::string("failed: conv2d_query: ") + e.what());
          continue;
        }
        if (!q.supported) {
          dlrt_bench::register_skip(name, "unsupported: " + q.reason);
          continue;
        }
        const std::string cap = dlrt_bench::cap_reason(Family::Conv, engine, c.flop / 1e9);
        if (!cap.empty()) {
          dlrt_bench::register_skip(name, cap);
          continue;
        }
        auto* bench = benchmark::RegisterBenchmark(name.c_str(),
                                                   [name, c, op, engine](benchmark::State& state) {
                                                     run_case(state, name, c, op, engine);
                                                   });
        dlrt_bench::configure(bench, engine);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return dlrt_bench::run_benchmarks(
      argc, argv, Family::Conv, "dlrt_bench_conv",
      [](const std::vector<dlrt_bench::Table>& tables) { register_cases(load_cases(tables)); });
}
