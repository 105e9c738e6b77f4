// Aligned plain-text tables (experiments/text_table.h).
#include "experiments/text_table.h"

#include <algorithm>

namespace compsearch::experiments {

std::string pad(const std::string& s, size_t width, bool right) {
  if (s.size() >= width) return s;
  return right ? std::string(width - s.size(), ' ') + s : s + std::string(width - s.size(), ' ');
}

std::string text_table(const std::vector<std::string>& head,
                       const std::vector<std::vector<std::string>>& rows, size_t left_columns) {
  std::vector<size_t> width(head.size());
  for (size_t c = 0; c < head.size(); ++c) {
    width[c] = head[c].size();
    for (const auto& r : rows) width[c] = std::max(width[c], r[c].size());
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c) out += "  ";
      out += pad(cells[c], width[c], c >= left_columns);
    }
    out += "\n";
  };
  line(head);
  for (const auto& r : rows) line(r);
  return out;
}

}  // namespace compsearch::experiments
