# Generates match_cases.json: expected outcomes of PEFT's target matching
# (check_target_module_exists, huggingface/peft src/peft/tuners/tuners_utils.py,
# main of 2026-08), the all-linear expansion and get_pattern_key
# (src/peft/utils/other.py), transliterated below and evaluated with
# Python's re. Run: python3 gen_match_cases.py > match_cases.json
import json, re

def check_target_module_exists(cfg, key, is_linear):
    exclude = cfg.get("exclude_modules")
    if exclude:
        if isinstance(exclude, str):
            if re.fullmatch(exclude, key):
                return False
        elif key in exclude or any(key.endswith(f".{e}") for e in exclude):
            return False
    mts = cfg.get("modules_to_save")
    if mts:
        if any(re.match(rf"(^|.*\.){m}($|\..*)", key) for m in mts):
            return False
    tm = cfg.get("target_modules")
    if tm is None:
        return False
    if isinstance(tm, str) and tm.lower() == "all-linear":
        # _maybe_include_all_linear_layers: linear modules minus the output head.
        head = {"lm_head"} | ({"score", "classifier"} if cfg.get("task_type") == "SEQ_CLS" else set())
        return is_linear and key not in head and not key.endswith(".lm_head")
    if isinstance(tm, str):
        return bool(re.fullmatch(tm, key))
    if key in tm:
        return True
    found = any(key.endswith(f".{t}") for t in tm)
    layer_indexes = cfg.get("layers_to_transform")
    layers_pattern = cfg.get("layers_pattern")
    using = layer_indexes is not None and (len(layer_indexes) != 0 if isinstance(layer_indexes, list) else True)
    if using and found:
        idx = None
        if layers_pattern is None or len(layers_pattern) == 0:
            idx = re.match(r".*?\.[^.]*\.(\d+)\.", key)
        else:
            lp = [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern
            for p in lp:
                idx = re.match(rf".*?\.{p}\.(\d+)\.", key)
                if idx is not None:
                    break
        if idx is None:
            found = False
        else:
            i = int(idx.group(1))
            found = i == layer_indexes if isinstance(layer_indexes, int) else i in layer_indexes
    return found

def get_pattern_key(keys, k):
    for p in keys:
        if re.match(rf"(.*\.)?({p})$", k):
            return p
    return k

names = [
    "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj",
    "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj",
    "model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj",
    "model.layers.11.self_attn.v_proj", "model.layers.1.mlp.experts.0.w1", "model.embed_tokens", "lm_head",
    "model.norm", "q_proj", "model.layers.2.self_attn.q_proj", "model.language_model.layers.1.self_attn.q_proj",
    "transformer.h.3.attn.c_attn", "score", "model.layers.0.self_attn", "xq_proj",
]
linear = {n: n.split(".")[-1].endswith(("proj", "c_attn", "w1", "lm_head", "score")) for n in names}

configs = [
    {"target_modules": ["q_proj", "v_proj"]},
    {"target_modules": ["q_proj", "v_proj"], "layers_to_transform": [1]},
    {"target_modules": ["q_proj", "v_proj"], "layers_to_transform": 1},
    {"target_modules": ["q_proj", "v_proj"], "layers_to_transform": []},
    {"target_modules": ["q_proj", "down_proj", "w1"], "layers_to_transform": [0, 11]},
    {"target_modules": ["q_proj", "c_attn"], "layers_to_transform": [1, 3], "layers_pattern": "h"},
    {"target_modules": ["q_proj", "c_attn"], "layers_to_transform": [1, 3], "layers_pattern": ["h", "layers"]},
    {"target_modules": ["q_proj"], "layers_to_transform": [1], "layers_pattern": ""},
    {"target_modules": ["model.layers.0.self_attn.q_proj", "lm_head"]},
    {"target_modules": r".*\.layers\.[01]\..*(q|v)_proj"},
    {"target_modules": r".*(q|k)_proj"},
    {"target_modules": "q_proj"},
    {"target_modules": "all-linear"},
    {"target_modules": "ALL-LINEAR", "task_type": "SEQ_CLS"},
    {"target_modules": "all-linear", "exclude_modules": ["down_proj", "model.layers.0.self_attn.q_proj"]},
    {"target_modules": "all-linear", "exclude_modules": r".*mlp.*"},
    {"target_modules": ["q_proj", "v_proj", "lm_head"], "modules_to_save": ["lm_head", "embed_tokens"]},
    {"target_modules": ["q_proj", "o_proj"], "modules_to_save": ["self_attn"]},
    {"target_modules": ["q_proj"], "exclude_modules": []},
    {"target_modules": ["q_proj"], "exclude_modules": ""},
    {"target_modules": None},
    {"target_modules": []},
]

cases = []
for cfg in configs:
    cases.append({"config": cfg, "want": [check_target_module_exists(cfg, n, linear[n]) for n in names]})

patterns = [
    ["v_proj"], ["q_proj", "model.layers.0.self_attn.q_proj"], ["model.layers.0.self_attn.q_proj", "q_proj"],
    [r"layers\.1\..*"], [r"mlp\.(gate|up)_proj"], ["proj"], [r".*proj"], ["self_attn.q_proj"], [r"\d+\.self_attn\.q_proj"],
    ["layers.1.mlp.down_proj", "down_proj"], ["o_proj|v_proj"], [r"[qk]_proj"],
]
pcases = []
for keys in patterns:
    pcases.append({"keys": keys, "want": [get_pattern_key(keys, n) for n in names]})

print(json.dumps({"names": names, "linear": [linear[n] for n in names], "targets": cases, "patterns": pcases}, indent=1))
