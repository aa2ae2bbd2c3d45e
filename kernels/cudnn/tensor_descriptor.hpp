// The cuDNN tensor descriptor both cuDNN engines use, owned RAII-style.
#pragma once

#include <cudnn.h>

#include <cstdint>

#include "runtime/cuda_check.hpp"

namespace dlrt::detail {

class TensorDescriptor {
public:
  TensorDescriptor() { DLRT_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc_)); }
  TensorDescriptor(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w)
      : TensorDescriptor() {
    set(n, c, h, w);
  }
  ~TensorDescriptor() {
    // A destructor cannot report a failure; destroying a valid descriptor does not fail.
    static_cast<void>(cudnnDestroyTensorDescriptor(desc_));
  }
  TensorDescriptor(const TensorDescriptor&) = delete;
  TensorDescriptor& operator=(const TensorDescriptor&) = delete;

  // A dense NCHW f32 tensor; the engines' supports() keep every extent in int.
  void set(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
    DLRT_CUDNN_CHECK(cudnnSetTensor4dDescriptor(desc_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                                static_cast<int>(n), static_cast<int>(c),
                                                static_cast<int>(h), static_cast<int>(w)));
  }
  cudnnTensorDescriptor_t get() const { return desc_; }

private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

}  // namespace dlrt::detail
