// The one threading layer of the Cpu kernels, in the spirit of ATen's
// at::parallel_for(begin, end, grain_size, f). See dlrt/threads.hpp for the
// policy; this is the mechanism.
//
//   parallel_for(0, rows, grain, [&](std::int64_t begin, std::int64_t end) { ... });
//
// calls the body on disjoint chunks that cover [begin, end), each at least
// `grain` items long (the last may be shorter), possibly at the same time on
// several threads. A range of fewer than 2 * grain items is one call on the
// calling thread: the grain is what keeps small ops from ever waking a thread.
// Each kernel picks its grain from its measured cost per item with
// grain_for(), so that a chunk is worth at least kMinChunkNanoseconds.
//
// The body must not assume anything about which thread runs which chunk, or
// in which order. An exception thrown by the body is rethrown on the calling
// thread after the chunks already started have finished; the chunks not yet
// started are skipped.
#pragma once

#include <cstdint>
#include <type_traits>

namespace dlrt::detail {

// Work a chunk must be worth before a second thread is asked to help: waking
// a sleeping thread costs some 10-50 us, a spinning one about 1 us.
inline constexpr double kMinChunkNanoseconds = 20'000;

// Items per chunk for a loop whose items cost `ns_per_item` each.
inline std::int64_t grain_for(double ns_per_item) {
  if (!(ns_per_item > 0)) return std::int64_t{1} << 40;
  const double items = kMinChunkNanoseconds / ns_per_item;
  return items < 1 ? 1 : static_cast<std::int64_t>(items);
}

// Threads a parallel_for on this thread would use now: 1 inside a parallel
// region, in a forked child or with one thread set.
int available_threads();

// True on a pool thread and on a caller while it runs chunks.
bool in_parallel_region();

// True in a process forked after the pool was started: it runs serially.
bool forked_child() noexcept;

using ChunkFn = void (*)(const void* body, std::int64_t begin, std::int64_t end, int slot);
void parallel_for_impl(std::int64_t begin, std::int64_t end, std::int64_t grain, int max_slots,
                       ChunkFn call, const void* body);

template <class Body>
void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain, const Body& body) {
  static_assert(std::is_invocable_v<const Body&, std::int64_t, std::int64_t>,
                "the body is called as body(begin, end)");
  if (end <= begin) return;
  if (grain < 1) grain = 1;
  if (end - begin < 2 * grain) {
    body(begin, end);
    return;
  }
  parallel_for_impl(
      begin, end, grain, 1 << 30,
      [](const void* erased, std::int64_t b, std::int64_t e, int) {
        (*static_cast<const Body*>(erased))(b, e);
      },
      &body);
}

// parallel_for whose body also receives a slot in [0, slots): no two chunks
// that run at the same time share a slot, so a body can keep per-thread
// scratch memory in `slots` pieces sized before the loop (slots =
// available_threads() is always enough; fewer caps the threads used).
template <class Body>
void parallel_for_slots(std::int64_t begin, std::int64_t end, std::int64_t grain, int slots,
                        const Body& body) {
  static_assert(std::is_invocable_v<const Body&, std::int64_t, std::int64_t, int>,
                "the body is called as body(begin, end, slot)");
  if (end <= begin) return;
  if (grain < 1) grain = 1;
  if (end - begin < 2 * grain || slots <= 1) {
    body(begin, end, 0);
    return;
  }
  parallel_for_impl(
      begin, end, grain, slots,
      [](const void* erased, std::int64_t b, std::int64_t e, int slot) {
        (*static_cast<const Body*>(erased))(b, e, slot);
      },
      &body);
}

// Runs `count` independent tasks, task(i) for i in [0, count), on up to
// `count` threads: for work that is already cut into pieces of a fixed size
// (the scheduler's nodes), where grouping pieces into chunks is not wanted.
template <class Task>
void parallel_tasks(std::int64_t count, const Task& task) {
  parallel_for(0, count, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) task(i);
  });
}

}  // namespace dlrt::detail
