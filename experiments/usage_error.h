// UsageError: a value the user typed is malformed: a flag value outside its choices, JSON that
// does not parse, an unknown sampler class, a batch size below 1. Front ends report it as a usage
// problem (the CLI prints it with a hint to --help and exits 2); every other exception is a
// failure of the request itself (a missing file, a study that does not exist: exit 1).
//
// It derives from std::invalid_argument, so code that treats all bad input alike still catches it.
#pragma once

#include <stdexcept>

namespace compsearch::experiments {

struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

}  // namespace compsearch::experiments
