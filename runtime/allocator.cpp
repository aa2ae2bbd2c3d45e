#include "runtime/allocator.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>

#include "dlrt/error.hpp"
#include "runtime/device_check.hpp"
#include "runtime/gpu.hpp"

namespace dlrt::detail {
namespace {

constexpr std::size_t kSmallGranule = 512;
constexpr std::size_t kLargeGranule = std::size_t{2} << 20;
constexpr std::size_t kLargeThreshold = std::size_t{1} << 20;
// Requests above this are refused before rounding, which could overflow;
// no device has a quarter of the address space.
constexpr std::size_t kMaxRequest = SIZE_MAX / 4;
// The automatic cache bound never drops below this, so that small programs
// (tests, the demos) keep every block they reuse.
constexpr std::size_t kCacheFloor = std::size_t{64} << 20;
// Host blocks are aligned for the widest vector loads (AVX-512) and cache lines.
constexpr std::size_t kHostAlignment = 64;

std::string mib(std::size_t bytes) {
  return std::to_string(static_cast<double>(bytes) / (1024.0 * 1024.0)) + " MiB";
}

// Host memory has no streams: no stream is ever registered on the CPU
// allocator, so the event calls are never reached.
class HostBackend final : public MemoryBackend {
public:
  void* allocate(std::size_t bytes, std::string* error) noexcept override {
    void* ptr = ::operator new (bytes, std::align_val_t{kHostAlignment}, std::nothrow);
    if (ptr == nullptr) *error = "host allocation failed";
    return ptr;
  }
  void free(void* ptr, std::size_t) noexcept override {
    ::operator delete (ptr, std::align_val_t{kHostAlignment});
  }
  void* record_event(void*) override {
    throw Error(Error::Kind::Internal, "allocate: host memory has no streams to record on");
  }
  bool event_done(void*) override { return true; }
  void event_wait(void*) override {}
  void event_destroy(void*) noexcept override {}
};

class GpuBackend final : public MemoryBackend {
public:
  explicit GpuBackend(int device) : device_(device) {}
  void* allocate(std::size_t bytes, std::string* error) noexcept override {
    return gpu::malloc(device_, bytes, error);
  }
  void free(void* ptr, std::size_t) noexcept override { gpu::free(device_, ptr); }
  void* record_event(void* stream) override { return gpu::event_record(device_, stream); }
  bool event_done(void* event) override { return gpu::event_done(event); }
  void event_wait(void* event) override { gpu::event_wait(event); }
  void event_destroy(void* event) noexcept override { gpu::event_destroy(event); }

private:
  int device_;
};

}  // namespace

CachingAllocator& CachingAllocator::of(Device device) {
  check_device_exists("allocate", "device", device);
  // One allocator per device, never destroyed: tensors may outlive main().
  static std::mutex mutex;
  static auto* cpu = new CachingAllocator(Device::cpu(), std::make_unique<HostBackend>());
  static auto* cuda = new std::map<int, CachingAllocator*>();
  if (device.is_cpu()) return *cpu;
  std::lock_guard lock(mutex);
  auto& slot = (*cuda)[device.index];
  if (slot == nullptr)
    slot = new CachingAllocator(device, std::make_unique<GpuBackend>(device.index));
  return *slot;
}

CachingAllocator::CachingAllocator(Device device, std::unique_ptr<MemoryBackend> backend)
    : device_(device), backend_(std::move(backend)) {}

CachingAllocator::~CachingAllocator() {
  std::lock_guard lock(mutex_);
  release_all_locked();
}

CachingAllocator::Fence::~Fence() {
  for (const Mark& mark : marks) backend->event_destroy(mark.event);
}

std::size_t CachingAllocator::round_size(std::size_t bytes) {
  if (bytes == 0) bytes = 1;
  std::size_t granule = bytes < kLargeThreshold ? kSmallGranule : kLargeGranule;
  return (bytes + granule - 1) / granule * granule;
}

std::size_t CachingAllocator::max_fit(std::size_t size) { return size + size / 2 + kSmallGranule; }

std::size_t CachingAllocator::cache_limit_locked() const {
  return cache_limit_ == kCacheLimitAuto ? std::max(kCacheFloor, stats_.peak_in_use_bytes)
                                         : cache_limit_;
}

void CachingAllocator::fail_locked(std::size_t bytes, std::string_view op, const std::string& why) {
  ++stats_.failures;
  throw Error(Error::Kind::OutOfMemory,
              std::string(op) + ": " + std::to_string(bytes) + " bytes on " + to_string(device_) +
                  " failed: " + why + " (in use " + mib(stats_.in_use_bytes) + ", cached " +
                  mib(stats_.cached_bytes) + ", limit " +
                  (stats_.limit_bytes ? mib(stats_.limit_bytes) : std::string("none")) + ")");
}

void CachingAllocator::fence_pending_locked() {
  if (unfenced_.empty()) return;
  std::shared_ptr<Fence> fence;
  if (!streams_.empty()) {
    fence = std::make_shared<Fence>();
    fence->backend = backend_.get();
    fence->marks.reserve(streams_.size());
    for (void* stream : streams_)
      fence->marks.push_back({stream, backend_->record_event(stream), false});
  }
  for (Lru::iterator it : unfenced_) {
    it->fenced = true;
    it->fence = fence;
  }
  unfenced_.clear();
}

bool CachingAllocator::ready_locked(Block& block, void* stream) {
  if (!block.fenced) fence_pending_locked();
  if (!block.fence) return true;
  for (Fence::Mark& mark : block.fence->marks) {
    // Work on the requesting stream is ordered before the new owner's.
    if (stream != nullptr && mark.stream == stream) continue;
    if (!mark.done) mark.done = backend_->event_done(mark.event);
    if (!mark.done) return false;
  }
  block.fence.reset();  // done on every stream: nothing left to wait for
  return true;
}

void CachingAllocator::wait_locked(Block& block) {
  if (!block.fenced) fence_pending_locked();
  if (!block.fence) return;
  for (Fence::Mark& mark : block.fence->marks) {
    if (!mark.done) backend_->event_wait(mark.event);
    mark.done = true;
  }
  block.fence.reset();
}

void CachingAllocator::note_in_use_locked(void* ptr, std::size_t size) {
  live_[ptr] = size;
  stats_.in_use_bytes += size;
  ++stats_.allocations;
  stats_.peak_in_use_bytes = std::max(stats_.peak_in_use_bytes, stats_.in_use_bytes);
}

void* CachingAllocator::take_locked(Lru::iterator it) {
  auto [first, last] = by_size_.equal_range(it->size);
  for (auto entry = first; entry != last; ++entry)
    if (entry->second == it) {
      by_size_.erase(entry);
      break;
    }
  void* ptr = it->ptr;
  const std::size_t size = it->size;
  free_.erase(it);
  stats_.cached_bytes -= size;
  ++stats_.cache_hits;
  note_in_use_locked(ptr, size);
  return ptr;
}

void CachingAllocator::release_locked(Lru::iterator it) noexcept {
  try {
    wait_locked(*it);
  } catch (...) {
    // The device failed while we waited; the block goes back regardless
    // (cudaFree itself waits for the device).
    if (!it->fenced) unfenced_.erase(std::find(unfenced_.begin(), unfenced_.end(), it));
  }
  auto [first, last] = by_size_.equal_range(it->size);
  for (auto entry = first; entry != last; ++entry)
    if (entry->second == it) {
      by_size_.erase(entry);
      break;
    }
  backend_->free(it->ptr, it->size);
  stats_.cached_bytes -= it->size;
  ++stats_.cache_releases;
  free_.erase(it);
}

void CachingAllocator::release_all_locked() noexcept {
  while (!free_.empty()) release_locked(free_.begin());
}

bool CachingAllocator::idle_locked(Block& block) noexcept {
  try {
    return ready_locked(block, nullptr);
  } catch (...) {
    return true;  // the device failed: nothing will run on it any more
  }
}

void CachingAllocator::trim_locked(std::size_t cached_target) noexcept {
  // Given back first: blocks that a miss found too small (shapes grew past
  // them), then blocks that no stream may still use, oldest first; a block
  // that a stream may still use only when nothing else is left, since
  // giving it back means waiting for that stream.
  for (int pass = 0; pass < 3 && stats_.cached_bytes > cached_target; ++pass)
    for (auto it = free_.begin(); it != free_.end() && stats_.cached_bytes > cached_target;) {
      auto next = std::next(it);
      if (pass == 2 || ((pass == 1 || it->passed_over > 0) && idle_locked(*it))) release_locked(it);
      it = next;
    }
}

void* CachingAllocator::allocate(std::size_t bytes, void* stream, std::string_view op) {
  std::lock_guard lock(mutex_);
  if (fail_next_ > 0) {
    --fail_next_;
    fail_locked(bytes, op, "injected failure (debug::fail_next_allocations)");
  }
  if (bytes > kMaxRequest) fail_locked(bytes, op, "larger than any device's memory");
  const std::size_t size = round_size(bytes);

  // The smallest fitting block that no stream other than `stream` may still
  // be using; remember the first fitting one that is busy, in case the
  // system has nothing better.
  Lru::iterator busy = free_.end();
  for (auto entry = by_size_.lower_bound(size);
       entry != by_size_.end() && entry->first <= max_fit(size); ++entry) {
    if (ready_locked(*entry->second, stream)) return take_locked(entry->second);
    if (busy == free_.end()) busy = entry->second;
  }
  auto take_busy = [&] {
    wait_locked(*busy);
    return take_locked(busy);
  };

  // A miss: the cached blocks it found too small go first when the cache
  // is trimmed.
  for (Block& block : free_)
    if (block.size < size) ++block.passed_over;
  if (stats_.limit_bytes != 0 && stats_.in_use_bytes + size > stats_.limit_bytes)
    fail_locked(bytes, op, "over the memory limit set with set_memory_limit");
  if (stats_.limit_bytes != 0 &&
      stats_.in_use_bytes + stats_.cached_bytes + size > stats_.limit_bytes) {
    if (busy != free_.end()) return take_busy();
    trim_locked(stats_.limit_bytes - stats_.in_use_bytes - size);
  }

  std::string error;
  void* ptr = backend_->allocate(size, &error);
  if (ptr == nullptr) {
    if (busy != free_.end()) return take_busy();
    // The cache may hold what the system is missing: give it back, try once more.
    release_all_locked();
    error.clear();
    ptr = backend_->allocate(size, &error);
  }
  if (ptr == nullptr) fail_locked(bytes, op, error);
  note_in_use_locked(ptr, size);
  return ptr;
}

void CachingAllocator::deallocate(void* ptr) noexcept {
  if (ptr == nullptr) return;
  std::lock_guard lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) return;  // not ours: never free what we did not hand out
  const std::size_t size = it->second;
  live_.erase(it);
  stats_.in_use_bytes -= size;
  // Without memory to remember the block, it goes back to the system at
  // once (cudaFree waits for the work that may still use it).
  try {
    free_.push_back(Block{ptr, size, false, nullptr, 0});
  } catch (...) {
    backend_->free(ptr, size);
    return;
  }
  auto block = std::prev(free_.end());
  try {
    auto entry = by_size_.emplace(size, block);
    try {
      if (streams_.empty())
        block->fenced = true;
      else
        unfenced_.push_back(block);
    } catch (...) {
      by_size_.erase(entry);
      throw;
    }
  } catch (...) {
    free_.pop_back();
    backend_->free(ptr, size);
    return;
  }
  stats_.cached_bytes += size;
  std::size_t target = cache_limit_locked();
  if (stats_.limit_bytes != 0)
    target = std::min(target, stats_.limit_bytes > stats_.in_use_bytes
                                  ? stats_.limit_bytes - stats_.in_use_bytes
                                  : std::size_t{0});
  trim_locked(target);
}

void CachingAllocator::add_stream(void* stream) {
  if (stream == nullptr) return;
  std::lock_guard lock(mutex_);
  if (std::find(streams_.begin(), streams_.end(), stream) == streams_.end())
    streams_.push_back(stream);
}

void CachingAllocator::remove_stream(void* stream) noexcept {
  std::lock_guard lock(mutex_);
  std::erase(streams_, stream);
}

MemoryStats CachingAllocator::stats() const {
  std::lock_guard lock(mutex_);
  MemoryStats out = stats_;
  out.cache_limit_bytes = cache_limit_locked();
  return out;
}

void CachingAllocator::set_limit(std::size_t bytes) {
  std::lock_guard lock(mutex_);
  stats_.limit_bytes = bytes;
  if (bytes != 0 && stats_.in_use_bytes + stats_.cached_bytes > bytes)
    trim_locked(bytes > stats_.in_use_bytes ? bytes - stats_.in_use_bytes : 0);
}

void CachingAllocator::set_cache_limit(std::size_t bytes) {
  std::lock_guard lock(mutex_);
  cache_limit_ = bytes;
  trim_locked(cache_limit_locked());
}

void CachingAllocator::empty_cache() {
  std::lock_guard lock(mutex_);
  release_all_locked();
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
void set_cache_limit(Device device, std::size_t bytes) {
  detail::CachingAllocator::of(device).set_cache_limit(bytes);
}
void empty_cache(Device device) { detail::CachingAllocator::of(device).empty_cache(); }
void debug::fail_next_allocations(Device device, int count) {
  detail::CachingAllocator::of(device).fail_next(count);
}

}  // namespace dlrt
