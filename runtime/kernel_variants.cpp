// The hand-chosen kernel variants of the Cuda engine, kept in a file that
// every build compiles: tests and benchmarks can set them whether or not
// the library was built with CUDA, and a CPU-only build simply never reads
// them.
#include <atomic>
#include <cstdlib>
#include <string>

#include "kernels/cuda/conv2d_variants.hpp"
#include "kernels/cuda/pool2d_variants.hpp"
#include "runtime/log.hpp"
#include "runtime/validate.hpp"

namespace dlrt::detail {
namespace {

// One process-wide choice: seeded once from an environment variable (an
// invalid value is logged and ignored), then overridden by its setter.
class VariantSetting {
public:
  VariantSetting(const char* setter, const char* variable, int highest)
      : setter_(setter), highest_(highest), value_(from_environment(variable, highest)) {}

  int get() const { return value_.load(); }
  void set(int variant) {
    if (variant < 0 || variant > highest_)
      invalid_argument(setter_, "variant", variant,
                       "must be 0 (the engine's own choice) or a variant in [1, " +
                           std::to_string(highest_) + "]");
    value_.store(variant);
  }

private:
  static int from_environment(const char* variable, int highest) {
    const char* text = std::getenv(variable);
    const int variant = parse_kernel_variant(text, highest);
    if (variant >= 0) return variant;
    log(LogLevel::Warn, variable, "=\"", text, "\" is not a variant in [0, ", highest,
        "]; the engine chooses");
    return 0;
  }

  const char* setter_;
  int highest_;
  std::atomic<int> value_;
};

VariantSetting& conv2d_setting() {
  static VariantSetting setting("set_cuda_conv2d_variant", "DLRT_CUDA_CONV2D_VARIANT",
                                kCudaConv2dVariants);
  return setting;
}

VariantSetting& pool2d_backward_setting() {
  static VariantSetting setting("set_cuda_pool2d_backward_variant",
                                "DLRT_CUDA_POOL2D_BACKWARD_VARIANT", kCudaPool2dBackwardVariants);
  return setting;
}

}  // namespace

void set_cuda_conv2d_variant(int variant) { conv2d_setting().set(variant); }
int cuda_conv2d_variant() { return conv2d_setting().get(); }

void set_cuda_pool2d_backward_variant(int variant) { pool2d_backward_setting().set(variant); }
int cuda_pool2d_backward_variant() { return pool2d_backward_setting().get(); }

}  // namespace dlrt::detail
