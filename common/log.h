// The library's one way to report a warning. Library code never writes to std::cerr itself: it
// calls log_warning(...), and the process decides where that goes by installing a sink (the CLI
// keeps the default; a GUI, a server or a test can collect the messages instead).
//
// The default sink writes "compsearch: warning: <message>\n" to stderr in one write, as the
// library did before the hook existed. Messages carry no prefix and no trailing newline.
//
// Thread safety: log_* and set_log_sink may be called from any thread. Calls to the sink are
// serialised by a mutex (lines never interleave), so a sink must not call log_* or set_log_sink
// itself, and should be quick.
#pragma once

#include <functional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

namespace compsearch {

enum class LogLevel { kInfo, kWarning, kError };

// "info", "warning" or "error".
std::string_view log_level_name(LogLevel level);

using LogSink = std::function<void(LogLevel level, std::string_view message)>;

// Installs `sink` for every later message and returns the one it replaces (so a caller can put it
// back). An empty sink restores the default stderr sink.
LogSink set_log_sink(LogSink sink);

// Sends one message to the current sink.
void log_message(LogLevel level, std::string_view message);

// Streams the parts into one message (with operator<<, so numbers format as they would on
// std::cerr) and sends it as a warning.
template <typename... Parts>
void log_warning(const Parts&... parts) {
  if constexpr (sizeof...(Parts) == 1 && (std::is_convertible_v<Parts, std::string_view> && ...)) {
    log_message(LogLevel::kWarning, std::string_view(parts...));
  } else {
    std::ostringstream text;
    (text << ... << parts);
    log_message(LogLevel::kWarning, text.str());
  }
}

}  // namespace compsearch
