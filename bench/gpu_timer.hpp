// Timing of GPU work with CUDA events on one stream. Two implementations
// exist and CMake compiles exactly one: gpu_timer.cu (DLRT_WITH_CUDA=ON) and
// gpu_timer_none.cpp (a CPU-only build, where constructing a timer throws).
// The interface is free of CUDA types so that the benchmark sources compile
// with a plain C++ compiler.
#pragma once

#include <cstddef>
#include <memory>

namespace dlrt_bench {

// True in a build that can time GPU work.
bool gpu_timer_built() noexcept;

class GpuTimer {
public:
  // `stream` is the cudaStream_t the timed work is queued on (as returned by
  // dlrt::Context::native_stream()). With `flush_l2`, start() first writes a
  // buffer twice the size of the device's L2 cache. `hold_us` microseconds of
  // a spinning kernel then keep the GPU busy while the host queues the timed
  // work, so that host-side launch costs stay out of the measurement.
  GpuTimer(int device, void* stream, bool flush_l2, double hold_us);
  ~GpuTimer();
  GpuTimer(const GpuTimer&) = delete;
  GpuTimer& operator=(const GpuTimer&) = delete;

  // Queues the (untimed) flush and hold, then records the start event.
  void start();
  // Records the stop event, waits for it and returns the seconds between
  // the two events.
  double stop();

  // Bytes written by each flush (0 without flush_l2).
  std::size_t flush_bytes() const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace dlrt_bench
