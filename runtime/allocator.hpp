// A caching allocator per device: freed blocks are kept in size classes and
// handed out again, so steady-state training steps never call cudaMalloc.
//
// The cache has a bound and it is stream-ordered; the policy is written out
// in include/dlrt/memory.hpp (what users see) and docs/architecture.md
// ("Memory and streams"). Everything the policy needs from the device goes
// through MemoryBackend, so tests drive it with fake memory and fake streams.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dlrt/device.hpp"
#include "dlrt/memory.hpp"

namespace dlrt::detail {

// The allocator's view of a device: raw memory, and events on its streams.
// A stream and an event are opaque handles (cudaStream_t / cudaEvent_t on a
// GPU); nullptr is never a registered stream.
class MemoryBackend {
public:
  virtual ~MemoryBackend() = default;
  // nullptr, with *error set, when the memory is not there.
  virtual void* allocate(std::size_t bytes, std::string* error) noexcept = 0;
  virtual void free(void* ptr, std::size_t bytes) noexcept = 0;
  // An event recorded now on `stream`: it completes once all work queued
  // on the stream so far has finished.
  virtual void* record_event(void* stream) = 0;
  // Whether the event has completed, without waiting.
  virtual bool event_done(void* event) = 0;
  // Blocks the calling thread until the event has completed.
  virtual void event_wait(void* event) = 0;
  virtual void event_destroy(void* event) noexcept = 0;
};

class CachingAllocator {
public:
  // The process-wide allocator of `device` (validated: Error(InvalidArgument)
  // for a device that does not exist).
  static CachingAllocator& of(Device device);

  // An allocator on its own backend; the per-device ones use the host or
  // the GPU layer, tests use fakes.
  CachingAllocator(Device device, std::unique_ptr<MemoryBackend> backend);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A block of at least `bytes`, for work on `stream` (the stream that will
  // use it first; nullptr when that is not known, and then only a block
  // whose earlier work has finished on every stream is reused). `op` names
  // the caller in the Error(OutOfMemory) it raises, with the request, the
  // limit and what is held.
  void* allocate(std::size_t bytes, void* stream = nullptr, std::string_view op = "allocate");
  void deallocate(void* ptr) noexcept;
  void deallocate(void* ptr, std::size_t) noexcept { deallocate(ptr); }

  // Streams that may touch this device's memory. A freed block is reused on
  // another stream only after an event recorded on every registered stream
  // since it was freed has completed. A stream is removed only after its
  // work has finished (Context synchronises it first).
  void add_stream(void* stream);
  void remove_stream(void* stream) noexcept;

  MemoryStats stats() const;
  void set_limit(std::size_t bytes);
  void set_cache_limit(std::size_t bytes);
  void empty_cache();
  void fail_next(int count);

  // The size a request is rounded up to (512 B granules below 1 MiB, 2 MiB
  // granules above), so that freed blocks fit later requests.
  static std::size_t round_size(std::size_t bytes);
  // The largest cached block a request of `size` (rounded) may take.
  static std::size_t max_fit(std::size_t size);

private:
  // Events recorded on every registered stream at one moment; shared by
  // the blocks freed before that moment.
  struct Fence {
    struct Mark {
      void* stream;
      void* event;
      bool done;
    };
    std::vector<Mark> marks;
    MemoryBackend* backend = nullptr;
    Fence() = default;
    Fence(const Fence&) = delete;
    Fence& operator=(const Fence&) = delete;
    ~Fence();
  };
  struct Block {
    void* ptr;
    std::size_t size;
    // False until an allocation records the fence that covers this free
    // (recording late is safe: the later event follows all earlier work).
    bool fenced = false;
    std::shared_ptr<Fence> fence;  // null once fenced: nothing to wait for
    int passed_over = 0;           // misses that found it too small
  };
  using Lru = std::list<Block>;  // oldest freed first

  [[noreturn]] void fail_locked(std::size_t bytes, std::string_view op, const std::string& why);
  std::size_t cache_limit_locked() const;
  void fence_pending_locked();
  bool ready_locked(Block& block, void* stream);
  void wait_locked(Block& block);
  void* take_locked(Lru::iterator it);
  void release_locked(Lru::iterator it) noexcept;
  void release_all_locked() noexcept;
  void trim_locked(std::size_t cached_target) noexcept;
  bool idle_locked(Block& block) noexcept;
  void note_in_use_locked(void* ptr, std::size_t size);

  Device device_;
  std::unique_ptr<MemoryBackend> backend_;
  mutable std::mutex mutex_;
  Lru free_;
  std::multimap<std::size_t, Lru::iterator> by_size_;
  std::unordered_map<void*, std::size_t> live_;  // handed-out block -> its size
  std::vector<Lru::iterator> unfenced_;
  std::vector<void*> streams_;
  std::size_t cache_limit_ = kCacheLimitAuto;
  MemoryStats stats_;
  int fail_next_ = 0;
};

}  // namespace dlrt::detail
