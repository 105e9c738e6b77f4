// JSON nesting depth (see json_nesting.h).
#include "common/json_nesting.h"

#include <stdexcept>

namespace compsearch {
namespace {

// The depth reached and the byte at which it first exceeded `limit` (npos if never).
struct Scan {
  size_t depth = 0;
  size_t exceeded_at = std::string_view::npos;
};

Scan scan(std::string_view text, size_t limit) {
  Scan s;
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;  // the escaped character, which may be a quote
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > s.depth) s.depth = depth;
      if (depth > limit && s.exceeded_at == std::string_view::npos) s.exceeded_at = i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return s;
}

}  // namespace

size_t json_nesting_depth(std::string_view text) {
  return scan(text, std::string_view::npos).depth;
}

void require_json_nesting_within(std::string_view text, const std::string& what, size_t limit) {
  const Scan s = scan(text, limit);
  if (s.exceeded_at != std::string_view::npos) {
    throw std::invalid_argument(what + ": JSON nested deeper than " + std::to_string(limit) +
                                " levels (at byte " + std::to_string(s.exceeded_at) + ")");
  }
}

}  // namespace compsearch
