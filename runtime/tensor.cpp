#include "dlrt/tensor.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <sstream>
#include <stdexcept>

#include "dlrt/context.hpp"
#include "dlrt/error.hpp"
#include "runtime/allocator.hpp"
#include "runtime/context_impl.hpp"
#include "runtime/device_check.hpp"
#include "runtime/gpu.hpp"
#include "runtime/validate.hpp"

namespace dlrt {

namespace detail {

struct Storage {
  Storage(Device d, std::size_t n, void* stream, std::string_view op) : device(d), bytes(n) {
    ptr = CachingAllocator::of(device).allocate(bytes, stream, op);
  }
  ~Storage() { CachingAllocator::of(device).deallocate(ptr); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  Device device;
  std::size_t bytes;
  void* ptr = nullptr;
};

}  // namespace detail

namespace {

// Host memory the library needs beyond tensor storage raises
// Error(OutOfMemory) like everything else, never std::bad_alloc.
[[noreturn]] void host_out_of_memory(std::string_view op, std::size_t bytes,
                                     std::string_view what) {
  throw Error(Error::Kind::OutOfMemory, std::string(op) + ": " + std::to_string(bytes) +
                                            " bytes of host memory for " + std::string(what) +
                                            " could not be allocated");
}

template <class T>
std::vector<T> host_values(std::string_view op, std::size_t count) {
  try {
    return std::vector<T>(count);
  } catch (const std::bad_alloc&) {
    host_out_of_memory(op, count * sizeof(T), "the returned values");
  } catch (const std::length_error&) {
    host_out_of_memory(op, count * sizeof(T), "the returned values");
  }
}

std::shared_ptr<detail::Storage> make_storage(std::string_view op, Device device, std::size_t bytes,
                                              void* stream) {
  try {
    return std::make_shared<detail::Storage>(device, bytes, stream, op);
  } catch (const std::bad_alloc&) {
    host_out_of_memory(op, sizeof(detail::Storage), "the storage's bookkeeping");
  }
}

// A host buffer from the CPU caching allocator, for copies and fills that
// stage through the host: its failure is the allocator's OutOfMemory
// (which debug::fail_next_allocations(Device::cpu()) provokes), and its
// memory is reused from call to call.
class HostStaging {
public:
  HostStaging(std::string_view op, std::size_t bytes)
      : ptr_(detail::CachingAllocator::of(Device::cpu())
                 .allocate(bytes, nullptr, std::string(op) + " (host staging buffer)")) {}
  ~HostStaging() { detail::CachingAllocator::of(Device::cpu()).deallocate(ptr_); }
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;
  void* get() const { return ptr_; }

private:
  void* ptr_;
};

void check_defined(std::string_view op, const Tensor& t, std::string_view name) {
  if (!t.defined())
    throw Error(Error::Kind::InvalidArgument,
                std::string(op) + ": argument '" + std::string(name) + "' is an undefined tensor");
}

// The stream a copy between `a` and `b` runs on for `ctx`, after checking
// that ctx may run it: a CUDA copy needs a context on one of its CUDA
// devices; a host copy runs on the calling thread with any context.
void* copy_stream(std::string_view op, const Context::Impl& ctx, Device a, Device b) {
  if (a.is_cpu() && b.is_cpu()) return nullptr;
  if ((a.is_cuda() && ctx.device == a) || (b.is_cuda() && ctx.device == b)) return ctx.stream;
  std::string devices = a == b ? to_string(a) : to_string(a) + " and " + to_string(b);
  detail::invalid_argument(op, "ctx.device", to_string(ctx.device),
                           "must be the CUDA device of the copy (" + devices + ")");
}

// The element of `value` as a tensor of `dtype` stores it.
std::uint32_t fill_bits(std::string_view op, float value, DType dtype) {
  std::uint32_t bits = 0;
  if (dtype == DType::I32) {
    // int32_t(value) is undefined outside the int32 range.
    if (!(value >= -2147483648.0f && value < 2147483648.0f))
      detail::invalid_argument(op, "value", value,
                               "an i32 tensor's fill value must be finite and in the int32 range");
    const auto integer = static_cast<std::int32_t>(value);
    std::memcpy(&bits, &integer, sizeof(bits));
  } else {
    std::memcpy(&bits, &value, sizeof(bits));
  }
  return bits;
}

void fill_host(void* dst, std::uint32_t bits, std::size_t count) {
  std::fill_n(static_cast<std::uint32_t*>(dst), count, bits);
}

}  // namespace

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

Tensor Tensor::make(std::string_view op, const Shape& shape, Device device, DType dtype,
                    void* stream) {
  detail::check_shape(op, "shape", shape);
  if (dtype != DType::F32 && dtype != DType::I32)
    detail::invalid_argument(op, "dtype", static_cast<int>(dtype),
                             "must be DType::F32 or DType::I32");
  detail::check_device_exists(op, "device", device);
  Tensor t;
  t.storage_ = make_storage(op, device, static_cast<std::size_t>(shape.numel()) * 4, stream);
  t.shape_ = shape;
  t.device_ = device;
  t.dtype_ = dtype;
  return t;
}

Tensor::Tensor(const Shape& shape, Device device, DType dtype)
    : Tensor(make("Tensor", shape, device, dtype, nullptr)) {}

Tensor::Tensor(const Shape& shape, Context& ctx, DType dtype) {
  detail::ContextUse use(ctx, "Tensor");
  *this = make("Tensor", shape, ctx.impl().device, dtype, ctx.impl().stream);
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
  Tensor t = make("Tensor::from_vector", shape, device, DType::F32, nullptr);
  detail::gpu::memcpy(t.data(), device, values.data(), Device::cpu(), t.bytes());
  return t;
}

float* Tensor::data() { return defined() ? static_cast<float*>(storage_->ptr) + offset_ : nullptr; }
const float* Tensor::data() const {
  return defined() ? static_cast<const float*>(storage_->ptr) + offset_ : nullptr;
}

// ------------------------------------------- copies on the legacy stream

Tensor Tensor::to(Device device) const {
  check_defined("Tensor::to", *this, "this");
  Tensor out = make("Tensor::to", shape_, device, dtype_, nullptr);
  detail::gpu::memcpy(out.data(), device, data(), device_, bytes());
  return out;
}

namespace {

void check_copy_from(std::string_view op, const Tensor& dst, const Tensor& src) {
  check_defined(op, dst, "this");
  check_defined(op, src, "src");
  if (src.numel() != dst.numel())
    detail::invalid_argument(
        op, "src.shape", src.shape().to_string(),
        "must have as many elements as the destination " + dst.shape().to_string());
  if (src.dtype() != dst.dtype())
    detail::invalid_argument(op, "src.dtype", to_string(src.dtype()),
                             std::string("must match the destination's ") + to_string(dst.dtype()));
}

}  // namespace

void Tensor::copy_from(const Tensor& src) {
  check_copy_from("Tensor::copy_from", *this, src);
  if (src.data() == data()) return;
  detail::gpu::memcpy(data(), device_, src.data(), src.device(), bytes());
}

std::vector<float> Tensor::to_vector() const {
  auto values = host_values<float>("Tensor::to_vector", static_cast<std::size_t>(numel()));
  if (defined()) detail::gpu::memcpy(values.data(), Device::cpu(), data(), device_, bytes());
  return values;
}

std::vector<std::int32_t> Tensor::to_vector_i32() const {
  auto values =
      host_values<std::int32_t>("Tensor::to_vector_i32", static_cast<std::size_t>(numel()));
  if (defined()) detail::gpu::memcpy(values.data(), Device::cpu(), data(), device_, bytes());
  return values;
}

void Tensor::fill(float value) {
  check_defined("Tensor::fill", *this, "this");
  const std::uint32_t bits = fill_bits("Tensor::fill", value, dtype_);
  const auto count = static_cast<std::size_t>(numel());
  if (device_.is_cpu()) {
    fill_host(data(), bits, count);
    return;
  }
  if (bits == 0) {
    detail::gpu::memset_zero(data(), device_.index, bytes());
    return;
  }
  // Device fills go through a host staging buffer: this is a set-up path,
  // not an op, and it keeps the runtime free of kernels.
  HostStaging host("Tensor::fill", bytes());
  fill_host(host.get(), bits, count);
  detail::gpu::memcpy(data(), device_, host.get(), Device::cpu(), bytes());
}

// ------------------------------------------- copies on a context's stream

Tensor Tensor::to(Device device, Context& ctx) const {
  detail::ContextUse use(ctx, "Tensor::to");
  check_defined("Tensor::to", *this, "this");
  detail::check_device_exists("Tensor::to", "device", device);
  void* stream = copy_stream("Tensor::to", ctx.impl(), device_, device);
  Tensor out = make("Tensor::to", shape_, device, dtype_, device.is_cuda() ? stream : nullptr);
  detail::gpu::memcpy_async(out.data(), device, data(), device_, bytes(), stream);
  if (stream != nullptr) detail::gpu::stream_synchronize(stream);
  return out;
}

void Tensor::copy_from(const Tensor& src, Context& ctx) {
  detail::ContextUse use(ctx, "Tensor::copy_from");
  check_copy_from("Tensor::copy_from", *this, src);
  void* stream = copy_stream("Tensor::copy_from", ctx.impl(), src.device(), device_);
  if (src.data() == data()) return;
  detail::gpu::memcpy_async(data(), device_, src.data(), src.device(), bytes(), stream);
  if (stream != nullptr) detail::gpu::stream_synchronize(stream);
}

std::vector<float> Tensor::to_vector(Context& ctx) const {
  detail::ContextUse use(ctx, "Tensor::to_vector");
  void* stream =
      defined() ? copy_stream("Tensor::to_vector", ctx.impl(), device_, Device::cpu()) : nullptr;
  auto values = host_values<float>("Tensor::to_vector", static_cast<std::size_t>(numel()));
  if (!defined()) return values;
  detail::gpu::memcpy_async(values.data(), Device::cpu(), data(), device_, bytes(), stream);
  if (stream != nullptr) detail::gpu::stream_synchronize(stream);
  return values;
}

std::vector<std::int32_t> Tensor::to_vector_i32(Context& ctx) const {
  detail::ContextUse use(ctx, "Tensor::to_vector_i32");
  void* stream = defined()
                     ? copy_stream("Tensor::to_vector_i32", ctx.impl(), device_, Device::cpu())
                     : nullptr;
  auto values =
      host_values<std::int32_t>("Tensor::to_vector_i32", static_cast<std::size_t>(numel()));
  if (!defined()) return values;
  detail::gpu::memcpy_async(values.data(), Device::cpu(), data(), device_, bytes(), stream);
  if (stream != nullptr) detail::gpu::stream_synchronize(stream);
  return values;
}

void Tensor::fill(float value, Context& ctx) {
  detail::ContextUse use(ctx, "Tensor::fill");
  check_defined("Tensor::fill", *this, "this");
  void* stream = copy_stream("Tensor::fill", ctx.impl(), device_, device_);
  const std::uint32_t bits = fill_bits("Tensor::fill", value, dtype_);
  const auto count = static_cast<std::size_t>(numel());
  if (device_.is_cpu()) {
    fill_host(data(), bits, count);
    return;
  }
  if (bits == 0) {
    detail::gpu::memset_zero_async(data(), device_.index, bytes(), stream);
    detail::gpu::stream_synchronize(stream);
    return;
  }
  HostStaging host("Tensor::fill", bytes());
  fill_host(host.get(), bits, count);
  detail::gpu::memcpy_async(data(), device_, host.get(), Device::cpu(), bytes(), stream);
  // The staging buffer goes back to the cache when this returns.
  detail::gpu::stream_synchronize(stream);
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
