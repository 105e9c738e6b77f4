// Aligned plain-text tables for the commands' text output (`inspect`, `inspect --recipe`):
// one line per row, columns two spaces apart, each as wide as its widest cell.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace compsearch::experiments {

// `s` padded with spaces to `width`: on the left when `right` (right-aligned), else on the
// right. Longer strings come back unchanged.
std::string pad(const std::string& s, size_t width, bool right);

// The header line and one line per row, each ending in '\n'. Columns before `left_columns` are
// left-aligned (names), the others right-aligned (numbers). Every row has head.size() cells.
std::string text_table(const std::vector<std::string>& head,
                       const std::vector<std::vector<std::string>>& rows, size_t left_columns);

}  // namespace compsearch::experiments
