// The inside of dlrt::Context, shared by the runtime and the engines.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

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
  // of workspace() on this context.
  void* workspace(std::size_t bytes);
  ~Impl();

private:
  void* workspace_ = nullptr;
  std::size_t workspace_bytes_ = 0;
};

}  // namespace dlrt
