// libFuzzer: an ONNX model file (protobuf, constant folding, shape inference).
#include "fuzz/fuzz_util.h"
#include "model/graph.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = compsearch::fuzz::input_file(data, size, ".onnx");
  compsearch::fuzz::rejecting_is_fine([&] { (void)compsearch::model::load_onnx(path); });
  return 0;
}
