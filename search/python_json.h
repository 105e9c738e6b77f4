// JSON text exactly as Python's `json` module reads and writes it, which is what Optuna puts in
// its journal and prints from its CLI: floats in Python's repr (1.0, 1e-05, 1e+16), NaN and
// +/-Infinity as bare words, non-ASCII escaped as \uXXXX (ensure_ascii), either the default
// separators (", ", ": ") or the compact ones (",", ":"). nlohmann::json alone writes NaN as
// null and rejects NaN on input, so the journal and CLI go through these functions.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace compsearch::search {

enum class JsonSeparators { kPython, kCompact };

// Python's repr(float): shortest round-trip digits, exponent form when the decimal exponent
// is < -4 or >= 16, "NaN"/"Infinity"/"-Infinity" for non-finite values.
std::string python_float_repr(double value);
// The same, appended to `out` without allocating (the CLI writes millions of them).
void append_python_float(std::string& out, double value);

// json.dumps(value) (kPython) or json.dumps(value, separators=(",", ":")) (kCompact). Object
// keys keep the order of `value` (sorted for nlohmann::json, insertion for ordered_json).
std::string dump_python_json(const nlohmann::ordered_json& value,
                             JsonSeparators separators = JsonSeparators::kPython);
std::string dump_python_json(const nlohmann::json& value,
                             JsonSeparators separators = JsonSeparators::kPython);
// dump_python_json appended to `out`, and json.dumps of one string.
void append_python_json(std::string& out, const nlohmann::json& value,
                        JsonSeparators separators = JsonSeparators::kPython);
void append_python_string(std::string& out, std::string_view text);

// json.loads(text): also accepts NaN, Infinity and -Infinity outside strings. Throws
// nlohmann::json::parse_error on malformed text and std::invalid_argument on text nested deeper
// than kMaxJsonNesting (common/json_nesting.h) levels.
nlohmann::json parse_python_json(std::string_view text);
nlohmann::ordered_json parse_python_json_ordered(std::string_view text);

}  // namespace compsearch::search
