// Devices, and what this process can see of the GPU.
#pragma once

#include <cstddef>
#include <string>

#include "dlrt/export.hpp"

// libdlrt's interface passes std::string (Error::what's source, to_string,
// EngineQuery::reason, DeviceInfo::name), whose layout differs between
// libstdc++'s two ABIs; a program built with the old one would link and
// then read corrupt strings. Every public header includes this one.
#if defined(_GLIBCXX_USE_CXX11_ABI) && _GLIBCXX_USE_CXX11_ABI == 0
#error \
    "dlrt: libdlrt is built with libstdc++'s C++11 ABI (_GLIBCXX_USE_CXX11_ABI=1); this translation unit sets -D_GLIBCXX_USE_CXX11_ABI=0, which would pass corrupt std::string values across dlrt's interface. Build it without -D_GLIBCXX_USE_CXX11_ABI=0."
#endif

namespace dlrt {

// A CPU device has index 0; a CUDA device's index is its CUDA ordinal.
// Every call that takes a device refuses any other value with
// Error(InvalidArgument), including a `kind` that is not an enumerator.
struct Device {
  enum class Kind { Cpu, Cuda };

  Kind kind = Kind::Cpu;
  int index = 0;

  static constexpr Device cpu() { return {Kind::Cpu, 0}; }
  static constexpr Device cuda(int index = 0) { return {Kind::Cuda, index}; }

  constexpr bool is_cpu() const { return kind == Kind::Cpu; }
  constexpr bool is_cuda() const { return kind == Kind::Cuda; }
  friend constexpr bool operator==(Device a, Device b) = default;
};

// "cpu" or "cuda:N"; what a refused device looks like ("cpu:5",
// "device(kind=7, index=0)") for the others.
DLRT_EXPORT std::string to_string(Device device);

// True when libdlrt was built with the Cuda/Cudnn engines.
DLRT_EXPORT bool built_with_cuda() noexcept;

// True when at least one CUDA device can run work now. False, never a crash,
// on a machine without a GPU or without a usable driver, and in a build
// without CUDA.
DLRT_EXPORT bool cuda_available() noexcept;

// The number of usable CUDA devices (0 when cuda_available() is false).
DLRT_EXPORT int cuda_device_count() noexcept;

// Why cuda_available() is false ("built without CUDA", the driver's own
// message, ...); empty when it is true.
DLRT_EXPORT std::string cuda_unavailable_reason();

// What benchmarks and logs record about a device.
struct DeviceInfo {
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int sm_count = 0;
  std::size_t total_memory = 0;
  int driver_version = 0;   // CUDA driver API version, e.g. 13000
  int runtime_version = 0;  // CUDA runtime version
  int cudnn_version = 0;    // e.g. 91900
  int cublas_version = 0;   // cuBLAS's own, major*10000 + minor*100 + patch: 130100
  double memory_clock_khz = 0;
  int memory_bus_width_bits = 0;
  int sm_clock_khz = 0;
};

// Throws dlrt::Error for a device that does not exist.
DLRT_EXPORT DeviceInfo device_info(Device device);

}  // namespace dlrt
