// A caching allocator per device: freed blocks are kept in size classes and
// handed out again, so steady-state training steps never call cudaMalloc.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "dlrt/device.hpp"
#include "dlrt/memory.hpp"

namespace dlrt::detail {

class CachingAllocator {
public:
  static CachingAllocator& of(Device device);

  // Throws Error(OutOfMemory) naming the request, the limit and what is held.
  void* allocate(std::size_t bytes);
  void deallocate(void* ptr, std::size_t bytes) noexcept;

  MemoryStats stats() const;
  void set_limit(std::size_t bytes);
  void empty_cache();
  void fail_next(int count);

  // The size a request is rounded up to (512 B granules below 1 MiB, 2 MiB
  // granules above), so that freed blocks fit later requests.
  static std::size_t round_size(std::size_t bytes);

private:
  explicit CachingAllocator(Device device) : device_(device) {}
  void* system_allocate(std::size_t bytes, std::string* error);
  void system_free(void* ptr, std::size_t bytes) noexcept;
  void release_cache_locked() noexcept;

  Device device_;
  mutable std::mutex mutex_;
  std::multimap<std::size_t, void*> free_blocks_;
  std::unordered_map<void*, std::size_t> block_sizes_;  // live block -> its size class
  MemoryStats stats_;
  int fail_next_ = 0;
};

}  // namespace dlrt::detail
