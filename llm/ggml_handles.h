// Owning handles for ggml's C contexts: gguf_free / ggml_free when they go out of scope. One
// definition for every llm/ file that reads or writes GGUF (checkpoint, export, imatrix).
#pragma once

#include <ggml.h>
#include <gguf.h>

#include <memory>

namespace compsearch::llm {

struct GgufFree {
  void operator()(gguf_context* c) const { gguf_free(c); }
};
struct GgmlFree {
  void operator()(ggml_context* c) const { ggml_free(c); }
};
using GgufPtr = std::unique_ptr<gguf_context, GgufFree>;
using GgmlPtr = std::unique_ptr<ggml_context, GgmlFree>;

}  // namespace compsearch::llm
