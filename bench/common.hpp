// What dlrt_bench_conv, dlrt_bench_pool and dlrt_bench_rnn share: their command-line
// options, the shape tables (CSV files read at run time), one context per
// device, random inputs, the timing loop and its counters, and the
// benchmark context (device, versions, peaks, threads).
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dlrt/dlrt.hpp"

namespace dlrt_bench {

enum class Family { Conv, Pool, Rnn };
// "conv", "pool", "rnn": the first part of case names, the tables' suffix.
const char* family_name(Family family);

struct Options {
  std::string shapes_dir;                                     // where table names are looked up
  std::vector<std::string> tables;                            // table names or .csv paths
  bool quick = false;                                         // the quick tables and quick defaults
  std::vector<dlrt::Engine> engines = dlrt::known_engines();  // every engine of the table
  bool l2_flush = true;     // GPU: write a buffer > L2 before each timed iteration
  double gpu_hold_us = 50;  // GPU: busy kernel queued before the start event
  int warmup = 2;           // untimed runs before the timed loop
  double peak_tflops = 0;   // GPU FP32 peak; 0: from the device
  double peak_gbps = 0;     // GPU memory peak; 0: from the device
  double cpu_peak_gflops = 0, cpu_peak_gbps = 0;  // CPU peaks; 0: no CPU roofline
  double reference_max_gflop = 0.12;              // conv: the Reference engine runs up to this
  double cpu_max_gflop = 8;                       // conv: the Cpu engine runs up to this
  double reference_max_mb = 64;                   // pool: bytes moved, Reference
  double cpu_max_mb = 1024;                       // pool: bytes moved, Cpu
  double rnn_reference_max_gflop = 0.25;          // rnn: GFLOP per call, Reference
  double rnn_cpu_max_gflop = 30;                  // rnn: GFLOP per call, Cpu
  dlrt::AlgoSearch algo_search = dlrt::AlgoSearch::Heuristic;
  bool pool_indices = false;  // max pooling records/uses argmax indices
};

const Options& options();

// Reads and removes the --dlrt_* options (and their DLRT_BENCH_* environment
// variables), adds the default repetition flags when none are given, then
// hands the rest to benchmark::Initialize. Returns false when the program
// should exit now with *exit_code (help printed, or a bad option).
bool initialize(int* argc, char*** argv, Family family, int* exit_code);

// Pieces of case names: "A" when a == b, else "AxB"; and an NCHW input as
// "n8_c64_h56_w56".
std::string pair_label(std::int64_t a, std::int64_t b);
std::string input_label(const dlrt::Shape& x);

// ---- shape tables -------------------------------------------------------

struct CsvRow {
  std::map<std::string, std::string> cells;  // header name -> value
  int line = 0;
};

struct Table {
  std::string name;  // "deepbench", "resnet50", "quick", ...
  std::string path;
  std::vector<CsvRow> rows;

  // An integer cell; `fallback` when the column is absent or the cell empty
  // (throws std::runtime_error naming the file and line when there is no
  // fallback or the value is not an integer).
  std::int64_t get(const CsvRow& row, const std::string& column) const;
  std::int64_t get(const CsvRow& row, const std::string& column, std::int64_t fallback) const;
  std::string text(const CsvRow& row, const std::string& column) const;
};

// The tables selected by the options, loaded. Throws std::runtime_error.
std::vector<Table> load_tables(Family family);

// ---- devices, engines, data --------------------------------------------

bool is_gpu_engine(dlrt::Engine engine);
// The context an engine's cases run on: the CPU context for CPU engines;
// for GPU engines the CUDA context when a GPU is usable, else the CPU
// context (the registry then declines the engine, with its reason).
dlrt::Context& context_for(dlrt::Engine engine);

// A tensor of uniform random values in [-1, 1) on `device`, different for
// every seed.
dlrt::Tensor random_tensor(const dlrt::Shape& shape, dlrt::Device device, std::uint64_t seed);

// ---- measurement -------------------------------------------------------

struct Cost {
  double flop = 0;   // floating-point operations per call (0: not reported)
  double bytes = 0;  // compulsory memory traffic per call
  // Seconds the call's multiply-adds take as large GEMMs on the same
  // threads, measured (0: not reported); the `gemm_floor` counter is this
  // over the measured time.
  double gemm_seconds = 0;
};

// Runs `launch` (one call of the op, queued on ctx) the warm-up count the
// first time `case_name` runs (Google Benchmark calls a case several times:
// to size the iteration count, then once per repetition), then times it:
// CUDA events and manual time on GPU contexts, a steady clock on the CPU.
// Sets the FLOP/s, bytes/s and roofline counters. A dlrt::Error or other
// exception marks the run "failed: ...".
void measure(benchmark::State& state, const std::string& case_name, dlrt::Context& ctx,
             const Cost& cost, const std::function<void()>& launch);

// Registers a case that only reports why it does not run. `message` starts
// with "unsupported:" (the engine registry's reason) or "skipped:" (a cap of
// this benchmark); the report tool lists both as skipped, never as failures.
void register_skip(const std::string& name, const std::string& message);

// Sets the unit and timing mode that fit `engine` on a registered case.
void configure(benchmark::internal::Benchmark* bench, dlrt::Engine engine);

// "skipped: ..." when `engine` is a CPU engine and `work` (GFLOP per call
// for convolution and RNNs, MB moved for pooling) is above its cap; empty
// otherwise.
std::string cap_reason(Family family, dlrt::Engine engine, double work);

// RNN: the executors an engine's cases are registered with. Engines played
// by the scheduler (Cpu, Cuda) get one case per executor: the baseline first
// (Sequential, CudaStreams), the one Executor::Default stands for last
// (CpuTasks, CudaGraph: what the report's engine tables show). The others
// get Executor::Default alone.
std::vector<dlrt::Executor> rnn_executors(dlrt::Engine engine);

// Records device, versions, peaks and threads with benchmark::AddCustomContext.
void add_context(Family family, const std::vector<Table>& tables);

// The whole main() of a benchmark binary: options, tables, registration of
// the cases, context, run. Returns the process's exit status.
int run_benchmarks(int argc, char** argv, Family family, const char* program,
                   const std::function<void(const std::vector<Table>&)>& register_cases);

}  // namespace dlrt_bench
