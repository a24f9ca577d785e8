# Generates regex_cases.json: Python re.fullmatch and PEFT's pattern-key
# rule re.match(r"(.*\.)?(" + p + r")$", name) for patterns Go must match
# identically. Run: python3 gen_regex_cases.py > regex_cases.json
import json, re
pats = [r".*\.(q|v)_proj", r"model\.layers\.\d+\.self_attn\.(q_proj|v_proj)", r"q_proj", r".*q_proj",
        r"(?i).*Q_PROJ", r".*layers\.(0|1)\..*proj", r"[qkv]_proj", r"[^.]*_proj", r".*\.\d{1,2}\..*",
        r".*\.\d{,1}\.mlp\..*", r"a{,}", r".*\Z", r"model.layers.1.self_attn.q_proj", r"self_attn\..*",
        r"(?P<x>q)_proj", r"down_proj|up_proj", r"[]q]_proj", r"[^]q]_proj", r"\u0071_proj", r"\U00000071_proj",
        r"mlp\.(gate|up)_proj", r"layers\.1\..*", r".*(?:attn|mlp)\.[a-z]+_proj", r"(?s:.)*q_proj",
        r"(?i:Q)_proj", r"\x71_proj", r"[\d]+", r".*\.1[0-9]\..*", r"(?-i:q)_proj", r"a{2}", r"\.", r"q_proj$", r"^q_proj"]
names = ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "model.layers.10.mlp.up_proj",
         "q_proj", "lm_head", "model.layers.1.mlp.down_proj", "a", "aa", "aaa", "model.layers.0.self_attn.Q_PROJ",
         "]_proj", "k_proj", "model.layers.1.self_attn.q_proj", "x.q_proj", "layers.1.q_proj", "12", "."]
cases = []
for p in pats:
    c = {"p": p}
    try:
        c["full"] = [bool(re.fullmatch(p, n)) for n in names]
    except re.error:
        c["full"] = None
    try:
        c["suffix"] = [bool(re.match(r"(.*\.)?(" + p + r")$", n)) for n in names]
    except re.error:
        c["suffix"] = None
    cases.append(c)
print(json.dumps({"names": names, "cases": cases}, indent=1))
