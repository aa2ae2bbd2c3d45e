// The hand-chosen kernel variants of the Cuda engine, kept in a file that
// every build compiles: tests and benchmarks can set them whether or not
// the library was built with CUDA, and a CPU-only build simply never reads
// them.
#include <atomic>
#include <cstdlib>
#include <string>

#include "dlrt/error.hpp"
#include "kernels/cuda/conv2d_variants.hpp"
#include "runtime/log.hpp"

namespace dlrt::detail {

namespace {

std::atomic<int>& variant_setting() {
  static std::atomic<int> setting{[] {
    const char* text = std::getenv("DLRT_CUDA_CONV2D_VARIANT");
    const int variant = parse_cuda_conv2d_variant(text);
    if (variant >= 0) return variant;
    log(LogLevel::Warn, "DLRT_CUDA_CONV2D_VARIANT=\"", text, "\" is not one of 0 (auto), 1, ",
        kCudaConv2dVariants, "; using auto");
    return 0;
  }()};
  return setting;
}

}  // namespace

void set_cuda_conv2d_variant(int variant) {
  if (variant < 0 || variant > kCudaConv2dVariants)
    throw Error(Error::Kind::InvalidArgument, "set_cuda_conv2d_variant: variant " +
                                                  std::to_string(variant) +
                                                  " must be 0 (auto) or a variant in [1, " +
                                                  std::to_string(kCudaConv2dVariants) + "]");
  variant_setting().store(variant);
}

int cuda_conv2d_variant() { return variant_setting().load(); }

}  // namespace dlrt::detail
