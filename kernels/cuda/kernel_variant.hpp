// Parsing a hand-chosen kernel variant from the environment. Plain C++: no
// CUDA types, so host-only code can include it.
#pragma once

namespace dlrt::detail {

// The variant an environment value asks for: 0 (the engine's own choice) for
// null or empty, -1 for anything but a single digit in [0, highest].
inline int parse_kernel_variant(const char* text, int highest) {
  if (text == nullptr || text[0] == '\0') return 0;
  if (text[1] != '\0' || text[0] < '0' || text[0] > '0' + highest) return -1;
  return text[0] - '0';
}

}  // namespace dlrt::detail
