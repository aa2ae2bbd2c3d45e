// Diagnostics. DLRT_LOG=debug in the environment prints, for every op, the
// engine that ran and why (to stderr); DLRT_LOG=info prints less.
#pragma once

#include "dlrt/export.hpp"

namespace dlrt {

enum class LogLevel { Off = 0, Warn = 1, Info = 2, Debug = 3 };

DLRT_EXPORT LogLevel log_level() noexcept;
// Overrides DLRT_LOG for the rest of the process.
DLRT_EXPORT void set_log_level(LogLevel level) noexcept;

}  // namespace dlrt
