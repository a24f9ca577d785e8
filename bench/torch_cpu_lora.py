#!/usr/bin/env python3
"""PyTorch reference for `lora-train bench` on the CPU.

The same model shape (a Llama config.json), LoRA recipe (r=16, alpha=32 on
q_proj, k_proj, v_proj, o_proj, dropout 0.05 on the adapter input), loss
(next-token cross-entropy over every position), optimizer (AdamW, lr 1e-4,
gradient clipping at 1.0) and float32 arithmetic as `lora-train bench
--dtype f32`, in plain PyTorch (eager attention, as transformers' eager
path). Only the adapters are trainable.

Run with a PyTorch that has its BLAS (Debian's python3-torch uses OpenBLAS):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 \
        bench/torch_cpu_lora.py --config pkg/train/testdata/llama-100m.json \
        --seq 256 --steps 10 --threads 1

It prints one JSON object: tokens/s from the mean and the fastest step, and
tokens per second of process CPU time (steadier on a shared machine).
OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS default to
--threads (set them to override): torch.set_num_threads alone leaves OpenBLAS
one thread per core.
"""

import argparse
import json
import math
import os
import sys
import time


def _threads_from_argv():
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


# torch.set_num_threads does not reach OpenBLAS, which otherwise starts one
# thread per core: pin every pool to --threads before torch loads, so that a
# per-thread comparison is one.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, _threads_from_argv())

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False)
        self.eps = eps

    def forward(self, x):
        v = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(v + self.eps))


class LoRALinear(nn.Module):
    """A frozen Linear plus PEFT's LoRA: y = x·Wᵀ + s·B·A·dropout(x)."""

    def __init__(self, inp, out, rank=0, alpha=0, dropout=0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out, inp), requires_grad=False)
        nn.init.uniform_(self.weight, -0.034, 0.034)
        self.rank = rank
        if rank:
            self.lora_A = nn.Parameter(torch.empty(rank, inp))
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            self.lora_B = nn.Parameter(torch.zeros(out, rank))
            self.scaling = alpha / rank
            self.drop = nn.Dropout(dropout)

    def forward(self, x):
        y = F.linear(x, self.weight)
        if self.rank:
            y = y + F.linear(F.linear(self.drop(x), self.lora_A), self.lora_B) * self.scaling
        return y


def rope_tables(seq, head_dim, theta):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    t = torch.arange(seq, dtype=torch.float32)
    freqs = torch.outer(t, inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Layer(nn.Module):
    def __init__(self, c, lora):
        super().__init__()
        d, hd = c["hidden_size"], c["head_dim"]
        self.h, self.kv, self.hd = c["num_attention_heads"], c["num_key_value_heads"], hd
        self.attn_norm = RMSNorm(d, c["rms_norm_eps"])
        self.mlp_norm = RMSNorm(d, c["rms_norm_eps"])
        self.q = LoRALinear(d, self.h * hd, **lora)
        self.k = LoRALinear(d, self.kv * hd, **lora)
        self.v = LoRALinear(d, self.kv * hd, **lora)
        self.o = LoRALinear(self.h * hd, d, **lora)
        i = c["intermediate_size"]
        self.gate, self.up, self.down = LoRALinear(d, i), LoRALinear(d, i), LoRALinear(i, d)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.k(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        rep = self.h // self.kv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        a = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        a = torch.softmax(a, dim=-1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(b, t, -1))
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, c, lora):
        super().__init__()
        self.embed = nn.Parameter(torch.empty(c["vocab_size"], c["hidden_size"]), requires_grad=False)
        nn.init.uniform_(self.embed, -0.034, 0.034)
        self.layers = nn.ModuleList(Layer(c, lora) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.theta = c.get("rope_theta", 10000.0)
        self.hd = c["head_dim"]

    def forward(self, ids):
        t = ids.shape[1]
        cos, sin = rope_tables(t, self.hd, self.theta)
        mask = torch.full((t, t), float("-inf")).triu(1)
        x = F.embedding(ids, self.embed)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return F.linear(self.norm(x), self.embed)  # tied lm_head


def blas_library():
    """The BLAS shared library this process mapped (Linux), e.g. libopenblasp-r0.3.21.so."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1].rsplit("/", 1)[-1] for line in f if "blas" in line.lower()}
        return sorted(libs)
    except OSError:
        return []


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="pkg/train/testdata/llama-100m.json")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="timed steps, after one untimed warm-up step")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with open(a.config) as f:
        c = json.load(f)
    c.setdefault("head_dim", c["hidden_size"] // c["num_attention_heads"])
    model = Llama(c, {"rank": 16, "alpha": 32, "dropout": 0.05})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    ids = torch.randint(0, c["vocab_size"], (a.batch, a.seq))
    times, cpu = [], 0.0
    for step in range(a.steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step > 0:
            times.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
    tokens = a.batch * a.seq
    mean = sum(times) / len(times)
    print(json.dumps({
        "torch": torch.__version__, "threads": a.threads, "blas": blas_library(),
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "config": a.config, "batch": a.batch, "seq": a.seq, "steps": a.steps,
        "trainable": sum(p.numel() for p in params),
        "step_s": round(mean, 4), "step_min_s": round(min(times), 4),
        "tokens_per_s": round(tokens / mean, 1), "tokens_per_s_best": round(tokens / min(times), 1),
        "tokens_per_cpu_s": round(tokens * a.steps / cpu, 1),
        "loss": round(loss.item(), 4),
    }))


if __name__ == "__main__":
    main()
