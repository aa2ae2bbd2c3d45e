#pragma once

#include <string_view>

#include "dlrt/device.hpp"

namespace dlrt::detail {

// Throws Error(InvalidArgument) naming `op`, `name`, the device and the rule
// when `device` does not exist: a CPU device with an index other than 0, a
// kind that is not a Device::Kind enumerator, a CUDA index out of range.
// Every call that accepts a device goes through this.
void check_device_exists(std::string_view op, std::string_view name, Device device);

}  // namespace dlrt::detail
