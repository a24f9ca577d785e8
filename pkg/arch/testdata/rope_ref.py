"""Reference values for pkg/arch's RoPE and embedding-scale helpers.

Re-derives transformers' formulas (modeling_rope_utils.py: default, linear,
llama3 and longrope inverse frequencies; the rotary embedding's cos/sin with
attention scaling; Gemma's embedding normalizer) and convert_hf_to_gguf.py's
llama3 rope_freqs factors, with torch only (transformers is not needed), and
writes rope_golden.json next to this script. float32 values are stored as
their bit patterns so the Go test can compare exactly.

Run with the Debian python3-torch: /usr/bin/python3 testdata/rope_ref.py
"""

import json
import math
import os
import struct

import torch

PHI35 = json.load(open(os.path.join(os.path.dirname(__file__), "..", "shapes", "phi3.5-mini.json")))["rope_scaling"]


def bits(t):
    return [struct.unpack("<I", struct.pack("<f", float(x)))[0] for x in t.reshape(-1).tolist()]


def default_inv_freq(base, dim):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def linear_inv_freq(base, dim, factor):
    inv = default_inv_freq(base, dim)
    inv /= factor
    return inv


def llama3_inv_freq(base, dim, factor, low, high, old):
    inv_freq = default_inv_freq(base, dim)
    low_wl = old / low
    high_wl = old / high
    wavelen = 2 * math.pi / inv_freq
    inv_llama = torch.where(wavelen > low_wl, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_llama / factor + smooth * inv_llama
    medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
    return torch.where(medium, smoothed, inv_llama)


def longrope(base, dim, short, long, max_pos, orig, seq_len):
    factor = max_pos / orig
    attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
    ext = torch.tensor(long if seq_len and seq_len > orig else short, dtype=torch.float32)
    shape = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    return 1.0 / (ext * base**shape), attention_factor


def cos_sin(inv_freq, positions, scaling):
    inv = inv_freq[None, :, None].float()
    pos = torch.tensor(positions)[None, None, :].float()
    freqs = (inv @ pos).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * scaling, emb.sin() * scaling


def llama3_factors(base, dim, factor, low, high, old):
    # convert_hf_to_gguf.py LlamaModel.generate_extra_tensors
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    low_wl, high_wl = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wl:
            out.append(1)
        elif wavelen > low_wl:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(out, dtype=torch.float32)


golden = {"inv_freq": {}, "cos": {}, "sin": {}, "attention_factor": {}, "llama3_factors": {}, "embed_scale": {}}

cases = {
    "default-10000-128": default_inv_freq(10000.0, 128),
    "default-1e6-128": default_inv_freq(1000000.0, 128),
    "default-10000-256": default_inv_freq(10000.0, 256),
    "default-10000-96": default_inv_freq(10000.0, 96),
    "linear-1e6-256-x8": linear_inv_freq(1000000.0, 256, 8.0),
    "llama3-8b": llama3_inv_freq(500000.0, 128, 8.0, 1.0, 4.0, 8192),
    "llama3.2-1b": llama3_inv_freq(500000.0, 64, 32.0, 1.0, 4.0, 8192),
}
for seq in (4096, 4097):
    inv, af = longrope(10000.0, 96, PHI35["short_factor"], PHI35["long_factor"], 131072, 4096, seq)
    cases[f"phi3.5-seq{seq}"] = inv
    golden["attention_factor"]["phi3.5"] = struct.unpack("<Q", struct.pack("<d", af))[0]
for k, v in cases.items():
    golden["inv_freq"][k] = bits(v)

positions = {
    "llama3-8b": [0, 1, 1000, 8191, 100000],
    "linear-1e6-256-x8": [0, 7, 4096],
    "default-10000-256": [0, 3, 511],
    "phi3.5-seq4096": [0, 1, 2, 4095],
    "phi3.5-seq4097": [0, 5000, 131071],
}
for k, pos in positions.items():
    scaling = 1.0
    if k.startswith("phi3.5"):
        scaling = struct.unpack("<d", struct.pack("<Q", golden["attention_factor"]["phi3.5"]))[0]
    c, s = cos_sin(cases[k], pos, scaling)
    golden["cos"][k] = {"positions": pos, "bits": bits(c)}
    golden["sin"][k] = {"positions": pos, "bits": bits(s)}

golden["llama3_factors"]["llama3-8b"] = bits(llama3_factors(500000.0, 128, 8.0, 1.0, 4.0, 8192))
golden["llama3_factors"]["llama3.2-1b"] = bits(llama3_factors(500000.0, 64, 32.0, 1.0, 4.0, 8192))

for h in (64, 2048, 2304, 2560, 3072, 3584, 3840, 4608, 5376, 1152, 640):
    golden["embed_scale"][str(h)] = {
        # GemmaModel: torch.tensor(hidden_size**0.5, dtype=hidden_states.dtype)
        "bfloat16": bits(torch.tensor(h**0.5, dtype=torch.bfloat16).float())[0],
        "float16": bits(torch.tensor(h**0.5, dtype=torch.float16).float())[0],
        "float32": bits(torch.tensor(h**0.5, dtype=torch.float32))[0],
        # Gemma3TextScaledWordEmbedding: a float32 buffer cast to the weight dtype
        "bfloat16_via_f32": bits(torch.tensor(h**0.5).to(torch.bfloat16).float())[0],
    }

golden["torch"] = torch.__version__
with open(os.path.join(os.path.dirname(__file__), "rope_golden.json"), "w") as f:
    json.dump(golden, f, sort_keys=True)
    f.write("\n")
