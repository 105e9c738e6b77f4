// COMPSEARCH_CHECK: the check for internal invariants (things that are true unless compsearch
// itself has a bug), as opposed to bad user input, which throws std::invalid_argument or
// std::runtime_error with a message naming the file, key and value (STYLE.md, errors).
//
// A failed check throws std::logic_error("<file>:<line>: check failed: <condition>: <message>")
// instead of aborting. A search runs for hours and evaluates thousands of recipes; a broken
// invariant usually concerns one candidate (one odd layer shape, one recipe), and the runner
// records a trial that throws as FAIL with the reason and goes on (STYLE.md rule 4), so one bug
// costs one trial, not the run, and the message lands in the journal where it can be reported.
// logic_error keeps it distinguishable from input errors (invalid_argument / runtime_error):
// the CLI and tests can tell "your config is wrong" from "compsearch is wrong".
//
// The check is always on (not tied to NDEBUG). The message expression is evaluated only when the
// condition fails, so it may build a string. Do not use it inside an OpenMP parallel region: an
// exception must not leave one (check before or after the region instead).
#pragma once

#include <string_view>

namespace compsearch::detail {
[[noreturn]] void check_failed(const char* file, int line, const char* condition,
                               std::string_view message);
}  // namespace compsearch::detail

// An expression of type void (usable wherever a statement or expression is).
#define COMPSEARCH_CHECK(cond, msg) \
  (__builtin_expect(!!(cond), 1)    \
       ? (void)0                    \
       : ::compsearch::detail::check_failed(__FILE__, __LINE__, #cond, (msg)))
