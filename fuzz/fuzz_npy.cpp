// libFuzzer: a NumPy .npy file.
#include "fuzz/fuzz_util.h"
#include "model/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = compsearch::fuzz::input_file(data, size, ".npy");
  compsearch::fuzz::rejecting_is_fine([&] { (void)compsearch::model::read_npy(path); });
  return 0;
}
