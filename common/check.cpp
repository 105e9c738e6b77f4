// The out-of-line failure path of COMPSEARCH_CHECK (see check.h).
#include "common/check.h"

#include <stdexcept>
#include <string>

namespace compsearch::detail {

void check_failed(const char* file, int line, const char* condition, std::string_view message) {
  std::string text =
      std::string(file) + ":" + std::to_string(line) + ": check failed: " + condition;
  if (!message.empty()) {
    text += ": ";
    text += message;
  }
  throw std::logic_error(text);
}

}  // namespace compsearch::detail
