// common/heap_pages.h: the heap a HugePageHeap advises is backed by huge pages (where the kernel
// gives them on advice), and allocation works as before.
#include "common/heap_pages.h"

#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/sanitizers.h"
#include "tests/test_skip.h"

namespace {

// The kernel's THP mode: the bracketed word of /sys/kernel/mm/transparent_hugepage/enabled.
std::string thp_mode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto open = text.find('['), close = text.find(']');
  if (open == std::string::npos || close == std::string::npos) return "";
  return text.substr(open + 1, close - open - 1);
}

// AnonHugePages of this process in kB (/proc/self/smaps_rollup).
long anon_huge_kb() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("AnonHugePages:", 0) == 0) return std::stol(line.substr(14));
  }
  return -1;
}

}  // namespace

TEST_CASE("HugePageHeap backs the heap it advises with huge pages, and allocation still works") {
#ifdef COMPSEARCH_SANITIZER_ALLOCATOR
  COMPSEARCH_SKIP_TEST(
      "the sanitizer's allocator replaces glibc's heap, which HugePageHeap steers");
#endif
  const std::string mode = thp_mode();
  if (mode != "madvise" && mode != "always")
    COMPSEARCH_SKIP_TEST("transparent huge pages are \"" << mode << "\" on this kernel");
  if (anon_huge_kb() < 0) COMPSEARCH_SKIP_TEST("/proc/self/smaps_rollup has no AnonHugePages");
  const long before = anon_huge_kb();
  // 400,000 map nodes of ~100 bytes: ~40 MB of small objects, as a replayed study is built.
  std::map<int, std::string> nodes;
  {
    compsearch::HugePageHeap huge;
    for (int i = 0; i < 400000; ++i) {
      nodes.emplace(i, std::string(60, static_cast<char>('a' + i % 26)));
      if (i % 1024 == 0) huge.advise();
    }
  }
  const long after = anon_huge_kb();
  MESSAGE("THP mode " << mode << ", AnonHugePages " << before << " -> " << after << " kB");
  // At least 8 MB of the ~40 MB came as 2 MB pages (the kernel may fall back to small pages
  // when memory is fragmented, hence not all of it).
  CHECK(after - before >= 8 * 1024);
  long sum = 0;
  for (const auto& [k, v] : nodes) sum += k + (v[0] - 'a');
  long expected = 0;
  for (int i = 0; i < 400000; ++i) expected += i + i % 26;
  CHECK(sum == expected);
}
