#pragma once

#include "dlrt/export.hpp"

namespace dlrt {

// "MAJOR.MINOR.PATCH" of the libdlrt.so that is loaded.
DLRT_EXPORT const char* version() noexcept;

}  // namespace dlrt
