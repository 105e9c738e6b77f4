// The HTML report in a real browser: scripts/report_browser_test.js opens it in Debian's headless
// chromium through puppeteer-core and checks no console errors, one plotted point per front trial
// in every Pareto plot, and that the front table sorts on header clicks. Without chromium,
// node or puppeteer-core the test is reported SKIPPED (tests/test_skip.h), never passed.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdlib>

#include "experiments/results.h"
#include "tests/experiments/cli_runner.h"
#include "tests/experiments/results_study.h"
#include "tests/test_skip.h"

using namespace compsearch;
using namespace compsearch::results_test;

TEST_CASE("the report opens in headless chromium without errors, plots the front and sorts") {
  if (std::system("command -v node > /dev/null 2>&1") != 0)
    COMPSEARCH_SKIP_TEST("node is not installed (scripts/setup.sh installs it)");
  const fs::path script = source_dir() / "scripts" / "report_browser_test.js";
  {
    const fs::path check = fs::temp_directory_path() /
                           ("compsearch_browser_check_" + std::to_string(::getpid()) + ".log");
    const int st = std::system(("node " + testing::shell_quote(script.string()) + " --check > " +
                                testing::shell_quote(check.string()) + " 2>&1")
                                   .c_str());
    const std::string why = slurp(check);
    fs::remove(check);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) COMPSEARCH_SKIP_TEST(why);
  }
  const auto study = experiments::load_study_results(journal().string(), kStudy);
  const auto front = front_by_hand(study.trials);
  REQUIRE(!front.empty());
  const fs::path out = journal().parent_path() / "browser_report.html";
  REQUIRE(testing::run_compsearch("report " + cli_study() + " --out " +
                                  testing::shell_quote(out.string()))
              .rc == 0);
  std::string numbers;
  for (int64_t n : front) numbers += (numbers.empty() ? "" : ",") + std::to_string(n);
  const fs::path log = journal().parent_path() / "browser.log";
  const std::string cmd = "node " + testing::shell_quote(script.string()) + " " +
                          testing::shell_quote(out.string()) + " " + numbers + " 2 > " +
                          testing::shell_quote(log.string()) + " 2>&1";
  const int status = std::system(cmd.c_str());
  const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  const std::string text = slurp(log);
  INFO(text);
  CHECK(rc == 0);
  CHECK(text.find("ok: 2 plots x " + std::to_string(front.size()) + " front points") !=
        std::string::npos);
}
