// The state of a journal after replaying its operations, exactly as Optuna 3.1's
// JournalStorageReplayResult (optuna/storages/_journal/storage.py) computes it, and the log
// records each operation writes. Internal to search/: JournalStorage replays the file through
// it, and InMemoryStorage applies the same records directly, so both storages share one
// semantics (ids, numbering, ownership, finished-trial checks).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "search/storage.h"

namespace compsearch::search::journal {

// Optuna's JournalOperation op codes.
enum class Op : int {
  kCreateStudy = 0,
  kDeleteStudy = 1,
  kSetStudyUserAttr = 2,
  kSetStudySystemAttr = 3,
  kCreateTrial = 4,
  kSetTrialParam = 5,
  kSetTrialStateValues = 6,
  kSetTrialIntermediateValue = 7,
  kSetTrialUserAttr = 8,
  kSetTrialSystemAttr = 9,
};

// datetime.now().isoformat(timespec="microseconds"), local time: "YYYY-MM-DDTHH:MM:SS.ffffff".
std::string now_isoformat();
// Journal datetime ("T" or " " separator, any fraction, optional UTC offset dropped) to the
// FrozenTrial form "YYYY-MM-DD HH:MM:SS.ffffff", and back.
std::string datetime_from_journal(const std::string& iso);
std::string datetime_to_journal(const std::string& frozen);

// Log records (without op_code and worker_id, which the writer adds first, as Optuna does).
nlohmann::ordered_json create_study_log(const std::vector<StudyDirection>& directions,
                                        const std::string& name);
nlohmann::ordered_json create_trial_log(int64_t study_id, const FrozenTrial* template_trial);
nlohmann::ordered_json set_trial_param_log(int64_t trial_id, const std::string& name,
                                           double internal, const Distribution& distribution);
nlohmann::ordered_json set_trial_state_values_log(int64_t trial_id, TrialState state,
                                                  const std::vector<double>* values);
// Prepends op_code and worker_id.
nlohmann::ordered_json with_header(Op op, const std::string& worker_id,
                                   nlohmann::ordered_json fields);

// A record's text that is not JSON (or nests deeper than kMaxJsonNesting): what
// ReplayState::apply_text throws, with the parser's message, so that readers can tell a line to
// skip from a record that does not apply.
struct JournalTextError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

using ParamNode = decltype(FrozenTrial::params)::node_type;
using DistributionNode = decltype(FrozenTrial::distributions)::node_type;
using AttrNode = decltype(FrozenTrial::user_attrs)::node_type;

// One record as the fast reader parsed and checked it, ready to apply (reading needs no state).
struct ParsedRecord {
  Op op = Op::kCreateStudy;
  bool own = false;  // written by the current worker
  int64_t study_id = -1;
  int64_t trial_id = -1;
  int64_t step = 0;
  TrialState state = TrialState::kRunning;
  double number = 0;                     // intermediate_value
  std::unique_ptr<FrozenTrial> created;  // create-trial records
  std::optional<std::vector<double>> values;
  std::string datetime;  // set_trial_state_values's, in FrozenTrial form
  // set_trial_param's entries and an attribute op's, as map nodes built by the reader: applying
  // one links it into the trial's map without allocating.
  ParamNode param;
  DistributionNode distribution;
  AttrNode attr;
};

// simdjson's on-demand reader of journal records, with its buffers and a cache of parsed
// distribution texts. One per thread.
class RecordParser {
 public:
  RecordParser();
  RecordParser(const RecordParser&);  // a fresh parser (buffers and cache are not state)
  RecordParser& operator=(const RecordParser&);
  RecordParser(RecordParser&&) noexcept;
  RecordParser& operator=(RecordParser&&) noexcept;
  ~RecordParser();

  // Reads `text` into `out` when it is a trial record the fast path handles (the ops applied
  // per trial); false for anything else (study records, unusual numbers, JSON nested deeper than
  // 64, text that is not JSON), which ReplayState::apply_text_slow then reads. `current_worker`
  // decides ParsedRecord::own.
  bool parse(std::string_view text, const std::string& current_worker, ParsedRecord& out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class ReplayState {
 public:
  // Parses one record's text (Python's json: NaN and Infinity accepted) and applies it: the
  // same result, state and exceptions as apply(parse_python_json(text), current_worker), at
  // simdjson's speed. Text that is not JSON throws JournalTextError (the state is unchanged).
  // `own`, when given, is set before the record applies: whether current_worker wrote it.
  void apply_text(std::string_view text, const std::string& current_worker, bool* own = nullptr);
  // The reference reader: parse_python_json (nlohmann) and apply(json).
  void apply_text_slow(std::string_view text, const std::string& current_worker,
                       bool* own = nullptr);
  // Applies a record RecordParser read (moved from).
  void apply(ParsedRecord&& r, const std::string& current_worker);

  // Applies one record. A record written by `current_worker` that cannot apply (unknown id,
  // finished trial, duplicated study name, incompatible distribution) throws, as Optuna raises
  // for its own operations; anyone else's such record is ignored. Malformed records throw
  // std::invalid_argument. The state is unchanged when apply throws.
  void apply(const nlohmann::json& log, const std::string& current_worker);

  // The same operations, typed (InMemoryStorage calls these directly, skipping JSON). `worker`
  // issued the operation; `own` says whether it is the current worker (errors throw) or not
  // (errors are ignored). Datetimes are in FrozenTrial form.
  void create_study(const std::string& name, std::vector<StudyDirection> directions, bool own);
  void delete_study(int64_t study_id, bool own);
  void set_study_attr(int64_t study_id, bool user, const std::string& key,
                      const nlohmann::json& value, bool own);
  // `t` holds state, values, datetimes, params, distributions, attributes, intermediate values.
  void create_trial(int64_t study_id, FrozenTrial t, const std::string& worker, bool own);
  void set_trial_param(int64_t trial_id, const std::string& name, double internal,
                       Distribution dist, bool own);
  // The same with map nodes (name -> internal value, name -> distribution; the same name).
  void set_trial_param(int64_t trial_id, ParamNode param, DistributionNode dist, bool own);
  void set_trial_state_values(int64_t trial_id, TrialState state,
                              std::optional<std::vector<double>> values,
                              const std::string& datetime, const std::string& worker, bool own);
  void set_trial_intermediate_value(int64_t trial_id, int64_t step, double value, bool own);
  void set_trial_attr(int64_t trial_id, bool user, const std::string& key, nlohmann::json value,
                      bool own);
  void set_trial_attr(int64_t trial_id, bool user, AttrNode attr, bool own);

  const FrozenStudy& study(int64_t study_id) const;  // throws StorageKeyError
  const FrozenTrial& trial(int64_t trial_id) const;  // throws StorageKeyError
  std::vector<FrozenStudy> all_studies() const;
  std::vector<FrozenTrial> all_trials(int64_t study_id,
                                      const std::vector<TrialState>& states) const;
  // all_trials without the copies: the study's trials (in number order, `states` empty = all),
  // valid until the next record applies. For readers that only look (printing, sorting).
  std::vector<const FrozenTrial*> trial_refs(int64_t study_id,
                                             const std::vector<TrialState>& states) const;
  std::vector<FrozenTrial> trials_from(int64_t study_id, int64_t first_number) const;
  int64_t trial_id_from_number(int64_t study_id, int64_t number) const;
  int64_t study_id_from_name(const std::string& name) const;
  std::optional<int64_t> owned_trial(const std::string& worker) const;
  std::optional<int64_t> last_created_trial(const std::string& worker) const;
  int64_t logs_applied() const { return logs_applied_; }

 private:
  bool study_exists(int64_t study_id, bool own) const;
  bool trial_updatable(int64_t trial_id, bool own) const;

  std::map<int64_t, FrozenStudy> studies_;
  std::map<std::string, int64_t> study_by_name_;
  std::deque<FrozenTrial> trials_;  // index = trial id (a deque: growing moves no trial)
  std::vector<int64_t> trial_study_;
  std::map<int64_t, std::vector<int64_t>> study_trials_;
  // The distribution a parameter name first got in each study: later ones must be compatible
  // (Optuna checks against the first trial having the name; compatibility is an equivalence).
  std::map<int64_t, std::map<std::string, Distribution>> study_param_dists_;
  int64_t next_study_id_ = 0;
  std::map<std::string, int64_t> owned_;
  std::map<std::string, int64_t> last_created_;
  int64_t logs_applied_ = 0;
  RecordParser parser_;  // apply_text's
};

// The current time in FrozenTrial form ("YYYY-MM-DD HH:MM:SS.ffffff", local time).
std::string now_frozen();

}  // namespace compsearch::search::journal
