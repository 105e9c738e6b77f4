// libFuzzer: the CLI's --search-space JSON (name -> Optuna distribution JSON).
#include "experiments/study_commands.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(compsearch::fuzz::text_of(data, size));
  compsearch::fuzz::rejecting_is_fine(
      [&] { (void)compsearch::experiments::parse_search_space(text); });
  return 0;
}
