// Flags and the run loop shared by `compsearch train` and `compsearch finetune`: progress lines on
// stderr, Ctrl-C as a stop request (the second Ctrl-C kills), the summary as text or JSON.
#pragma once

#include <string>
#include <vector>

#include "cli/options.h"
#include "experiments/train_commands.h"

namespace compsearch::cli {

// Adds the flags both verbs take (everything in experiments::TrainRequest but --recipe).
void add_training_flags(VerbOptions& o);
experiments::TrainRequest training_request(const VerbOptions& o);
// Runs the verb with progress and SIGINT handling; prints the report. Exit code: 0, or 130 when
// interrupted (nothing written).
int run_training_verb(const VerbOptions& o, const experiments::TrainRequest& request,
                      bool finetune);

}  // namespace compsearch::cli
