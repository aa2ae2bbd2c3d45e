// Internal logging: detail::log(LogLevel::Debug, ...) prints to stderr when
// DLRT_LOG (or set_log_level) allows it.
#pragma once

#include <sstream>
#include <string>

#include "dlrt/log.hpp"

namespace dlrt::detail {

void log_line(LogLevel level, const std::string& line);

template <class... Parts>
void log(LogLevel level, const Parts&... parts) {
  if (static_cast<int>(log_level()) < static_cast<int>(level)) return;
  std::ostringstream out;
  (out << ... << parts);
  log_line(level, out.str());
}

}  // namespace dlrt::detail
