// Python-compatible JSON text (see python_json.h).
#include "search/python_json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "common/json_nesting.h"

namespace compsearch::search {
namespace {

// Bare words Python writes for non-finite floats are turned into these strings before
// nlohmann parses the text, then back into doubles. The \u0001 makes a clash with a real
// string practically impossible.
constexpr const char* kNanToken = "\"\\u0001compsearch:NaN\"";
constexpr const char* kPosInfToken = "\"\\u0001compsearch:+Infinity\"";
constexpr const char* kNegInfToken = "\"\\u0001compsearch:-Infinity\"";
const std::string kNanString =
    "\x01"
    "compsearch:NaN";
const std::string kPosInfString =
    "\x01"
    "compsearch:+Infinity";
const std::string kNegInfString =
    "\x01"
    "compsearch:-Infinity";

template <class Json>
void restore_non_finite(Json& j) {
  if (j.is_string()) {
    const auto& s = j.template get_ref<const std::string&>();
    if (s.size() > 1 && s[0] == '\x01') {
      if (s == kNanString)
        j = std::numeric_limits<double>::quiet_NaN();
      else if (s == kPosInfString)
        j = std::numeric_limits<double>::infinity();
      else if (s == kNegInfString)
        j = -std::numeric_limits<double>::infinity();
    }
  } else if (j.is_array() || j.is_object()) {
    for (auto& v : j) restore_non_finite(v);
  }
}

// Returns the text with NaN/Infinity/-Infinity outside strings replaced by sentinel strings;
// `replaced` tells whether there were any (so the common case skips the tree walk).
std::string replace_non_finite(std::string_view text, bool& replaced) {
  replaced = false;
  std::string out;
  out.reserve(text.size() + 16);
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      out.push_back(c);
      if (c == '\\' && i + 1 < text.size()) {
        out.push_back(text[++i]);
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      out.push_back(c);
    } else if (c == 'N' && text.substr(i, 3) == "NaN") {
      out += kNanToken;
      i += 2;
      replaced = true;
    } else if (c == 'I' && text.substr(i, 8) == "Infinity") {
      out += kPosInfToken;
      i += 7;
      replaced = true;
    } else if (c == '-' && text.substr(i, 9) == "-Infinity") {
      out += kNegInfToken;
      i += 8;
      replaced = true;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

template <class Json>
Json parse_impl(std::string_view text) {
  // Text nested deeper than any record would overflow the stack in restore_non_finite, in dumps
  // and in error messages that print the value: refused before parsing.
  require_json_nesting_within(text, "JSON text");
  // Fast path: no bare N/I outside strings is the common case; checking for the letters at all
  // is cheaper than a full rewrite.
  if (text.find("NaN") == std::string_view::npos &&
      text.find("Infinity") == std::string_view::npos) {
    return Json::parse(text.begin(), text.end());
  }
  bool replaced = false;
  std::string rewritten = replace_non_finite(text, replaced);
  Json j = Json::parse(rewritten);
  if (replaced) restore_non_finite(j);
  return j;
}

// Decodes one UTF-8 code point at s[i]; invalid sequences yield U+FFFD and consume one byte.
uint32_t decode_utf8(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  auto cont = [&](size_t k) -> int {
    if (i + k >= s.size()) return -1;
    auto b = static_cast<unsigned char>(s[i + k]);
    return (b & 0xC0) == 0x80 ? (b & 0x3F) : -1;
  };
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  if ((b0 & 0xE0) == 0xC0) {
    int c1 = cont(1);
    if (c1 >= 0) {
      i += 2;
      return ((b0 & 0x1Fu) << 6) | c1;
    }
  } else if ((b0 & 0xF0) == 0xE0) {
    int c1 = cont(1), c2 = cont(2);
    if (c1 >= 0 && c2 >= 0) {
      i += 3;
      return ((b0 & 0x0Fu) << 12) | (c1 << 6) | c2;
    }
  } else if ((b0 & 0xF8) == 0xF0) {
    int c1 = cont(1), c2 = cont(2), c3 = cont(3);
    if (c1 >= 0 && c2 >= 0 && c3 >= 0) {
      i += 4;
      return ((b0 & 0x07u) << 18) | (c1 << 12) | (c2 << 6) | c3;
    }
  }
  ++i;
  return 0xFFFD;
}

void append_u_escape(std::string& out, uint32_t unit) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "\\u%04x", unit);
  out += buf;
}

void dump_string(std::string_view s, std::string& out) {
  out.push_back('"');
  for (size_t i = 0; i < s.size();) {
    // A run of printable ASCII that needs no escape goes in one append.
    size_t run = i;
    while (run < s.size()) {
      const auto c = static_cast<unsigned char>(s[run]);
      if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') break;
      ++run;
    }
    if (run > i) {
      out.append(s.data() + i, run - i);
      i = run;
      continue;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:
          if (c < 0x20)
            append_u_escape(out, c);
          else
            out.push_back(static_cast<char>(c));
      }
      continue;
    }
    uint32_t cp = decode_utf8(s, i);
    if (cp >= 0x10000) {  // UTF-16 surrogate pair, as Python writes it
      cp -= 0x10000;
      append_u_escape(out, 0xD800 + (cp >> 10));
      append_u_escape(out, 0xDC00 + (cp & 0x3FF));
    } else {
      append_u_escape(out, cp);
    }
  }
  out.push_back('"');
}

template <class Int>
void append_integer(std::string& out, Int v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, r.ptr);
}

template <class Json>
void dump_impl(const Json& j, JsonSeparators sep, std::string& out) {
  const char* item_sep = sep == JsonSeparators::kCompact ? "," : ", ";
  const char* key_sep = sep == JsonSeparators::kCompact ? ":" : ": ";
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      out += "null";
      break;
    case nlohmann::json::value_t::boolean:
      out += j.template get<bool>() ? "true" : "false";
      break;
    case nlohmann::json::value_t::number_integer:
      append_integer(out, j.template get<int64_t>());
      break;
    case nlohmann::json::value_t::number_unsigned:
      append_integer(out, j.template get<uint64_t>());
      break;
    case nlohmann::json::value_t::number_float:
      append_python_float(out, j.template get<double>());
      break;
    case nlohmann::json::value_t::string:
      dump_string(j.template get_ref<const std::string&>(), out);
      break;
    case nlohmann::json::value_t::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& v : j) {
        if (!first) out += item_sep;
        first = false;
        dump_impl(v, sep, out);
      }
      out.push_back(']');
      break;
    }
    case nlohmann::json::value_t::object: {
      out.push_back('{');
      bool first = true;
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!first) out += item_sep;
        first = false;
        dump_string(it.key(), out);
        out += key_sep;
        dump_impl(it.value(), sep, out);
      }
      out.push_back('}');
      break;
    }
    case nlohmann::json::value_t::binary:
    case nlohmann::json::value_t::discarded:
      out += "null";
      break;
  }
}

}  // namespace

void append_python_float(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "Infinity" : "-Infinity";
    return;
  }
  if (value == 0.0) {
    out += std::signbit(value) ? "-0.0" : "0.0";
    return;
  }
  // Shortest round-trip digits d1d2...dn and the exponent of "d1.d2...dn e<exponent>".
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  const char* p = buf;
  if (*p == '-') {
    out.push_back('-');
    ++p;
  }
  char digits[32];
  int n = 0;
  for (; p < res.ptr && *p != 'e'; ++p) {
    if (*p != '.') digits[n++] = *p;
  }
  int exponent = 0;
  // to_chars writes "e+XX" or "e-XX"; from_chars takes no '+'.
  const char* e = p + 1;
  if (e < res.ptr && *e == '+') ++e;
  std::from_chars(e, res.ptr, exponent);
  const int decpt = exponent + 1;  // value = 0.d1d2... * 10^decpt
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0.";
      out.append(static_cast<size_t>(-decpt), '0');
      out.append(digits, static_cast<size_t>(n));
    } else if (decpt >= n) {
      out.append(digits, static_cast<size_t>(n));
      out.append(static_cast<size_t>(decpt - n), '0');
      out += ".0";
    } else {
      out.append(digits, static_cast<size_t>(decpt));
      out.push_back('.');
      out.append(digits + decpt, static_cast<size_t>(n - decpt));
    }
    return;
  }
  out.push_back(digits[0]);
  if (n > 1) {
    out.push_back('.');
    out.append(digits + 1, static_cast<size_t>(n - 1));
  }
  const int magnitude = std::abs(exponent);
  out.push_back('e');
  out.push_back(exponent < 0 ? '-' : '+');
  if (magnitude < 10) out.push_back('0');
  char ebuf[8];
  const auto er = std::to_chars(ebuf, ebuf + sizeof(ebuf), magnitude);
  out.append(ebuf, er.ptr);
}

std::string python_float_repr(double value) {
  std::string out;
  append_python_float(out, value);
  return out;
}

std::string dump_python_json(const nlohmann::ordered_json& value, JsonSeparators separators) {
  std::string out;
  dump_impl(value, separators, out);
  return out;
}

void append_python_json(std::string& out, const nlohmann::json& value, JsonSeparators separators) {
  dump_impl(value, separators, out);
}

void append_python_string(std::string& out, std::string_view text) { dump_string(text, out); }

std::string dump_python_json(const nlohmann::json& value, JsonSeparators separators) {
  std::string out;
  dump_impl(value, separators, out);
  return out;
}

nlohmann::json parse_python_json(std::string_view text) { return parse_impl<nlohmann::json>(text); }

nlohmann::ordered_json parse_python_json_ordered(std::string_view text) {
  return parse_impl<nlohmann::ordered_json>(text);
}

}  // namespace compsearch::search
