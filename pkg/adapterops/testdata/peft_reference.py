#!/usr/bin/python3
"""Reference outputs for adapterops' combination methods.

PEFT is not installed here, so this script restates, with torch, what PEFT
0.21's LoraModel.add_weighted_adapter computes for one module
(huggingface/peft: src/peft/tuners/lora/model.py, add_weighted_adapter,
_svd_generalized_task_arithmetic_weighted_adapter,
_generalized_task_arithmetic_weighted_adapter; src/peft/utils/merge_utils.py),
in the same dtypes and order of operations: float32 tensors, Python-float
scalings and weights, torch.tensor(weights) (float32), torch.topk,
torch.linalg.svd and torch.quantile. DARE is left out (torch.bernoulli's
stream is not reproducible by design).

One deliberate difference: after the SVD, singular vector signs are fixed by
lorakit's convention (the largest-magnitude entry of each column of U made
positive) before svd_clamp, so that the clamped factors can be compared;
PEFT's signs are whatever the LAPACK driver returns.

Run from this folder:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 peft_reference.py
It writes reference/: three small adapters (a1, a2, a3), one
<case>.safetensors per case with the expected lora_A/lora_B of every module,
and cases.json describing the cases.
"""

import json
import math
import os
import struct

import torch

torch.manual_seed(20260901)
OUT = "reference"
PREFIX = "base_model.model."

# Modules: (path, in, out, embedding). An embedding's lora_embedding_A is
# (r, num_embeddings) and lora_embedding_B (embedding_dim, r).
MODULES = [
    ("model.embed_tokens", 32, 16, True),
    ("model.layers.0.self_attn.q_proj", 24, 20, False),
    ("model.layers.0.mlp.down_proj", 40, 24, False),
]

# Adapters: name -> (r, lora_alpha, use_rslora).
ADAPTERS = {
    "a1": (4, 8, False),
    "a2": (4, 16, True),
    "a3": (6, 6, False),
}


def scaling(name):
    r, alpha, rslora = ADAPTERS[name]
    return alpha / math.sqrt(r) if rslora else alpha / r


def names(path, embedding):
    if embedding:
        return PREFIX + path + ".lora_embedding_A", PREFIX + path + ".lora_embedding_B"
    return PREFIX + path + ".lora_A.weight", PREFIX + path + ".lora_B.weight"


def save_safetensors(path, tensors):
    """Writes float32 tensors in the safetensors format (sorted names)."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous().to(torch.float32)
        data = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def make_adapters():
    weights = {}
    for name, (r, alpha, rslora) in ADAPTERS.items():
        tensors, mods = {}, {}
        for path, n_in, n_out, emb in MODULES:
            a = (torch.randn(r, n_in) * 0.3).float()
            b = (torch.randn(n_out, r) * 0.2).float()
            an, bn = names(path, emb)
            tensors[an], tensors[bn] = a, b
            mods[path] = (a, b)
        os.makedirs(os.path.join(OUT, name), exist_ok=True)
        cfg = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "use_rslora": rslora,
               "target_modules": ["embed_tokens", "q_proj", "down_proj"], "task_type": "CAUSAL_LM"}
        with open(os.path.join(OUT, name, "adapter_config.json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
        save_safetensors(os.path.join(OUT, name, "adapter_model.safetensors"), tensors)
        weights[name] = mods
    return weights


# merge_utils, restated.

def magnitude_pruned(t, density):
    if density >= 1:
        return t
    mask = torch.zeros_like(t).reshape(-1)
    k = int(density * t.numel())
    mask[torch.topk(t.abs().reshape(-1), k=k, largest=True)[1]] = 1
    return t * mask.reshape(t.shape)


def weighted(tensors, weights):
    stacked = torch.stack(tensors, dim=0)
    return stacked * weights.view(weights.shape + (1,) * (stacked.dim() - 1))


def combine(method, tensors, weights, density, sign_method):
    if method in ("linear", "svd"):
        return weighted(tensors, weights).sum(dim=0)
    pruned = [magnitude_pruned(t, density) for t in tensors]
    if method in ("magnitude_prune", "magnitude_prune_svd"):
        return weighted(pruned, weights).sum(dim=0)
    # ties
    stacked = torch.stack(pruned, dim=0)
    sign = stacked.sign()
    votes = stacked.sum(dim=0) if sign_method == "total" else sign.sum(dim=0)
    majority = torch.where(votes >= 0, 1, -1)
    mask = sign == majority
    mixed = (weighted(pruned, weights) * mask).sum(dim=0)
    return mixed / torch.clamp(mask.sum(dim=0), min=1.0)


def sign_convention(u, vh):
    idx = u.abs().argmax(dim=0)
    s = torch.sign(u[idx, torch.arange(u.shape[1])])
    s[s == 0] = 1
    return u * s, vh * s[:, None]


def module_result(case, mods, path, n_in, n_out):
    method = case["method"]
    members = [(n, w) for n, w in zip(case["adapters"], case["weights"])]
    if method == "cat":
        As = [mods[n][path][0] * w * scaling(n) for n, w in members]
        Bs = [mods[n][path][1] for n, _ in members]
        return torch.cat(As, dim=0), torch.cat(Bs, dim=1)
    if not method.endswith("svd"):
        wa, wb = [], []
        for n, w in members:
            ws = w * scaling(n)
            sgn = 1 if ws >= 0 else -1
            wa.append(math.sqrt(abs(ws)) * sgn)
            wb.append(math.sqrt(abs(ws)))
        a = combine(method, [mods[n][path][0] for n, _ in members], torch.tensor(wa), case.get("density"), case.get("majority_sign", "total"))
        b = combine(method, [mods[n][path][1] for n, _ in members], torch.tensor(wb), case.get("density"), case.get("majority_sign", "total"))
        return a, b
    # PEFT 0.21: get_delta_weight (which applies the scaling) weighted by w.
    deltas = [(mods[n][path][1] @ mods[n][path][0]) * scaling(n) for n, _ in members]
    delta = combine(method, deltas, torch.tensor([w for _, w in members]), case.get("density"), case.get("majority_sign", "total"))
    k = case["svd_rank"]
    u, s, vh = torch.linalg.svd(delta, full_matrices=True)
    u = u[:, :k] @ torch.diag(s[:k])
    vh = vh[:k, :]
    u, vh = sign_convention(u, vh)
    clamp = case.get("svd_clamp")
    if clamp is not None:
        dist = torch.cat([u.flatten(), vh.flatten()])
        hi = torch.quantile(dist, clamp)
        u, vh = u.clamp(-hi, hi), vh.clamp(-hi, hi)
    return vh, u


CASES = [
    {"name": "linear", "method": "linear", "adapters": ["a1", "a2"], "weights": [0.6, -0.9]},
    {"name": "cat", "method": "cat", "adapters": ["a1", "a3", "a2"], "weights": [1.0, 0.5, -0.25]},
    {"name": "svd", "method": "svd", "adapters": ["a1", "a2", "a3"], "weights": [0.6, -0.9, 1.2], "svd_rank": 5},
    {"name": "svd_clamp", "method": "svd", "adapters": ["a1", "a3"], "weights": [1.0, 1.0], "svd_rank": 6, "svd_clamp": 0.9},
    {"name": "ties", "method": "ties", "adapters": ["a1", "a2"], "weights": [0.7, 0.5], "density": 0.6},
    {"name": "ties_frequency", "method": "ties", "adapters": ["a1", "a2"], "weights": [1.0, -0.5], "density": 0.4, "majority_sign": "frequency"},
    {"name": "magnitude_prune", "method": "magnitude_prune", "adapters": ["a1", "a2"], "weights": [0.8, 0.3], "density": 0.5},
    {"name": "ties_svd", "method": "ties_svd", "adapters": ["a1", "a3"], "weights": [0.7, 0.5], "density": 0.5, "svd_rank": 6},
    {"name": "magnitude_prune_svd", "method": "magnitude_prune_svd", "adapters": ["a2", "a3"], "weights": [1.0, -1.0], "density": 0.3, "svd_rank": 4},
]


def main():
    mods = make_adapters()
    for case in CASES:
        out = {}
        for path, n_in, n_out, emb in MODULES:
            a, b = module_result(case, mods, path, n_in, n_out)
            an, bn = names(path, emb)
            out[an], out[bn] = a, b
        save_safetensors(os.path.join(OUT, case["name"] + ".safetensors"), out)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"torch": torch.__version__, "cases": CASES}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
