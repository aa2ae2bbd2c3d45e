#include <gtest/gtest.h>

#include "support/test_support.hpp"

namespace dlrt {
namespace {

TEST(Runtime, CudaAvailabilityIsAnAnswerNotACrash) {
  const bool available = cuda_available();
  EXPECT_EQ(available, cuda_device_count() > 0);
  if (!available) {
    EXPECT_FALSE(cuda_unavailable_reason().empty());
  }
  if (!built_with_cuda()) {
    EXPECT_FALSE(available);
  }
}

TEST(Runtime, TensorRoundTripsThroughHost) {
  Tensor t = test::random_tensor({2, 3, 4}, 7);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));
  Tensor copy = t.clone();
  EXPECT_TRUE(test::bitwise_equal(copy.to_vector(), t.to_vector()));
  EXPECT_NE(copy.data(), t.data());
}

TEST(Runtime, SliceAndViewShareStorage) {
  Tensor t = Tensor::from_vector({3, 2}, std::vector<float>{0, 1, 2, 3, 4, 5});
  Tensor rows = t.slice(1, 3);
  EXPECT_EQ(rows.to_vector(), (std::vector<float>{2, 3, 4, 5}));
  EXPECT_TRUE(rows.overlaps(t));
  EXPECT_FALSE(t.slice(0, 1).overlaps(t.slice(1, 2)));
  Tensor flat = t.view({6});
  flat.data()[0] = 42;
  EXPECT_EQ(t.to_vector()[0], 42);
}

TEST(Runtime, EngineNamesRoundTrip) {
  EXPECT_EQ(engine_from_string("auto"), Engine::Auto);
  for (Engine e : known_engines()) EXPECT_EQ(engine_from_string(to_string(e)), e);
  EXPECT_TRUE(test::throws_error([] { engine_from_string("tpu"); }, Error::Kind::InvalidArgument,
                                 {"'name'", "tpu"}));
}

TEST(Runtime, ContextOnMissingDeviceIsAnError) {
  const int count = cuda_device_count();
  EXPECT_TRUE(test::throws_error([&] { Context ctx(Device::cuda(count)); },
                                 Error::Kind::InvalidArgument, {"'device'", "cuda:"}));
  EXPECT_TRUE(test::throws_error(
      [&] {
        Tensor t({2, 2}, Device::cuda(count + 3));
      },
      Error::Kind::InvalidArgument, {"cuda:"}));
}

TEST(Runtime, BadShapesAreErrors) {
  EXPECT_TRUE(test::throws_error(
      [] {
        Tensor t({2, 0, 3});
      },
      Error::Kind::InvalidArgument, {"'shape'", "[2, 0, 3]", ">= 1"}));
  EXPECT_TRUE(test::throws_error(
      [] {
        Tensor t({2, -1});
      },
      Error::Kind::InvalidArgument, {"'shape'", ">= 1"}));
  EXPECT_TRUE(test::throws_error(
      [] {
        Tensor t({1 << 20, 1 << 20, 1 << 20});
      },
      Error::Kind::InvalidArgument, {"'shape'", "2^40"}));
  EXPECT_TRUE(test::throws_error(
      [] {
        Tensor::from_vector({2, 2}, std::vector<float>{1, 2, 3});
      },
      Error::Kind::InvalidArgument, {"'values.size()'", "3"}));
}

TEST(Runtime, AllocatorCachesAndCounts) {
  const Device cpu = Device::cpu();
  const MemoryStats before = memory_stats(cpu);
  { Tensor a({1000}); }
  { Tensor b({1000}); }
  const MemoryStats after = memory_stats(cpu);
  EXPECT_EQ(after.allocations - before.allocations, 2u);
  EXPECT_GE(after.cache_hits - before.cache_hits, 1u);
  EXPECT_EQ(after.in_use_bytes, before.in_use_bytes);
}

TEST(Runtime, AllocationFailureIsAnErrorAndTheAllocatorRecovers) {
  const Device cpu = Device::cpu();
  debug::fail_next_allocations(cpu, 1);
  EXPECT_TRUE(
      test::throws_error([] { Tensor t({64}); }, Error::Kind::OutOfMemory, {"injected failure"}));
  Tensor ok({64});  // the next request succeeds
  EXPECT_EQ(ok.numel(), 64);

  const MemoryStats stats = memory_stats(cpu);
  set_memory_limit(cpu, stats.in_use_bytes + (1 << 20));
  EXPECT_TRUE(
      test::throws_error([] { Tensor t({1 << 22}); }, Error::Kind::OutOfMemory, {"memory limit"}));
  EXPECT_EQ(memory_stats(cpu).in_use_bytes, stats.in_use_bytes);  // nothing leaked
  Tensor small({1024});                                           // under the limit still works
  set_memory_limit(cpu, 0);
  Tensor big({1 << 22});
  EXPECT_EQ(big.numel(), 1 << 22);
}

}  // namespace
}  // namespace dlrt
