// The caching allocator's policy on fake memory and fake streams: which
// freed block may be handed out for which stream and when, the cache bound
// and its release order, and the out-of-memory paths. A fake event
// completes when the test says its stream has caught up, so every ordering
// question is asked on the CPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dlrt/error.hpp"
#include "runtime/allocator.hpp"

namespace dlrt::detail {
namespace {

// Streams are counters of queued work; an event remembers its stream's
// count when recorded and is done once the stream has finished that much.
struct FakeDevice {
  struct Event {
    int stream;
    int ticket;
  };
  std::map<int, int> queued, finished;  // per stream
  std::map<void*, Event> events;
  std::vector<void*> freed;  // blocks given back to the "system", in order
  std::size_t capacity = SIZE_MAX;
  std::size_t held = 0;
  int records = 0, waits = 0;
  std::uintptr_t next_address = 0x1000;
  std::map<void*, std::size_t> blocks;

  static void* stream(int id) { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(id)); }
  static int id(void* stream) { return static_cast<int>(reinterpret_cast<std::uintptr_t>(stream)); }
  void launch(int s) { ++queued[s]; }  // work that may use what it was given
  void catch_up(int s) { finished[s] = queued[s]; }
};

class FakeBackend final : public MemoryBackend {
public:
  explicit FakeBackend(FakeDevice& d) : d_(d) {}
  void* allocate(std::size_t bytes, std::string* error) noexcept override {
    if (d_.held + bytes > d_.capacity) {
      *error = "fake device full";
      return nullptr;
    }
    void* ptr = reinterpret_cast<void*>(d_.next_address);
    d_.next_address += bytes;
    d_.held += bytes;
    d_.blocks[ptr] = bytes;
    return ptr;
  }
  void free(void* ptr, std::size_t) noexcept override {
    d_.held -= d_.blocks.at(ptr);
    d_.blocks.erase(ptr);
    d_.freed.push_back(ptr);
  }
  void* record_event(void* stream) override {
    ++d_.records;
    auto* handle = new char;
    d_.events[handle] = {FakeDevice::id(stream), d_.queued[FakeDevice::id(stream)]};
    return handle;
  }
  bool event_done(void* event) override {
    const auto& e = d_.events.at(event);
    return d_.finished[e.stream] >= e.ticket;
  }
  void event_wait(void* event) override {
    ++d_.waits;
    d_.catch_up(d_.events.at(event).stream);  // the host blocks until the stream gets there
  }
  void event_destroy(void* event) noexcept override {
    d_.events.erase(event);
    delete static_cast<char*>(event);
  }

private:
  FakeDevice& d_;
};

constexpr std::size_t kMiB = std::size_t{1} << 20;

class StreamOrderedAllocator : public ::testing::Test {
protected:
  FakeDevice device;
  std::unique_ptr<CachingAllocator> allocator =
      std::make_unique<CachingAllocator>(Device::cuda(0), std::make_unique<FakeBackend>(device));
  void* const a = FakeDevice::stream(1);
  void* const b = FakeDevice::stream(2);

  void SetUp() override {
    allocator->add_stream(a);
    allocator->add_stream(b);
  }
  void TearDown() override {
    allocator.reset();
    EXPECT_TRUE(device.events.empty()) << "every event is destroyed";
    EXPECT_EQ(device.held, 0u) << "every block is given back";
  }
};

TEST_F(StreamOrderedAllocator, ABlockFreedWhileAStreamMayUseItIsNotHandedToAnotherStream) {
  void* block = allocator->allocate(4 * kMiB, a);
  device.launch(1);  // a kernel on stream A uses the block
  allocator->deallocate(block);

  void* for_b = allocator->allocate(4 * kMiB, b);
  EXPECT_NE(for_b, block) << "stream B must not write memory that A's kernel may still read";
  EXPECT_EQ(allocator->stats().cache_hits, 0u);
  allocator->deallocate(for_b);

  device.catch_up(1);
  void* later = allocator->allocate(4 * kMiB, b);
  EXPECT_EQ(later, block) << "once A has passed the free, the block is B's to reuse";
  allocator->deallocate(later);
}

TEST_F(StreamOrderedAllocator, TheSameStreamReusesAtOnceAndAnUnknownStreamWaitsForAll) {
  void* block = allocator->allocate(4 * kMiB, a);
  device.launch(1);
  allocator->deallocate(block);

  void* unknown = allocator->allocate(4 * kMiB, nullptr);
  EXPECT_NE(unknown, block) << "a request for no stream takes only idle blocks";
  allocator->deallocate(unknown);

  // Stream order puts A's next work after the kernel that used the block.
  void* again = allocator->allocate(4 * kMiB, a);
  EXPECT_EQ(again, block);
  allocator->deallocate(again);
}

TEST_F(StreamOrderedAllocator, EveryRegisteredStreamIsFencedNotJustTheOneThatAllocated) {
  // The block was requested for A, but B used it too (an op on another
  // context read the tensor): the allocator cannot know, so it fences both.
  void* block = allocator->allocate(4 * kMiB, a);
  device.launch(2);
  allocator->deallocate(block);
  device.catch_up(1);
  void* for_a = allocator->allocate(4 * kMiB, a);
  EXPECT_NE(for_a, block) << "B may still be using it";
  device.catch_up(2);
  void* second = allocator->allocate(4 * kMiB, a);
  EXPECT_EQ(second, block);
  allocator->deallocate(for_a);
  allocator->deallocate(second);
}

TEST_F(StreamOrderedAllocator, OneFenceCoversEveryBlockFreedBeforeIt) {
  std::vector<void*> blocks;
  for (int i = 0; i < 8; ++i) blocks.push_back(allocator->allocate(kMiB, a));
  device.launch(1);
  for (void* p : blocks) allocator->deallocate(p);
  device.catch_up(1);
  for (int i = 0; i < 8; ++i) blocks[i] = allocator->allocate(kMiB, b);
  EXPECT_EQ(device.records, 2) << "one event per registered stream, shared by the 8 blocks";
  EXPECT_EQ(allocator->stats().cache_hits, 8u);
  for (void* p : blocks) allocator->deallocate(p);
}

TEST_F(StreamOrderedAllocator, WithoutStreamsBlocksAreReusedAtOnce) {
  allocator->remove_stream(a);
  allocator->remove_stream(b);
  void* block = allocator->allocate(kMiB, nullptr);
  allocator->deallocate(block);
  EXPECT_EQ(allocator->allocate(kMiB, nullptr), block);
  EXPECT_EQ(device.records, 0) << "no stream, no event";
  allocator->deallocate(block);
}

TEST_F(StreamOrderedAllocator, OutOfMemoryWaitsForTheStreamsBeforeFailing) {
  device.capacity = 8 * kMiB;
  void* block = allocator->allocate(8 * kMiB, a);
  device.launch(1);
  allocator->deallocate(block);
  // The device is full and the only block is busy on A: waiting for A is
  // better than failing.
  void* for_b = allocator->allocate(8 * kMiB, b);
  EXPECT_EQ(for_b, block);
  EXPECT_GE(device.waits, 1);
  EXPECT_EQ(device.finished[1], device.queued[1]);

  // Nothing cached and nothing left: Error(OutOfMemory) naming the call,
  // the size and the device; the allocator stays usable.
  try {
    allocator->allocate(2 * kMiB, b, "test_op");
    ADD_FAILURE() << "expected Error(OutOfMemory)";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::OutOfMemory);
    const std::string what = e.what();
    EXPECT_NE(what.find("test_op"), std::string::npos) << what;
    EXPECT_NE(what.find(std::to_string(2 * kMiB)), std::string::npos) << what;
    EXPECT_NE(what.find("fake device full"), std::string::npos) << what;
  }
  EXPECT_EQ(allocator->stats().failures, 1u);
  allocator->deallocate(for_b);
}

TEST_F(StreamOrderedAllocator, ReleasingABusyBlockWaitsForItsStreams) {
  void* block = allocator->allocate(4 * kMiB, a);
  device.launch(1);
  allocator->deallocate(block);
  allocator->empty_cache();
  EXPECT_EQ(device.finished[1], device.queued[1]) << "given back only after A passed the free";
  ASSERT_EQ(device.freed.size(), 1u);
  EXPECT_EQ(device.freed[0], block);
  EXPECT_EQ(allocator->stats().cached_bytes, 0u);
}

TEST_F(StreamOrderedAllocator, TheBoundReleasesBlocksAMissFoundTooSmallThenTheOldest) {
  allocator->set_cache_limit(10 * kMiB);
  void* small = allocator->allocate(2 * kMiB, a);
  void* medium = allocator->allocate(4 * kMiB, a);
  allocator->deallocate(medium);  // cached: medium
  allocator->deallocate(small);   // cached: medium, small (newest)
  // A miss for 6 MiB finds both too small; it is then 6 + 4 + 2 > 10 cached
  // once freed, and the stale ones go first, the oldest of them first.
  void* large = allocator->allocate(6 * kMiB, a);
  allocator->deallocate(large);
  const MemoryStats stats = allocator->stats();
  EXPECT_LE(stats.cached_bytes, 10 * kMiB);
  ASSERT_EQ(device.freed.size(), 1u);
  EXPECT_EQ(device.freed[0], medium);
  EXPECT_EQ(stats.cache_releases, 1u);
  EXPECT_EQ(stats.cache_limit_bytes, 10 * kMiB);
}

TEST_F(StreamOrderedAllocator, ABusyBlockIsWaitedForOnlyWhenItMustGo) {
  allocator->set_cache_limit(4 * kMiB);
  void* busy = allocator->allocate(4 * kMiB, a);
  device.launch(1);
  allocator->deallocate(busy);  // within the bound: kept, nobody waits
  EXPECT_EQ(device.waits, 0);
  EXPECT_EQ(allocator->stats().cached_bytes, 4 * kMiB);
  allocator->set_cache_limit(0);
  EXPECT_EQ(allocator->stats().cached_bytes, 0u);
  EXPECT_GE(device.waits, 1);
  EXPECT_EQ(device.finished[1], device.queued[1]) << "given back only after A passed the free";
}

TEST_F(StreamOrderedAllocator, TheFitRuleKeepsSmallRequestsOffBigBlocks) {
  void* big = allocator->allocate(64 * kMiB, a);
  allocator->deallocate(big);
  void* small = allocator->allocate(8 * kMiB, a);
  EXPECT_NE(small, big);
  void* close = allocator->allocate(44 * kMiB, a);  // 64 <= 1.5 * 44
  EXPECT_EQ(close, big);
  allocator->deallocate(small);
  allocator->deallocate(close);
}

TEST_F(StreamOrderedAllocator, GrowingShapesKeepTheCacheWithinTheAutomaticBound) {
  // Each step allocates a tensor 1.1 times the last and frees the one
  // before: the freed blocks never fit again. Without a bound they pile up
  // to several times the live peak.
  std::size_t trail = 0;
  double size = 1.0 * static_cast<double>(kMiB);
  void* previous = nullptr;
  while (size < 64.0 * static_cast<double>(kMiB)) {
    void* current = allocator->allocate(static_cast<std::size_t>(size), a);
    if (previous != nullptr) allocator->deallocate(previous);
    trail += static_cast<std::size_t>(size);
    previous = current;
    const MemoryStats stats = allocator->stats();
    const std::size_t bound = std::max(64 * kMiB, stats.peak_in_use_bytes);
    EXPECT_EQ(stats.cache_limit_bytes, bound);
    EXPECT_LE(stats.cached_bytes, bound) << "at " << size / kMiB << " MiB";
    size *= 1.1;
  }
  const MemoryStats stats = allocator->stats();
  EXPECT_GT(trail, 3 * stats.peak_in_use_bytes) << "the replay must outgrow the bound";
  EXPECT_LE(stats.in_use_bytes + stats.cached_bytes, 2 * stats.peak_in_use_bytes);
  EXPECT_GT(stats.cache_releases, 0u);
  allocator->deallocate(previous);
}

TEST_F(StreamOrderedAllocator, InjectedFailuresAndLimitsRaiseOutOfMemory) {
  allocator->fail_next(1);
  EXPECT_THROW(allocator->allocate(kMiB, a), Error);
  void* ok = allocator->allocate(kMiB, a);
  allocator->set_limit(3 * kMiB);
  try {
    allocator->allocate(4 * kMiB, a, "limited_op");
    ADD_FAILURE() << "expected Error(OutOfMemory)";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::OutOfMemory);
    EXPECT_NE(std::string(e.what()).find("limited_op"), std::string::npos);
  }
  EXPECT_EQ(allocator->stats().failures, 2u);
  allocator->set_limit(0);
  allocator->deallocate(ok);
}

TEST_F(StreamOrderedAllocator, FreeingWhatItDidNotHandOutIsIgnored) {
  int local = 0;
  allocator->deallocate(&local);
  allocator->deallocate(nullptr);
  EXPECT_EQ(allocator->stats().cached_bytes, 0u);
  EXPECT_TRUE(device.freed.empty());
}

}  // namespace
}  // namespace dlrt::detail
