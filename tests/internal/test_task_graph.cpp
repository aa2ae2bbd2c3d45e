// The scheduler's graph and executors on graphs made up for the test: each
// node runs once, after its predecessors, whatever the executor; a node's
// exception stops the play without a hang; a play nested in a parallel
// region runs serially and completes.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <stdexcept>
#include <vector>

#include "dlrt/error.hpp"
#include "dlrt/threads.hpp"
#include "runtime/parallel.hpp"
#include "runtime/scheduler.hpp"

namespace dlrt::detail {
namespace {

// Sets dlrt's thread count for a scope and restores the one before.
struct ThreadCount {
  int before = num_threads();
  explicit ThreadCount(int threads) { set_num_threads(threads); }
  ~ThreadCount() { set_num_threads(before); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;
};

// A random DAG: node i waits for up to three earlier nodes.
struct Recorded {
  TaskGraph graph{"random dag"};
  std::vector<std::atomic<int>> runs;
  std::vector<std::atomic<int>> finished_at;
  std::atomic<int> clock{0};

  explicit Recorded(int nodes, std::uint32_t seed) : runs(nodes), finished_at(nodes) {
    std::mt19937 rng(seed);
    for (int i = 0; i < nodes; ++i) {
      std::vector<std::int32_t> preds;
      for (int k = 0; k < 3 && i > 0; ++k)
        if (rng() % 2) preds.push_back(static_cast<std::int32_t>(rng() % i));
      graph.add("node " + std::to_string(i), preds, [this, i, preds](const void* bindings) {
        EXPECT_EQ(bindings, static_cast<const void*>(this));
        for (std::int32_t p : preds)
          EXPECT_GT(finished_at[p].load(), 0) << "node " << i << " ran before node " << p;
        volatile double spin = 0;
        for (int k = 0; k < 2000; ++k) spin = spin + k;
        runs[i].fetch_add(1);
        finished_at[i].store(clock.fetch_add(1) + 1);
      });
    }
  }
};

TEST(TaskGraph, EveryExecutorRunsEachNodeOnceAfterItsPredecessors) {
  const ThreadCount two_threads(2);
  for (Executor executor : {Executor::Sequential, Executor::CpuTasks}) {
    Recorded dag(300, 11);
    PlayRecord record;
    dag.graph.play(executor, 2, &dag, &record);
    for (int i = 0; i < dag.graph.size(); ++i) EXPECT_EQ(dag.runs[i].load(), 1) << i;
    const Trace trace = make_trace(dag.graph, record);
    ASSERT_EQ(trace.events.size(), 300u);
    for (std::size_t i = 0; i < trace.events.size(); ++i)
      for (std::int32_t p : trace.predecessors[i])
        EXPECT_GE(trace.events[i].start_us, trace.events[p].end_us);
  }
}

TEST(TaskGraph, ANodesExceptionStopsThePlayAndIsRethrown) {
  const ThreadCount two_threads(2);
  for (Executor executor : {Executor::Sequential, Executor::CpuTasks}) {
    TaskGraph graph("failing");
    std::atomic<int> after{0};
    const std::int32_t first = graph.add("first", {}, [](const void*) {});
    const std::int32_t bad =
        graph.add("bad", {first}, [](const void*) { throw std::runtime_error("node failed"); });
    for (int i = 0; i < 50; ++i)
      graph.add("after", {bad}, [&](const void*) { after.fetch_add(1); });
    EXPECT_THROW(graph.play(executor, 2, nullptr, nullptr), std::runtime_error);
    EXPECT_EQ(after.load(), 0) << "nodes after the failed one ran";
  }
}

TEST(TaskGraph, APlayInsideAParallelRegionCompletesSerially) {
  const ThreadCount two_threads(2);
  std::atomic<int> total{0};
  parallel_tasks(2, [&](std::int64_t) {
    TaskGraph graph("nested");
    std::int32_t previous = graph.add("n0", {}, [&](const void*) { total.fetch_add(1); });
    for (int i = 1; i < 20; ++i)
      previous = graph.add("n", {previous}, [&](const void*) { total.fetch_add(1); });
    graph.play(Executor::CpuTasks, 2, nullptr, nullptr);
  });
  EXPECT_EQ(total.load(), 40);
}

TEST(TaskGraph, APredecessorMustBeAnEarlierNode) {
  TaskGraph graph("bad edges");
  graph.add("a", {}, [](const void*) {});
  EXPECT_THROW(graph.add("b", {1}, [](const void*) {}), Error);
  EXPECT_THROW(graph.add("b", {-1}, [](const void*) {}), Error);
}

}  // namespace
}  // namespace dlrt::detail
