// What the fuzz targets share: reading bounded integers from the input
// bytes, and reporting a finding so that libFuzzer keeps the input.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>

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

private:
  const std::uint8_t* data_;
  std::size_t size_, pos_ = 0;
};

[[noreturn]] inline void finding(const char* target, const char* what) {
  std::fprintf(stderr, "%s finding: %s\n", target, what);
  std::abort();
}

}  // namespace dlrt::fuzz
