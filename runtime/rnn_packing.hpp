// How the recurrent engines the scheduler plays (Cpu, Cuda) lay out a batch
// of sequences: ordered once, longest first (ties in the caller's order),
// and packed by step, so that step s holds the B_s sequences still running,
// a prefix of that order. No work is done on padding and the active batch
// shrinks inside the plan. The reverse direction's step s of a sequence of
// length L is its time L-1-s: both directions share the packing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

namespace dlrt::detail {

struct RnnPacking {
  using i64 = std::int64_t;
  std::vector<int> order;     // packed row -> the caller's sequence index
  std::vector<int> length;    // packed row -> its length (non-increasing)
  std::vector<int> rank;      // the caller's sequence -> its packed row
  std::vector<i64> active;    // step -> B_s, with active[steps] = 0
  std::vector<i64> offset;    // step -> rows before it, with offset[steps] = total
  std::vector<int> row_step;  // packed row -> its step
  i64 steps = 0;              // the longest length
  i64 total = 0;

  explicit RnnPacking(const std::vector<int>& lengths) {
    const i64 N = static_cast<i64>(lengths.size());
    order.resize(N);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return lengths[a] > lengths[b]; });
    length.resize(N);
    rank.resize(N);
    for (i64 n = 0; n < N; ++n) length[n] = lengths[order[n]], rank[order[n]] = static_cast<int>(n);
    steps = length[0];
    active.assign(steps + 1, 0);
    offset.assign(steps + 1, 0);
    for (i64 s = 0; s < steps; ++s) {
      i64 b = 0;
      while (b < N && length[b] > s) ++b;
      active[s] = b;
      offset[s + 1] = offset[s] + b;
    }
    total = offset[steps];
    row_step.resize(total);
    for (i64 s = 0; s < steps; ++s)
      for (i64 r = offset[s]; r < offset[s + 1]; ++r) row_step[r] = static_cast<int>(s);
  }
  // The time step that packed row n holds at direction d's step s.
  i64 time(int d, i64 s, i64 n) const { return d == 0 ? s : length[n] - 1 - s; }
  // The packed row of (time t, sequence n) in direction d's packing.
  i64 row(int d, i64 t, i64 n) const {
    return d == 0 ? offset[t] + n : offset[length[n] - 1 - t] + n;
  }
};

}  // namespace dlrt::detail
