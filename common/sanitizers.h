// What a sanitizer build changes, in one place.
//
// COMPSEARCH_SANITIZER_ALLOCATOR: ASan or TSan replaces malloc and operator new with its own
// allocator (no glibc heap, no brk); COMPSEARCH_TSAN: ThreadSanitizer.

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
