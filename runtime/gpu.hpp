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

// Synchronous copies; either side may be host or device memory.
void memcpy(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes);
void memset_zero(void* dst, int device, std::size_t bytes);

// A stream that synchronises with the legacy default stream.
void* stream_create(int device);
void stream_destroy(int device, void* stream) noexcept;
void stream_synchronize(void* stream);
// Makes `device` current on the calling thread.
void set_device(int device);

DeviceInfo info(int device);

}  // namespace dlrt::detail::gpu
