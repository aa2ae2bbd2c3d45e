// What the fuzz targets share: reading bounded integers from the input
// bytes, and reporting a finding so that libFuzzer keeps the input.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <vector>

#include "dlrt/dlrt.hpp"

namespace dlrt::fuzz {

class Bytes {
public:
  Bytes(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  // An integer in [lo, hi]; 0-padded once the input runs out, so every
  // input, however short, decodes to a problem.
  int in(int lo, int hi) {
    const std::uint8_t byte = pos_ < size_ ? data_[pos_++] : 0;
    return lo + byte % (hi - lo + 1);
  }

  // Usually `value`; one time in eight a value at the edge of the int
  // range or of dlrt's bounds, so that overflow paths are reached.
  int or_extreme(int value) {
    static constexpr int kExtremes[] = {0,     -1,      65535,      65536,
                                        65537, 1 << 30, 2147483647, -2147483647 - 1};
    if (in(0, 7) != 0) return value;
    return kExtremes[in(0, static_cast<int>(std::size(kExtremes)) - 1)];
  }

private:
  const std::uint8_t* data_;
  std::size_t size_, pos_ = 0;
};

[[noreturn]] inline void finding(const char* target, const char* what) {
  std::fprintf(stderr, "%s finding: %s\n", target, what);
  std::abort();
}

// An op refused a problem: only invalid problems may be refused, only with
// InvalidArgument, and before anything was written to the output.
inline void check_refusal(const char* target, const Error& error, bool expected,
                          const std::vector<float>& before, const Tensor& out) {
  if (error.kind() != Error::Kind::InvalidArgument) finding(target, "a non-argument error");
  if (std::memcmp(before.data(), out.data(), out.bytes()) != 0)
    finding(target, "output written before an error");
  if (!expected) finding(target, "a valid problem was refused");
}

}  // namespace dlrt::fuzz
