#include "dlrt/context.hpp"

#include "dlrt/error.hpp"
#include "runtime/allocator.hpp"
#include "runtime/context_impl.hpp"
#include "runtime/device_check.hpp"
#include "runtime/gpu.hpp"

namespace dlrt {

void* Context::Impl::workspace(std::size_t bytes) {
  if (bytes <= workspace_bytes_) return workspace_;
  auto& allocator = detail::CachingAllocator::of(device);
  if (workspace_ != nullptr) {
    // Work queued earlier may still read the old buffer.
    if (stream != nullptr) detail::gpu::stream_synchronize(stream);
    allocator.deallocate(workspace_, workspace_bytes_);
    workspace_ = nullptr;
    workspace_bytes_ = 0;
  }
  workspace_ = allocator.allocate(bytes);
  workspace_bytes_ = bytes;
  return workspace_;
}

Context::Impl::~Impl() {
  if (stream != nullptr) {
    try {
      detail::gpu::stream_synchronize(stream);
    } catch (...) {
      // A destructor cannot report the error; the stream is going away anyway.
    }
  }
  if (workspace_ != nullptr)
    detail::CachingAllocator::of(device).deallocate(workspace_, workspace_bytes_);
  caches.clear();
  cudnn.reset();
  cublas.reset();
  if (stream != nullptr) detail::gpu::stream_destroy(device.index, stream);
}

Context::Context(Device device, const ContextOptions& options) : impl_(std::make_unique<Impl>()) {
  detail::check_device_exists("Context", "device", device);
  impl_->device = device;
  impl_->options = options;
  if (device.is_cuda()) impl_->stream = detail::gpu::stream_create(device.index);
}

Context::~Context() = default;
Context::Context(Context&&) noexcept = default;
Context& Context::operator=(Context&&) noexcept = default;

Device Context::device() const { return impl_->device; }
const ContextOptions& Context::options() const { return impl_->options; }
void Context::set_deterministic(bool deterministic) {
  impl_->options.deterministic = deterministic;
}
void Context::set_workspace_limit(std::size_t bytes) {
  impl_->options.workspace_limit_bytes = bytes;
}
void Context::set_algo_search(AlgoSearch search) { impl_->options.algo_search = search; }

void Context::synchronize() {
  if (impl_->stream != nullptr) detail::gpu::stream_synchronize(impl_->stream);
}

void* Context::native_stream() const { return impl_->stream; }

}  // namespace dlrt
