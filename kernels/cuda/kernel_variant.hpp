// Kernel variants chosen by hand: a plan option (Conv2dPlanOptions::variant,
// ...) or, as the default of plans that leave the choice to the engine, an
// environment variable read once. Plain C++: no CUDA types, so host-only
// code and CPU tests can include it.
#pragma once

#include <cstdlib>

#include "runtime/log.hpp"

namespace dlrt::detail {

// The variant an environment value asks for: 0 (the engine's own choice) for
// null or empty, -1 for anything but a single digit in [0, highest].
inline int parse_kernel_variant(const char* text, int highest) {
  if (text == nullptr || text[0] == '\0') return 0;
  if (text[1] != '\0' || text[0] < '0' || text[0] > '0' + highest) return -1;
  return text[0] - '0';
}

// The variant `variable` asks for; an invalid value is logged and ignored (0).
inline int variant_from_environment(const char* variable, int highest) {
  const char* text = std::getenv(variable);
  const int variant = parse_kernel_variant(text, highest);
  if (variant >= 0) return variant;
  log(LogLevel::Warn, variable, "=\"", text, "\" is not a variant in [0, ", highest,
      "]; the engine chooses");
  return 0;
}

}  // namespace dlrt::detail
