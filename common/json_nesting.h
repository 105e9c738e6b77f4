// How deep JSON text nests, checked before it is parsed. JSON parsers, printers and the code that
// walks a parsed value recurse once per level of arrays and objects, so text nested 100,000 deep
// (a corrupt or hostile recipe, config or journal line) would overflow the stack. Every reader of
// untrusted JSON text calls require_json_nesting_within first.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace compsearch {

// Deeper than any file compsearch or Optuna writes (recipes and journal records nest < 10).
constexpr size_t kMaxJsonNesting = 512;

// Deepest nesting of arrays and objects in `text`; brackets inside strings do not count. The text
// need not be valid JSON (the parser reports that).
size_t json_nesting_depth(std::string_view text);

// Throws std::invalid_argument("<what>: JSON nested deeper than <limit> levels (at byte N)") when
// `text` nests deeper than `limit`.
void require_json_nesting_within(std::string_view text, const std::string& what,
                                 size_t limit = kMaxJsonNesting);

}  // namespace compsearch
