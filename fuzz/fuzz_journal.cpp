// libFuzzer: a whole journal file opened by JournalStorage (line splitting, torn tail, bad lines
// skipped) and read back through every read the CLI verbs make.
#include "fuzz/fuzz_util.h"
#include "search/journal_storage.h"

using namespace compsearch::search;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = compsearch::fuzz::input_file(data, size, ".journal");
  compsearch::fuzz::rejecting_is_fine([&] {
    JournalStorage storage(path, JournalOptions{30.0, /*fsync=*/false});
    for (const auto& study : storage.get_all_studies()) {
      for (const auto& t : storage.get_all_trials(study.study_id)) {
        storage.get_trial(t.trial_id);
        (void)t.constraints();
      }
    }
  });
  return 0;
}
