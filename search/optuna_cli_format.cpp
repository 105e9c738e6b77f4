// Optuna CLI output records (see optuna_cli_format.h). The code follows cli.py's
// _convert_to_dict step by step, including its column bookkeeping, so corner cases (missing
// params in some trials, no params at all, failed trials in a multi-objective study) match.
#include "search/optuna_cli_format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>
#include <stdexcept>

#include "search/python_json.h"

namespace compsearch::search {
namespace {

// A column is (name, nested): nested is "" (not nested), a string key, or an int index, as in
// Optuna's MultiIndex tuples. Ordering matches Python's tuple sort for the mixes that occur.
struct Column {
  std::string name;
  nlohmann::ordered_json nested;  // "" or string or integer
  bool operator<(const Column& o) const {
    if (name != o.name) return name < o.name;
    if (nested.is_number() && o.nested.is_number())
      return nested.get<int64_t>() < o.nested.get<int64_t>();
    if (nested.is_string() && o.nested.is_string())
      return nested.get<std::string>() < o.nested.get<std::string>();
    return nested.is_number() && !o.nested.is_number();
  }
  bool operator==(const Column& o) const { return name == o.name && nested == o.nested; }
  bool non_nested() const { return nested.is_string() && nested.get<std::string>().empty(); }
};

using Record = std::vector<std::pair<Column, nlohmann::ordered_json>>;

const nlohmann::ordered_json* find(const Record& r, const Column& c) {
  for (const auto& [k, v] : r) {
    if (k == c) return &v;
  }
  return nullptr;
}

nlohmann::ordered_json convert(const std::vector<Record>& records,
                               const std::vector<Column>& columns, bool flatten,
                               std::vector<std::string>* header_out) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  if (flatten) {
    // Columns whose values are lists in some record are expanded to name_0, name_1, ...
    auto is_list_column = [&](const Column& c) {
      for (const auto& r : records) {
        if (const auto* v = find(r, c); v && v->is_array()) return true;
      }
      return false;
    };
    for (const auto& r : records) {
      nlohmann::ordered_json row = nlohmann::ordered_json::object();
      for (const auto& c : columns) {
        const auto* v = find(r, c);
        if (!v) continue;
        if (!c.non_nested()) {
          std::string key = c.nested.is_number() ? std::to_string(c.nested.get<int64_t>())
                                                 : c.nested.get<std::string>();
          row[c.name + "_" + key] = *v;
        } else if (is_list_column(c)) {
          for (size_t i = 0; i < v->size(); ++i) row[c.name + "_" + std::to_string(i)] = (*v)[i];
        } else {
          row[c.name] = *v;
        }
      }
      out.push_back(std::move(row));
    }
    if (header_out) {
      header_out->clear();
      for (const auto& c : columns) {
        if (!c.non_nested()) {
          header_out->push_back(c.name + "_" +
                                (c.nested.is_number() ? std::to_string(c.nested.get<int64_t>())
                                                      : c.nested.get<std::string>()));
        } else if (is_list_column(c)) {
          size_t n = 0;
          for (const auto& r : records) {
            if (const auto* v = find(r, c)) n = std::max(n, v->size());
          }
          for (size_t i = 0; i < n; ++i) header_out->push_back(c.name + "_" + std::to_string(i));
        } else {
          header_out->push_back(c.name);
        }
      }
    }
    return out;
  }
  std::vector<std::string> header;
  for (const auto& c : columns) {
    if (std::find(header.begin(), header.end(), c.name) == header.end()) header.push_back(c.name);
  }
  if (header_out) *header_out = header;
  for (const auto& r : records) {
    nlohmann::ordered_json attrs = nlohmann::ordered_json::object();
    for (const auto& h : header) attrs[h] = nlohmann::ordered_json::object();
    for (const auto& c : columns) {
      const auto* v = find(r, c);
      if (!v) continue;
      if (c.nested.is_number()) {
        auto& list = attrs[c.name];
        if (list.is_object() && list.empty()) list = nlohmann::ordered_json::array();
        const auto index = static_cast<size_t>(c.nested.get<int64_t>());
        while (list.size() < index + 1) list.push_back(nullptr);
        list[index] = *v;
      } else if (!c.non_nested()) {
        attrs[c.name][c.nested.get<std::string>()] = *v;
      } else {
        attrs[c.name] = *v;
      }
    }
    out.push_back(std::move(attrs));
  }
  return out;
}

nlohmann::ordered_json datetime_value(const std::optional<std::string>& dt) {
  if (!dt) return nullptr;
  return dt->substr(0, 19);  // strftime("%Y-%m-%d %H:%M:%S")
}

int64_t micros_since_epoch(const std::string& dt) {
  std::tm tm{};
  int year, mon, day, hour, min, sec;
  long micros = 0;
  if (std::sscanf(dt.c_str(), "%d-%d-%d %d:%d:%d.%ld", &year, &mon, &day, &hour, &min, &sec,
                  &micros) < 6) {
    throw std::invalid_argument("datetime \"" + dt + "\" is not YYYY-MM-DD HH:MM:SS.ffffff");
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  return static_cast<int64_t>(timegm(&tm)) * 1000000 +
         micros;  // naive datetimes, as Python subtracts them
}

// Python's repr() of a str: single quotes unless the text has ' and no ", escapes for
// backslash, the quote, \t \n \r and other non-printable ASCII; other characters as they are.
std::string python_str_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (unsigned char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == static_cast<unsigned char>(quote))
      out += std::string("\\") + quote;
    else if (c == '\t')
      out += "\\t";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back(quote);
  return out;
}

// Python's str() of the value a JSON record holds (repr inside containers); `as_tuple` renders
// an array as a tuple, as Optuna's studies "direction" column is one.
std::string python_str(const nlohmann::ordered_json& v, bool top, bool as_tuple = false) {
  switch (v.type()) {
    case nlohmann::ordered_json::value_t::null:
      return "None";
    case nlohmann::ordered_json::value_t::boolean:
      return v.get<bool>() ? "True" : "False";
    case nlohmann::ordered_json::value_t::number_integer:
      return std::to_string(v.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned:
      return std::to_string(v.get<uint64_t>());
    case nlohmann::ordered_json::value_t::number_float: {
      const double d = v.get<double>();
      if (std::isnan(d)) return "nan";
      if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
      return python_float_repr(d);
    }
    case nlohmann::ordered_json::value_t::string:
      return top ? v.get<std::string>() : python_str_repr(v.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::string out = as_tuple ? "(" : "[";
      for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + python_str(v[i], false);
      if (as_tuple && v.size() == 1) out += ",";
      return out + (as_tuple ? ")" : "]");
    }
    case nlohmann::ordered_json::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        out +=
            (first ? "" : ", ") + python_str_repr(it.key()) + ": " + python_str(it.value(), false);
        first = false;
      }
      return out + "}";
    }
    default:
      return "None";
  }
}

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string pad(const std::string& s, size_t width, bool right) {
  const size_t n = code_points(s);
  const std::string fill(width > n ? width - n : 0, ' ');
  return right ? fill + s : s + fill;
}

}  // namespace

std::string optuna_cli_table(const nlohmann::ordered_json& records,
                             const std::vector<std::string>& header) {
  enum class Kind { kNone, kNumeric, kString };
  struct Cell {
    Kind kind;
    std::string text;
  };
  std::vector<std::vector<Cell>> rows;
  for (const auto& r : records) {
    std::vector<Cell> row;
    for (const auto& h : header) {
      auto it = r.find(h);
      if (it == r.end() || it->is_null()) {
        row.push_back({Kind::kNone, "None"});
      } else if (it->is_number() || it->is_boolean()) {
        row.push_back({Kind::kNumeric, python_str(*it, true)});
      } else {
        row.push_back({Kind::kString, python_str(*it, true, h == "direction" && it->is_array())});
      }
    }
    rows.push_back(std::move(row));
  }
  std::string separator = "+", header_line = "|";
  std::vector<std::string> lines(rows.size(), "|");
  for (size_t c = 0; c < header.size(); ++c) {
    bool numeric = true;
    size_t width = code_points(header[c]);
    for (const auto& row : rows) {
      numeric = numeric && row[c].kind != Kind::kString;
      width = std::max(width, code_points(row[c].text));
    }
    separator += std::string(width + 2, '-') + "+";
    header_line += " " + pad(header[c], width, numeric) + " |";
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& cell = rows[i][c];
      lines[i] +=
          " " +
          (cell.kind == Kind::kNone ? std::string(width, ' ') : pad(cell.text, width, numeric)) +
          " |";
    }
  }
  std::string out = separator + "\n" + header_line + "\n" + separator + "\n";
  for (size_t i = 0; i < lines.size(); ++i) out += lines[i] + (i + 1 < lines.size() ? "\n" : "");
  out += "\n" + separator;  // Optuna strips the trailing newline
  return out;
}

std::string python_timedelta_str(const std::string& start, const std::string& end) {
  int64_t us = micros_since_epoch(end) - micros_since_epoch(start);
  // Python normalises to days (possibly negative) + 0 <= seconds < 86400 + microseconds.
  int64_t total_s = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
  int64_t micro = us - total_s * 1000000;
  int64_t days = total_s >= 0 ? total_s / 86400 : -((-total_s + 86399) / 86400);
  int64_t secs = total_s - days * 86400;
  char buf[96];
  std::string out;
  if (days != 0) out = std::to_string(days) + (days == 1 || days == -1 ? " day, " : " days, ");
  std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(secs / 3600),
                static_cast<long long>(secs / 60 % 60), static_cast<long long>(secs % 60));
  out += buf;
  if (micro != 0) {
    std::snprintf(buf, sizeof(buf), ".%06lld", static_cast<long long>(micro));
    out += buf;
  }
  return out;
}

nlohmann::ordered_json optuna_cli_trials(const std::vector<FrozenTrial>& trials,
                                         const std::vector<StudyDirection>& directions,
                                         bool flatten, const std::vector<int64_t>* only,
                                         std::vector<std::string>* header) {
  const bool multi = directions.size() > 1;
  const std::vector<std::string> attrs = {"number",         multi ? "values" : "value",
                                          "datetime_start", "datetime_complete",
                                          "duration",       "params",
                                          "user_attrs",     "state"};
  std::map<std::string, std::set<Column>> column_agg;
  std::vector<Record> records;
  for (const auto& t : trials) {
    Record r;
    auto add = [&](const std::string& attr, Column c, nlohmann::ordered_json v) {
      column_agg[attr].insert(c);
      r.emplace_back(std::move(c), std::move(v));
    };
    add("number", {"number", ""}, t.number);
    if (multi) {
      if (t.values.empty()) {
        for (size_t i = 0; i < directions.size(); ++i)
          add("values", {"values", static_cast<int64_t>(i)}, nullptr);
      } else {
        for (size_t i = 0; i < t.values.size(); ++i)
          add("values", {"values", static_cast<int64_t>(i)}, t.values[i]);
      }
    } else {
      add("value", {"value", ""},
          t.values.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(t.values[0]));
    }
    add("datetime_start", {"datetime_start", ""}, datetime_value(t.datetime_start));
    add("datetime_complete", {"datetime_complete", ""}, datetime_value(t.datetime_complete));
    nlohmann::ordered_json duration = nullptr;
    if (t.datetime_start && t.datetime_complete)
      duration = python_timedelta_str(*t.datetime_start, *t.datetime_complete);
    add("duration", {"duration", ""}, duration);
    for (const auto& [name, v] : t.params)
      add("params", {"params", name}, nlohmann::ordered_json(t.param(name)));
    for (const auto& [key, v] : t.user_attrs)
      add("user_attrs", {"user_attrs", key}, nlohmann::ordered_json(v));
    add("state", {"state", ""}, to_string(t.state));
    if (!only || std::find(only->begin(), only->end(), t.number) != only->end())
      records.push_back(std::move(r));
  }
  std::vector<Column> columns;
  for (const auto& a : attrs) {
    auto it = column_agg.find(a);
    if (it != column_agg.end()) columns.insert(columns.end(), it->second.begin(), it->second.end());
  }
  return convert(records, columns, flatten, header);
}

nlohmann::ordered_json optuna_cli_ask(
    int64_t number, const std::vector<std::pair<std::string, nlohmann::json>>& params, bool flatten,
    std::vector<std::string>* header) {
  Record r;
  std::vector<Column> columns;
  r.emplace_back(Column{"number", ""}, number);
  columns.push_back({"number", ""});
  if (params.empty() && !flatten) {
    r.emplace_back(Column{"params", ""}, nlohmann::ordered_json::object());
    columns.push_back({"params", ""});
  } else {
    for (const auto& [name, v] : params) {
      r.emplace_back(Column{"params", name}, nlohmann::ordered_json(v));
      columns.push_back({"params", name});
    }
  }
  return convert({r}, columns, flatten, header)[0];
}

nlohmann::ordered_json optuna_cli_studies(Storage& storage, bool flatten,
                                          std::vector<std::string>* header) {
  std::vector<Record> records;
  bool any_user_attrs = false;
  for (const auto& s : storage.get_all_studies()) {
    Record r;
    r.emplace_back(Column{"name", ""}, s.study_name);
    nlohmann::ordered_json dirs = nlohmann::ordered_json::array();
    for (auto d : s.directions) dirs.push_back(to_string(d));
    r.emplace_back(Column{"direction", ""}, dirs);
    const auto trials = storage.get_all_trials(s.study_id);
    r.emplace_back(Column{"n_trials", ""}, static_cast<int64_t>(trials.size()));
    std::optional<std::string> start;
    for (const auto& t : trials) {
      if (t.datetime_start && (!start || *t.datetime_start < *start)) start = t.datetime_start;
    }
    r.emplace_back(Column{"datetime_start", ""}, datetime_value(start));
    nlohmann::ordered_json ua = nlohmann::ordered_json::object();
    for (const auto& [k, v] : s.user_attrs) ua[k] = nlohmann::ordered_json(v);
    any_user_attrs = any_user_attrs || !s.user_attrs.empty();
    r.emplace_back(Column{"user_attrs", ""}, ua);
    records.push_back(std::move(r));
  }
  std::vector<Column> columns = {
      {"name", ""}, {"direction", ""}, {"n_trials", ""}, {"datetime_start", ""}};
  if (any_user_attrs) columns.push_back({"user_attrs", ""});
  return convert(records, columns, flatten, header);
}

}  // namespace compsearch::search
