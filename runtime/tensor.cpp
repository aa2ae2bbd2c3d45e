#include "dlrt/tensor.hpp"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "dlrt/error.hpp"
#include "runtime/allocator.hpp"
#include "runtime/gpu.hpp"
#include "runtime/validate.hpp"

namespace dlrt {

namespace detail {

struct Storage {
  Storage(Device d, std::size_t n) : device(d), bytes(n) {
    ptr = CachingAllocator::of(device).allocate(bytes);
  }
  ~Storage() { CachingAllocator::of(device).deallocate(ptr, bytes); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  Device device;
  std::size_t bytes;
  void* ptr = nullptr;
};

}  // namespace detail

// ---------------------------------------------------------------- Shape

Shape::Shape(std::initializer_list<std::int64_t> dims)
    : Shape(std::span<const std::int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const std::int64_t> dims) {
  if (dims.size() > static_cast<std::size_t>(kMaxRank))
    detail::invalid_argument("Shape", "dims.size()", dims.size(),
                             "rank must be <= " + std::to_string(kMaxRank));
  rank_ = static_cast<int>(dims.size());
  std::copy(dims.begin(), dims.end(), dims_);
}

std::int64_t Shape::numel() const {
  std::int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[i];
  return n;
}

std::string Shape::to_string() const {
  std::ostringstream out;
  out << '[';
  for (int i = 0; i < rank_; ++i) out << (i ? ", " : "") << dims_[i];
  out << ']';
  return out.str();
}

bool operator==(const Shape& a, const Shape& b) {
  return a.rank_ == b.rank_ && std::equal(a.dims_, a.dims_ + a.rank_, b.dims_);
}

// ---------------------------------------------------------------- Tensor

const char* to_string(DType dtype) noexcept { return dtype == DType::F32 ? "f32" : "i32"; }

Tensor::Tensor(const Shape& shape, Device device, DType dtype)
    : shape_(shape), device_(device), dtype_(dtype) {
  detail::check_shape("Tensor", "shape", shape);
  if (dtype != DType::F32 && dtype != DType::I32)
    detail::invalid_argument("Tensor", "dtype", static_cast<int>(dtype),
                             "must be DType::F32 or DType::I32");
  storage_ = std::make_shared<detail::Storage>(device, static_cast<std::size_t>(shape.numel()) * 4);
}

Tensor Tensor::zeros(const Shape& shape, Device device) { return full(shape, 0.0f, device); }

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t(shape, device);
  t.fill(value);
  return t;
}

Tensor Tensor::from_vector(const Shape& shape, std::span<const float> values, Device device) {
  detail::check_shape("Tensor::from_vector", "shape", shape);
  if (static_cast<std::int64_t>(values.size()) != shape.numel())
    detail::invalid_argument("Tensor::from_vector", "values.size()", values.size(),
                             "must equal the shape's element count " +
                                 std::to_string(shape.numel()) + " for shape " + shape.to_string());
  Tensor t(shape, device);
  detail::gpu::memcpy(t.data(), device, values.data(), Device::cpu(), t.bytes());
  return t;
}

float* Tensor::data() { return defined() ? static_cast<float*>(storage_->ptr) + offset_ : nullptr; }
const float* Tensor::data() const {
  return defined() ? static_cast<const float*>(storage_->ptr) + offset_ : nullptr;
}

Tensor Tensor::to(Device device) const {
  if (!defined())
    throw Error(Error::Kind::InvalidArgument, "Tensor::to: argument 'this' is an undefined tensor");
  Tensor out(shape_, device, dtype_);
  detail::gpu::memcpy(out.data(), device, data(), device_, bytes());
  return out;
}

void Tensor::copy_from(const Tensor& src) {
  if (!defined())
    throw Error(Error::Kind::InvalidArgument,
                "Tensor::copy_from: argument 'this' is an undefined tensor");
  if (!src.defined())
    throw Error(Error::Kind::InvalidArgument,
                "Tensor::copy_from: argument 'src' is an undefined tensor");
  if (src.numel() != numel())
    detail::invalid_argument("Tensor::copy_from", "src.shape", src.shape().to_string(),
                             "must have as many elements as the destination " + shape_.to_string());
  if (src.dtype() != dtype_)
    detail::invalid_argument("Tensor::copy_from", "src.dtype", to_string(src.dtype()),
                             std::string("must match the destination's ") + to_string(dtype_));
  if (src.data() == data()) return;
  detail::gpu::memcpy(data(), device_, src.data(), src.device(), bytes());
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> values(static_cast<std::size_t>(numel()));
  if (defined()) detail::gpu::memcpy(values.data(), Device::cpu(), data(), device_, bytes());
  return values;
}

std::vector<std::int32_t> Tensor::to_vector_i32() const {
  std::vector<std::int32_t> values(static_cast<std::size_t>(numel()));
  if (defined()) detail::gpu::memcpy(values.data(), Device::cpu(), data(), device_, bytes());
  return values;
}

void Tensor::fill(float value) {
  if (!defined())
    throw Error(Error::Kind::InvalidArgument,
                "Tensor::fill: argument 'this' is an undefined tensor");
  const auto count = static_cast<std::size_t>(numel());
  if (dtype_ == DType::I32) {
    std::vector<std::int32_t> host(count, static_cast<std::int32_t>(value));
    detail::gpu::memcpy(data(), device_, host.data(), Device::cpu(), bytes());
    return;
  }
  if (device_.is_cpu()) {
    std::fill_n(data(), numel(), value);
    return;
  }
  // Device fills go through a host staging buffer: this is a set-up path,
  // not an op, and it keeps the runtime free of kernels.
  std::vector<float> host(count, value);
  detail::gpu::memcpy(data(), device_, host.data(), Device::cpu(), bytes());
}

Tensor Tensor::view(const Shape& shape) const {
  detail::check_shape("Tensor::view", "shape", shape);
  if (shape.numel() != numel())
    detail::invalid_argument("Tensor::view", "shape", shape.to_string(),
                             "must have as many elements as " + shape_.to_string());
  Tensor out = *this;
  out.shape_ = shape;
  return out;
}

Tensor Tensor::slice(std::int64_t begin, std::int64_t end) const {
  if (!defined() || rank() == 0)
    throw Error(Error::Kind::InvalidArgument,
                "Tensor::slice: argument 'this' must be a defined tensor of rank >= 1");
  if (begin < 0 || begin >= end || end > shape_[0])
    detail::invalid_argument(
        "Tensor::slice", "[begin, end)",
        "[" + std::to_string(begin) + ", " + std::to_string(end) + ")",
        "must be a non-empty range inside [0, " + std::to_string(shape_[0]) + ")");
  Tensor out = *this;
  std::int64_t row = numel() / shape_[0];
  out.offset_ = offset_ + begin * row;
  out.shape_[0] = end - begin;
  return out;
}

bool Tensor::overlaps(const Tensor& other) const {
  if (!defined() || !other.defined() || storage_ != other.storage_) return false;
  std::int64_t a0 = offset_, a1 = offset_ + numel();
  std::int64_t b0 = other.offset_, b1 = other.offset_ + other.numel();
  return a0 < b1 && b0 < a1;
}

}  // namespace dlrt
