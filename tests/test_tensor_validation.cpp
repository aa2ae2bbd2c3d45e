// The validation rules of the runtime's own entry points: tensors, devices,
// memory controls. Each throws dlrt::Error naming the argument, and leaves
// the tensor it was asked to change untouched.
#include <gtest/gtest.h>

#include "support/test_support.hpp"

namespace dlrt {
namespace {

const Device kMissingGpu = Device::cuda(64);  // no machine has 65 GPUs

TEST(TensorValidation, ViewNeedsTheSameElementCount) {
  Tensor t = test::random_tensor({2, 3}, 1);
  EXPECT_TRUE(test::throws_error(
      [&] {
        (void)t.view({4, 2});
      },
      Error::Kind::InvalidArgument, {"'shape'", "[4, 2]", "[2, 3]"}));
  EXPECT_TRUE(test::throws_error(
      [&] {
        (void)t.view({6, 0});
      },
      Error::Kind::InvalidArgument, {"'shape'", ">= 1"}));
  EXPECT_TRUE(test::throws_error([&] { (void)Tensor().view({1}); }, Error::Kind::InvalidArgument,
                                 {"'shape'"}));
}

TEST(TensorValidation, SliceMustBeANonEmptyRangeInside) {
  Tensor t = test::random_tensor({4, 2}, 1);
  for (const auto& range : {std::pair{-1, 2}, {2, 2}, {3, 1}, {0, 5}})
    EXPECT_TRUE(test::throws_error([&] { (void)t.slice(range.first, range.second); },
                                   Error::Kind::InvalidArgument, {"'[begin, end)'", "[0, 4)"}))
        << range.first << ", " << range.second;
  EXPECT_TRUE(test::throws_error([] { (void)Tensor().slice(0, 1); }, Error::Kind::InvalidArgument,
                                 {"'this'"}));
}

TEST(TensorValidation, CopyFromChecksCountAndDtypeAndLeavesTheDestination) {
  Tensor dst = test::random_tensor({2, 3}, 1);
  const std::vector<float> before = dst.to_vector();
  EXPECT_TRUE(test::throws_error([&] { dst.copy_from(test::random_tensor({7}, 2)); },
                                 Error::Kind::InvalidArgument, {"'src.shape'", "[7]"}));
  EXPECT_TRUE(test::throws_error([&] { dst.copy_from(Tensor({6}, Device::cpu(), DType::I32)); },
                                 Error::Kind::InvalidArgument, {"'src.dtype'", "i32"}));
  EXPECT_TRUE(test::throws_error([&] { dst.copy_from(Tensor()); }, Error::Kind::InvalidArgument,
                                 {"'src'", "undefined"}));
  EXPECT_TRUE(test::bitwise_equal(dst.to_vector(), before));
  // A same-count copy across shapes is allowed.
  Tensor src = test::random_tensor({6}, 3);
  dst.copy_from(src);
  EXPECT_EQ(dst.to_vector(), src.to_vector());
}

TEST(TensorValidation, UndefinedTensorsAreRefusedByEveryMember) {
  Tensor t;
  EXPECT_FALSE(t.defined());
  EXPECT_EQ(t.numel(), 0);
  EXPECT_EQ(t.data(), nullptr);
  EXPECT_TRUE(test::throws_error([&] { t.fill(1.0f); }, Error::Kind::InvalidArgument, {"'this'"}));
  EXPECT_TRUE(test::throws_error([&] { (void)t.to(Device::cpu()); }, Error::Kind::InvalidArgument,
                                 {"'this'"}));
  EXPECT_TRUE(t.to_vector().empty());
}

TEST(TensorValidation, RankAndDtypeLimits) {
  EXPECT_TRUE(test::throws_error([] { Shape s(std::vector<std::int64_t>(7, 1)); },
                                 Error::Kind::InvalidArgument, {"'dims.size()'", "7", "<= 6"}));
  EXPECT_TRUE(test::throws_error([] { Tensor t({2}, Device::cpu(), static_cast<DType>(5)); },
                                 Error::Kind::InvalidArgument, {"'dtype'"}));
}

TEST(TensorValidation, I32TensorsHoldIntegers) {
  Tensor t({3}, Device::cpu(), DType::I32);
  t.fill(-7.0f);
  EXPECT_EQ(t.to_vector_i32(), (std::vector<std::int32_t>{-7, -7, -7}));
  EXPECT_EQ(t.dtype(), DType::I32);
  EXPECT_EQ(t.clone().dtype(), DType::I32);
}

TEST(DeviceValidation, EveryDeviceTakingCallNamesAMissingDevice) {
  const std::vector<std::string> needles = {"cuda:64"};
  EXPECT_TRUE(test::throws_error([] { (void)device_info(kMissingGpu); },
                                 Error::Kind::InvalidArgument, needles));
  EXPECT_TRUE(test::throws_error([] { (void)memory_stats(kMissingGpu); },
                                 Error::Kind::InvalidArgument, needles));
  EXPECT_TRUE(test::throws_error([] { set_memory_limit(kMissingGpu, 1); },
                                 Error::Kind::InvalidArgument, needles));
  EXPECT_TRUE(
      test::throws_error([] { empty_cache(kMissingGpu); }, Error::Kind::InvalidArgument, needles));
  EXPECT_TRUE(test::throws_error([] { debug::fail_next_allocations(kMissingGpu, 1); },
                                 Error::Kind::InvalidArgument, needles));
  EXPECT_TRUE(test::throws_error([] { Tensor t({1}, kMissingGpu); }, Error::Kind::InvalidArgument,
                                 needles));
  EXPECT_TRUE(
      test::throws_error([] { Context c(kMissingGpu); }, Error::Kind::InvalidArgument, needles));
  EXPECT_TRUE(test::throws_error([] { (void)test::random_tensor({1}, 1).to(kMissingGpu); },
                                 Error::Kind::InvalidArgument, needles));
  EXPECT_TRUE(test::throws_error([] { Tensor t({1}, Device::cuda(-1)); },
                                 Error::Kind::InvalidArgument, {"cuda:-1"}));
  EXPECT_EQ(device_info(Device::cpu()).name, "cpu");
}

}  // namespace
}  // namespace dlrt
