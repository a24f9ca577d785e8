#!/usr/bin/env python3
"""torchref: the forward pass of every decoder architecture lorakit runs,
in plain PyTorch, transcribed from transformers' modeling_*.py (llama,
mistral, qwen2, qwen3, gemma, gemma2, gemma3 text, phi3; eager attention)
and PEFT's LoRA, DoRA and (IA)^3 layers, with PEFT's bias option, and
PEFT's prompt tuning and prefix tuning (PeftModelForCausalLM.forward). It needs
torch alone (Debian's python3-torch 1.13 is enough), no transformers, no
peft, no safetensors package.

    torchref.py DIR...

reads, for each DIR, DIR/config.json, DIR/model.safetensors (the text model's tensors,
float32), DIR/batch.json ({"input_ids": [[...]], "labels": [[...]],
"position_ids": [[...]]}) and, when present, a PEFT adapter
(DIR/adapter_config.json, DIR/adapter_model.safetensors); runs the batch in
float32 and writes DIR/out.safetensors: "logits" [rows, seq, vocab] (after
the final soft-cap), "loss" (the mean cross-entropy of the shifted labels,
transformers' ForCausalLMLoss) and, for every trainable adapter tensor
(lora_A/B, the DoRA magnitude, ia3_l, trained biases), "grad:<name>" with
<name> as PEFT saves it without "base_model.model.".

Prompt tuning prepends the prompt to the inputs_embeds (positions 0 ..
P+T-1, labels -100 on the prompt; "logits" are those of the real tokens);
prefix tuning passes each layer's keys and values as a cache (not
rotated; the real tokens' positions start at P). Their batches are not
packed.

Packing follows transformers: a new document starts wherever a position id
is not its predecessor's plus one, and a token attends only to the earlier
tokens of its document (and of its sliding window). Labels are shifted
inside each row; the caller sets -100 at each document's first token.
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F


# --- safetensors, read and written by hand -------------------------------

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        dt = _DTYPES[info["dtype"]]
        buf = bytearray(data[base + lo:base + hi])
        t = torch.frombuffer(buf, dtype=dt) if hi > lo else torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"]).float() if dt != torch.int64 else t.reshape(info["shape"])
    return out


def save_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# --- the configuration, as the transformers config classes read it --------

DEFAULTS = {  # the config classes' defaults for what the tests may leave out
    "llama": dict(rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="silu"),
    "mistral": dict(rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="silu", sliding_window=4096),
    "qwen2": dict(rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="silu", sliding_window=4096, max_window_layers=28),
    "qwen3": dict(rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="silu", sliding_window=4096, max_window_layers=28,
                  head_dim=128),
    "gemma": dict(rms_norm_eps=1e-6, rope_theta=10000.0, hidden_activation="gelu_pytorch_tanh", head_dim=256),
    "gemma2": dict(rms_norm_eps=1e-6, rope_theta=10000.0, hidden_activation="gelu_pytorch_tanh", head_dim=256,
                   query_pre_attn_scalar=256, sliding_window=4096, attn_logit_softcapping=50.0,
                   final_logit_softcapping=30.0),
    "gemma3_text": dict(rms_norm_eps=1e-6, rope_theta=1e6, rope_local_base_freq=10000.0,
                        hidden_activation="gelu_pytorch_tanh", head_dim=256, query_pre_attn_scalar=256,
                        sliding_window=4096, sliding_window_pattern=6, attn_logit_softcapping=None,
                        final_logit_softcapping=None),
    "phi3": dict(rms_norm_eps=1e-5, rope_theta=10000.0, hidden_act="silu", sliding_window=None,
                 original_max_position_embeddings=4096),
}


class Cfg:
    def __init__(self, raw):
        mt = raw["model_type"]
        if mt == "gemma3":  # the multimodal wrapper: its language model
            raw = dict(raw.get("text_config", {}), model_type="gemma3_text")
            mt = "gemma3_text"
        d = dict(DEFAULTS[mt])
        d.update(raw)
        self.mt = mt
        self.raw = d
        g = d.get
        self.hidden, self.inter, self.layers = g("hidden_size"), g("intermediate_size"), g("num_hidden_layers")
        self.heads = g("num_attention_heads")
        self.kv = g("num_key_value_heads") or self.heads
        self.head_dim = g("head_dim") or self.hidden // self.heads
        self.vocab, self.eps = g("vocab_size"), g("rms_norm_eps")
        self.max_pos = g("max_position_embeddings", 4096)
        self.tied = g("tie_word_embeddings", mt.startswith("gemma"))
        gemma = mt.startswith("gemma")
        self.gemma_norm = self.embed_scale = gemma
        self.sandwich = mt in ("gemma2", "gemma3_text")
        self.qk_norm = mt in ("qwen3", "gemma3_text")
        self.fused = mt == "phi3"
        act = g("hidden_activation") if gemma else g("hidden_act")
        self.act = {"silu": F.silu, "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
                    "gelu": F.gelu}[act]
        self.qkv_bias = mt == "qwen2" or (mt in ("llama", "qwen3", "gemma", "gemma2", "gemma3_text") and g("attention_bias", False))
        self.o_bias = mt != "qwen2" and self.qkv_bias
        self.mlp_bias = mt == "llama" and g("mlp_bias", False)
        self.scaling = (g("query_pre_attn_scalar") if self.sandwich else self.head_dim) ** -0.5
        self.attn_cap = g("attn_logit_softcapping") if self.sandwich else None
        self.final_cap = g("final_logit_softcapping") if self.sandwich else None
        self.window = self._windows()
        self.rope = self._ropes()

    def _windows(self):
        g, n = self.raw.get, self.layers
        types = g("layer_types")
        if self.mt in ("qwen2", "qwen3"):
            w = g("sliding_window") if g("use_sliding_window", False) else None
            if types is None:
                types = ["sliding_attention" if w and i >= g("max_window_layers") else "full_attention" for i in range(n)]
        elif self.mt == "gemma2":
            w = g("sliding_window")
            types = types or ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]
        elif self.mt == "gemma3_text":
            w = g("sliding_window")
            p = g("sliding_window_pattern")
            types = types or ["sliding_attention" if (i + 1) % p else "full_attention" for i in range(n)]
        elif self.mt in ("mistral", "phi3"):
            w = g("sliding_window")
            types = ["sliding_attention" if w else "full_attention"] * n
        else:
            w, types = None, ["full_attention"] * n
        return [w if t == "sliding_attention" else None for t in types]

    def _rope_block(self, block, theta):
        """One rotary embedding: (inv_freq of a seq_len, attention factor)."""
        g = self.raw.get
        block = dict(block or {})
        theta = block.get("rope_theta", theta)
        partial = block.get("partial_rotary_factor", g("partial_rotary_factor", 1.0))
        dim = int(self.head_dim * partial)
        kind = block.get("rope_type", block.get("type", "default"))
        if kind in ("su", "yarn") and self.mt == "phi3":
            kind = "longrope"
        shape = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim

        def default(_):
            return 1.0 / (theta ** shape)

        if kind == "default":
            return dim, default, 1.0
        if kind == "linear":
            return dim, lambda s: default(s) / block["factor"], 1.0
        if kind == "llama3":
            def llama3(_):  # _compute_llama3_parameters
                inv = default(None)
                factor, lo, hi = block["factor"], block["low_freq_factor"], block["high_freq_factor"]
                old = block.get("original_max_position_embeddings", self.max_pos)
                low_wave, high_wave = old / lo, old / hi
                wave = 2 * math.pi / inv
                out = torch.where(wave > low_wave, inv / factor, inv)
                smooth = (old / wave - lo) / (hi - lo)
                smoothed = (1 - smooth) * out / factor + smooth * out
                medium = ~(wave < high_wave) * ~(wave > low_wave)
                return torch.where(medium, smoothed, out)
            return dim, llama3, 1.0
        if kind == "longrope":  # _compute_longrope_parameters (Phi-3)
            orig = g("original_max_position_embeddings") or block.get("original_max_position_embeddings")
            factor = self.max_pos / orig
            att = block.get("attention_factor")
            if att is None:
                att = math.sqrt(1 + math.log(factor) / math.log(orig)) if factor > 1 else 1.0

            def longrope(seq_len):
                ext = torch.tensor(block["long_factor"] if seq_len > orig else block["short_factor"], dtype=torch.float32)
                return 1.0 / (ext * theta ** shape)
            return dim, longrope, att
        raise SystemExit("torchref: rope type %r" % kind)

    def _ropes(self):
        g = self.raw.get
        params = g("rope_parameters")
        if self.mt == "gemma3_text":
            if params and ("full_attention" in params or "sliding_attention" in params):
                full, local = params.get("full_attention"), params.get("sliding_attention")
            else:
                full, local = g("rope_scaling"), None
            glob = self._rope_block(full, g("rope_theta"))
            loc = self._rope_block(local, g("rope_local_base_freq"))
            return [loc if w else glob for w in self.window]
        block = g("rope_scaling") or params
        r = self._rope_block(block, g("rope_theta"))
        return [r] * self.layers


# --- the adapter, as PEFT's layers compute it -----------------------------

class Adapter:
    def __init__(self, d, W):
        self.mods, self.params, self.bias = {}, {}, {}
        self.virtual, self.P, self.prompt = None, 0, None
        cfg_path = os.path.join(d, "adapter_config.json")
        if not os.path.exists(cfg_path):
            return
        ac = json.load(open(cfg_path))
        ts = {k.removeprefix("base_model.model."): v for k, v in load_safetensors(
            os.path.join(d, "adapter_model.safetensors")).items()}
        kind = ac["peft_type"]
        if kind in ("PROMPT_TUNING", "PREFIX_TUNING"):
            self.virtual, self.P = kind, ac["num_virtual_tokens"]
            self.prompt = self._param("prompt_embeddings", ts["prompt_embeddings"])
            return
        ff = set(ac.get("feedforward_modules") or [])
        for name, t in ts.items():
            if name.endswith(".bias"):  # a trained bias (bias "all" or "lora_only")
                mod = name.removesuffix(".bias").removesuffix(".base_layer")
                self.bias[mod] = self._param(name, t)
                continue
            for suffix in (".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector", ".ia3_l"):
                if name.endswith(suffix):
                    mod = name[:-len(suffix)]
                    self.mods.setdefault(mod, {})[suffix] = self._param(name, t)
        for mod, m in self.mods.items():
            m["ia3"] = kind == "IA3"
            m["ff"] = mod.split(".")[-1] in ff
            r = ac.get("r", 0)
            alpha = ac.get("lora_alpha", 0)
            m["scaling"] = alpha / math.sqrt(r) if ac.get("use_rslora") else (alpha / r if r else 0)
        mode = ac.get("bias", "none")
        for key, t in list(W.items()):  # PEFT's _mark_only_adapters_as_trainable
            if not key.endswith(".bias"):
                continue
            mod = key[:-5]
            if mod in self.bias:
                continue
            if mode == "all" or (mode == "lora_only" and mod in self.mods and not self.mods[mod]["ia3"]):
                name = mod + (".base_layer.bias" if mod in self.mods else ".bias")
                self.bias[mod] = self._param(name, t.clone())

    def _param(self, name, t):
        p = t.clone().requires_grad_(True)
        self.params[name] = p
        return p


def linear(x, W, A, path):
    """nn.Linear, or PEFT's LoRA / DoRA / (IA)^3 layer around it."""
    w = W[path + ".weight"]
    b = A.bias.get(path, W.get(path + ".bias"))
    m = A.mods.get(path)
    if m is None:
        return F.linear(x, w, b)
    if m["ia3"]:
        s = m[".ia3_l"].flatten()
        if m["ff"]:
            return F.linear(x * s, w, b)
        return F.linear(x, w, b) * s
    la, lb, sc = m[".lora_A.weight"], m[".lora_B.weight"], m["scaling"]
    result = F.linear(x, w, b)
    lora = F.linear(F.linear(x, la), lb)
    mag = m.get(".lora_magnitude_vector")
    if mag is None:
        return result + lora * sc
    # DoraLinearLayer.forward with an identity dropout (base_result given).
    lora_weight = (lb @ la).detach()
    weight_norm = torch.linalg.norm(w + sc * lora_weight, dim=1).detach()
    g = (mag / weight_norm).view(1, -1)
    base = result - b if b is not None else result
    return result + ((g - 1) * base + g * lora * sc)


# --- the decoder ----------------------------------------------------------

def rms_norm(x, w, c):
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + c.eps)
    if c.gemma_norm:  # GemmaRMSNorm: (1 + w) in float32, then the cast
        return (h * (1.0 + w.float())).type_as(x)
    return w * h.to(x.dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rope(x, cos, sin):
    d = cos.shape[-1]
    rot, rest = x[..., :d], x[..., d:]
    return torch.cat([(rot * cos) + (rotate_half(rot) * sin), rest], dim=-1)


def documents(pos):
    """transformers' find_packed_sequence_indices: a new document wherever a
    position is not its predecessor + 1."""
    first = torch.ones_like(pos, dtype=torch.bool)
    first[:, 1:] = pos[:, 1:] != pos[:, :-1] + 1
    return torch.cumsum(first.long(), dim=1)


def forward(c, W, A, ids, pos):
    B, T = ids.shape
    x = F.embedding(ids, W["model.embed_tokens.weight"])
    scale = torch.tensor(c.hidden ** 0.5, dtype=x.dtype)
    P = 0  # prefix keys and values per layer
    if A.virtual == "PROMPT_TUNING":
        # PeftModelForCausalLM: inputs_embeds = cat(prompt, word_embeddings(ids)).
        # Gemma 3's word embedding module scales; Gemma 1/2 scale inputs_embeds.
        if c.embed_scale and c.mt == "gemma3_text":
            x = x * scale
        x = torch.cat((A.prompt[None].expand(B, -1, -1), x), dim=1)
        if c.embed_scale and c.mt != "gemma3_text":
            x = x * scale
        T = x.shape[1]
        pos = torch.arange(T).expand(B, T)
    else:
        if c.embed_scale:
            x = x * scale
        if A.virtual == "PREFIX_TUNING":
            P = A.P
            # get_prompt: view(P, layers*2, kv heads, head_dim).permute: layer l's
            # keys are 2l, its values 2l+1.
            pkv = A.prompt.view(P, c.layers * 2, c.kv, c.head_dim).permute(1, 2, 0, 3)
            pos = pos + P  # cache_position starts after the cache
    docs = documents(pos)
    q_idx = torch.arange(T).view(T, 1) + P
    k_idx = torch.arange(P + T).view(1, P + T)
    same = docs[:, :, None] == docs[:, None, :]
    if P:
        same = torch.ones(B, T, P + T, dtype=torch.bool)  # no packing with a prefix
    seq_len = int(pos.max()) + 1
    for l in range(c.layers):
        p = "model.layers.%d." % l
        res = x
        h = rms_norm(x, W[p + "input_layernorm.weight"], c)
        if c.fused:
            qkv = linear(h, W, A, p + "self_attn.qkv_proj")
            nq, nk = c.heads * c.head_dim, c.kv * c.head_dim
            q, k, v = qkv[..., :nq], qkv[..., nq:nq + nk], qkv[..., nq + nk:]
        else:
            q = linear(h, W, A, p + "self_attn.q_proj")
            k = linear(h, W, A, p + "self_attn.k_proj")
            v = linear(h, W, A, p + "self_attn.v_proj")
        q = q.view(B, T, c.heads, c.head_dim).transpose(1, 2)
        k = k.view(B, T, c.kv, c.head_dim).transpose(1, 2)
        v = v.view(B, T, c.kv, c.head_dim).transpose(1, 2)
        if c.qk_norm:
            q = rms_norm(q, W[p + "self_attn.q_norm.weight"], c)
            k = rms_norm(k, W[p + "self_attn.k_norm.weight"], c)
        dim, inv_fn, att = c.rope[l]
        inv = inv_fn(seq_len)
        freqs = (inv[None, :, None].float().expand(B, -1, 1) @ pos[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = (emb.cos() * att)[:, None], (emb.sin() * att)[:, None]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if P:  # the cache's keys and values, used as given
            k = torch.cat((pkv[2 * l][None].expand(B, -1, -1, -1), k), dim=2)
            v = torch.cat((pkv[2 * l + 1][None].expand(B, -1, -1, -1), v), dim=2)
        rep = c.heads // c.kv
        K = P + T
        k = k[:, :, None].expand(B, c.kv, rep, K, c.head_dim).reshape(B, c.heads, K, c.head_dim)
        v = v[:, :, None].expand(B, c.kv, rep, K, c.head_dim).reshape(B, c.heads, K, c.head_dim)
        s = torch.matmul(q, k.transpose(2, 3)) * c.scaling
        if c.attn_cap is not None:
            s = s / c.attn_cap
            s = torch.tanh(s)
            s = s * c.attn_cap
        visible = (k_idx <= q_idx)[None] & same
        if c.window[l]:
            visible = visible & (k_idx > q_idx - c.window[l])[None]
        s = s.masked_fill(~visible[:, None], torch.finfo(s.dtype).min)
        pr = F.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(pr, v).transpose(1, 2).reshape(B, T, c.heads * c.head_dim)
        o = linear(o, W, A, p + "self_attn.o_proj")
        if c.sandwich:
            o = rms_norm(o, W[p + "post_attention_layernorm.weight"], c)
        x = res + o
        res = x
        h = rms_norm(x, W[p + ("pre_feedforward_layernorm.weight" if c.sandwich else "post_attention_layernorm.weight")], c)
        if c.fused:
            gu = linear(h, W, A, p + "mlp.gate_up_proj")
            gate, up = gu.chunk(2, dim=-1)
            m = up * c.act(gate)
        else:
            m = c.act(linear(h, W, A, p + "mlp.gate_proj")) * linear(h, W, A, p + "mlp.up_proj")
        m = linear(m, W, A, p + "mlp.down_proj")
        if c.sandwich:
            m = rms_norm(m, W[p + "post_feedforward_layernorm.weight"], c)
        x = res + m
    x = rms_norm(x, W["model.norm.weight"], c)
    head = W["model.embed_tokens.weight"] if c.tied else W["lm_head.weight"]
    logits = F.linear(x, head)
    if c.final_cap is not None:
        logits = logits / c.final_cap
        logits = torch.tanh(logits)
        logits = logits * c.final_cap
    return logits


def main(d):
    torch.set_num_threads(1)  # a fixed summation order
    c = Cfg(json.load(open(os.path.join(d, "config.json"))))
    W = load_safetensors(os.path.join(d, "model.safetensors"))
    A = Adapter(d, W)
    batch = json.load(open(os.path.join(d, "batch.json")))
    ids = torch.tensor(batch["input_ids"], dtype=torch.int64)
    labels = torch.tensor(batch["labels"], dtype=torch.int64)
    pos = batch.get("position_ids")
    pos = torch.tensor(pos, dtype=torch.int64) if pos else torch.arange(ids.shape[1]).expand_as(ids)
    logits = forward(c, W, A, ids, pos)
    if A.virtual == "PROMPT_TUNING":  # labels cat((-100,) * P, labels); logits of the real tokens
        labels = torch.cat((torch.full((labels.shape[0], A.P), -100, dtype=labels.dtype), labels), dim=1)
    loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, c.vocab), labels[:, 1:].reshape(-1), ignore_index=-100)
    if A.virtual == "PROMPT_TUNING":
        logits = logits[:, A.P:]
    out = {"logits": logits, "loss": loss.reshape(1)}
    if A.params:
        loss.backward()
        for name, p in A.params.items():
            out["grad:" + name] = p.grad
    save_safetensors(os.path.join(d, "out.safetensors"), out)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for d in sys.argv[1:]:
        main(d)
