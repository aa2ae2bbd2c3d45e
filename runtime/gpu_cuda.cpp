// The GPU layer on the CUDA runtime API.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstring>

#include "dlrt/error.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/gpu.hpp"

namespace dlrt::detail::gpu {

bool built() noexcept { return true; }

int device_count(std::string* reason) noexcept {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    if (reason != nullptr)
      *reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(status) + ": " +
                cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky-free error so later queries start clean
    return 0;
  }
  if (count == 0 && reason != nullptr) *reason = "cudaGetDeviceCount found no CUDA device";
  return count;
}

void* malloc(int device, std::size_t bytes, std::string* error) noexcept {
  if (cudaSetDevice(device) != cudaSuccess) {
    *error = "cudaSetDevice failed";
    cudaGetLastError();
    return nullptr;
  }
  void* ptr = nullptr;
  cudaError_t status = cudaMalloc(&ptr, bytes);
  if (status != cudaSuccess) {
    *error =
        std::string("cudaMalloc: ") + cudaGetErrorName(status) + ": " + cudaGetErrorString(status);
    cudaGetLastError();  // out-of-memory is not sticky: clear it so the next call is clean
    return nullptr;
  }
  return ptr;
}

void free(int device, void* ptr) noexcept {
  if (ptr == nullptr) return;
  cudaSetDevice(device);
  cudaFree(ptr);
}

void memcpy(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  // The legacy default stream: ordered after work on every blocking stream,
  // which is what contexts create by default, so a copy sees every op
  // queued before it.
  set_device(dst_device.is_cuda() ? dst_device.index : src_device.index);
  DLRT_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
  // cudaMemcpy may return before a copy into device memory has landed: a
  // device-to-device copy, and a host-to-device one from pageable memory
  // once the source is staged. Waiting here keeps the legacy stream empty
  // of dlrt work, which the allocator's stream fences rely on. (A copy
  // into host memory has finished when cudaMemcpy returns.)
  if (dst_device.is_cuda()) DLRT_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
}

void memset_zero(void* dst, int device, std::size_t bytes) {
  set_device(device);
  DLRT_CUDA_CHECK(cudaMemset(dst, 0, bytes));
  DLRT_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
}

void memcpy_async(void* dst, Device dst_device, const void* src, Device src_device,
                  std::size_t bytes, void* stream) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  set_device(dst_device.is_cuda() ? dst_device.index : src_device.index);
  DLRT_CUDA_CHECK(
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, static_cast<cudaStream_t>(stream)));
}

void memset_zero_async(void* dst, int device, std::size_t bytes, void* stream) {
  set_device(device);
  DLRT_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, static_cast<cudaStream_t>(stream)));
}

void* stream_create(int device) { return stream_create(device, false); }

void* stream_create(int device, bool non_blocking) {
  set_device(device);
  cudaStream_t stream = nullptr;
  DLRT_CUDA_CHECK(
      cudaStreamCreateWithFlags(&stream, non_blocking ? cudaStreamNonBlocking : cudaStreamDefault));
  return stream;
}

void stream_destroy(int device, void* stream) noexcept {
  cudaSetDevice(device);
  cudaStreamDestroy(static_cast<cudaStream_t>(stream));
}

void stream_synchronize(void* stream) {
  DLRT_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

void* event_record(int device, void* stream) {
  set_device(device);
  cudaEvent_t event = nullptr;
  DLRT_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  cudaError_t status = cudaEventRecord(event, static_cast<cudaStream_t>(stream));
  if (status != cudaSuccess) {
    cudaEventDestroy(event);
    throw_cuda_error(status, "cudaEventRecord(event, stream)", __FILE__, __LINE__);
  }
  return event;
}

bool event_done(void* event) {
  cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(event));
  if (status == cudaErrorNotReady) {
    cudaGetLastError();  // "not ready" is an answer, not an error for the next check
    return false;
  }
  DLRT_CUDA_CHECK(status);
  return true;
}

void event_wait(void* event) {
  DLRT_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)));
}

void event_destroy(void* event) noexcept { cudaEventDestroy(static_cast<cudaEvent_t>(event)); }

void set_device(int device) { DLRT_CUDA_CHECK(cudaSetDevice(device)); }

DeviceInfo info(int device) {
  cudaDeviceProp prop{};
  DLRT_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  DeviceInfo out;
  out.name = prop.name;
  out.compute_capability_major = prop.major;
  out.compute_capability_minor = prop.minor;
  out.sm_count = prop.multiProcessorCount;
  out.total_memory = prop.totalGlobalMem;
  DLRT_CUDA_CHECK(cudaDriverGetVersion(&out.driver_version));
  DLRT_CUDA_CHECK(cudaRuntimeGetVersion(&out.runtime_version));
  out.cudnn_version = static_cast<int>(cudnnGetVersion());
  // cuBLAS's own version, not the CUDA runtime it was built for
  // (cublasGetCudartVersion), in CUBLAS_VERSION's encoding.
  int major = 0, minor = 0, patch = 0;
  DLRT_CUBLAS_CHECK(cublasGetProperty(MAJOR_VERSION, &major));
  DLRT_CUBLAS_CHECK(cublasGetProperty(MINOR_VERSION, &minor));
  DLRT_CUBLAS_CHECK(cublasGetProperty(PATCH_LEVEL, &patch));
  out.cublas_version = major * 10000 + minor * 100 + patch;
  int value = 0;
  if (cudaDeviceGetAttribute(&value, cudaDevAttrMemoryClockRate, device) == cudaSuccess)
    out.memory_clock_khz = value;
  if (cudaDeviceGetAttribute(&value, cudaDevAttrGlobalMemoryBusWidth, device) == cudaSuccess)
    out.memory_bus_width_bits = value;
  if (cudaDeviceGetAttribute(&value, cudaDevAttrClockRate, device) == cudaSuccess)
    out.sm_clock_khz = value;
  cudaGetLastError();
  return out;
}

}  // namespace dlrt::detail::gpu

namespace dlrt::detail {

namespace {
std::string where(const char* call, const char* file, int line) {
  std::string path = file;
  auto slash = path.find_last_of('/');
  if (slash != std::string::npos) path = path.substr(slash + 1);
  return std::string(call) + " (" + path + ":" + std::to_string(line) + ")";
}
}  // namespace

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  // Clear a non-sticky error now, so that it is not blamed on the next
  // launch check once this one has been handled.
  cudaGetLastError();
  Error::Kind kind =
      status == cudaErrorMemoryAllocation ? Error::Kind::OutOfMemory : Error::Kind::Device;
  throw Error(kind, "CUDA error " + std::string(cudaGetErrorName(status)) + ": " +
                        cudaGetErrorString(status) + " in " + where(call, file, line));
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  Error::Kind kind =
      status == CUBLAS_STATUS_ALLOC_FAILED ? Error::Kind::OutOfMemory : Error::Kind::Device;
  throw Error(kind, "cuBLAS error " + std::string(cublasGetStatusName(status)) + ": " +
                        cublasGetStatusString(status) + " in " + where(call, file, line));
}

void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line) {
  char detail[1024] = {};
  cudnnGetLastErrorString(detail, sizeof(detail));
  int category = CUDNN_STATUS_CATEGORY(status);
  Error::Kind kind = status == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED ||
                             status == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED
                         ? Error::Kind::OutOfMemory
                     : category == CUDNN_STATUS_NOT_SUPPORTED ? Error::Kind::Unsupported
                                                              : Error::Kind::Device;
  throw Error(kind, "cuDNN error " + std::string(cudnnGetErrorString(status)) + " in " +
                        where(call, file, line) +
                        (detail[0] ? std::string(": ") + detail : std::string()));
}

}  // namespace dlrt::detail

#include "runtime/context_impl.hpp"
#include "runtime/cuda_handles.hpp"

namespace dlrt::detail {

cudaStream_t cuda_stream(const Context& ctx) {
  return static_cast<cudaStream_t>(ctx.impl().stream);
}

cublasHandle_t cublas_handle(Context& ctx) {
  auto& impl = ctx.impl();
  if (!impl.cublas) {
    gpu::set_device(impl.device.index);
    cublasHandle_t handle = nullptr;
    DLRT_CUBLAS_CHECK(cublasCreate(&handle));
    impl.cublas = std::shared_ptr<void>(
        handle, [](void* h) { cublasDestroy(static_cast<cublasHandle_t>(h)); });
    DLRT_CUBLAS_CHECK(cublasSetStream(handle, cuda_stream(ctx)));
  }
  return static_cast<cublasHandle_t>(impl.cublas.get());
}

cudnnHandle_t cudnn_handle(Context& ctx) {
  auto& impl = ctx.impl();
  if (!impl.cudnn) {
    gpu::set_device(impl.device.index);
    cudnnHandle_t handle = nullptr;
    DLRT_CUDNN_CHECK(cudnnCreate(&handle));
    impl.cudnn =
        std::shared_ptr<void>(handle, [](void* h) { cudnnDestroy(static_cast<cudnnHandle_t>(h)); });
    DLRT_CUDNN_CHECK(cudnnSetStream(handle, cuda_stream(ctx)));
  }
  return static_cast<cudnnHandle_t>(impl.cudnn.get());
}

}  // namespace dlrt::detail
