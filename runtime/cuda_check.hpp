// Status checks for the CUDA runtime, cuBLAS and cuDNN: every failure becomes
// Error(Device) carrying the call, the library's own message and the place.
// Include only from CUDA-built translation units.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

#include "dlrt/error.hpp"

namespace dlrt::detail {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file,
                                   int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file,
                                     int line);
[[noreturn]] void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file,
                                    int line);

}  // namespace dlrt::detail

#define DLRT_CUDA_CHECK(call)                                                    \
  do {                                                                           \
    cudaError_t dlrt_status_ = (call);                                           \
    if (dlrt_status_ != cudaSuccess)                                             \
      ::dlrt::detail::throw_cuda_error(dlrt_status_, #call, __FILE__, __LINE__); \
  } while (0)

#define DLRT_CUBLAS_CHECK(call)                                                    \
  do {                                                                             \
    cublasStatus_t dlrt_status_ = (call);                                          \
    if (dlrt_status_ != CUBLAS_STATUS_SUCCESS)                                     \
      ::dlrt::detail::throw_cublas_error(dlrt_status_, #call, __FILE__, __LINE__); \
  } while (0)

#define DLRT_CUDNN_CHECK(call)                                                    \
  do {                                                                            \
    cudnnStatus_t dlrt_status_ = (call);                                          \
    if (dlrt_status_ != CUDNN_STATUS_SUCCESS)                                     \
      ::dlrt::detail::throw_cudnn_error(dlrt_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: a bad configuration is reported at the op that
// launched it, not at some later synchronisation.
#define DLRT_CUDA_CHECK_LAUNCH() DLRT_CUDA_CHECK(cudaGetLastError())
