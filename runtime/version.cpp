#include "dlrt/version.hpp"

namespace dlrt {

const char* version() noexcept { return DLRT_VERSION_STRING; }

}  // namespace dlrt
