// The threading layer's mechanism: coverage of the range, grains, nesting,
// exceptions, concurrent callers, and the parallel GEMM against one BLAS call.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "dlrt/threads.hpp"
#include "kernels/cpu/gemm.hpp"
#include "runtime/parallel.hpp"
#include "support/test_support.hpp"

namespace dlrt::detail {
namespace {

class ThreadSetting {
public:
  explicit ThreadSetting(int threads) : saved_(num_threads()) { set_num_threads(threads); }
  ~ThreadSetting() { set_num_threads(saved_); }
  ThreadSetting(const ThreadSetting&) = delete;
  ThreadSetting& operator=(const ThreadSetting&) = delete;

private:
  int saved_;
};

// Every index in [begin, end) is visited exactly once, in chunks of at least
// `grain` items except the last, for many sizes, grains and thread counts.
TEST(ParallelFor, CoversTheRangeOnceInChunksOfAtLeastTheGrain) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadSetting setting(threads);
    for (std::int64_t count : {0, 1, 2, 7, 64, 1000, 100003}) {
      for (std::int64_t grain : {1, 3, 64, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(count + 10));
        std::atomic<int> short_chunks{0};
        parallel_for(10, 10 + count, grain, [&](std::int64_t b, std::int64_t e) {
          ASSERT_LT(b, e);
          if (e - b < grain && e != 10 + count) ++short_chunks;
          for (std::int64_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
        });
        for (std::int64_t i = 0; i < 10; ++i) EXPECT_EQ(hits[static_cast<std::size_t>(i)], 0);
        for (std::int64_t i = 10; i < 10 + count; ++i)
          ASSERT_EQ(hits[static_cast<std::size_t>(i)], 1)
              << "index " << i << " of " << count << ", grain " << grain << ", " << threads
              << " threads";
        EXPECT_EQ(short_chunks, 0);
      }
    }
  }
}

TEST(ParallelFor, BelowTwoGrainsRunsOnTheCallingThread) {
  ThreadSetting setting(4);
  const auto caller = std::this_thread::get_id();
  int calls = 0;
  parallel_for(0, 99, 50, [&](std::int64_t b, std::int64_t e) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 99);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
}

TEST(ParallelFor, UsesSeveralThreadsWhenAllowed) {
  ThreadSetting setting(2);
  std::mutex mutex;
  std::set<std::thread::id> seen;
  // Enough chunks of real work that the helper thread wakes up in time.
  for (int attempt = 0; attempt < 50 && seen.size() < 2; ++attempt)
    parallel_for(0, 64, 1, [&](std::int64_t, std::int64_t) {
      volatile double sink = 0;
      for (int i = 0; i < 200000; ++i) sink = sink + i;
      std::lock_guard lock(mutex);
      seen.insert(std::this_thread::get_id());
    });
  EXPECT_EQ(seen.size(), 2u);
}

TEST(ParallelFor, OneThreadMeansTheCallingThreadOnly) {
  ThreadSetting setting(1);
  const auto caller = std::this_thread::get_id();
  parallel_for(0, 1 << 20, 1,
               [&](std::int64_t, std::int64_t) { EXPECT_EQ(std::this_thread::get_id(), caller); });
}

TEST(ParallelFor, NestedLoopsRunSerially) {
  ThreadSetting setting(2);
  std::atomic<int> inner_calls{0}, outer_items{0};
  parallel_for(0, 8, 1, [&](std::int64_t b, std::int64_t e) {
    EXPECT_TRUE(in_parallel_region());
    EXPECT_EQ(available_threads(), 1);
    for (std::int64_t i = b; i < e; ++i) {
      ++outer_items;
      parallel_for(0, 1000, 1, [&](std::int64_t ib, std::int64_t ie) {
        EXPECT_EQ(ib, 0);
        EXPECT_EQ(ie, 1000);
        ++inner_calls;
      });
    }
  });
  EXPECT_EQ(outer_items, 8);
  EXPECT_EQ(inner_calls, 8);  // one whole-range call per outer item
  EXPECT_FALSE(in_parallel_region());
}

TEST(ParallelFor, AnExceptionReachesTheCallerAndThePoolStaysUsable) {
  ThreadSetting setting(2);
  EXPECT_THROW(parallel_for(0, 100, 1,
                            [](std::int64_t b, std::int64_t) {
                              if (b >= 50) throw std::runtime_error("chunk failed");
                            }),
               std::runtime_error);
  std::atomic<std::int64_t> sum{0};
  parallel_for(0, 1000, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) sum += i;
  });
  EXPECT_EQ(sum, 999 * 1000 / 2);
}

// Several application threads at once: one gets the pool, the others run
// their loops themselves; every loop still covers its range exactly once.
TEST(ParallelFor, ConcurrentCallersEachGetTheirWholeRange) {
  ThreadSetting setting(2);
  std::vector<std::thread> callers;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&, t] {
      for (int round = 0; round < 200; ++round) {
        const std::int64_t count = 100 + 37 * t + round;
        std::vector<int> hits(static_cast<std::size_t>(count), 0);
        parallel_for(0, count, 4, [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
        });
        for (int h : hits) wrong += h != 1;
      }
    });
  for (auto& c : callers) c.join();
  EXPECT_EQ(wrong, 0);
}

// The split GEMM against one serial BLAS call, for both split directions
// and every transpose combination.
TEST(ParallelGemm, MatchesOneBlasCall) {
  ThreadSetting setting(2);
  struct Case {
    std::int64_t M, N, K;
  };
  for (const Case c : {Case{64, 3000, 200}, Case{3000, 48, 200}, Case{17, 700, 333},
                       Case{700, 17, 333}, Case{5, 5, 5}}) {
    for (cpu::Trans ta : {cpu::Trans::No, cpu::Trans::Yes})
      for (cpu::Trans tb : {cpu::Trans::No, cpu::Trans::Yes}) {
        const std::int64_t lda = ta == cpu::Trans::No ? c.K : c.M;
        const std::int64_t ldb = tb == cpu::Trans::No ? c.N : c.K;
        const auto a = test::random_values(c.M * c.K, 1), b = test::random_values(c.K * c.N, 2);
        const auto start = test::random_values(c.M * c.N, 3);
        std::vector<float> want = start, got = start;
        cpu::gemm_serial(ta, tb, c.M, c.N, c.K, 0.5f, a.data(), lda, b.data(), ldb, 0.25f,
                         want.data(), c.N);
        cpu::gemm(ta, tb, c.M, c.N, c.K, 0.5f, a.data(), lda, b.data(), ldb, 0.25f, got.data(),
                  c.N);
        EXPECT_TRUE(test::all_close(got, want, c.K)) << c.M << "x" << c.N << "x" << c.K;
      }
  }
}

// Chunks call the BLAS from several threads at once. Debian's
// single-threaded OpenBLAS shares its packing buffers between callers and
// gets this wrong; the build dlrt links must not.
TEST(ParallelGemm, ConcurrentBlasCallsGiveTheSerialBits) {
  const std::int64_t M = 64, N = 72, K = 128;
  const auto a = test::random_values(M * K, 4), b = test::random_values(N * K, 5);
  std::vector<float> want(static_cast<std::size_t>(M * N));
  cpu::gemm_serial(cpu::Trans::No, cpu::Trans::Yes, M, N, K, 1.0f, a.data(), K, b.data(), K, 0.0f,
                   want.data(), N);
  std::atomic<int> wrong{0};
  auto work = [&] {
    std::vector<float> got(want.size());
    for (int round = 0; round < 3000; ++round) {
      cpu::gemm_serial(cpu::Trans::No, cpu::Trans::Yes, M, N, K, 1.0f, a.data(), K, b.data(), K,
                       0.0f, got.data(), N);
      wrong += !test::bitwise_equal(got, want);
    }
  };
  std::thread first(work), second(work);
  first.join();
  second.join();
  EXPECT_EQ(wrong, 0);
}

}  // namespace
}  // namespace dlrt::detail
