// dlrt::Tensor: a dense, contiguous, row-major array on one device: f32 data,
// or i32 for index workspaces (max pooling's argmax).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dlrt/device.hpp"
#include "dlrt/export.hpp"

namespace dlrt {

class Context;

namespace detail {
struct Storage;
}

// Up to kMaxRank extents; NCHW for images, [T, N, C] for sequences.
class DLRT_EXPORT Shape {
public:
  static constexpr int kMaxRank = 6;

  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims);
  explicit Shape(std::span<const std::int64_t> dims);

  int rank() const { return rank_; }
  std::int64_t operator[](int i) const { return dims_[i]; }
  std::int64_t& operator[](int i) { return dims_[i]; }
  // Product of the extents; the caller validates that it fits (see numel_checked).
  std::int64_t numel() const;
  std::string to_string() const;  // "[2, 3, 5, 5]"

  friend DLRT_EXPORT bool operator==(const Shape& a, const Shape& b);

private:
  int rank_ = 0;
  std::int64_t dims_[kMaxRank] = {};
};

enum class DType { F32, I32 };
DLRT_EXPORT const char* to_string(DType dtype) noexcept;

class DLRT_EXPORT Tensor {
public:
  // An undefined tensor: no storage, rank 0. Passing one where a tensor is
  // needed is an Error.
  Tensor() = default;
  // Uninitialised storage on `device`. Extents must be >= 1 (and fit memory).
  explicit Tensor(const Shape& shape, Device device = Device::cpu(), DType dtype = DType::F32);
  // Uninitialised storage on ctx's device, for work on ctx's stream: on a
  // GPU it may take memory that earlier work on that stream freed without
  // waiting for that work (stream order puts this tensor's work after it).
  Tensor(const Shape& shape, Context& ctx, DType dtype = DType::F32);

  static Tensor zeros(const Shape& shape, Device device = Device::cpu());
  static Tensor full(const Shape& shape, float value, Device device = Device::cpu());
  // values.size() must equal shape.numel().
  static Tensor from_vector(const Shape& shape, std::span<const float> values,
                            Device device = Device::cpu());

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  std::int64_t size(int dim) const { return shape_[dim]; }
  std::int64_t numel() const { return defined() ? shape_.numel() : 0; }
  // Both dtypes are four bytes wide.
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * 4; }
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }

  // Device pointers for CUDA tensors, host pointers for CPU tensors. data()
  // is the f32 view and data_i32() the i32 one; the ops check the dtype.
  float* data();
  const float* data() const;
  std::int32_t* data_i32() { return reinterpret_cast<std::int32_t*>(data()); }
  const std::int32_t* data_i32() const { return reinterpret_cast<const std::int32_t*>(data()); }

  // Copies without a Context run on the legacy default stream and return
  // once they have finished: ordered after the ops of every context whose
  // stream is blocking (the default), not after those of a context with
  // ContextOptions::non_blocking_stream; and they wait for every blocking
  // stream of the device.
  //
  // A deep copy on `device`.
  Tensor to(Device device) const;
  Tensor clone() const { return to(device_); }
  // Copies src into this tensor: same numel and dtype, any devices.
  void copy_from(const Tensor& src);
  // The values, copied to the host (f32 tensors; to_vector_i32 for i32).
  std::vector<float> to_vector() const;
  std::vector<std::int32_t> to_vector_i32() const;
  // f32 tensors: every element = value; i32 tensors: = int32_t(value), and
  // value must then be finite and in the int32 range.
  void fill(float value);

  // The same copies on ctx's stream: ordered after the work queued on ctx,
  // they synchronise that stream only, so other contexts' work keeps
  // running. ctx's device must be the CUDA device the copy involves; any
  // Context will do for host-to-host copies.
  Tensor to(Device device, Context& ctx) const;
  void copy_from(const Tensor& src, Context& ctx);
  std::vector<float> to_vector(Context& ctx) const;
  std::vector<std::int32_t> to_vector_i32(Context& ctx) const;
  void fill(float value, Context& ctx);

  // The same storage seen with another shape of equal numel.
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) of dimension 0, sharing storage.
  Tensor slice(std::int64_t begin, std::int64_t end) const;

  // True when the two tensors' element ranges overlap in memory.
  bool overlaps(const Tensor& other) const;

private:
  // Validates and allocates; `stream` is the stream the storage is for
  // (an opaque cudaStream_t, nullptr when none is known).
  static Tensor make(std::string_view op, const Shape& shape, Device device, DType dtype,
                     void* stream);

  std::shared_ptr<detail::Storage> storage_;
  Shape shape_;
  Device device_ = Device::cpu();
  DType dtype_ = DType::F32;
  std::int64_t offset_ = 0;  // in elements, into storage_
};

}  // namespace dlrt
