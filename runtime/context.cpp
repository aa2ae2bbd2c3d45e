#include "dlrt/context.hpp"

#include "dlrt/error.hpp"
#include "runtime/allocator.hpp"
#include "runtime/context_impl.hpp"
#include "runtime/device_check.hpp"
#include "runtime/gpu.hpp"
#include "runtime/validate.hpp"

namespace dlrt {
namespace {

[[noreturn]] void moved_from(std::string_view op) {
  throw Error(Error::Kind::InvalidArgument,
              std::string(op) + ": argument 'ctx' is a moved-from Context");
}

void check_algo_search(std::string_view op, AlgoSearch search) {
  if (search != AlgoSearch::Heuristic && search != AlgoSearch::Exhaustive)
    detail::invalid_argument(op, "algo_search", static_cast<int>(search),
                             "must be AlgoSearch::Heuristic or AlgoSearch::Exhaustive");
}

}  // namespace

namespace detail {

ContextUse::ContextUse(Context& ctx, std::string_view op) {
  if (ctx.impl_ == nullptr) moved_from(op);
  impl_ = ctx.impl_.get();
  const std::thread::id self = std::this_thread::get_id();
  std::thread::id holder{};
  if (impl_->user.compare_exchange_strong(holder, self, std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
    impl_->user_depth = 1;
    return;
  }
  if (holder == self) {
    ++impl_->user_depth;
    return;
  }
  throw Error(Error::Kind::InvalidArgument,
              std::string(op) + ": argument 'ctx' = Context on " + to_string(impl_->device) +
                  ": a Context is used by one thread at a time; this one is in use by another "
                  "thread (give each thread its own Context)");
}

ContextUse::~ContextUse() {
  if (--impl_->user_depth == 0) impl_->user.store(std::thread::id{}, std::memory_order_release);
}

const Context::Impl& ContextUse::check(const Context& ctx, std::string_view op) {
  if (ctx.impl_ == nullptr) moved_from(op);
  return *ctx.impl_;
}

}  // namespace detail

void* Context::Impl::workspace(std::size_t bytes) {
  if (bytes > options.workspace_limit_bytes)
    throw Error(Error::Kind::Internal,
                "Context workspace: " + std::to_string(bytes) +
                    " bytes requested, over the context's workspace limit of " +
                    std::to_string(options.workspace_limit_bytes) +
                    " bytes (an engine must plan within options().workspace_limit_bytes)");
  if (bytes <= workspace_bytes_) return workspace_;
  auto& allocator = detail::CachingAllocator::of(device);
  trim_workspace(0);
  workspace_ = allocator.allocate(bytes, stream, "Context workspace");
  workspace_bytes_ = bytes;
  return workspace_;
}

void Context::Impl::trim_workspace(std::size_t limit) {
  if (workspace_ == nullptr || workspace_bytes_ <= limit) return;
  // Work queued earlier may still use the old buffer. The allocator would
  // keep it from other streams anyway; waiting here also lets a lower limit
  // take effect on the device's memory at once.
  if (stream != nullptr) detail::gpu::stream_synchronize(stream);
  detail::CachingAllocator::of(device).deallocate(workspace_);
  workspace_ = nullptr;
  workspace_bytes_ = 0;
}

Context::Impl::~Impl() {
  if (stream != nullptr) {
    try {
      detail::gpu::stream_synchronize(stream);
    } catch (...) {
      // A destructor cannot report the error; the stream is going away anyway.
    }
  }
  if (workspace_ != nullptr) detail::CachingAllocator::of(device).deallocate(workspace_);
  caches.clear();
  cudnn.reset();
  cublas.reset();
  if (stream != nullptr) {
    detail::CachingAllocator::of(device).remove_stream(stream);
    detail::gpu::stream_destroy(device.index, stream);
  }
}

Context::Context(Device device, const ContextOptions& options) {
  detail::check_device_exists("Context", "device", device);
  check_algo_search("Context", options.algo_search);
  impl_ = std::make_unique<Impl>();
  impl_->device = device;
  impl_->options = options;
  if (device.is_cuda()) {
    impl_->stream = detail::gpu::stream_create(device.index, options.non_blocking_stream);
    detail::CachingAllocator::of(device).add_stream(impl_->stream);
  }
}

Context::~Context() = default;
Context::Context(Context&&) noexcept = default;
Context& Context::operator=(Context&&) noexcept = default;

Context::Impl& Context::impl() {
  if (impl_ == nullptr) moved_from("Context::impl");
  return *impl_;
}
const Context::Impl& Context::impl() const {
  if (impl_ == nullptr) moved_from("Context::impl");
  return *impl_;
}

Device Context::device() const {
  return detail::ContextUse::check(*this, "Context::device").device;
}
const ContextOptions& Context::options() const {
  return detail::ContextUse::check(*this, "Context::options").options;
}
void Context::set_deterministic(bool deterministic) {
  detail::ContextUse use(*this, "Context::set_deterministic");
  impl_->options.deterministic = deterministic;
}
void Context::set_workspace_limit(std::size_t bytes) {
  detail::ContextUse use(*this, "Context::set_workspace_limit");
  impl_->trim_workspace(bytes);
  impl_->options.workspace_limit_bytes = bytes;
}
void Context::set_algo_search(AlgoSearch search) {
  detail::ContextUse use(*this, "Context::set_algo_search");
  check_algo_search("Context::set_algo_search", search);
  impl_->options.algo_search = search;
}

void Context::synchronize() {
  detail::ContextUse use(*this, "Context::synchronize");
  if (impl_->stream != nullptr) detail::gpu::stream_synchronize(impl_->stream);
}

void* Context::native_stream() const {
  return detail::ContextUse::check(*this, "Context::native_stream").stream;
}

}  // namespace dlrt
