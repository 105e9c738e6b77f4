// The replaced global allocation functions of the hardware-model test binary: every form of
// operator new counts one allocation (allocation_counter.h). They pair malloc / aligned_alloc
// with free, which GCC's -Wmismatched-new-delete cannot see. Under a sanitizer, whose runtime
// defines operator new itself (clang links it statically), the sanitizer's allocator hook counts
// every heap allocation instead (malloc's too: a stricter count).
#include "allocation_counter.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "common/sanitizers.h"

#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {

std::atomic<long> g_allocations{0};

}  // namespace

#ifdef COMPSEARCH_SANITIZER_ALLOCATOR
// sanitizer/allocator_interface.h's hook, declared here: GCC ships the runtime, not the header.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             size_t),
                                                         void (*free_hook)(const volatile void*));

namespace {
void on_malloc(const volatile void*, size_t) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
}
void on_free(const volatile void*) {}
[[maybe_unused]] const int kHooksInstalled =
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}  // namespace

#else

namespace {
void* counted_alloc(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void* counted_aligned_alloc(std::size_t n, std::align_val_t a) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  const std::size_t al = static_cast<std::size_t>(a);
  return std::aligned_alloc(al, (n + al - 1) / al * al);
}
}  // namespace

void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted_aligned_alloc(n, a)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  if (void* p = counted_aligned_alloc(n, a)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_aligned_alloc(n, a);
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_aligned_alloc(n, a);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

#endif  // COMPSEARCH_SANITIZER_ALLOCATOR

long compsearch::hardware_models::testing::allocations_so_far() { return g_allocations.load(); }

TEST_CASE("The allocation counter sees one allocation per operator new call") {
  // Guards the warm-estimate check against a counter that never counts.
  const long before = compsearch::hardware_models::testing::allocations_so_far();
  void* p = ::operator new(64);  // a direct call: unlike a new-expression, never elided
  const long after = compsearch::hardware_models::testing::allocations_so_far();
  ::operator delete(p);
  CHECK(after - before == 1);
}
