// The external evaluator: the user's own program scores a candidate.
//
// For every candidate compsearch starts `command` (argv, no shell), writes one JSON object to its
// standard input and closes it:
//   {"number": 12, "params": {...}, "recipe": {compsearch.recipe/1}, "model": "/abs/model.onnx"}
// and reads its standard output, which must hold one JSON object of numeric metrics, e.g.
//   {"accuracy": 0.912, "latency_ms": 3.1}
// (the last line that parses as a JSON object is used, so a program may print logs first).
// A non-zero exit, a signal, output that is not such an object, a non-numeric metric or running
// past `timeout_s` (the process group is killed) throws std::runtime_error with the reason and
// the tail of the program's standard error: the runner marks that trial FAIL and goes on.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "evaluators/evaluator.h"

namespace compsearch::evaluators {

struct ExternalEvaluatorOptions {
  std::vector<std::string> command;  // program and arguments (PATH is searched)
  double timeout_s = 600.0;
  std::string model;                 // passed through as "model"
  std::vector<std::string> metrics;  // names the program is expected to print (may be empty)
};

std::unique_ptr<Evaluator> make_external_evaluator(ExternalEvaluatorOptions options);

}  // namespace compsearch::evaluators
