#pragma once

#include <string_view>

#include "dlrt/device.hpp"

namespace dlrt::detail {

// Throws Error(InvalidArgument) naming `name` when `device` does not exist.
void check_device_exists(std::string_view op, std::string_view name, Device device);

}  // namespace dlrt::detail
