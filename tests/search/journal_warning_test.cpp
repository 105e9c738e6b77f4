// JournalStorage reports what it repairs or skips through the library's logging hook
// (common/log.h), never by writing to stderr itself.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "common/log.h"
#include "search/journal_storage.h"
#include "search_test_util.h"

using namespace compsearch::search;
using compsearch::search::testing::read_file;
using compsearch::search::testing::TempDir;

namespace {

// Collects every message for the life of the object, then puts the previous sink back.
struct CapturedLog {
  std::vector<std::pair<compsearch::LogLevel, std::string>> messages;
  compsearch::LogSink previous;
  CapturedLog() {
    previous = compsearch::set_log_sink([this](compsearch::LogLevel level, std::string_view text) {
      messages.emplace_back(level, std::string(text));
    });
  }
  ~CapturedLog() { compsearch::set_log_sink(std::move(previous)); }
};

void append_raw(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::app | std::ios::binary);
  out << text;
}

}  // namespace

TEST_CASE("The writer that cuts off a torn last line reports it through the log sink") {
  TempDir dir;
  const auto path = dir.file("j.log");
  {
    JournalStorage s(path);
    s.create_new_study({StudyDirection::kMinimize}, "s");
  }
  const std::string torn = R"({"op_code":4,"worker_id":"dead","study_id":0,"datetime_st)";
  append_raw(path, torn);  // 57 bytes, a writer killed mid-append
  REQUIRE(torn.size() == 57);
  CapturedLog log;
  JournalStorage s(path);
  s.get_all_trials(0);
  CHECK(log.messages.empty());  // readers neither repair nor complain
  s.create_new_trial(0);
  REQUIRE(log.messages.size() == 1);
  CHECK(log.messages[0].first == compsearch::LogLevel::kWarning);
  CHECK(log.messages[0].second == "journal " + path + ": removed a torn last line (57 bytes)");
}

TEST_CASE("A complete line that is not JSON is reported with its byte offset") {
  TempDir dir;
  const auto path = dir.file("j.log");
  {
    JournalStorage s(path);
    s.create_new_study({StudyDirection::kMinimize}, "s");
  }
  const size_t offset = read_file(path).size();
  append_raw(path, "not json\n");
  CapturedLog log;
  JournalStorage s(path);
  CHECK(s.get_all_trials(0).empty());
  REQUIRE(log.messages.size() == 1);
  CHECK(log.messages[0].first == compsearch::LogLevel::kWarning);
  const std::string expected_start = "journal " + path + ": skipping a line at byte " +
                                     std::to_string(offset) + " that is not JSON (";
  CHECK(log.messages[0].second.rfind(expected_start, 0) == 0);
}
