// The inside of dlrt::Context, shared by the runtime and the engines.
#pragma once

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "dlrt/context.hpp"

namespace dlrt {

struct Context::Impl {
  Device device;
  ContextOptions options;
  void* stream = nullptr;  // cudaStream_t; nullptr on the CPU

  // Library handles, created on first use by the engine that needs them;
  // the deleter knows the handle's type, so this header needs no CUDA.
  std::shared_ptr<void> cublas;
  std::shared_ptr<void> cudnn;

  // Per-engine caches (cuDNN's algorithm choices, ...), keyed by the
  // engine's own string; the value's deleter knows its type.
  std::map<std::string, std::shared_ptr<void>> caches;

  // Scratch memory on `device`, grown on demand; valid until the next call
  // of workspace() on this context. `bytes` must not exceed
  // options.workspace_limit_bytes: an engine plans within the limit and
  // asks for what it planned, and a request over it is a bug in dlrt that
  // raises Error(Internal) rather than quietly using more memory.
  void* workspace(std::size_t bytes);
  ~Impl();

  // The thread inside a call on this context now (ContextUse), and how many
  // ContextUse objects that thread holds.
  std::atomic<std::thread::id> user{};
  int user_depth = 0;

  // Gives the workspace back when it is larger than `limit` bytes, after
  // the work queued on the stream has finished.
  void trim_workspace(std::size_t limit);
  std::size_t workspace_bytes() const { return workspace_bytes_; }

private:
  void* workspace_ = nullptr;
  std::size_t workspace_bytes_ = 0;
};

namespace detail {

// Marks a Context as in use by the calling thread for this object's
// lifetime. Every entry point that takes a Context holds one: a Context is
// meant for one thread at a time, and two threads inside calls on the same
// one would share its stream, workspace and caches and get wrong results.
// The same thread may nest (an op calling another). Throws
// Error(InvalidArgument) naming `op` and argument 'ctx' for a moved-from
// Context, or one that another thread is using now. One atomic
// compare-exchange on entry and one store on exit: no lock.
class ContextUse {
public:
  ContextUse(Context& ctx, std::string_view op);
  ~ContextUse();
  ContextUse(const ContextUse&) = delete;
  ContextUse& operator=(const ContextUse&) = delete;

  // Only the moved-from check, for calls that read a Context and write
  // nothing.
  static const Context::Impl& check(const Context& ctx, std::string_view op);

private:
  Context::Impl* impl_;
};

}  // namespace detail
}  // namespace dlrt
