#include "dlrt/error.hpp"

namespace dlrt {

Error::Error(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
Error::~Error() = default;

const char* to_string(Error::Kind kind) noexcept {
  switch (kind) {
    case Error::Kind::InvalidArgument:
      return "invalid argument";
    case Error::Kind::Unsupported:
      return "unsupported";
    case Error::Kind::OutOfMemory:
      return "out of memory";
    case Error::Kind::Device:
      return "device error";
    case Error::Kind::Internal:
      return "internal error";
  }
  return "unknown";
}

}  // namespace dlrt
