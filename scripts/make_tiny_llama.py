#!/usr/bin/python3
"""A tiny Llama-shaped byte-level language model trained on Debian's fortunes: the llm/ test fixture.

Writes, under tests/data/llm/ (or --out):
  tiny_llama/config.json, tiny_llama/model.safetensors   Hugging Face LlamaForCausalLM layout, bf16,
                                                         tied embeddings (no lm_head.weight)
  tiny_llama.f16.gguf     the same weights as llama.cpp's convert_hf_to_gguf.py --outtype f16 writes
                          them: GGUF names, q/k rows permuted for llama.cpp's RoPE, norms F32, byte
                          vocabulary (tokenizer.ggml.model "gpt2": 256 byte tokens, no merges)
  fortunes_heldout.u8.npy held-out text (every 10th fortune, never trained on), one token per byte
  tiny_llama.train.json   what was trained: seed, steps, losses, held-out NLL per byte

Shape: hidden 256 (so K-quants' 256-weight super-blocks fit the rows), 2 layers, 4 query heads and
2 key/value heads (GQA, head_dim 64), SwiGLU width 640 (a multiple of 32 but not of 256: ffn_down's
rows exercise llama.cpp's fallback types), vocabulary 256 (token = byte). The model code below is
Hugging Face's Llama written out (RMSNorm, rotate-half RoPE, repeat_kv, SiLU-gated MLP).

The GGUF is written with gguf-py from the llama.cpp tree that scripts/setup.sh extracts (the same
release as the ggml compsearch links), so its metadata keys and layout are llama.cpp's own.

Run: /usr/bin/python3 scripts/make_tiny_llama.py   (seed 0; 200 steps of 12 x 128 bytes: a few
minutes on 2 idle cores, 20 minutes on 2 cores shared with three builds). The outputs are committed
(about 5.8 MB); scripts/make_llm_reference.py derives the reference logits from them. PyTorch on
another machine may not reproduce them bit for bit, which is why they are committed.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORTUNES = "/usr/share/games/fortunes"
GGUF_PY = os.path.join(ROOT, "scripts", "llama", "node_modules", ".llama.cpp", "gguf-py")

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 640,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "vocab_size": 256,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "torch_dtype": "bfloat16",
    "bos_token_id": 1,
    "eos_token_id": 2,
}


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(seq, head_dim, theta, dtype=torch.float32):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(seq, dtype=torch.float64), inv_freq)
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.nh, self.nkv, self.hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        d = c["hidden_size"]
        self.q_proj = nn.Linear(d, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, d, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
        out = scores.softmax(-1) @ v
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.nh * self.hd))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Inner(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class TinyLlama(nn.Module):
    """Hugging Face's LlamaForCausalLM, tied embeddings: the parameter names are HF's."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Inner(c)

    def forward(self, tokens):
        t = tokens.shape[1]
        cos, sin = rope_cos_sin(t, self.c["head_dim"], self.c["rope_theta"])
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return self.model.norm(x) @ self.model.embed_tokens.weight.t()


def load_fortunes():
    """Fortunes in a fixed order; every 10th goes to the held-out split."""
    train, heldout = [], []
    index = 0
    for name in sorted(os.listdir(FORTUNES)):
        path = os.path.join(FORTUNES, name)
        if name.endswith((".dat", ".u8")) or os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            for fortune in f.read().split(b"\n%\n"):
                if fortune.strip():
                    (heldout if index % 10 == 9 else train).append(fortune + b"\n%\n")
                    index += 1
    return b"".join(train), b"".join(heldout)


def write_safetensors(path, tensors):
    """safetensors: u64 header length, JSON header (dtype, shape, data_offsets), raw data; bf16."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = t.detach().to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def bytes_to_unicode():
    """GPT-2's printable spelling of the 256 bytes (byte-level BPE vocabularies use it)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def read_safetensors(path):
    """The inverse of write_safetensors (F32, F16, BF16), as float32 torch tensors."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        blob = raw[8 + n + begin:8 + n + end]
        if info["dtype"] == "BF16":
            values = (np.frombuffer(blob, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F16":
            values = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
        else:
            values = np.frombuffer(blob, dtype=np.float32)
        out[name] = torch.from_numpy(values.reshape(info["shape"]).copy())
    return out


def permute(weights, n_head, n_head_kv):
    """llama.cpp's conversion/llama.py LlamaModel.permute: HF's rotate-half row order to
    llama.cpp's adjacent-pair order, per head."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


GGUF_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def write_gguf(path, c, tensors):
    sys.path.insert(0, GGUF_PY)
    import gguf  # noqa: E402  (llama.cpp's own writer, from the tree setup.sh extracts)

    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny-llama-fortunes")
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(c["hidden_size"])
    w.add_block_count(c["num_hidden_layers"])
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(c["num_attention_heads"])
    w.add_head_count_kv(c["num_key_value_heads"])
    w.add_rope_freq_base(c["rope_theta"])
    w.add_layer_norm_rms_eps(c["rms_norm_eps"])
    w.add_rope_dimension_count(c["head_dim"])
    w.add_vocab_size(c["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    # Byte vocabulary as llama.cpp's byte-level BPE ("gpt2") knows it: token i is byte i in GPT-2's
    # bytes_to_unicode spelling, and no merge ever applies (gguf needs a non-empty list: one merge
    # of bytes 0x00 and 0x01), so llama.cpp tokenizes any text to its bytes. (Its SPM tokenizer
    # would turn spaces into U+2581 first.)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    byte_chars = bytes_to_unicode()
    w.add_token_list([byte_chars[i] for i in range(256)])
    w.add_token_types([gguf.TokenType.NORMAL] * 256)
    w.add_token_merges([byte_chars[0] + " " + byte_chars[1]])
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    w.add_bos_token_id(c["bos_token_id"])
    w.add_eos_token_id(c["eos_token_id"])
    for hf, t in tensors.items():
        t = t.detach().to(torch.bfloat16).float()  # the committed bf16 values, exactly
        if hf == "model.embed_tokens.weight":
            name = "token_embd.weight"
        elif hf == "model.norm.weight":
            name = "output_norm.weight"
        else:
            parts = hf.split(".")  # model.layers.N.<module>.<proj>.weight
            name = f"blk.{parts[2]}.{GGUF_NAMES['.'.join(parts[3:-1])]}.weight"
            if parts[-2] == "q_proj":
                t = permute(t, c["num_attention_heads"], c["num_attention_heads"])
            elif parts[-2] == "k_proj":
                t = permute(t, c["num_attention_heads"], c["num_key_value_heads"])
        data = t.numpy().astype(np.float32 if t.dim() == 1 else np.float16)
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "llm"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gguf-only", action="store_true",
                    help="rewrite the GGUF from the committed safetensors, without training")
    args = ap.parse_args()
    if args.gguf_only:
        with open(os.path.join(args.out, "tiny_llama", "config.json")) as f:
            c = json.load(f)
        tensors = read_safetensors(os.path.join(args.out, "tiny_llama", "model.safetensors"))
        write_gguf(os.path.join(args.out, "tiny_llama.f16.gguf"), c, tensors)
        return
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    c = CONFIG
    train, heldout = load_fortunes()
    data = torch.frombuffer(bytearray(train), dtype=torch.uint8).long()
    held = torch.frombuffer(bytearray(heldout[:65536]), dtype=torch.uint8).long()

    model = TinyLlama(c)
    for name, p in model.named_parameters():
        if p.dim() == 2:
            nn.init.normal_(p, std=0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.01)
    seq, batch = 128, 12
    gen = torch.Generator().manual_seed(args.seed)
    start, losses = time.time(), []
    for step in range(args.steps):
        lr = 3e-3 * min(1.0, (step + 1) / 30) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=gen)
        x = torch.stack([data[s:s + seq] for s in starts])
        y = torch.stack([data[s + 1:s + seq + 1] for s in starts])
        loss = F.cross_entropy(model(x).reshape(-1, c["vocab_size"]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(round(loss.item(), 4))
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)

    # Weights as committed (bf16), then the held-out NLL of those weights.
    tensors = {n: p for n, p in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
        nlls = []
        for s in range(0, 4096, seq):
            chunk = held[s:s + seq + 1].unsqueeze(0)
            nlls.append(F.cross_entropy(model(chunk[:, :-1])[0], chunk[0, 1:]).item())
    os.makedirs(os.path.join(args.out, "tiny_llama"), exist_ok=True)
    with open(os.path.join(args.out, "tiny_llama", "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(args.out, "tiny_llama", "model.safetensors"), tensors)
    write_gguf(os.path.join(args.out, "tiny_llama.f16.gguf"), c, tensors)
    np.save(os.path.join(args.out, "fortunes_heldout.u8.npy"), held.numpy().astype(np.uint8))
    with open(os.path.join(args.out, "tiny_llama.train.json"), "w") as f:
        json.dump({"seed": args.seed, "steps": args.steps, "seq": seq, "batch": batch,
                   "train_bytes": len(train), "heldout_bytes_saved": len(held),
                   "seconds": round(time.time() - start, 1),
                   "heldout_nll_per_byte_first_4096": round(float(np.mean(nlls)), 4),
                   "loss_every_step": losses}, f)
        f.write("\n")
    print(f"held-out NLL {np.mean(nlls):.4f} nats/byte; wrote {args.out}")


if __name__ == "__main__":
    main()
