// The GPU timer: CUDA events around the timed work on the caller's stream,
// with an optional L2 flush and a short spinning "hold" kernel queued before
// the start event. Both stay outside the timed region: the start event is
// recorded after them in stream order.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "gpu_timer.hpp"

namespace dlrt_bench {
namespace {

void check(cudaError_t status, const char* call) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("GpuTimer: ") + call + " failed: " +
                             cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
}

// Spins for `ns` nanoseconds of the GPU's global timer.
__global__ void hold_kernel(unsigned long long ns) {
  unsigned long long start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}

}  // namespace

struct GpuTimer::Impl {
  int device = 0;
  cudaStream_t stream = nullptr;
  cudaEvent_t begin = nullptr, end = nullptr;
  void* flush = nullptr;
  std::size_t flush_bytes = 0;
  unsigned long long hold_ns = 0;
  unsigned int round = 0;

  ~Impl() {
    if (begin) cudaEventDestroy(begin);
    if (end) cudaEventDestroy(end);
    if (flush) cudaFree(flush);
  }
};

bool gpu_timer_built() noexcept { return true; }

GpuTimer::GpuTimer(int device, void* stream, bool flush_l2, double hold_us)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.device = device;
  s.stream = static_cast<cudaStream_t>(stream);
  s.hold_ns = hold_us > 0 ? static_cast<unsigned long long>(hold_us * 1000.0) : 0;
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaEventCreate(&s.begin), "cudaEventCreate");
  check(cudaEventCreate(&s.end), "cudaEventCreate");
  if (flush_l2) {
    int l2 = 0;
    check(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device),
          "cudaDeviceGetAttribute(L2CacheSize)");
    // Twice the L2, and never less than 32 MiB, so that every line the
    // timed work could find in the cache has been replaced.
    s.flush_bytes = std::max<std::size_t>(2 * static_cast<std::size_t>(l2), std::size_t{32} << 20);
    check(cudaMalloc(&s.flush, s.flush_bytes), "cudaMalloc(L2 flush buffer)");
  }
}

GpuTimer::~GpuTimer() = default;

void GpuTimer::start() {
  Impl& s = *impl_;
  if (s.flush) {
    // A different byte each round, so no layer of the memory system can
    // recognise the write as redundant.
    s.round = (s.round + 1) & 0xffU;
    check(cudaMemsetAsync(s.flush, static_cast<int>(s.round), s.flush_bytes, s.stream),
          "cudaMemsetAsync(L2 flush)");
  }
  if (s.hold_ns > 0) {
    hold_kernel<<<1, 1, 0, s.stream>>>(s.hold_ns);
    check(cudaGetLastError(), "hold_kernel launch");
  }
  check(cudaEventRecord(s.begin, s.stream), "cudaEventRecord(start)");
}

double GpuTimer::stop() {
  Impl& s = *impl_;
  check(cudaEventRecord(s.end, s.stream), "cudaEventRecord(stop)");
  check(cudaEventSynchronize(s.end), "cudaEventSynchronize(stop)");
  float ms = 0.0f;
  check(cudaEventElapsedTime(&ms, s.begin, s.end), "cudaEventElapsedTime");
  return static_cast<double>(ms) * 1e-3;
}

std::size_t GpuTimer::flush_bytes() const { return impl_->flush_bytes; }

}  // namespace dlrt_bench
