// The stream schedule on a CPU backend that behaves as streams do: one
// thread per lane running its queue in order, events as flags that a wait
// spins on. Every node must run after all its predecessors, on any graph,
// however the lanes are assigned, and the waits must be fewer than the
// cross-lane edges when the graph allows it.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "runtime/stream_schedule.hpp"

#include "dlrt/error.hpp"

namespace dlrt::detail {
namespace {

// Lanes as threads: issue() only queues; run() plays every lane at once.
class ThreadLanes final : public StreamBackend {
public:
  ThreadLanes(const TaskGraph& graph, int lanes, int events)
      : graph_(graph), queues_(lanes), flags_(events), done_(graph.size()) {}

  void wait(int lane, std::int32_t event) override {
    queues_[lane].push_back([this, event] {
      while (!flags_[event].load(std::memory_order_acquire)) std::this_thread::yield();
    });
  }
  void launch(int lane, std::int32_t node) override {
    queues_[lane].push_back([this, node] {
      for (std::int32_t p : graph_.predecessors(node))
        if (!done_[p].load(std::memory_order_acquire)) ++violations;
      done_[node].store(true, std::memory_order_release);
      ++launched;
    });
  }
  void record(int lane, std::int32_t event) override {
    queues_[lane].push_back(
        [this, event] { flags_[event].store(true, std::memory_order_release); });
  }
  void run() {
    std::vector<std::thread> threads;
    for (auto& queue : queues_)
      threads.emplace_back([&queue] {
        for (auto& op : queue) op();
      });
    for (auto& t : threads) t.join();
  }

  std::atomic<int> violations{0}, launched{0};

private:
  const TaskGraph& graph_;
  std::vector<std::vector<std::function<void()>>> queues_;
  std::vector<std::atomic<bool>> flags_;
  std::vector<std::atomic<bool>> done_;
};

TEST(StreamSchedule, EveryNodeRunsAfterItsPredecessorsOnRandomGraphsAndLanes) {
  std::mt19937 rng(9);
  for (int trial = 0; trial < 40; ++trial) {
    const int nodes = 20 + static_cast<int>(rng() % 60), lanes = 1 + static_cast<int>(rng() % 5);
    TaskGraph graph("random");
    std::vector<int> lane_of;
    int cross_edges = 0;
    for (int i = 0; i < nodes; ++i) {
      std::vector<std::int32_t> preds;
      for (int k = 0; k < 3 && i > 0; ++k)
        if (rng() % 2) preds.push_back(static_cast<std::int32_t>(rng() % i));
      lane_of.push_back(static_cast<int>(rng() % lanes));
      graph.add("n", preds, [](const void*) {});
      for (std::int32_t p : graph.predecessors(i)) cross_edges += lane_of[p] != lane_of[i];
    }
    const StreamSchedule schedule = make_stream_schedule(graph, lane_of, lanes);
    int waits = 0;
    for (const auto& step : schedule.steps) waits += static_cast<int>(step.waits.size());
    EXPECT_LE(waits, cross_edges);
    ThreadLanes backend(graph, lanes, schedule.events);
    issue(schedule, backend);
    backend.run();
    EXPECT_EQ(backend.launched.load(), nodes);
    EXPECT_EQ(backend.violations.load(), 0) << "trial " << trial;
  }
}

// A chain across two lanes: each node waits once for the other lane, and a
// third lane reading the end of both needs no more than two waits.
TEST(StreamSchedule, CoveredWaitsAreSkipped) {
  TaskGraph graph("layers");
  // Lane 0: a0 -> a1 -> a2; lane 1: b0 (after a0) -> b1 (after a1, a0).
  const std::int32_t a0 = graph.add("a0", {}, [](const void*) {});
  const std::int32_t a1 = graph.add("a1", {a0}, [](const void*) {});
  const std::int32_t b0 = graph.add("b0", {a0}, [](const void*) {});
  const std::int32_t b1 = graph.add("b1", {b0, a1, a0}, [](const void*) {});
  graph.add("a2", {a1, b1}, [](const void*) {});
  const std::vector<int> lanes{0, 0, 1, 1, 0};
  const StreamSchedule s = make_stream_schedule(graph, lanes, 2);
  EXPECT_EQ(s.steps[b0].waits.size(), 1u);
  EXPECT_EQ(s.steps[b1].waits.size(), 1u) << "a0 is covered by the wait for a1";
  EXPECT_EQ(s.steps[4].waits.size(), 1u);
  EXPECT_EQ(s.events, 3);  // a0, a1, b1
}

TEST(StreamSchedule, LanesOutOfRangeAreRefused) {
  TaskGraph graph("bad");
  graph.add("a", {}, [](const void*) {});
  const std::vector<int> lanes{3};
  EXPECT_THROW(make_stream_schedule(graph, lanes, 2), Error);
}

}  // namespace
}  // namespace dlrt::detail
