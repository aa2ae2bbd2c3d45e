#include "runtime/log.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace dlrt {
namespace {

LogLevel level_from_environment() {
  const char* value = std::getenv("DLRT_LOG");
  if (value == nullptr) return LogLevel::Warn;
  if (std::strcmp(value, "debug") == 0) return LogLevel::Debug;
  if (std::strcmp(value, "info") == 0) return LogLevel::Info;
  if (std::strcmp(value, "off") == 0) return LogLevel::Off;
  return LogLevel::Warn;
}

std::atomic<LogLevel>& current_level() {
  static std::atomic<LogLevel> level{level_from_environment()};
  return level;
}

}  // namespace

LogLevel log_level() noexcept { return current_level().load(std::memory_order_relaxed); }
void set_log_level(LogLevel level) noexcept { current_level().store(level); }

namespace detail {

void log_line(LogLevel level, const std::string& line) {
  static std::mutex mutex;  // whole lines, even from several threads
  static constexpr const char* kNames[] = {"off", "warn", "info", "debug"};
  std::lock_guard lock(mutex);
  std::fprintf(stderr, "[dlrt %s] %s\n", kNames[static_cast<int>(level)], line.c_str());
}

}  // namespace detail
}  // namespace dlrt
