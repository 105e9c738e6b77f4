// The logging hook (see log.h): one process-wide sink behind a mutex.
#include "common/log.h"

#include <iostream>
#include <mutex>
#include <utility>

namespace compsearch {
namespace {

void stderr_sink(LogLevel level, std::string_view message) {
  std::string line = "compsearch: ";
  line += log_level_name(level);
  line += ": ";
  line += message;
  line += '\n';
  std::cerr << line << std::flush;  // one string, one write: lines from threads do not mix
}

std::mutex& sink_mutex() {
  static std::mutex m;
  return m;
}

LogSink& current_sink() {
  static LogSink sink = stderr_sink;
  return sink;
}

}  // namespace

std::string_view log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

LogSink set_log_sink(LogSink sink) {
  std::lock_guard lock(sink_mutex());
  if (!sink) sink = stderr_sink;
  return std::exchange(current_sink(), std::move(sink));
}

void log_message(LogLevel level, std::string_view message) {
  std::lock_guard lock(sink_mutex());
  current_sink()(level, message);
}

}  // namespace compsearch
