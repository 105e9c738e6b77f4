// libFuzzer: a safetensors export read back onto its model (compressors/export.h), with the
// repository's small CNN (models/fmnist_cnn.onnx, or $COMPSEARCH_FUZZ_MODEL) as the original.
#include <cstdlib>

#include "compressors/export.h"
#include "fuzz/fuzz_util.h"
#include "model/graph.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const compsearch::model::Graph original = [] {
    const char* m = std::getenv("COMPSEARCH_FUZZ_MODEL");
    return compsearch::model::load_onnx(m ? m : "models/fmnist_cnn.onnx");
  }();
  const std::string path = compsearch::fuzz::input_file(data, size, ".safetensors");
  compsearch::fuzz::rejecting_is_fine(
      [&] { (void)compsearch::compressors::load_safetensors_weights(original, path); });
  return 0;
}
