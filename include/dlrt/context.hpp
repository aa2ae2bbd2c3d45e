// dlrt::Context: one device, one stream, the library handles and a
// workspace. Use one per thread, as with a cuDNN handle.
#pragma once

#include <cstddef>
#include <memory>

#include "dlrt/device.hpp"
#include "dlrt/export.hpp"

namespace dlrt {

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
};

class DLRT_EXPORT Context {
public:
  // Throws dlrt::Error when `device` does not exist or cannot be used.
  explicit Context(Device device = Device::cpu(), const ContextOptions& options = {});
  ~Context();
  Context(Context&&) noexcept;
  Context& operator=(Context&&) noexcept;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const;
  const ContextOptions& options() const;
  void set_deterministic(bool deterministic);
  void set_workspace_limit(std::size_t bytes);
  void set_algo_search(AlgoSearch search);

  // Blocks until all work queued on this context has finished; surfaces
  // any asynchronous device error as dlrt::Error.
  void synchronize();

  // The cudaStream_t that ops on this context run on, as an opaque pointer
  // (nullptr for a CPU context). The stream synchronises with the legacy
  // default stream, so Tensor copies see the results of earlier ops.
  void* native_stream() const;

  struct Impl;
  Impl& impl() { return *impl_; }
  const Impl& impl() const { return *impl_; }

private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace dlrt
