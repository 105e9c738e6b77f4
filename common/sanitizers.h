// What a sanitizer build changes, in one place.
//
// COMPSEARCH_SANITIZER_ALLOCATOR: ASan or TSan replaces malloc and operator new with its own
// allocator (no glibc heap, no brk); COMPSEARCH_TSAN: ThreadSanitizer.
//
// Happens-before edges ThreadSanitizer cannot see by itself. TSan watches the synchronisation of
// instrumented code and of pthreads; the task queues inside libtbb.so (not instrumented) hand work
// to other threads without TSan knowing, so what a thread wrote before task_group::run() looks
// racy when the task reads it. Code that hands work over such a queue marks the hand-over:
// tsan_release(&x) on the sending side, tsan_acquire(&x) on the receiving side (the same
// address). Both are no-ops unless compiled with -fsanitize=thread.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define COMPSEARCH_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define COMPSEARCH_TSAN 1
#endif
#endif

#if defined(COMPSEARCH_TSAN) || defined(__SANITIZE_ADDRESS__)
#define COMPSEARCH_SANITIZER_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COMPSEARCH_SANITIZER_ALLOCATOR 1
#endif
#endif

#ifdef COMPSEARCH_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace compsearch {

inline void tsan_release([[maybe_unused]] void* addr) {
#ifdef COMPSEARCH_TSAN
  __tsan_release(addr);
#endif
}

inline void tsan_acquire([[maybe_unused]] void* addr) {
#ifdef COMPSEARCH_TSAN
  __tsan_acquire(addr);
#endif
}

}  // namespace compsearch
