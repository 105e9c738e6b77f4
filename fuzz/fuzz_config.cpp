// libFuzzer: an experiment config file (its relative paths resolve against the input's folder).
#include "experiments/experiment_config.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = compsearch::fuzz::input_file(data, size, ".config.json");
  compsearch::fuzz::rejecting_is_fine([&] { (void)compsearch::experiments::load_config(path); });
  return 0;
}
