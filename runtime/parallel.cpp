// dlrt's thread pool. One job runs at a time; its chunks are claimed with a
// compare-and-swap on one 64-bit ticket that packs the job's generation, its
// chunk count and the next unclaimed chunk, so a worker that wakes up late
// (its generation is gone) claims nothing and touches nothing. The caller
// claims chunks too, and afterwards waits only until every claimed chunk has
// finished: a worker that never woke up is never waited for.
#include "runtime/parallel.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dlrt/error.hpp"
#include "dlrt/threads.hpp"
#include "runtime/log.hpp"
#include "runtime/validate.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace dlrt::detail {
namespace {

constexpr int kMaxThreads = 1024;
// Chunks per thread: enough for a thread that finishes early (or a caller
// whose helper was descheduled) to take over work, few enough that the
// per-chunk costs (a GEMM chunk packs its operand again) stay small.
constexpr std::int64_t kChunksPerThread = 4;
constexpr std::int64_t kMaxChunks = 0xffff;  // the ticket's chunk fields are 16 bits
// Busy-wait rounds before sleeping: about 20-50 us of pause instructions, so
// that back-to-back parallel loops (the steps of a recurrent network) find
// their workers awake, while an idle pool costs no CPU.
constexpr int kSpinRounds = 2000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

thread_local int t_region_depth = 0;  // > 0 while running chunks, and on pool threads

struct RegionScope {
  RegionScope() { ++t_region_depth; }
  ~RegionScope() { --t_region_depth; }
  RegionScope(const RegionScope&) = delete;
  RegionScope& operator=(const RegionScope&) = delete;
};

std::atomic<bool> g_forked{false};

int parse_thread_count(const char* variable) {
  const char* text = std::getenv(variable);
  if (text == nullptr || *text == '\0') return 0;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  // OMP_NUM_THREADS may be a list ("4,2"); its first value is the outer level's.
  const bool list_tail = end != nullptr && (*end == ',' || *end == '\0');
  if (end == text || !list_tail || value < 1 || value > kMaxThreads) {
    log(LogLevel::Warn, variable, "=\"", text, "\" is not a thread count in [1, ", kMaxThreads,
        "]; ignored");
    return 0;
  }
  return static_cast<int>(value);
}

int cpus_available() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) return std::min(count, kMaxThreads);
  }
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware == 0 ? 1 : static_cast<int>(std::min<unsigned>(hardware, kMaxThreads));
}

int default_threads() {
  if (int n = parse_thread_count("DLRT_NUM_THREADS"); n > 0) return n;
  if (int n = parse_thread_count("OMP_NUM_THREADS"); n > 0) return n;
  return cpus_available();
}

std::atomic<int>& thread_setting() {
  static std::atomic<int> threads{default_threads()};
  return threads;
}

// ticket = generation (32 bits) | chunk count (16 bits) | next chunk (16 bits)
constexpr std::uint64_t pack(std::uint32_t generation, std::uint64_t chunks, std::uint64_t next) {
  return (std::uint64_t{generation} << 32) | (chunks << 16) | next;
}
constexpr std::uint32_t generation_of(std::uint64_t t) {
  return static_cast<std::uint32_t>(t >> 32);
}
constexpr std::uint64_t chunks_of(std::uint64_t t) { return (t >> 16) & 0xffff; }
constexpr std::uint64_t next_of(std::uint64_t t) { return t & 0xffff; }

class Pool {
public:
  static Pool& instance() {
    // Never destroyed: worker threads block in a wait until the process
    // exits, and a forked child must not join threads it does not have.
    static Pool* pool = new Pool();
    return *pool;
  }

  // Runs the job on up to `threads` threads; false, having run nothing, when
  // the pool is busy with another caller's job.
  bool run(std::int64_t begin, std::int64_t end, std::int64_t chunk, std::int64_t chunks,
           int threads, ChunkFn call, const void* body) {
    std::unique_lock lock(dispatch_, std::try_to_lock);
    if (!lock.owns_lock()) return false;
    grow(threads - 1);

    begin_ = begin;
    end_ = end;
    chunk_ = chunk;
    call_ = call;
    body_ = body;
    error_ = nullptr;
    cancelled_.store(false, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    helpers_.store(threads, std::memory_order_relaxed);
    const std::uint32_t generation = ++generation_counter_;
    ticket_.store(pack(generation, static_cast<std::uint64_t>(chunks), 0),
                  std::memory_order_release);
    wake_.store(generation, std::memory_order_release);
    wake_.notify_all();

    {
      RegionScope region;
      work(generation, 0);
    }
    const auto total = static_cast<std::uint32_t>(chunks);
    for (int round = 0; done_.load(std::memory_order_acquire) < total; ++round) {
      if (round < kSpinRounds) {
        cpu_relax();
      } else {
        const std::uint32_t seen = done_.load(std::memory_order_acquire);
        if (seen < total) done_.wait(seen, std::memory_order_acquire);
      }
    }
    std::exception_ptr error = error_;
    lock.unlock();
    if (error) std::rethrow_exception(error);
    return true;
  }

private:
  Pool() {
    // Registered before the first worker starts: a child forked at any later
    // point runs serially.
    pthread_atfork(nullptr, nullptr, [] { g_forked.store(true); });
  }

  void grow(int helpers) {
    while (static_cast<int>(workers_.size()) < helpers) {
      const int index = static_cast<int>(workers_.size());
      workers_.emplace_back([this, index] { worker_loop(index); });
      const std::string name = "dlrt-cpu-" + std::to_string(index + 1);
      pthread_setname_np(workers_.back().native_handle(), name.c_str());
      workers_.back().detach();
    }
  }

  void worker_loop(int index) {
    ++t_region_depth;  // a pool thread never starts a nested job
    std::uint32_t seen = 0;
    for (;;) {
      std::uint32_t now = wake_.load(std::memory_order_acquire);
      for (int round = 0; now == seen && round < kSpinRounds; ++round) {
        cpu_relax();
        now = wake_.load(std::memory_order_acquire);
      }
      if (now == seen) {
        wake_.wait(seen, std::memory_order_acquire);
        continue;
      }
      seen = now;
      // Worker `index` is slot index + 1; the caller is slot 0.
      if (index + 1 < helpers_.load(std::memory_order_relaxed)) work(now, index + 1);
    }
  }

  // Claims and runs chunks of job `generation` until none is left.
  void work(std::uint32_t generation, int slot) {
    std::uint64_t ticket = ticket_.load(std::memory_order_acquire);
    for (;;) {
      if (generation_of(ticket) != generation || next_of(ticket) >= chunks_of(ticket)) return;
      if (!ticket_.compare_exchange_weak(ticket, ticket + 1, std::memory_order_acq_rel,
                                         std::memory_order_acquire))
        continue;
      // The claimed chunk keeps the job alive: its fields stay as they are
      // until done_ counts this chunk.
      const auto chunk = static_cast<std::int64_t>(next_of(ticket));
      const std::int64_t b = begin_ + chunk * chunk_;
      const std::int64_t e = std::min(end_, b + chunk_);
      if (!cancelled_.load(std::memory_order_relaxed)) {
        try {
          call_(body_, b, e, slot);
        } catch (...) {
          std::lock_guard guard(error_mutex_);
          if (!error_) error_ = std::current_exception();
          cancelled_.store(true, std::memory_order_relaxed);
        }
      }
      const std::uint32_t total = static_cast<std::uint32_t>(chunks_of(ticket));
      if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == total) done_.notify_one();
      ticket = ticket_.load(std::memory_order_acquire);
    }
  }

  std::mutex dispatch_;  // one job at a time
  std::vector<std::thread> workers_;
  std::uint32_t generation_counter_ = 0;

  std::atomic<std::uint64_t> ticket_{0};
  std::atomic<std::uint32_t> wake_{0};
  std::atomic<std::uint32_t> done_{0};
  std::atomic<int> helpers_{0};  // threads of the current job, the caller included
  std::atomic<bool> cancelled_{false};

  // The job, written before the ticket is published.
  std::int64_t begin_ = 0, end_ = 0, chunk_ = 1;
  ChunkFn call_ = nullptr;
  const void* body_ = nullptr;
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace

int available_threads() {
  if (t_region_depth > 0 || g_forked.load(std::memory_order_relaxed)) return 1;
  return thread_setting().load(std::memory_order_relaxed);
}

bool in_parallel_region() { return t_region_depth > 0; }

void parallel_for_impl(std::int64_t begin, std::int64_t end, std::int64_t grain, int max_slots,
                       ChunkFn call, const void* body) {
  const int threads = std::min(available_threads(), std::max(max_slots, 1));
  const std::int64_t items = end - begin;
  // items / grain, rounded down, so that every chunk but the last holds at least `grain` items.
  const std::int64_t wanted =
      std::min({items / grain, std::int64_t{threads} * kChunksPerThread, kMaxChunks});
  if (threads > 1 && wanted >= 2) {
    const std::int64_t chunk = (items + wanted - 1) / wanted;
    const std::int64_t chunks = (items + chunk - 1) / chunk;
    const int helpers = static_cast<int>(std::min<std::int64_t>(threads, chunks));
    if (Pool::instance().run(begin, end, chunk, chunks, helpers, call, body)) return;
    log(LogLevel::Debug, "parallel_for: the thread pool is busy with another thread's op; ",
        "running on the calling thread");
  }
  RegionScope region;
  call(body, begin, end, 0);
}

bool forked_child() noexcept { return g_forked.load(std::memory_order_relaxed); }

}  // namespace dlrt::detail

namespace dlrt {

void set_num_threads(int threads) {
  if (threads < 1 || threads > detail::kMaxThreads)
    detail::invalid_argument("set_num_threads", "threads", threads,
                             "must be in [1, " + std::to_string(detail::kMaxThreads) + "]");
  detail::thread_setting().store(threads);
}

int num_threads() noexcept {
  return detail::forked_child() ? 1 : detail::thread_setting().load(std::memory_order_relaxed);
}

}  // namespace dlrt
