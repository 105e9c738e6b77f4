#include "common/heap_pages.h"

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>

namespace compsearch {
namespace {

constexpr uintptr_t kPage = 4096;
constexpr int kDefaultTopPad = 128 * 1024;  // glibc's DEFAULT_TOP_PAD

uintptr_t current_break() { return reinterpret_cast<uintptr_t>(sbrk(0)); }

std::atomic<bool> g_allowed{false};

}  // namespace

void allow_huge_page_heap(bool allowed) { g_allowed = allowed; }
bool huge_page_heap_allowed() { return g_allowed; }

HugePageHeap::HugePageHeap(size_t step_bytes) {
  mallopt(M_TOP_PAD, static_cast<int>(step_bytes));
  // What the heap holds already stays as it is; from here on it is advised as it grows.
  advised_end_ = (current_break() + kPage - 1) & ~(kPage - 1);
}

HugePageHeap::~HugePageHeap() { mallopt(M_TOP_PAD, kDefaultTopPad); }

void HugePageHeap::advise() {
  const uintptr_t end = current_break() & ~(kPage - 1);
  if (end <= advised_end_) return;
  // Failure (no THP in this kernel, a break moved by someone else) only loses the speed-up.
  madvise(reinterpret_cast<void*>(advised_end_), end - advised_end_, MADV_HUGEPAGE);
  advised_end_ = end;
}

}  // namespace compsearch
