// The scheduler through the recurrent engines that it plays: every executor
// gives the bits of Sequential, traces respect the graph, plans run without
// allocating, and what a CPU cannot play is declined with the reason.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "support/test_support.hpp"

namespace dlrt {
namespace {

// Sets dlrt's thread count for a scope and restores the one before.
struct ThreadCount {
  int before = num_threads();
  explicit ThreadCount(int threads) { set_num_threads(threads); }
  ~ThreadCount() { set_num_threads(before); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;
};

using test::bitwise_equal;
using test::random_tensor;
using test::throws_error;

struct Case {
  RnnCell cell;
  int layers;
  bool bidirectional;
  std::vector<int> lengths;  // empty: all T
  int proj = 0;
};

std::string case_name(const Case& c) {
  std::string name = to_string(c.cell);
  name.append("_L").append(std::to_string(c.layers)).append(c.bidirectional ? "_bi" : "_uni");
  name.append(c.lengths.empty() ? "_full" : "_ragged");
  if (c.proj) name.append("_proj");
  return name;
}

// Everything one forward and backward writes.
struct Results {
  std::vector<float> y, hy, cy, dx, dh0, dc0, dw;
  Trace forward_trace;
};

constexpr std::int64_t kSteps = 9, kBatch = 20, kInput = 6, kHidden = 10;

Results play(const Case& c, Executor executor, std::uint64_t seed, Engine engine = Engine::Cpu) {
  const Device device = test::device_for(engine);
  Context ctx(device);
  RnnParams p;
  p.cell = c.cell;
  p.input_size = kInput;
  p.hidden_size = kHidden;
  p.num_layers = c.layers;
  p.bidirectional = c.bidirectional;
  p.proj_size = c.proj;
  const std::int64_t D = c.bidirectional ? 2 : 1, Hout = c.proj ? c.proj : kHidden;
  const bool lstm = c.cell == RnnCell::Lstm;
  RnnPlanOptions options;
  options.engine = engine;
  options.executor = executor;
  const RnnPlan plan(ctx, p, kSteps, kBatch, c.lengths, options);
  EXPECT_EQ(plan.executor(), executor);
  const Shape state{c.layers * D, kBatch, Hout}, cell_state{c.layers * D, kBatch, kHidden};
  const Tensor x = random_tensor({kSteps, kBatch, kInput}, seed, device);
  const Tensor w = random_tensor({rnn_weight_count(p)}, seed + 1, device);
  const Tensor h0 = random_tensor(state, seed + 2, device);
  const Tensor c0 = random_tensor(cell_state, seed + 3, device);
  const Tensor dy = random_tensor({kSteps, kBatch, D * Hout}, seed + 4, device);
  const Tensor dhy = random_tensor(state, seed + 5, device);
  const Tensor dcy = random_tensor(cell_state, seed + 6, device);
  Tensor y = test::poisoned({kSteps, kBatch, D * Hout}, device), hy = test::poisoned(state, device);
  Tensor cy = test::poisoned(cell_state, device), dx = test::poisoned(x.shape(), device);
  Tensor dh0 = test::poisoned(state, device), dc0 = test::poisoned(cell_state, device);
  Tensor dw = test::poisoned(w.shape(), device);
  RnnTrainingState saved;
  plan.forward(ctx, x, w, &h0, lstm ? &c0 : nullptr, y, &hy, lstm ? &cy : nullptr, &saved);
  Results r;
  r.forward_trace = plan.last_trace();
  plan.backward_data(ctx, saved, dy, &dhy, lstm ? &dcy : nullptr, dx, &dh0, lstm ? &dc0 : nullptr);
  plan.backward_weights(ctx, saved, dw);
  r.y = y.to_vector(), r.hy = hy.to_vector(), r.dx = dx.to_vector(), r.dh0 = dh0.to_vector();
  r.dw = dw.to_vector();
  if (lstm) r.cy = cy.to_vector(), r.dc0 = dc0.to_vector();
  return r;
}

class ExecutorBits : public ::testing::TestWithParam<Case> {};

// Sequential runs on one thread; CpuTasks on two, with the nodes in
// whatever order they become ready. Same graph, same bits.
TEST_P(ExecutorBits, CpuTasksGivesTheBitsOfSequential) {
  const ThreadCount two_threads(2);
  const Results sequential = play(GetParam(), Executor::Sequential, 7);
  const Results tasks = play(GetParam(), Executor::CpuTasks, 7);
  EXPECT_TRUE(bitwise_equal(sequential.y, tasks.y));
  EXPECT_TRUE(bitwise_equal(sequential.hy, tasks.hy));
  EXPECT_TRUE(bitwise_equal(sequential.cy, tasks.cy));
  EXPECT_TRUE(bitwise_equal(sequential.dx, tasks.dx));
  EXPECT_TRUE(bitwise_equal(sequential.dh0, tasks.dh0));
  EXPECT_TRUE(bitwise_equal(sequential.dc0, tasks.dc0));
  EXPECT_TRUE(bitwise_equal(sequential.dw, tasks.dw));
  for (float v : tasks.y) ASSERT_FALSE(v != v) << "an output element was not written";
  for (float v : tasks.dw) ASSERT_FALSE(v != v) << "a weight gradient was not written";
}

// The dependency checker: every node ran once, none before its predecessors ended.
void expect_trace_respects_graph(const Trace& trace) {
  ASSERT_FALSE(trace.events.empty());
  ASSERT_EQ(trace.events.size(), trace.predecessors.size());
  std::vector<double> start(trace.events.size()), end(trace.events.size());
  std::set<std::int32_t> seen;
  for (const TraceEvent& e : trace.events) {
    ASSERT_GE(e.node, 0);
    ASSERT_LT(e.node, static_cast<std::int32_t>(trace.events.size()));
    EXPECT_TRUE(seen.insert(e.node).second) << "node " << e.node << " ran twice";
    EXPECT_LE(e.start_us, e.end_us) << e.name;
    start[e.node] = e.start_us, end[e.node] = e.end_us;
  }
  for (std::size_t node = 0; node < trace.predecessors.size(); ++node)
    for (std::int32_t before : trace.predecessors[node])
      EXPECT_GE(start[node], end[before])
          << trace.events[node].name << " started before " << trace.events[before].name << " ended";
}

TEST_P(ExecutorBits, TracesRespectTheGraph) {
  const ThreadCount two_threads(2);
  const Results tasks = play(GetParam(), Executor::CpuTasks, 3);
  EXPECT_EQ(tasks.forward_trace.executor, "cpu_tasks");
  expect_trace_respects_graph(tasks.forward_trace);
  const Results sequential = play(GetParam(), Executor::Sequential, 3);
  expect_trace_respects_graph(sequential.forward_trace);
}

const Case kCases[] = {
    {RnnCell::Tanh, 1, false, {}},
    {RnnCell::Relu, 2, true, {9, 3, 7, 1, 9, 2, 5, 5, 8, 1, 9, 4, 6, 2, 3, 7, 9, 1, 1, 8}},
    {RnnCell::Lstm, 1, true, {}},
    {RnnCell::Lstm, 3, false, {9, 3, 7, 1, 9, 2, 5, 5, 8, 1, 9, 4, 6, 2, 3, 7, 9, 1, 1, 8}},
    {RnnCell::Lstm, 2, true, {7, 5, 5, 2, 1, 1, 7, 5, 5, 2, 1, 1, 7, 5, 5, 2, 1, 1, 3, 3}},
    {RnnCell::Lstm, 2, true, {7, 5, 5, 2, 1, 1, 7, 5, 5, 2, 1, 1, 7, 5, 5, 2, 1, 1, 3, 3}, 4},
    {RnnCell::Gru, 1, false, {2, 9, 9, 1, 4, 4, 4, 4, 4, 4, 9, 9, 9, 9, 9, 1, 1, 1, 1, 1}},
    {RnnCell::Gru, 3, true, {}},
};

INSTANTIATE_TEST_SUITE_P(Rnn, ExecutorBits, ::testing::ValuesIn(kCases),
                         [](const auto& param_info) { return case_name(param_info.param); });

// ---- plans ----------------------------------------------------------------------

RnnParams small_lstm() {
  RnnParams p;
  p.cell = RnnCell::Lstm;
  p.input_size = 5;
  p.hidden_size = 8;
  p.num_layers = 2;
  p.bidirectional = true;
  return p;
}

TEST(SchedulerPlans, ReuseGivesFreshResultsAndAllocatesNothingAfterTheFirstRun) {
  Context ctx;
  const RnnParams p = small_lstm();
  const std::vector<int> lengths{6, 2, 4};
  RnnPlanOptions options;
  options.engine = Engine::Cpu;
  const RnnPlan plan(ctx, p, 6, 3, lengths, options);
  Tensor x = random_tensor({6, 3, 5}, 1), w = random_tensor({rnn_weight_count(p)}, 2);
  Tensor y({6, 3, 16}), dy = random_tensor({6, 3, 16}, 3), dx({6, 3, 5});
  Tensor dw({rnn_weight_count(p)});
  RnnTrainingState saved;
  std::vector<float> previous_y, previous_dw;
  for (int run = 0; run < 4; ++run) {
    const Tensor fresh = random_tensor({6, 3, 5}, 10 + run);
    const std::uint64_t before = memory_stats(Device::cpu()).allocations;
    if (run > 0) x.copy_from(fresh);
    plan.forward(ctx, x, w, nullptr, nullptr, y, nullptr, nullptr, &saved);
    plan.backward_data(ctx, saved, dy, nullptr, nullptr, dx, nullptr, nullptr);
    plan.backward_weights(ctx, saved, dw);
    const std::uint64_t made = memory_stats(Device::cpu()).allocations - before;
    if (run == 0) {
      EXPECT_GE(made, 1u) << "the first training run allocates its arena";
    } else {
      EXPECT_EQ(made, 0u) << "run " << run << " allocated";
    }
    const std::vector<float> now_y = y.to_vector(), now_dw = dw.to_vector();
    if (run > 0) {
      EXPECT_FALSE(bitwise_equal(now_y, previous_y)) << "fresh inputs, same outputs";
      EXPECT_FALSE(bitwise_equal(now_dw, previous_dw));
    }
    previous_y = now_y, previous_dw = now_dw;
  }
  // The same inputs again give the same bits as their first run.
  Tensor y_again({6, 3, 16});
  plan.forward(ctx, x, w, nullptr, nullptr, y_again, nullptr, nullptr);
  EXPECT_TRUE(bitwise_equal(y_again.to_vector(), previous_y));
}

TEST(SchedulerPlans, GpuExecutorsAreDeclinedOnTheCpuWithTheReason) {
  Context ctx;
  for (Executor executor : {Executor::CudaStreams, Executor::CudaGraph}) {
    RnnPlanOptions options;
    options.engine = Engine::Cpu;
    options.executor = executor;
    EXPECT_TRUE(throws_error([&] { RnnPlan plan(ctx, small_lstm(), 4, 2, {}, options); },
                             Error::Kind::Unsupported, {to_string(executor), "GPU"}));
    options.engine = Engine::Auto;
    EXPECT_TRUE(throws_error([&] { RnnPlan plan(ctx, small_lstm(), 4, 2, {}, options); },
                             Error::Kind::Unsupported, {to_string(executor)}));
  }
}

TEST(SchedulerPlans, DefaultExecutorOnTheCpuIsCpuTasks) {
  Context ctx;
  RnnPlanOptions options;
  options.engine = Engine::Cpu;
  const RnnPlan plan(ctx, small_lstm(), 4, 2, {}, options);
  EXPECT_EQ(plan.executor(), Executor::CpuTasks);
  EXPECT_NE(plan.description().find("cpu_tasks"), std::string::npos) << plan.description();
}

TEST(SchedulerPlans, RunsWithOtherShapesOrDtypesNameTheArgument) {
  Context ctx;
  const RnnParams p = small_lstm();
  RnnPlanOptions options;
  options.engine = Engine::Cpu;
  const RnnPlan plan(ctx, p, 6, 3, {}, options);
  const Tensor x = random_tensor({6, 3, 5}, 1), w = random_tensor({rnn_weight_count(p)}, 2);
  Tensor y = test::poisoned({6, 3, 16});
  const std::vector<float> untouched = y.to_vector();
  const Tensor longer = random_tensor({7, 3, 5}, 1);
  EXPECT_TRUE(
      throws_error([&] { plan.forward(ctx, longer, w, nullptr, nullptr, y, nullptr, nullptr); },
                   Error::Kind::InvalidArgument, {"'x'", "[7, 3, 5]"}));
  const Tensor indices({6, 3, 5}, Device::cpu(), DType::I32);
  EXPECT_TRUE(
      throws_error([&] { plan.forward(ctx, indices, w, nullptr, nullptr, y, nullptr, nullptr); },
                   Error::Kind::InvalidArgument, {"x.dtype", "i32"}));
  Tensor narrow_y({6, 3, 8});
  EXPECT_TRUE(
      throws_error([&] { plan.forward(ctx, x, w, nullptr, nullptr, narrow_y, nullptr, nullptr); },
                   Error::Kind::InvalidArgument, {"'y'"}));
  const Tensor short_w = random_tensor({rnn_weight_count(p) - 1}, 2);
  EXPECT_TRUE(
      throws_error([&] { plan.forward(ctx, x, short_w, nullptr, nullptr, y, nullptr, nullptr); },
                   Error::Kind::InvalidArgument, {"'weights'", "rnn_weight_count"}));
  EXPECT_TRUE(bitwise_equal(y.to_vector(), untouched));
}

// ---- the GPU executors (the Cuda engine) -----------------------------------------

// The Cuda engine plays the same graph on one stream (Sequential), on a
// stream per layer and direction (CudaStreams) and as a captured CUDA graph
// (CudaGraph): every node computes in a shape fixed by the plan, so the
// bits are the same; against the Cpu engine, only the rounding differs.
class GpuExecutorBits : public ::testing::TestWithParam<Case> {
protected:
  void SetUp() override { DLRT_SKIP_UNLESS_ENGINE_RUNS(Engine::Cuda); }
};

void expect_same_bits(const Results& a, const Results& b, const char* what) {
  EXPECT_TRUE(bitwise_equal(a.y, b.y)) << what << ": y";
  EXPECT_TRUE(bitwise_equal(a.hy, b.hy)) << what << ": hy";
  EXPECT_TRUE(bitwise_equal(a.cy, b.cy)) << what << ": cy";
  EXPECT_TRUE(bitwise_equal(a.dx, b.dx)) << what << ": dx";
  EXPECT_TRUE(bitwise_equal(a.dh0, b.dh0)) << what << ": dh0";
  EXPECT_TRUE(bitwise_equal(a.dc0, b.dc0)) << what << ": dc0";
  EXPECT_TRUE(bitwise_equal(a.dw, b.dw)) << what << ": dw";
}

TEST_P(GpuExecutorBits, CudaStreamsAndCudaGraphGiveTheBitsOfSequential) {
  const Results sequential = play(GetParam(), Executor::Sequential, 7, Engine::Cuda);
  expect_same_bits(play(GetParam(), Executor::CudaStreams, 7, Engine::Cuda), sequential,
                   "cuda_streams");
  expect_same_bits(play(GetParam(), Executor::CudaGraph, 7, Engine::Cuda), sequential,
                   "cuda_graph");
  for (float v : sequential.y) ASSERT_FALSE(v != v) << "an output element was not written";
  for (float v : sequential.dw) ASSERT_FALSE(v != v) << "a weight gradient was not written";
  const Results cpu = play(GetParam(), Executor::Sequential, 7, Engine::Cpu);
  EXPECT_TRUE(test::all_close(sequential.y, cpu.y, kSteps * kHidden, 1e-4));
  EXPECT_TRUE(test::all_close(sequential.dx, cpu.dx, kSteps * kHidden, 1e-4));
  EXPECT_TRUE(test::all_close(sequential.dw, cpu.dw, kSteps * kBatch, 1e-4));
}

TEST_P(GpuExecutorBits, TracesRespectTheGraphAndNameTheStreams) {
  for (Executor executor : {Executor::Sequential, Executor::CudaStreams, Executor::CudaGraph}) {
    const Results r = play(GetParam(), executor, 3, Engine::Cuda);
    EXPECT_EQ(r.forward_trace.executor, to_string(executor));
    expect_trace_respects_graph(r.forward_trace);
    for (const TraceEvent& e : r.forward_trace.events)
      ASSERT_EQ(e.track.rfind("stream ", 0), 0u) << e.track;
  }
  // With a trace file the nodes carry their device times (CUDA events).
  const std::string path = ::testing::TempDir() + "dlrt_cuda_rnn_trace.json";
  trace_to(path);
  for (Executor executor : {Executor::Sequential, Executor::CudaStreams}) {
    const Results r = play(GetParam(), executor, 3, Engine::Cuda);
    expect_trace_respects_graph(r.forward_trace);
  }
  trace_to("");
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Rnn, GpuExecutorBits, ::testing::ValuesIn(kCases),
                         [](const auto& param_info) { return case_name(param_info.param); });

TEST(SchedulerPlans, TheCudaEngineDefaultsToCudaStreamsAndDeclinesCpuTasks) {
  DLRT_SKIP_UNLESS_ENGINE_RUNS(Engine::Cuda);
  Context ctx(Device::cuda(0));
  RnnPlanOptions options;
  options.engine = Engine::Cuda;
  const RnnPlan plan(ctx, small_lstm(), 4, 2, {}, options);
  EXPECT_EQ(plan.executor(), Executor::CudaStreams);
  EXPECT_NE(plan.description().find("cuda_streams"), std::string::npos) << plan.description();
  options.executor = Executor::CpuTasks;
  EXPECT_TRUE(throws_error([&] { RnnPlan declined(ctx, small_lstm(), 4, 2, {}, options); },
                           Error::Kind::Unsupported, {"cpu_tasks", "CPU threads"}));
}

// A captured graph is replayed while the pointers stay, and captured again
// (its executable graph updated) when they change: both give fresh results.
TEST(SchedulerPlans, ACudaGraphPlanReplaysAndRecapturesWhenThePointersChange) {
  DLRT_SKIP_UNLESS_ENGINE_RUNS(Engine::Cuda);
  const Device gpu = Device::cuda(0);
  Context ctx(gpu);
  const RnnParams p = small_lstm();
  const std::vector<int> lengths{6, 2, 4};
  auto plan_for = [&](Executor executor) {
    RnnPlanOptions options;
    options.engine = Engine::Cuda;
    options.executor = executor;
    return RnnPlan(ctx, p, 6, 3, lengths, options);
  };
  const RnnPlan graph = plan_for(Executor::CudaGraph), sequential = plan_for(Executor::Sequential);
  const Tensor w = random_tensor({rnn_weight_count(p)}, 2, gpu);
  auto expect_as_sequential = [&](const Tensor& x, Tensor& y, const char* what) {
    Tensor want = test::poisoned({6, 3, 16}, gpu);
    sequential.forward(ctx, x, w, nullptr, nullptr, want, nullptr, nullptr);
    EXPECT_TRUE(bitwise_equal(y.to_vector(), want.to_vector())) << what;
  };
  Tensor x = random_tensor({6, 3, 5}, 10, gpu), y = test::poisoned({6, 3, 16}, gpu);
  graph.forward(ctx, x, w, nullptr, nullptr, y, nullptr, nullptr);
  expect_as_sequential(x, y, "the first run (a capture)");
  const std::vector<float> first = y.to_vector();
  x.copy_from(random_tensor({6, 3, 5}, 11, gpu));
  y.fill(std::numeric_limits<float>::quiet_NaN());
  graph.forward(ctx, x, w, nullptr, nullptr, y, nullptr, nullptr);
  expect_as_sequential(x, y, "the same pointers (a replay)");
  EXPECT_FALSE(bitwise_equal(y.to_vector(), first)) << "a replay gave the captured run's outputs";
  const Tensor other_x = random_tensor({6, 3, 5}, 12, gpu);
  Tensor other_y = test::poisoned({6, 3, 16}, gpu);
  graph.forward(ctx, other_x, w, nullptr, nullptr, other_y, nullptr, nullptr);
  expect_as_sequential(other_x, other_y, "new pointers (a capture again)");
}

// ---- traces -----------------------------------------------------------------------

TEST(SchedulerTrace, ChromeJsonHasOneCompleteEventPerNode) {
  const ThreadCount two_threads(2);
  const Results r = play(kCases[4], Executor::CpuTasks, 5);
  const std::string json = to_chrome_json({r.forward_trace});
  EXPECT_EQ(json.rfind("{\"displayTimeUnit\"", 0), 0u);
  std::size_t complete = 0;
  for (std::size_t at = json.find("\"ph\":\"X\""); at != std::string::npos;
       at = json.find("\"ph\":\"X\"", at + 1))
    ++complete;
  EXPECT_EQ(complete, r.forward_trace.events.size());
  EXPECT_NE(json.find("fwd L1 rev t=0 p0"), std::string::npos);
  EXPECT_NE(json.find("thread_name"), std::string::npos);
}

TEST(SchedulerTrace, TraceToWritesEveryPlayUntilStopped) {
  const std::string path = ::testing::TempDir() + "dlrt_scheduler_trace.json";
  std::remove(path.c_str());
  trace_to(path);
  const Results r = play(kCases[2], Executor::Sequential, 5);
  trace_to("");
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << path;
  std::stringstream text;
  text << in.rdbuf();
  // Forward, backward-data and backward-weights: three plays.
  const std::string json = text.str();
  EXPECT_NE(json.find("lstm forward"), std::string::npos);
  EXPECT_NE(json.find("lstm backward_data"), std::string::npos);
  EXPECT_NE(json.find("lstm backward_weights"), std::string::npos);
  std::remove(path.c_str());
  (void)r;
}

TEST(SchedulerTrace, ExecutorNamesRoundTrip) {
  for (Executor e : {Executor::Default, Executor::Sequential, Executor::CpuTasks,
                     Executor::CudaStreams, Executor::CudaGraph})
    EXPECT_EQ(executor_from_string(to_string(e)), e);
  EXPECT_TRUE(throws_error([] { (void)executor_from_string("threads"); },
                           Error::Kind::InvalidArgument, {"'name'", "threads"}));
}

}  // namespace
}  // namespace dlrt
