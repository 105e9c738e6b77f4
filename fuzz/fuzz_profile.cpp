// libFuzzer: a target profile file (hardware_models), parsed and written back.
#include "fuzz/fuzz_util.h"
#include "hardware_models/target_profile.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = compsearch::fuzz::input_file(data, size, ".profile.json");
  compsearch::fuzz::rejecting_is_fine([&] {
    const auto profile = compsearch::hardware_models::load_profile(path);
    (void)compsearch::hardware_models::profile_to_json(profile).dump();
  });
  return 0;
}
