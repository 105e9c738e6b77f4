// libFuzzer: a compsearch.recipe/1 file, parsed and written back.
#include "compressors/recipe.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = compsearch::fuzz::input_file(data, size, ".recipe.json");
  compsearch::fuzz::rejecting_is_fine([&] {
    const auto recipe = compsearch::compressors::load_recipe(path);
    (void)compsearch::compressors::recipe_to_json(recipe).dump();
  });
  return 0;
}
