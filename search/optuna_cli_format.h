// The JSON that Optuna 3.1's CLI prints (optuna/cli.py: _convert_to_dict, _format_output, and
// optuna/study/_dataframe.py: _create_records_and_aggregate_column), rebuilt from our trials so
// `compsearch trials|best-trials|studies|ask` print what `optuna ... -f json` prints: the same
// keys in the same order, datetimes as "%Y-%m-%d %H:%M:%S", durations as Python's
// str(timedelta), states by name, nested params and user attributes sorted by name, and
// --flatten's "params_x" / "values_0" columns.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "search/storage.h"
#include "search/trial.h"

namespace compsearch::search {

// `optuna trials -f json|table`: every trial, written record by record (no document of all
// trials is built; a table keeps its cells, which its column widths need). With `only`, just
// those numbers (`optuna best-trials`), but with the columns of all trials, as Optuna filters the
// records last. `format` is "json" (json.dumps of the list of records) or "table" (as
// optuna_cli_table); no trailing newline.
void write_optuna_cli_trials(std::ostream& out, TrialRefs trials,
                             const std::vector<StudyDirection>& directions, bool flatten,
                             const std::vector<int64_t>* only, const std::string& format);
// `optuna ask`: {"number": N, "params": {...}} with params in suggestion order.
nlohmann::ordered_json optuna_cli_ask(
    int64_t number, const std::vector<std::pair<std::string, nlohmann::json>>& params, bool flatten,
    std::vector<std::string>* header = nullptr);
// `optuna studies`: one record per study in id order.
nlohmann::ordered_json optuna_cli_studies(Storage& storage, bool flatten,
                                          std::vector<std::string>* header = nullptr);

// Optuna's `-f table` rendering of records with the column `header` the functions above
// report (cli.py _dump_table, without the trailing newline).
std::string optuna_cli_table(const nlohmann::ordered_json& records,
                             const std::vector<std::string>& header);

// Python's str(timedelta) for the span between two FrozenTrial datetimes
// ("YYYY-MM-DD HH:MM:SS.ffffff"), e.g. "0:00:01.500000", "1 day, 2:00:00".
std::string python_timedelta_str(const std::string& start, const std::string& end);

}  // namespace compsearch::search
