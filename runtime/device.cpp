#include <mutex>

#include "dlrt/device.hpp"
#include "dlrt/error.hpp"
#include "runtime/gpu.hpp"

namespace dlrt {
namespace {

// The CUDA driver is asked once per process: its answer does not change, and
// asking costs milliseconds.
struct Probe {
  int count = 0;
  std::string reason;
};

const Probe& probe() {
  static const Probe result = [] {
    Probe p;
    p.count = detail::gpu::device_count(&p.reason);
    return p;
  }();
  return result;
}

}  // namespace

std::string to_string(Device device) {
  if (device.is_cpu())
    return device.index == 0 ? std::string("cpu") : "cpu:" + std::to_string(device.index);
  if (device.is_cuda()) return "cuda:" + std::to_string(device.index);
  return "device(kind=" + std::to_string(static_cast<int>(device.kind)) +
         ", index=" + std::to_string(device.index) + ")";
}

bool built_with_cuda() noexcept { return detail::gpu::built(); }

bool cuda_available() noexcept { return cuda_device_count() > 0; }

int cuda_device_count() noexcept {
  try {
    return probe().count;
  } catch (...) {
    return 0;
  }
}

std::string cuda_unavailable_reason() { return cuda_available() ? std::string() : probe().reason; }

namespace detail {

void check_device_exists(std::string_view op, std::string_view name, Device device) {
  auto refuse = [&](const std::string& rule) {
    throw Error(Error::Kind::InvalidArgument, std::string(op) + ": argument '" + std::string(name) +
                                                  "' = " + to_string(device) + ": " + rule);
  };
  if (device.is_cpu()) {
    if (device.index != 0) refuse("the CPU device has index 0 (Device::cpu())");
    return;
  }
  if (!device.is_cuda()) refuse("kind must be Device::Kind::Cpu or Device::Kind::Cuda");
  int count = cuda_device_count();
  if (device.index < 0 || device.index >= count)
    refuse(count == 0 ? "no CUDA device is usable here (" + cuda_unavailable_reason() + ")"
                      : "must name one of the " + std::to_string(count) +
                            " CUDA devices (cuda:0..cuda:" + std::to_string(count - 1) + ")");
}

}  // namespace detail

DeviceInfo device_info(Device device) {
  detail::check_device_exists("device_info", "device", device);
  if (device.is_cpu()) {
    DeviceInfo info;
    info.name = "cpu";
    return info;
  }
  return detail::gpu::info(device.index);
}

}  // namespace dlrt
