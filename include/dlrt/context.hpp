// dlrt::Context: one device, one stream, the library handles and a
// workspace. Use one per thread, as with a cuDNN handle: a Context that a
// second thread uses while the first is inside a call raises
// Error(InvalidArgument) instead of computing wrong results, and so does
// every member of a moved-from Context.
#pragma once

#include <cstddef>
#include <memory>

#include "dlrt/device.hpp"
#include "dlrt/export.hpp"

namespace dlrt {

namespace detail {
class ContextUse;
}

enum class AlgoSearch {
  Heuristic,   // cuDNN's heuristics pick an algorithm (fast to choose)
  Exhaustive,  // time every algorithm once per problem, cache the winner
};

struct ContextOptions {
  // The most scratch memory one op may use on this context's device.
  std::size_t workspace_limit_bytes = std::size_t{512} << 20;
  // Only algorithms that give bitwise-identical results run to run.
  bool deterministic = false;
  AlgoSearch algo_search = AlgoSearch::Heuristic;
  // A CUDA stream that does not synchronise with the legacy default stream
  // (cudaStreamNonBlocking), so this context's work overlaps other work.
  // The context-free copies (Tensor::to(Device), to_vector(), ...) run on
  // the legacy stream and are then not ordered after this context's ops:
  // use the overloads that take the Context, or synchronize() first.
  bool non_blocking_stream = false;
};

class DLRT_EXPORT Context {
public:
  // Throws dlrt::Error when `device` does not exist or cannot be used, or
  // when options.algo_search is not an AlgoSearch enumerator.
  explicit Context(Device device = Device::cpu(), const ContextOptions& options = {});
  ~Context();
  Context(Context&&) noexcept;
  Context& operator=(Context&&) noexcept;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const;
  const ContextOptions& options() const;
  void set_deterministic(bool deterministic);
  // A lower limit also gives back a workspace larger than it (on a GPU,
  // once the work queued on this context's stream has finished).
  void set_workspace_limit(std::size_t bytes);
  void set_algo_search(AlgoSearch search);

  // Blocks until all work queued on this context has finished; surfaces
  // any asynchronous device error as dlrt::Error.
  void synchronize();

  // The cudaStream_t that ops on this context run on, as an opaque pointer
  // (nullptr for a CPU context). Unless options().non_blocking_stream, the
  // stream synchronises with the legacy default stream, so the context-free
  // Tensor copies see the results of earlier ops.
  void* native_stream() const;

  struct Impl;
  Impl& impl();
  const Impl& impl() const;

private:
  friend class detail::ContextUse;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dlrt
