#include "runtime/stream_schedule.hpp"

#include <algorithm>
#include <string>

#include "dlrt/error.hpp"

namespace dlrt::detail {

StreamSchedule make_stream_schedule(const TaskGraph& graph, std::span<const int> lane_of,
                                    int lanes) {
  const std::int32_t count = graph.size();
  if (static_cast<std::int32_t>(lane_of.size()) != count || lanes < 1)
    throw Error(Error::Kind::Internal, "make_stream_schedule: one lane per node is needed");
  for (std::int32_t n = 0; n < count; ++n)
    if (lane_of[n] < 0 || lane_of[n] >= lanes)
      throw Error(Error::Kind::Internal, "make_stream_schedule: node " + std::to_string(n) +
                                             " has lane " + std::to_string(lane_of[n]));
  StreamSchedule schedule;
  schedule.lanes = lanes;
  schedule.steps.resize(count);
  // position[n]: n's index among its lane's nodes; covered[a][b]: the last
  // position on lane b that lane a has already waited for (-1: none).
  std::vector<std::int32_t> position(count), lane_length(lanes, 0);
  std::vector<std::vector<std::int32_t>> covered(lanes, std::vector<std::int32_t>(lanes, -1));
  std::vector<std::int32_t> event_of(count, -1);
  // covered_by[n]: covered[lane of n] just after n was issued; a wait for n
  // also covers what n's lane had waited for by then.
  std::vector<std::vector<std::int32_t>> covered_by(count);
  for (std::int32_t n = 0; n < count; ++n) {
    StreamSchedule::Step& step = schedule.steps[n];
    step.node = n;
    step.lane = lane_of[n];
    position[n] = lane_length[step.lane]++;
    // The latest predecessor on each other lane covers the earlier ones.
    std::vector<std::int32_t> latest(lanes, -1);
    for (std::int32_t p : graph.predecessors(n)) {
      const int lane = lane_of[p];
      if (lane != step.lane && (latest[lane] < 0 || position[p] > position[latest[lane]]))
        latest[lane] = p;
    }
    for (int lane = 0; lane < lanes; ++lane) {
      const std::int32_t p = latest[lane];
      if (p < 0 || position[p] <= covered[step.lane][lane]) continue;
      if (event_of[p] < 0) {
        event_of[p] = schedule.events++;
        schedule.steps[p].record = event_of[p];
      }
      step.waits.push_back(event_of[p]);
      covered[step.lane][lane] = position[p];
      for (int other = 0; other < lanes; ++other)
        covered[step.lane][other] = std::max(covered[step.lane][other], covered_by[p][other]);
    }
    covered_by[n] = covered[step.lane];
  }
  return schedule;
}

void issue(const StreamSchedule& schedule, StreamBackend& backend) {
  for (const StreamSchedule::Step& step : schedule.steps) {
    for (std::int32_t event : step.waits) backend.wait(step.lane, event);
    backend.launch(step.lane, step.node);
    if (step.record >= 0) backend.record(step.lane, step.record);
  }
}

}  // namespace dlrt::detail
