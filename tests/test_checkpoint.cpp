// safetensors checkpoints: round trips, and every kind of bad file named.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "support/test_support.hpp"

namespace dlrt {
namespace {

using test::throws_error;

std::string temp_path(const std::string& name) { return ::testing::TempDir() + name; }

// A file of the format written by hand: header length, header, data.
void write_raw(const std::string& path, const std::string& header, std::size_t data_bytes,
               std::int64_t claimed_length = -1) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  std::uint64_t n = claimed_length < 0 ? header.size() : static_cast<std::uint64_t>(claimed_length);
  for (int i = 0; i < 8; ++i, n >>= 8) out.put(static_cast<char>(n & 0xFF));
  out << header;
  for (std::size_t i = 0; i < data_bytes; ++i) out.put(static_cast<char>(i));
}

TEST(Checkpoint, RoundTripKeepsNamesShapesValuesAndMetadata) {
  const std::string path = temp_path("dlrt_roundtrip.safetensors");
  const Tensor w = test::random_tensor({4, 3}, 1);
  const Tensor b = test::random_tensor({4}, 2);
  Tensor labels({5}, Device::cpu(), DType::I32);
  for (int i = 0; i < 5; ++i) labels.data_i32()[i] = 7 * i - 3;
  const std::vector<NamedTensor> saved{
      {"lstm.weight_ih_l0_reverse", w}, {"bias \"quoted\" \\ ünïcode", b}, {"labels", labels}};
  save_safetensors(path, saved, {{"format", "pt"}, {"epoch", "3"}});
  const SafetensorsFile file = load_safetensors(path);
  ASSERT_EQ(file.tensors.size(), 3u);
  EXPECT_EQ(file.metadata.at("format"), "pt");
  EXPECT_EQ(file.metadata.at("epoch"), "3");
  for (const NamedTensor& t : saved) {
    const Tensor& got = file.at(t.name);
    EXPECT_EQ(got.shape(), t.tensor.shape()) << t.name;
    EXPECT_EQ(got.dtype(), t.tensor.dtype()) << t.name;
    if (t.tensor.dtype() == DType::F32)
      EXPECT_TRUE(test::bitwise_equal(got.to_vector(), t.tensor.to_vector())) << t.name;
    else
      EXPECT_EQ(got.to_vector_i32(), t.tensor.to_vector_i32());
  }
  EXPECT_TRUE(throws_error([&] { (void)file.at("missing"); }, Error::Kind::InvalidArgument,
                           {"'name'", "missing"}));
  std::remove(path.c_str());
}

TEST(Checkpoint, SavingRefusesBadNames) {
  const std::string path = temp_path("dlrt_bad_names.safetensors");
  const Tensor t = test::random_tensor({2}, 1);
  EXPECT_TRUE(throws_error(
      [&] {
        save_safetensors(path, {{"", t}});
      },
      Error::Kind::InvalidArgument, {"tensors[0].name", "empty"}));
  EXPECT_TRUE(throws_error(
      [&] {
        save_safetensors(path, {{"a", t}, {"a", t}});
      },
      Error::Kind::InvalidArgument, {"tensors[1].name", "unique"}));
  EXPECT_TRUE(throws_error(
      [&] {
        save_safetensors(path, {{"__metadata__", t}});
      },
      Error::Kind::InvalidArgument, {"reserved"}));
  EXPECT_TRUE(throws_error(
      [&] {
        save_safetensors(path, {{"u", Tensor()}});
      },
      Error::Kind::InvalidArgument, {"tensors[0].tensor", "undefined"}));
  std::ifstream in(path);
  EXPECT_FALSE(in.good()) << "a refused save wrote a file";
}

struct BadFile {
  const char* what;
  std::string header;
  std::size_t data_bytes;
  std::int64_t claimed_length;
  Error::Kind kind;
  std::vector<std::string> needles;
};

TEST(Checkpoint, BadFilesNameTheirProblem) {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::vector<BadFile> cases{
      {"truncated data", ok, 5, -1, Error::Kind::InvalidArgument, {"'a'", "run past", "truncated"}},
      {"header past the end", ok, 8, 4000, Error::Kind::InvalidArgument, {"runs past the end"}},
      {"huge header", ok, 8, std::int64_t{1} << 40, Error::Kind::InvalidArgument, {"100 MB"}},
      {"not json",
       "{\"a\":{\"dtype\" \"F32\"}}",
       0,
       -1,
       Error::Kind::InvalidArgument,
       {"not valid JSON"}},
      {"not an object", "[1,2]", 0, -1, Error::Kind::InvalidArgument, {"not a JSON object"}},
      {"wrong dtype",
       R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})",
       4,
       -1,
       Error::Kind::Unsupported,
       {"'a'", "F16"}},
      {"shape against bytes",
       R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
       8,
       -1,
       Error::Kind::InvalidArgument,
       {"'a'", "[3]", "needs 12 bytes"}},
      {"empty extent",
       R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})",
       0,
       -1,
       Error::Kind::InvalidArgument,
       {"'a'", "extent"}},
      {"offsets reversed",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
       8,
       -1,
       Error::Kind::InvalidArgument,
       {"'a'", "data_offsets"}},
      {"overlap",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       8,
       -1,
       Error::Kind::InvalidArgument,
       {"overlapping"}},
      {"gap",
       R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       8,
       -1,
       Error::Kind::InvalidArgument,
       {"gap"}},
      {"trailing data", ok, 12, -1, Error::Kind::InvalidArgument, {"12 bytes", "cover 8"}},
      {"duplicate",
       R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       8,
       -1,
       Error::Kind::InvalidArgument,
       {"'a' appears twice"}},
      {"missing field",
       R"({"a":{"dtype":"F32","shape":[2]}})",
       8,
       -1,
       Error::Kind::InvalidArgument,
       {"lacks"}},
  };
  const std::string path = temp_path("dlrt_bad.safetensors");
  for (const BadFile& c : cases) {
    write_raw(path, c.header, c.data_bytes, c.claimed_length);
    EXPECT_TRUE(throws_error([&] { (void)load_safetensors(path); }, c.kind, c.needles)) << c.what;
  }
  {
    std::ofstream short_file(path, std::ios::binary | std::ios::trunc);
    short_file << "abc";
  }
  EXPECT_TRUE(throws_error([&] { (void)load_safetensors(path); }, Error::Kind::InvalidArgument,
                           {"shorter than the 8-byte header length"}));
  std::remove(path.c_str());
  EXPECT_TRUE(throws_error([&] { (void)load_safetensors(path); }, Error::Kind::InvalidArgument,
                           {"cannot be opened"}));
}

}  // namespace
}  // namespace dlrt
