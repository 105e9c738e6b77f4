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
#include <sstream>
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

// How records print: the columns in order, --flatten's list columns (non-nested columns whose
// value is a list in some record, expanded to name_0, name_1, ...: their largest size) and the
// header the table shows.
struct Layout {
  std::vector<Column> columns;
  bool flatten = false;
  std::map<size_t, size_t> list_sizes;  // column index -> most elements (flatten only)
  std::vector<std::string> header;
};

std::string nested_key(const Column& c) {
  return c.nested.is_number() ? std::to_string(c.nested.get<int64_t>())
                              : c.nested.get<std::string>();
}

// `list_sizes` as measured over the records (flatten only).
Layout make_layout(std::vector<Column> columns, bool flatten, std::map<size_t, size_t> list_sizes) {
  Layout l;
  l.columns = std::move(columns);
  l.flatten = flatten;
  l.list_sizes = std::move(list_sizes);
  for (size_t i = 0; i < l.columns.size(); ++i) {
    const Column& c = l.columns[i];
    if (!flatten) {
      if (std::find(l.header.begin(), l.header.end(), c.name) == l.header.end())
        l.header.push_back(c.name);
    } else if (!c.non_nested()) {
      l.header.push_back(c.name + "_" + nested_key(c));
    } else if (auto it = l.list_sizes.find(i); it != l.list_sizes.end()) {
      for (size_t k = 0; k < it->second; ++k) l.header.push_back(c.name + "_" + std::to_string(k));
    } else {
      l.header.push_back(c.name);
    }
  }
  return l;
}

// One record as cli.py's _convert_to_dict prints it.
nlohmann::ordered_json convert_record(const Record& r, const Layout& l) {
  nlohmann::ordered_json row = nlohmann::ordered_json::object();
  // Records list their columns in the layout's order (a subsequence of it), so each column is
  // looked for where the previous one was found first: linear, not quadratic, per record.
  size_t next = 0;
  auto lookup = [&](const Column& c) -> const nlohmann::ordered_json* {
    if (next < r.size() && r[next].first == c) return &r[next++].second;
    return find(r, c);
  };
  if (l.flatten) {
    for (size_t i = 0; i < l.columns.size(); ++i) {
      const Column& c = l.columns[i];
      const auto* v = lookup(c);
      if (!v) continue;
      if (!c.non_nested()) {
        row[c.name + "_" + nested_key(c)] = *v;
      } else if (l.list_sizes.count(i)) {
        for (size_t k = 0; k < v->size(); ++k) row[c.name + "_" + std::to_string(k)] = (*v)[k];
      } else {
        row[c.name] = *v;
      }
    }
    return row;
  }
  for (const auto& h : l.header) row[h] = nlohmann::ordered_json::object();
  for (const auto& c : l.columns) {
    const auto* v = lookup(c);
    if (!v) continue;
    if (c.nested.is_number()) {
      auto& list = row[c.name];
      if (list.is_object() && list.empty()) list = nlohmann::ordered_json::array();
      const auto index = static_cast<size_t>(c.nested.get<int64_t>());
      while (list.size() < index + 1) list.push_back(nullptr);
      list[index] = *v;
    } else if (!c.non_nested()) {
      row[c.name][c.nested.get<std::string>()] = *v;
    } else {
      row[c.name] = *v;
    }
  }
  return row;
}

nlohmann::ordered_json convert(const std::vector<Record>& records,
                               const std::vector<Column>& columns, bool flatten,
                               std::vector<std::string>* header_out) {
  std::map<size_t, size_t> list_sizes;
  for (size_t i = 0; flatten && i < columns.size(); ++i) {
    if (!columns[i].non_nested()) continue;
    bool is_list = false;
    size_t n = 0;  // the header counts every value's size(), lists or not
    for (const auto& r : records) {
      if (const auto* v = find(r, columns[i])) {
        is_list = is_list || v->is_array();
        n = std::max(n, v->size());
      }
    }
    if (is_list) list_sizes[i] = n;
  }
  const Layout layout = make_layout(columns, flatten, std::move(list_sizes));
  if (header_out) *header_out = layout.header;
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const auto& r : records) out.push_back(convert_record(r, layout));
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

// Optuna's -f table (cli.py _dump_table): keeps each row's cells, since a column's width and
// alignment depend on all of its rows, then writes the table line by line.
class TableWriter {
 public:
  explicit TableWriter(std::vector<std::string> header)
      : header_(std::move(header)), numeric_(header_.size(), true), width_(header_.size()) {
    for (size_t c = 0; c < header_.size(); ++c) width_[c] = code_points(header_[c]);
  }

  void add(const nlohmann::ordered_json& r) {
    std::vector<Cell> row;
    row.reserve(header_.size());
    for (const auto& h : header_) {
      auto it = r.find(h);
      if (it == r.end() || it->is_null()) {
        row.push_back({Kind::kNone, "None"});
      } else if (it->is_number() || it->is_boolean()) {
        row.push_back({Kind::kNumeric, python_str(*it, true)});
      } else {
        row.push_back({Kind::kString, python_str(*it, true, h == "direction" && it->is_array())});
      }
    }
    for (size_t c = 0; c < row.size(); ++c) {
      numeric_[c] = numeric_[c] && row[c].kind != Kind::kString;
      width_[c] = std::max(width_[c], code_points(row[c].text));
    }
    rows_.push_back(std::move(row));
  }

  // The table without its trailing newline (Optuna strips it).
  void write(std::ostream& out) const {
    std::string separator = "+", header_line = "|";
    for (size_t c = 0; c < header_.size(); ++c) {
      separator += std::string(width_[c] + 2, '-') + "+";
      header_line += " " + pad(header_[c], width_[c], numeric_[c]) + " |";
    }
    out << separator << "\n" << header_line << "\n" << separator << "\n";
    std::string line;
    for (size_t i = 0; i < rows_.size(); ++i) {
      line = "|";
      for (size_t c = 0; c < header_.size(); ++c) {
        const auto& cell = rows_[i][c];
        line += " " +
                (cell.kind == Kind::kNone ? std::string(width_[c], ' ')
                                          : pad(cell.text, width_[c], numeric_[c])) +
                " |";
      }
      out << line << (i + 1 < rows_.size() ? "\n" : "");
    }
    out << "\n" << separator;
  }

 private:
  enum class Kind { kNone, kNumeric, kString };
  struct Cell {
    Kind kind;
    std::string text;
  };
  std::vector<std::string> header_;
  std::vector<bool> numeric_;
  std::vector<size_t> width_;
  std::vector<std::vector<Cell>> rows_;
};

// A trial's record (optuna/study/_dataframe.py's columns for the trials verbs).
Record trial_record(const FrozenTrial& t, const std::vector<StudyDirection>& directions) {
  Record r;
  auto add = [&](Column c, nlohmann::ordered_json v) {
    r.emplace_back(std::move(c), std::move(v));
  };
  add({"number", ""}, t.number);
  if (directions.size() > 1) {
    if (t.values.empty()) {
      for (size_t i = 0; i < directions.size(); ++i)
        add({"values", static_cast<int64_t>(i)}, nullptr);
    } else {
      for (size_t i = 0; i < t.values.size(); ++i)
        add({"values", static_cast<int64_t>(i)}, t.values[i]);
    }
  } else {
    add({"value", ""},
        t.values.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(t.values[0]));
  }
  add({"datetime_start", ""}, datetime_value(t.datetime_start));
  add({"datetime_complete", ""}, datetime_value(t.datetime_complete));
  nlohmann::ordered_json duration = nullptr;
  if (t.datetime_start && t.datetime_complete)
    duration = python_timedelta_str(*t.datetime_start, *t.datetime_complete);
  add({"duration", ""}, duration);
  for (const auto& [name, v] : t.params)
    add({"params", name}, nlohmann::ordered_json(t.param(name)));
  for (const auto& [key, v] : t.user_attrs) add({"user_attrs", key}, nlohmann::ordered_json(v));
  add({"state", ""}, to_string(t.state));
  return r;
}

// convert_record(trial_record(t, directions), layout) printed by dump_python_json for the
// nested (not --flatten) layout, written straight from the trial: the same keys in the same
// order (the layout's header: number, values or value, the datetimes, duration, params and
// user_attrs when some trial has them, state), the same text. The `trials` verb prints every
// trial of a study this way (28,000 trials: 29 MB); the test compares both on edge cases.
void append_trial_row(std::string& out, const FrozenTrial& t, size_t n_directions, bool has_params,
                      bool has_user_attrs) {
  auto key = [&](const char* name) {
    append_python_string(out, name);
    out += ": ";
  };
  auto datetime = [&](const std::optional<std::string>& dt) {
    if (dt) {
      append_python_string(out, std::string_view(*dt).substr(0, 19));
    } else {
      out += "null";
    }
  };
  out += "{";
  key("number");
  append_python_json(out, nlohmann::json(t.number));
  if (n_directions > 1) {
    out += ", ";
    key("values");
    out += "[";
    if (t.values.empty()) {
      for (size_t i = 0; i < n_directions; ++i) out += i ? ", null" : "null";
    } else {
      for (size_t i = 0; i < t.values.size(); ++i) {
        if (i) out += ", ";
        append_python_float(out, t.values[i]);
      }
    }
    out += "]";
  } else {
    out += ", ";
    key("value");
    if (t.values.empty()) {
      out += "null";
    } else {
      append_python_float(out, t.values[0]);
    }
  }
  out += ", ";
  key("datetime_start");
  datetime(t.datetime_start);
  out += ", ";
  key("datetime_complete");
  datetime(t.datetime_complete);
  out += ", ";
  key("duration");
  if (t.datetime_start && t.datetime_complete) {
    append_python_string(out, python_timedelta_str(*t.datetime_start, *t.datetime_complete));
  } else {
    out += "null";
  }
  // A nested column: {"name": value, ...} in the map's (sorted) order.
  auto nested = [&](const char* column, const auto& map, const auto& value_of) {
    out += ", ";
    key(column);
    out += "{";
    const char* separator = "";
    for (const auto& entry : map) {
      out += separator;
      separator = ", ";
      append_python_string(out, entry.first);
      out += ": ";
      append_python_json(out, value_of(entry));
    }
    out += "}";
  };
  if (has_params) nested("params", t.params, [&](const auto& p) { return t.param(p.first); });
  if (has_user_attrs)
    nested("user_attrs", t.user_attrs,
           [](const auto& a) -> const nlohmann::json& { return a.second; });
  out += ", ";
  key("state");
  append_python_string(out, to_string(t.state));
  out += "}";
}

// The columns of the trials' records in _dataframe.py's order: the union over all trials (also
// for best-trials, which filters the records last), nested ones sorted.
std::vector<Column> trial_columns(TrialRefs trials, const std::vector<StudyDirection>& directions) {
  const bool multi = directions.size() > 1;
  size_t n_values = 0;
  std::set<std::string> params, user_attrs;
  for (const FrozenTrial* t : trials) {
    n_values = std::max(n_values, t->values.empty() ? directions.size() : t->values.size());
    for (const auto& [name, v] : t->params) params.insert(name);
    for (const auto& [key, v] : t->user_attrs) user_attrs.insert(key);
  }
  std::vector<Column> columns;
  if (trials.empty()) return columns;
  columns.push_back({"number", ""});
  if (multi) {
    for (size_t i = 0; i < n_values; ++i) columns.push_back({"values", static_cast<int64_t>(i)});
  } else {
    columns.push_back({"value", ""});
  }
  for (const char* name : {"datetime_start", "datetime_complete", "duration"})
    columns.push_back({name, ""});
  for (const auto& name : params) columns.push_back({"params", name});
  for (const auto& key : user_attrs) columns.push_back({"user_attrs", key});
  columns.push_back({"state", ""});
  return columns;
}

}  // namespace

std::string optuna_cli_table(const nlohmann::ordered_json& records,
                             const std::vector<std::string>& header) {
  TableWriter table(header);
  for (const auto& r : records) table.add(r);
  std::ostringstream out;
  table.write(out);
  return out.str();
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

void write_optuna_cli_trials(std::ostream& out, TrialRefs trials,
                             const std::vector<StudyDirection>& directions, bool flatten,
                             const std::vector<int64_t>* only, const std::string& format) {
  // Trial columns never hold lists (values are nested by index), so --flatten expands none.
  const Layout layout = make_layout(trial_columns(trials, directions), flatten, {});
  std::vector<int64_t> numbers;
  if (only) {
    numbers = *only;
    std::sort(numbers.begin(), numbers.end());
  }
  auto printed = [&](const FrozenTrial& t) {
    return !only || std::binary_search(numbers.begin(), numbers.end(), t.number);
  };
  if (format == "table") {
    TableWriter table(layout.header);
    for (const FrozenTrial* t : trials) {
      if (printed(*t)) table.add(convert_record(trial_record(*t, directions), layout));
    }
    table.write(out);
    return;
  }
  // json.dumps of the list: "[" + ", ".join(rows) + "]", written in pieces of about 1 MB.
  std::string text = "[";
  const char* separator = "";
  const bool has_params =
      std::find(layout.header.begin(), layout.header.end(), "params") != layout.header.end();
  const bool has_user_attrs =
      std::find(layout.header.begin(), layout.header.end(), "user_attrs") != layout.header.end();
  for (const FrozenTrial* t : trials) {
    if (!printed(*t)) continue;
    text += separator;
    if (flatten) {
      text += dump_python_json(convert_record(trial_record(*t, directions), layout),
                               JsonSeparators::kPython);
    } else {
      append_trial_row(text, *t, directions.size(), has_params, has_user_attrs);
    }
    separator = ", ";
    if (text.size() > (size_t{1} << 20)) {
      out << text;
      text.clear();
    }
  }
  text += ']';
  out << text;
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
    int64_t n_trials = 0;
    std::optional<std::string> start;
    storage.read_trials(s.study_id, {}, [&](TrialRefs trials) {
      n_trials = static_cast<int64_t>(trials.size());
      for (const FrozenTrial* t : trials) {
        if (t->datetime_start && (!start || *t->datetime_start < *start)) start = t->datetime_start;
      }
    });
    r.emplace_back(Column{"n_trials", ""}, n_trials);
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
