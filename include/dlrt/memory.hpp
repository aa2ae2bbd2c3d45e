// The caching allocator behind every tensor: statistics, limits, the cache
// policy, and fault injection for tests of the out-of-memory paths.
//
// Cache policy, per device:
//  - Requests are rounded up to size classes: 512 B granules below 1 MiB,
//    2 MiB granules above.
//  - Fit: a request takes the smallest cached block that is at least its
//    size and at most 1.5 times it (+512 B), so a small request never pins a
//    much larger block; otherwise the block comes from the system (a miss).
//  - Bound: cached bytes never exceed the cache limit, by default
//    max(64 MiB, peak_in_use_bytes), so the device holds at most twice its
//    peak (plus the floor) however shapes change. Over it, blocks are given
//    back in this order: those that a miss found too small (shapes grew
//    past them), then those freed longest ago; a block that queued work may
//    still use goes last, since giving it back means waiting for that work.
//    A loop whose blocks are all live at its busiest moment keeps them all;
//    one that frees and reallocates blocks of unrelated sizes at different
//    moments may want a higher set_cache_limit.
//  - Streams (GPU): a freed block may still be read or written by work
//    queued earlier on any stream of the device. It is handed out again
//    only once an event recorded on every stream after the free has
//    completed, except that a request made for a stream (a Tensor or a
//    workspace made for a Context) does not wait for that stream itself:
//    stream order already puts the new owner's work after the old one's.
//    A request for no stream (a Tensor made for a bare Device) takes a
//    block only when no stream may use it; it waits for the streams only
//    when the device is out of memory otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dlrt/device.hpp"
#include "dlrt/export.hpp"

namespace dlrt {

struct MemoryStats {
  std::size_t in_use_bytes = 0;  // held by live tensors and workspaces
  std::size_t cached_bytes = 0;  // freed blocks kept for reuse
  std::size_t peak_in_use_bytes = 0;
  std::size_t limit_bytes = 0;        // 0: no limit beyond the device itself
  std::uint64_t allocations = 0;      // requests served
  std::uint64_t cache_hits = 0;       // requests served from the cache
  std::uint64_t failures = 0;         // requests that raised OutOfMemory
  std::size_t cache_limit_bytes = 0;  // the bound on cached_bytes in force now
  std::uint64_t cache_releases = 0;   // cached blocks given back to the system
};

DLRT_EXPORT MemoryStats memory_stats(Device device);

// Caps in_use + cached bytes on a device (0 removes the cap). A request over
// the cap first releases cached blocks, then raises Error(OutOfMemory).
DLRT_EXPORT void set_memory_limit(Device device, std::size_t bytes);

// set_cache_limit's default: max(64 MiB, peak_in_use_bytes), following the
// peak as it grows.
inline constexpr std::size_t kCacheLimitAuto = SIZE_MAX;

// Bounds the bytes of freed blocks the device's cache keeps (0 keeps none;
// kCacheLimitAuto restores the default). Cached blocks over the new bound
// are given back at once, those freed longest ago first.
DLRT_EXPORT void set_cache_limit(Device device, std::size_t bytes);

// Gives every cached block on the device back to the system (cudaFree on a
// GPU). Blocks that work still queued on a stream may use are given back
// once that work has finished: the call waits for it. Live tensors are not
// affected; the statistics other than cached_bytes are kept.
DLRT_EXPORT void empty_cache(Device device);

namespace debug {
// Makes the next `count` allocation requests on `device` fail as if the
// device were out of memory. For tests of the failure paths on machines
// without a GPU; 0 cancels. Host staging buffers of tensor copies and fills
// are requests on Device::cpu().
DLRT_EXPORT void fail_next_allocations(Device device, int count);
}  // namespace debug

}  // namespace dlrt
