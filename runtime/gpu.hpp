// The thin layer between the runtime and the CUDA runtime API. Two
// implementations exist: gpu_cuda.cpp (DLRT_WITH_CUDA=ON) and gpu_none.cpp
// (a CPU-only build, where every query answers "no device"); CMake picks one,
// so no op ever branches on how the library was built.
#pragma once

#include <cstddef>
#include <string>

#include "dlrt/device.hpp"

namespace dlrt::detail::gpu {

bool built() noexcept;
// Number of devices; 0 with *reason set when there are none or no driver.
int device_count(std::string* reason) noexcept;

// nullptr (with *error set) when the device has no memory left.
void* malloc(int device, std::size_t bytes, std::string* error) noexcept;
void free(int device, void* ptr) noexcept;

// Synchronous copies on the legacy default stream; either side may be host
// or device memory. They return once the copy has finished (device to
// device too), so no dlrt work is ever left pending on the legacy stream.
void memcpy(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes);
void memset_zero(void* dst, int device, std::size_t bytes);

// Copies queued on `stream` (host to host copies run at once). The caller
// synchronises the stream before it reads or frees host memory involved.
void memcpy_async(void* dst, Device dst_device, const void* src, Device src_device,
                  std::size_t bytes, void* stream);
void memset_zero_async(void* dst, int device, std::size_t bytes, void* stream);

// A stream that synchronises with the legacy default stream, or with
// `non_blocking` one that does not (cudaStreamNonBlocking).
void* stream_create(int device);
void* stream_create(int device, bool non_blocking);
void stream_destroy(int device, void* stream) noexcept;
void stream_synchronize(void* stream);
// Makes `device` current on the calling thread.
void set_device(int device);

// Events for the stream-ordered allocator: one recorded now on `stream`
// (timing disabled), whether it has completed, waiting for it.
void* event_record(int device, void* stream);
bool event_done(void* event);
void event_wait(void* event);
void event_destroy(void* event) noexcept;

DeviceInfo info(int device);

}  // namespace dlrt::detail::gpu
