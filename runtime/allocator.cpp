#include "runtime/allocator.hpp"

#include <cstdlib>
#include <memory>
#include <new>
#include <string>

#include "dlrt/error.hpp"
#include "runtime/device_check.hpp"
#include "runtime/gpu.hpp"
#include "runtime/log.hpp"

namespace dlrt::detail {
namespace {

constexpr std::size_t kSmallGranule = 512;
constexpr std::size_t kLargeGranule = std::size_t{2} << 20;
constexpr std::size_t kLargeThreshold = std::size_t{1} << 20;
// Host blocks are aligned for the widest vector loads (AVX-512) and cache lines.
constexpr std::size_t kHostAlignment = 64;

std::string mib(std::size_t bytes) {
  return std::to_string(static_cast<double>(bytes) / (1024.0 * 1024.0)) + " MiB";
}

}  // namespace

CachingAllocator& CachingAllocator::of(Device device) {
  check_device_exists("allocate", "device", device);
  // One allocator per device, never destroyed: tensors may outlive main().
  static std::mutex mutex;
  static auto* cpu = new CachingAllocator(Device::cpu());
  static auto* cuda = new std::map<int, CachingAllocator*>();
  if (device.is_cpu()) return *cpu;
  std::lock_guard lock(mutex);
  auto& slot = (*cuda)[device.index];
  if (slot == nullptr) slot = new CachingAllocator(device);
  return *slot;
}

std::size_t CachingAllocator::round_size(std::size_t bytes) {
  if (bytes == 0) bytes = 1;
  std::size_t granule = bytes < kLargeThreshold ? kSmallGranule : kLargeGranule;
  return (bytes + granule - 1) / granule * granule;
}

void* CachingAllocator::system_allocate(std::size_t bytes, std::string* error) {
  if (device_.is_cpu()) {
    void* ptr = ::operator new (bytes, std::align_val_t{kHostAlignment}, std::nothrow);
    if (ptr == nullptr) *error = "host allocation failed";
    return ptr;
  }
  return gpu::malloc(device_.index, bytes, error);
}

void CachingAllocator::system_free(void* ptr, std::size_t) noexcept {
  if (device_.is_cpu())
    ::operator delete (ptr, std::align_val_t{kHostAlignment});
  else
    gpu::free(device_.index, ptr);
}

void CachingAllocator::release_cache_locked() noexcept {
  for (auto& [size, ptr] : free_blocks_) system_free(ptr, size);
  free_blocks_.clear();
  stats_.cached_bytes = 0;
}

void* CachingAllocator::allocate(std::size_t bytes) {
  std::size_t size = round_size(bytes);
  std::lock_guard lock(mutex_);
  auto fail = [&](const std::string& why) -> void* {
    ++stats_.failures;
    throw Error(Error::Kind::OutOfMemory,
                "allocate: " + std::to_string(bytes) + " bytes on " + to_string(device_) +
                    " failed: " + why + " (in use " + mib(stats_.in_use_bytes) + ", limit " +
                    (stats_.limit_bytes ? mib(stats_.limit_bytes) : std::string("none")) + ")");
  };
  if (fail_next_ > 0) {
    --fail_next_;
    return fail("injected failure (debug::fail_next_allocations)");
  }

  // Exact size class first; a larger cached block only when it wastes less
  // than half of itself, so small requests do not pin big blocks.
  auto it = free_blocks_.lower_bound(size);
  if (it != free_blocks_.end() && it->first <= size + size / 2 + kSmallGranule) {
    void* ptr = it->second;
    std::size_t block = it->first;
    free_blocks_.erase(it);
    stats_.cached_bytes -= block;
    stats_.in_use_bytes += block;
    ++stats_.allocations;
    ++stats_.cache_hits;
    if (stats_.in_use_bytes > stats_.peak_in_use_bytes)
      stats_.peak_in_use_bytes = stats_.in_use_bytes;
    block_sizes_[ptr] = block;
    return ptr;
  }

  if (stats_.limit_bytes != 0 && stats_.in_use_bytes + size > stats_.limit_bytes)
    return fail("over the memory limit set with set_memory_limit");
  if (stats_.limit_bytes != 0 &&
      stats_.in_use_bytes + stats_.cached_bytes + size > stats_.limit_bytes)
    release_cache_locked();

  std::string error;
  void* ptr = system_allocate(size, &error);
  if (ptr == nullptr) {
    // The cache may hold what the system is missing: give it back, try once more.
    release_cache_locked();
    error.clear();
    ptr = system_allocate(size, &error);
  }
  if (ptr == nullptr) return fail(error);
  stats_.in_use_bytes += size;
  ++stats_.allocations;
  if (stats_.in_use_bytes > stats_.peak_in_use_bytes)
    stats_.peak_in_use_bytes = stats_.in_use_bytes;
  block_sizes_[ptr] = size;
  return ptr;
}

void CachingAllocator::deallocate(void* ptr, std::size_t) noexcept {
  if (ptr == nullptr) return;
  std::lock_guard lock(mutex_);
  auto it = block_sizes_.find(ptr);
  if (it == block_sizes_.end()) return;  // not ours: never free what we did not hand out
  std::size_t size = it->second;
  block_sizes_.erase(it);
  stats_.in_use_bytes -= size;
  if (stats_.limit_bytes != 0 &&
      stats_.in_use_bytes + stats_.cached_bytes + size > stats_.limit_bytes) {
    system_free(ptr, size);
    return;
  }
  free_blocks_.emplace(size, ptr);
  stats_.cached_bytes += size;
}

MemoryStats CachingAllocator::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void CachingAllocator::set_limit(std::size_t bytes) {
  std::lock_guard lock(mutex_);
  stats_.limit_bytes = bytes;
  if (bytes != 0 && stats_.in_use_bytes + stats_.cached_bytes > bytes) release_cache_locked();
}

void CachingAllocator::empty_cache() {
  std::lock_guard lock(mutex_);
  release_cache_locked();
}

void CachingAllocator::fail_next(int count) {
  std::lock_guard lock(mutex_);
  fail_next_ = count < 0 ? 0 : count;
}

}  // namespace dlrt::detail

namespace dlrt {

MemoryStats memory_stats(Device device) { return detail::CachingAllocator::of(device).stats(); }
void set_memory_limit(Device device, std::size_t bytes) {
  detail::CachingAllocator::of(device).set_limit(bytes);
}
void empty_cache(Device device) { detail::CachingAllocator::of(device).empty_cache(); }
void debug::fail_next_allocations(Device device, int count) {
  detail::CachingAllocator::of(device).fail_next(count);
}

}  // namespace dlrt
