// `compsearch finetune --model M --recipe R --data D --out OUT.onnx [--format onnx|onnx-qdq]
// [--json]`: quantization-aware fine-tuning with distillation from the uncompressed model, on the
// recipe's schedule (its "distillation" block; flags override it). Logic:
// experiments/train_commands.h.
#include "cli/command.h"
#include "cli/training_verb.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

int run_finetune(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch finetune --model MODEL.onnx --recipe RECIPE.json --out OUT.onnx "
      "[--data fashion-mnist|DATA.json] [--format onnx|onnx-qdq] [options]\n\n"
      "Fine-tunes the compressed model (the recipe's fake quantization, fixed pruning masks, "
      "straight-through gradients) by Hinton distillation from the uncompressed model on the "
      "training split, with the recipe's \"distillation\" schedule (epochs, lr, optimizer, "
      "schedule, temperature, alpha, batch_size, samples; 1 epoch by default). OUT holds the "
      "compressed weights as floats, so `compsearch evaluate --model OUT` gives the fine-tuned "
      "accuracy; onnx-qdq writes integer weights with DequantizeLinear and the trained activation "
      "ranges. Ctrl-C stops and writes nothing.\n\noptions");
  o.add()("recipe", po::value<std::string>(), "compsearch.recipe/1 file")(
      "temperature", po::value<double>(), "distillation temperature (overrides the recipe)")(
      "alpha", po::value<double>(),
      "weight of the distillation term, 1 = label-free (overrides the recipe)");
  add_training_flags(o);
  if (!o.parse(args)) return 0;
  experiments::TrainRequest r = training_request(o);
  r.recipe = o.required<std::string>("recipe");
  r.temperature = o.optional<double>("temperature");
  r.alpha = o.optional<double>("alpha");
  return run_training_verb(o, r, true);
}

const CommandRegistration kRegistration(
    "finetune", "quantization-aware fine-tuning of a recipe with distillation", run_finetune);

}  // namespace
}  // namespace compsearch::cli
