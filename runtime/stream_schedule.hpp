// How a TaskGraph plays on streams (the CudaStreams executor, and the
// capture of the CudaGraph one): every node has a lane, one stream per
// (layer, direction) and per input-GEMM chunk set, chosen by the engine;
// nodes are issued in the graph's insertion order, each on its lane, and a
// predecessor on another lane becomes an event wait. Work on one lane runs
// in issue order, so same-lane edges need nothing, and a wait is skipped
// when an earlier wait on the lane already covers it (Appleyard et al.
// 2016's streams joined by events, with as few events as the graph allows).
//
// The schedule is plain data made at plan time; issuing it goes through a
// backend (CUDA streams and events on a GPU, threads and flags in the CPU
// tests that check it), so its correctness is tested on every machine.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/scheduler.hpp"

namespace dlrt::detail {

struct StreamSchedule {
  struct Step {
    std::int32_t node = -1;
    int lane = 0;
    std::vector<std::int32_t> waits;  // events to wait for before the node, on its lane
    std::int32_t record = -1;         // the event to record after it, or -1
  };
  int lanes = 0;
  int events = 0;
  std::vector<Step> steps;  // in issue order
};

// lane_of[node] in [0, lanes). Throws Error(Internal) on a lane out of range.
StreamSchedule make_stream_schedule(const TaskGraph& graph, std::span<const int> lane_of,
                                    int lanes);

class StreamBackend {
public:
  virtual ~StreamBackend() = default;
  virtual void wait(int lane, std::int32_t event) = 0;
  virtual void launch(int lane, std::int32_t node) = 0;
  virtual void record(int lane, std::int32_t event) = 0;
};

// Issues the schedule on the backend: waits, the node, its record, step by step.
void issue(const StreamSchedule& schedule, StreamBackend& backend);

}  // namespace dlrt::detail
