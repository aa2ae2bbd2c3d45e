// dlrt::Error: the one exception type the library throws.
#pragma once

#include <stdexcept>
#include <string>

#include "dlrt/export.hpp"

namespace dlrt {

class DLRT_EXPORT Error : public std::runtime_error {
public:
  enum class Kind {
    InvalidArgument,  // a shape, parameter or tensor breaks a documented rule
    Unsupported,      // valid input that the requested engine cannot run
    OutOfMemory,      // an allocation failed (device or host, or over a set limit)
    Device,           // a CUDA, cuBLAS or cuDNN call failed
    Internal,         // a broken invariant inside dlrt
  };

  Error(Kind kind, const std::string& message);
  ~Error() override;

  Kind kind() const noexcept { return kind_; }

private:
  Kind kind_;
};

DLRT_EXPORT const char* to_string(Error::Kind kind) noexcept;

}  // namespace dlrt
