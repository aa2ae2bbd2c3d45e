// The scheduler's graph and its CPU executors. An engine builds a TaskGraph
// once, in its plan: one node per (phase, layer, direction, step, piece),
// each a single-threaded body with its predecessors. Every run plays the
// same graph with the pointers of that run (`bindings`). Nodes do their own
// arithmetic on the calling thread only, in a fixed shape chosen at plan
// time, so every executor (and every thread count) computes the same bits;
// the executor only decides which thread runs a node, and when.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "dlrt/scheduler.hpp"

namespace dlrt::detail {

// When each node of one play ran, on which worker (0: the calling thread).
struct PlayRecord {
  Executor executor = Executor::Sequential;
  std::vector<double> start_us, end_us;
  std::vector<std::int32_t> worker;
  // What a worker is called in the trace ("cpu 0"; the GPU executors name
  // their streams).
  const char* track = "cpu";
};

class TaskGraph {
public:
  using Body = std::function<void(const void* bindings)>;

  explicit TaskGraph(std::string name = {}) : name_(std::move(name)) {}

  // Adds a node that runs after every node in `predecessors` (indices of
  // nodes added before it, so the insertion order is a topological order:
  // the order the Sequential executor plays). Returns the node's index.
  std::int32_t add(std::string name, std::vector<std::int32_t> predecessors, Body body);

  std::int32_t size() const { return static_cast<std::int32_t>(nodes_.size()); }
  const std::string& name() const { return name_; }
  const std::string& node_name(std::int32_t node) const { return nodes_[node].name; }
  const std::vector<std::int32_t>& predecessors(std::int32_t node) const {
    return nodes_[node].predecessors;
  }

  // Plays every node once. Sequential: insertion order on the calling
  // thread. CpuTasks: ready nodes (all predecessors done) on up to
  // `threads` of dlrt's threads, the earliest-added ready node first, so
  // that a wavefront forms by itself. A node's exception stops the play
  // (nodes not yet started are skipped) and is rethrown here. Fills
  // `record` when it is not null.
  void play(Executor executor, int threads, const void* bindings, PlayRecord* record) const;

  // Runs one node's body: the GPU executors issue nodes one by one, each
  // on its stream, in the order a StreamSchedule gives.
  void run_node(std::int32_t node, const void* bindings) const { nodes_[node].body(bindings); }

private:
  struct Node {
    std::string name;
    std::vector<std::int32_t> predecessors;
    std::vector<std::int32_t> successors;
    Body body;
  };
  void play_tasks(int threads, const void* bindings, PlayRecord* record) const;

  std::string name_;
  std::vector<Node> nodes_;
};

// The last play of a graph, kept so that last_trace() can turn it into a
// Trace on demand (names are built only then), and written to the trace
// file when tracing is on.
class PlayHistory {
public:
  // Stores `record` as the last play of `graph` and, when trace_to() or
  // DLRT_TRACE named a file, appends the play to it.
  void store(const TaskGraph& graph, PlayRecord record);
  // The last play (of any graph stored here) as a Trace; empty when none.
  Trace last() const;

private:
  mutable std::mutex mutex_;
  const TaskGraph* graph_ = nullptr;
  PlayRecord record_;
};

Trace make_trace(const TaskGraph& graph, const PlayRecord& record);

// True when plays are being written to a trace file.
bool tracing_to_file();

}  // namespace dlrt::detail
