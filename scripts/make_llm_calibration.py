#!/usr/bin/python3
"""Calibration tokens for the tiny LLM fixture: tests/data/llm/fortunes_calibration.u8.npy.

The importance matrix, the sensitivity table and the search measure on these bytes; the held-out
file (fortunes_heldout.u8.npy, every 10th fortune) stays for judging the result, so the two never
overlap. The bytes are 16384 consecutive bytes from the middle of the training split of
scripts/make_tiny_llama.py (the same fortunes, the same order), as llama.cpp users calibrate on
text of the kind the model was trained on. One token per byte, uint8.

Run: /usr/bin/python3 scripts/make_llm_calibration.py   (about a second; the output is committed)
"""
import importlib.util
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 16384


def main():
    spec = importlib.util.spec_from_file_location(
        "make_tiny_llama", os.path.join(ROOT, "scripts", "make_tiny_llama.py"))
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    train, heldout = tiny.load_fortunes()
    start = len(train) // 2
    calib = np.frombuffer(train[start:start + SIZE], dtype=np.uint8)
    assert calib.size == SIZE and heldout.find(train[start:start + 256]) < 0
    out = os.path.join(ROOT, "tests", "data", "llm", "fortunes_calibration.u8.npy")
    np.save(out, calib)
    print(f"wrote {out}: {calib.size} bytes from offset {start} of {len(train)} training bytes")


if __name__ == "__main__":
    main()
