// The caching allocator behind every tensor: statistics, limits, and fault
// injection for tests of the out-of-memory paths.
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
  std::size_t limit_bytes = 0;    // 0: no limit beyond the device itself
  std::uint64_t allocations = 0;  // requests served
  std::uint64_t cache_hits = 0;   // requests served from the cache
  std::uint64_t failures = 0;     // requests that raised OutOfMemory
};

DLRT_EXPORT MemoryStats memory_stats(Device device);

// Caps in_use + cached bytes on a device (0 removes the cap). A request over
// the cap first releases the cache, then raises Error(OutOfMemory).
DLRT_EXPORT void set_memory_limit(Device device, std::size_t bytes);

// Returns every cached block on the device to the system.
DLRT_EXPORT void empty_cache(Device device);

namespace debug {
// Makes the next `count` allocation requests on `device` fail as if the
// device were out of memory. For tests of the failure paths on machines
// without a GPU; 0 cancels.
DLRT_EXPORT void fail_next_allocations(Device device, int count);
}  // namespace debug

}  // namespace dlrt
