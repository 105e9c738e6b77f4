// libFuzzer: an IDX file (MNIST's format), plain; the first byte picks gzip (".gz") instead.
#include "fuzz/fuzz_util.h"
#include "model/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool gz = data[0] & 1;
  const std::string path =
      compsearch::fuzz::input_file(data + 1, size - 1, gz ? ".idx.gz" : ".idx");
  compsearch::fuzz::rejecting_is_fine([&] { (void)compsearch::model::read_idx(path); });
  return 0;
}
