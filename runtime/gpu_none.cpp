// The GPU layer of a build without CUDA: no devices, and host copies only.
#include <cstring>

#include "dlrt/error.hpp"
#include "runtime/gpu.hpp"

namespace dlrt::detail::gpu {
namespace {

[[noreturn]] void no_cuda(const char* what) {
  throw Error(Error::Kind::Unsupported,
              std::string(what) + ": this libdlrt was built without CUDA (DLRT_WITH_CUDA=OFF)");
}

}  // namespace

bool built() noexcept { return false; }

int device_count(std::string* reason) noexcept {
  if (reason != nullptr) *reason = "libdlrt was built without CUDA (DLRT_WITH_CUDA=OFF)";
  return 0;
}

void* malloc(int, std::size_t, std::string* error) noexcept {
  if (error != nullptr) *error = "built without CUDA";
  return nullptr;
}
void free(int, void*) noexcept {}

void memcpy(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes) {
  if (!dst_device.is_cpu() || !src_device.is_cpu()) no_cuda("memcpy");
  if (bytes != 0) std::memcpy(dst, src, bytes);
}

void memset_zero(void*, int, std::size_t) { no_cuda("memset"); }

void memcpy_async(void* dst, Device dst_device, const void* src, Device src_device,
                  std::size_t bytes, void*) {
  memcpy(dst, dst_device, src, src_device, bytes);
}
void memset_zero_async(void*, int, std::size_t, void*) { no_cuda("memset"); }

void* stream_create(int) { no_cuda("stream_create"); }
void* stream_create(int, bool) { no_cuda("stream_create"); }
void stream_destroy(int, void*) noexcept {}
void stream_synchronize(void*) { no_cuda("stream_synchronize"); }
void set_device(int) { no_cuda("set_device"); }

void* event_record(int, void*) { no_cuda("event_record"); }
bool event_done(void*) { no_cuda("event_done"); }
void event_wait(void*) { no_cuda("event_wait"); }
void event_destroy(void*) noexcept {}

DeviceInfo info(int) { no_cuda("device_info"); }

}  // namespace dlrt::detail::gpu
