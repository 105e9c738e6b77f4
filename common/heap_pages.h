// Transparent huge pages for the heap while a large structure is built (Linux, glibc).
//
// Replaying a 135 MB journal builds about 170 MB of small objects (trials' maps and JSON
// values). On a 4 KB-page heap that is ~43,000 page faults, which cost more than the parsing on
// a virtual machine (measured: 0.45 s of 1.2 s). With the kernel's THP mode "madvise" (Debian's
// default) the heap gets huge pages only when advised, which glibc does only under
// GLIBC_TUNABLES=glibc.malloc.hugetlb=1. HugePageHeap does the same from inside the process:
// while it lives, the heap grows in large steps (M_TOP_PAD) and advise() marks what it grew
// since the last call MADV_HUGEPAGE. Only glibc's main heap (the brk area, used by the main
// thread) is advised; elsewhere, and where THP is off or "always", it changes nothing.
//
// Setting M_TOP_PAD also ends glibc's dynamic mmap threshold for the rest of the process (large
// blocks keep coming from mmap), which a long run that allocates big tensors should not pay. So
// code that would use a HugePageHeap asks huge_page_heap_allowed() first: off unless the process
// turned it on, as the short CLI verbs that only read a study and print do.
#pragma once

#include <cstddef>
#include <cstdint>

namespace compsearch {

void allow_huge_page_heap(bool allowed);
bool huge_page_heap_allowed();

class HugePageHeap {
 public:
  explicit HugePageHeap(size_t step_bytes = size_t{64} << 20);
  ~HugePageHeap();  // the default growth step again
  HugePageHeap(const HugePageHeap&) = delete;
  HugePageHeap& operator=(const HugePageHeap&) = delete;

  // Advises the heap grown since the last call; cheap when it has not grown (call it every
  // thousand or so allocations).
  void advise();

 private:
  uintptr_t advised_end_ = 0;
};

}  // namespace compsearch
