// common/: COMPSEARCH_CHECK's exception and message, and the logging hook's sink handling.
#include <doctest/doctest.h>

#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/log.h"

namespace {

// Redirects std::cerr into a string for the life of the object.
struct CapturedStderr {
  std::ostringstream text;
  std::streambuf* previous = std::cerr.rdbuf(text.rdbuf());
  ~CapturedStderr() { std::cerr.rdbuf(previous); }
};

int message_evaluations = 0;
std::string counted_message() {
  ++message_evaluations;
  return "built";
}

}  // namespace

TEST_CASE("COMPSEARCH_CHECK throws logic_error naming the file, line, condition and message") {
  const int two = 2;
  std::string what;
  const int line = __LINE__ + 2;
  try {
    COMPSEARCH_CHECK(two + 2 == 5, "arithmetic is " + std::to_string(two + 2));
  } catch (const std::logic_error& e) {
    what = e.what();
  }
  CHECK(what == std::string(__FILE__) + ":" + std::to_string(line) +
                    ": check failed: two + 2 == 5: arithmetic is 4");
  CHECK_THROWS_AS(COMPSEARCH_CHECK(false, ""), std::logic_error);
  CHECK_THROWS_WITH(COMPSEARCH_CHECK(false, ""),
                    doctest::Contains(": check failed: false"));  // no ": " tail when no message
}

TEST_CASE("COMPSEARCH_CHECK evaluates its message only when the condition fails") {
  message_evaluations = 0;
  COMPSEARCH_CHECK(true, counted_message());
  CHECK(message_evaluations == 0);
  CHECK_THROWS(COMPSEARCH_CHECK(false, counted_message()));
  CHECK(message_evaluations == 1);
}

TEST_CASE("log_warning goes to the installed sink, formatted as operator<< would") {
  std::vector<std::pair<compsearch::LogLevel, std::string>> seen;
  compsearch::LogSink previous = compsearch::set_log_sink(
      [&](compsearch::LogLevel level, std::string_view text) { seen.emplace_back(level, text); });
  compsearch::log_warning("held for ", 1.5, " s, ", 30, " s grace");
  compsearch::log_warning(std::string("plain"));
  compsearch::log_message(compsearch::LogLevel::kInfo, "note");
  compsearch::set_log_sink(std::move(previous));
  REQUIRE(seen.size() == 3);
  CHECK(seen[0] ==
        std::pair(compsearch::LogLevel::kWarning, std::string("held for 1.5 s, 30 s grace")));
  CHECK(seen[1] == std::pair(compsearch::LogLevel::kWarning, std::string("plain")));
  CHECK(seen[2] == std::pair(compsearch::LogLevel::kInfo, std::string("note")));
}

TEST_CASE("The default sink writes one 'compsearch: warning:' line to stderr") {
  compsearch::LogSink previous = compsearch::set_log_sink({});  // empty: the default
  CapturedStderr err;
  compsearch::log_warning("journal ", "x.log", ": removed a torn last line (", 56, " bytes)");
  compsearch::log_message(compsearch::LogLevel::kError, "boom");
  CHECK(err.text.str() ==
        "compsearch: warning: journal x.log: removed a torn last line (56 bytes)\n"
        "compsearch: error: boom\n");
  compsearch::set_log_sink(std::move(previous));
}

TEST_CASE("set_log_sink returns the sink it replaces") {
  int first_calls = 0, second_calls = 0;
  compsearch::LogSink original =
      compsearch::set_log_sink([&](compsearch::LogLevel, std::string_view) { ++first_calls; });
  compsearch::LogSink replaced =
      compsearch::set_log_sink([&](compsearch::LogLevel, std::string_view) { ++second_calls; });
  replaced(compsearch::LogLevel::kWarning, "direct");  // the first sink, handed back
  compsearch::log_warning("through the hook");
  compsearch::set_log_sink(std::move(original));
  CHECK(first_calls == 1);
  CHECK(second_calls == 1);
}
