// Minimal structured-enough logging to stderr (abseil 20220623, the Debian
// version, predates absl/log). One line per call, with time and severity;
// thread-safe (each line is a single write(2)).
#pragma once

#include <string_view>

#include "absl/strings/str_format.h"

namespace cairn {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Lines below `level` are dropped. Default kInfo; CAIRN_LOG_LEVEL=debug|info|
// warning|error in the environment overrides it at first use.
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view message);

template <typename... Args>
void Log(LogLevel level, const absl::FormatSpec<Args...>& format, const Args&... args) {
  if (LogEnabled(level)) LogLine(level, absl::StrFormat(format, args...));
}

}  // namespace cairn

#define CAIRN_LOG_INFO(...) ::cairn::Log(::cairn::LogLevel::kInfo, __VA_ARGS__)
#define CAIRN_LOG_WARNING(...) ::cairn::Log(::cairn::LogLevel::kWarning, __VA_ARGS__)
#define CAIRN_LOG_ERROR(...) ::cairn::Log(::cairn::LogLevel::kError, __VA_ARGS__)
#define CAIRN_LOG_DEBUG(...) ::cairn::Log(::cairn::LogLevel::kDebug, __VA_ARGS__)
