// The host-side scheduler that plays an unrolled graph: a node per (phase,
// layer, direction, time step, piece), edges for the recurrence, for the
// layer below and for chunks of the batched input GEMMs, backward mirroring
// forward in reverse time. Engines that are "played by the scheduler" (the
// Cpu and Cuda recurrent engines) build such a graph once, in their plan,
// and an executor plays it on every run. Every executor runs the same nodes
// with the same arithmetic, so results are the same bits whichever plays.
//
// Tracing: DLRT_TRACE=path.json in the environment (or trace_to() below)
// writes Chrome trace-event JSON for every played graph, one track per
// worker thread or stream and one event per node named after it; Perfetto
// and chrome://tracing open it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dlrt/export.hpp"

namespace dlrt {

enum class Executor {
  Default,      // the device's best: CpuTasks on the CPU, CudaStreams on a GPU
  Sequential,   // the plain loop: one node after another on the calling thread
  CpuTasks,     // independent nodes at once on dlrt's threads (directions; layers as a wavefront)
  CudaStreams,  // a non-blocking stream per layer and direction, events on cross-stream edges
  CudaGraph,    // CudaStreams captured once as a CUDA graph and replayed
};
// "default", "sequential", "cpu_tasks", "cuda_streams", "cuda_graph".
DLRT_EXPORT const char* to_string(Executor executor) noexcept;
DLRT_EXPORT Executor executor_from_string(const std::string& name);

// One played node: what it was, where it ran, and when (microseconds since
// the play started: the host clock on the CPU, CUDA events on the GPU).
struct TraceEvent {
  std::string name;   // "fwd L0 fwd t=3 step", ...
  std::string track;  // "cpu 0", "stream 2", ...
  double start_us = 0;
  double end_us = 0;
  std::int32_t node = -1;  // the node's index in its graph
};

struct Trace {
  std::string graph;     // what was played: "rnn lstm forward L2 D2 T50 N16", ...
  std::string executor;  // to_string(Executor)
  std::vector<TraceEvent> events;
  // node -> the nodes it waits for, so that a trace can be checked against
  // its graph (a node never starts before its predecessors end).
  std::vector<std::vector<std::int32_t>> predecessors;
};

// Chrome trace-event JSON ("traceEvents", complete events, one tid per track).
DLRT_EXPORT std::string to_chrome_json(const std::vector<Trace>& traces);

// Every played graph from now on is also appended to `path` (a JSON file
// rewritten after each play); an empty path stops. DLRT_TRACE sets it at start.
DLRT_EXPORT void trace_to(const std::string& path);

}  // namespace dlrt
