#!/usr/bin/python3
"""PyTorch reference outputs of the tiny Llama fixture (scripts/make_tiny_llama.py), for
tests/llm/decoder_test.cpp.

Reads tests/data/llm/tiny_llama/ (config.json, model.safetensors, parsed here by hand: no
safetensors package on Debian 12) and fortunes_heldout.u8.npy, runs the Hugging Face Llama
computation of make_tiny_llama.py in float32, and writes tests/data/llm/tiny_llama.reference/:
  window.npy      int32 [64], the first 64 held-out bytes
  logits.npy      float32 [64, 256], logits of that window
  perplexity.json {"context": 128, "windows": 4, "tokens_scored", "mean_nll", "perplexity"}:
                  llama-perplexity's protocol (non-overlapping windows; positions context/2 ..
                  context-2 predict the next token) over the first 4 windows

Run: /usr/bin/python3 scripts/make_llm_reference.py   (seconds; deterministic)
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from make_tiny_llama import TinyLlama, read_safetensors  # noqa: E402

DATA = os.path.join(ROOT, "tests", "data", "llm")


def main():
    torch.set_num_threads(2)
    with open(os.path.join(DATA, "tiny_llama", "config.json")) as f:
        config = json.load(f)
    model = TinyLlama(config)
    model.load_state_dict(read_safetensors(os.path.join(DATA, "tiny_llama", "model.safetensors")))
    model.eval()
    tokens = torch.from_numpy(np.load(os.path.join(DATA, "fortunes_heldout.u8.npy")).astype(np.int64))
    out = os.path.join(DATA, "tiny_llama.reference")
    os.makedirs(out, exist_ok=True)
    with torch.no_grad():
        window = tokens[:64]
        logits = model(window.unsqueeze(0))[0]
        np.save(os.path.join(out, "window.npy"), window.numpy().astype(np.int32))
        np.save(os.path.join(out, "logits.npy"), logits.numpy().astype(np.float32))
        context, windows, first = 128, 4, 64
        nll, scored = 0.0, 0
        for w in range(windows):
            chunk = tokens[w * context:(w + 1) * context]
            logp = F.log_softmax(model(chunk.unsqueeze(0))[0].double(), dim=-1)
            for p in range(first, context - 1):
                nll -= logp[p, chunk[p + 1]].item()
                scored += 1
    result = {"context": context, "windows": windows, "tokens_scored": scored,
              "mean_nll": nll / scored, "perplexity": float(np.exp(nll / scored))}
    with open(os.path.join(out, "perplexity.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
