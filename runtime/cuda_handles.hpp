// The per-context cuBLAS and cuDNN handles, bound to the context's stream and
// created on first use. Include only from CUDA-built translation units.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "dlrt/context.hpp"

namespace dlrt::detail {

cudaStream_t cuda_stream(const Context& ctx);
cublasHandle_t cublas_handle(Context& ctx);
cudnnHandle_t cudnn_handle(Context& ctx);

}  // namespace dlrt::detail
