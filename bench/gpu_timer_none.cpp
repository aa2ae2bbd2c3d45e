// The GPU timer of a build without CUDA. GPU engines are never registered
// as runnable there (the engine registry declines them), so reaching this
// constructor is a bug in the benchmark, reported as such.
#include <stdexcept>

#include "gpu_timer.hpp"

namespace dlrt_bench {

struct GpuTimer::Impl {};

bool gpu_timer_built() noexcept { return false; }

GpuTimer::GpuTimer(int, void*, bool, double) {
  throw std::runtime_error(
      "GpuTimer: this build of the benchmarks has no CUDA timer (configured with "
      "DLRT_WITH_CUDA=OFF)");
}

GpuTimer::~GpuTimer() = default;

void GpuTimer::start() {}

double GpuTimer::stop() { return 0.0; }

std::size_t GpuTimer::flush_bytes() const { return 0; }

}  // namespace dlrt_bench
