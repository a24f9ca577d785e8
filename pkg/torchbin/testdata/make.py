#!/usr/bin/python3
"""Make the torchbin test checkpoints (run with Debian's python3-torch 1.13).

    /usr/bin/python3 pkg/torchbin/testdata/make.py [OUTDIR]

Deterministic: fixed seeds, a fixed string-hash seed, and zip entries with
fixed dates. Every
checkpoint X.bin saved with torch.save comes with X.ref.safetensors, the
same tensors (under the names torchbin gives them) written by hand in the
safetensors format, contiguous and little-endian. The files under evil/ are
built opcode by opcode and are never unpickled here.
"""

import collections
import io
import json
import os
import shutil
import struct
import sys
import zipfile

# TorchScript orders class attributes by string hash: fix the hash seed.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import torch  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def path(*parts):
    p = os.path.join(OUT, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


def tensor_bytes(t):
    t = t.detach().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def write_ref(name, tensors):
    """Write [(name, dtype, shape, bytes)] as a safetensors file, in order."""
    header, blobs, off = {}, [], 0
    for key, dt, shape, data in tensors:
        header[key] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path(name), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def ref(name, named):
    """Reference file for [(name, tensor)]."""
    write_ref(name, [(k, DTYPES[t.dtype], t.shape, tensor_bytes(t)) for k, t in named])


def save(obj, *name, **kw):
    torch.save(obj, path(*name), **kw)


def randn(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


# --- torch.save checkpoints -------------------------------------------------

def plain():
    # A module's state dict (OrderedDict with _metadata, a 0-dim int64
    # buffer), saved through a file object: top folder "archive".
    torch.manual_seed(1)
    m = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    sd = m.state_dict()
    buf = io.BytesIO()
    torch.save(sd, buf)
    with open(path("plain.bin"), "wb") as f:
        f.write(buf.getvalue())
    ref("plain.ref.safetensors", list(sd.items()))
    # The first half of it: a download cut short.
    with open(path("truncated.bin"), "wb") as f:
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])


def dtypes():
    torch.manual_seed(2)
    sd = collections.OrderedDict()
    sd["bf16"] = randn(3, 5, dtype=torch.bfloat16)
    sd["f16"] = randn(4, 3, dtype=torch.float16)
    sd["f32"] = randn(2, 2)
    sd["f64"] = randn(3, 2, dtype=torch.float64)
    sd["i64"] = torch.arange(-3, 3, dtype=torch.int64)
    sd["i32"] = torch.arange(-4, 4, dtype=torch.int32).reshape(2, 4)
    sd["i16"] = torch.tensor([-300, 0, 300], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, -1, 0, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 1, 254, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(3.5)
    save(sd, "dtypes.bin")
    ref("dtypes.ref.safetensors", list(sd.items()))


def views():
    torch.manual_seed(3)
    base = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    emb = randn(10, 4)
    sd = collections.OrderedDict()
    sd["base"] = base
    sd["row_slice"] = base[2:4]                  # offset 16, contiguous
    sd["col_slice"] = base[:, 2:5]               # offset 2, stride (8, 1)
    sd["transposed"] = base.t()                  # stride (1, 8)
    sd["step"] = base.reshape(-1)[1::5]          # offset 1, stride 5
    sd["element"] = base[3, 4]                   # a 0-dim view at offset 28
    sd["empty"] = base[:0]                       # no elements
    sd["embed.weight"] = emb                     # tied weights: one tensor, two names
    sd["lm_head.weight"] = emb
    sd["position_ids"] = torch.arange(12).expand((1, -1))   # stride (0, 1)
    sd["broadcast"] = randn(3, 1).expand(3, 5)              # stride (1, 0)
    sd["param"] = torch.nn.Parameter(randn(2, 2))           # _rebuild_parameter
    sd["half_view"] = randn(4, 6, dtype=torch.float16)[1:, ::2]
    sd["bf16_t"] = randn(3, 5, dtype=torch.bfloat16).t()
    save(sd, "views.bin")
    ref("views.ref.safetensors", list(sd.items()))


def nested():
    torch.manual_seed(4)
    inner = collections.OrderedDict()
    inner["model.layer.weight"] = randn(3, 3)
    inner["model.layer.bias"] = randn(3)
    ckpt = {
        "epoch": 3,
        "global_step": 42,
        "pytorch-lightning_version": "1.9.0",
        "state_dict": inner,
        "optimizer_states": [{"state": {0: {"step": torch.tensor(42.0), "exp_avg": randn(3, 3)}},
                              "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}],
        "lr_schedulers": [],
        "hyper_parameters": {"lr": 1e-3, "name": "tiny"},
    }
    save(ckpt, "nested.bin")
    ref("nested.ref.safetensors", list(inner.items()))

    tree = collections.OrderedDict()
    tree["encoder"] = {"embed": randn(4, 2), "layers": [{"w": randn(2, 2)}, {"w": randn(2, 2)}]}
    tree["decoder"] = collections.OrderedDict(head=(randn(2), randn(2)))
    tree["step"] = 7
    tree[3] = randn(1)
    save(tree, "tree.bin")
    ref("tree.ref.safetensors", [
        ("encoder.embed", tree["encoder"]["embed"]),
        ("encoder.layers.0.w", tree["encoder"]["layers"][0]["w"]),
        ("encoder.layers.1.w", tree["encoder"]["layers"][1]["w"]),
        ("decoder.head.0", tree["decoder"]["head"][0]),
        ("decoder.head.1", tree["decoder"]["head"][1]),
        ("3", tree[3]),
    ])

    # Two tensors whose joined names collide.
    save({"a.b": randn(1), "a": {"b": randn(1)}}, "collide.bin")


def renamed():
    # Saved as other_name.bin (top folder "other_name"), then renamed.
    torch.manual_seed(5)
    sd = collections.OrderedDict(weight=randn(2, 3), bias=randn(2))
    save(sd, "other_name.bin")
    os.replace(path("other_name.bin"), path("renamed.bin"))
    ref("renamed.ref.safetensors", list(sd.items()))


def proto4():
    # Protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL.
    torch.manual_seed(6)
    sd = collections.OrderedDict(a=randn(2, 2), b=randn(3, dtype=torch.bfloat16))
    save(sd, "proto4.bin", pickle_protocol=4)
    ref("proto4.ref.safetensors", list(sd.items()))


def sharded():
    torch.manual_seed(7)
    shards = [
        collections.OrderedDict([("model.embed_tokens.weight", randn(8, 4)),
                                 ("model.layers.0.mlp.up_proj.weight", randn(6, 4))]),
        collections.OrderedDict([("model.layers.0.mlp.down_proj.weight", randn(4, 6)),
                                 ("lm_head.weight", randn(8, 4))]),
    ]
    weight_map, total, named = {}, 0, []
    for i, sd in enumerate(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin"
        save(sd, "sharded", name)
        for k, t in sd.items():
            weight_map[k] = name
            total += t.numel() * t.element_size()
            named.append((k, t))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(path("sharded", "pytorch_model.bin.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")
    ref("sharded.ref.safetensors", named)


def adapter():
    # A PEFT LoRA adapter as PEFT < 0.7 saved it.
    torch.manual_seed(8)
    sd = collections.OrderedDict()
    for layer in range(2):
        for proj in ("q_proj", "v_proj"):
            pre = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
            sd[pre + ".lora_A.weight"] = randn(4, 16)
            sd[pre + ".lora_B.weight"] = randn(16, 4) * 0.01
    save(sd, "adapter", "adapter_model.bin")
    config = {
        "auto_mapping": None, "base_model_name_or_path": "tiny-llama", "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "layers_pattern": None, "layers_to_transform": None, "lora_alpha": 8, "lora_dropout": 0.0,
        "modules_to_save": None, "peft_type": "LORA", "r": 4, "revision": None,
        "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM",
    }
    with open(path("adapter", "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    ref("adapter.ref.safetensors", list(sd.items()))


def legacy():
    torch.manual_seed(9)
    save({"w": randn(2)}, "legacy.bin", _use_new_zipfile_serialization=False)
    # The legacy format keys storages by their address: rename the key "0"
    # (in both pickles that name it) so the file is the same on every run.
    with open(path("legacy.bin"), "rb") as f:
        data = f.read()
    at = data.index(b"FloatStorage\nq\x04X") + len(b"FloatStorage\nq\x04X")
    n = struct.unpack("<I", data[at:at + 4])[0]
    key = data[at - 1:at + 4 + n]
    with open(path("legacy.bin"), "wb") as f:
        f.write(data.replace(key, b"X" + struct.pack("<I", 1) + b"0"))


def torchscript():
    torch.manual_seed(10)
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1)), path("torchscript.pt"))


# --- hand-built archives ----------------------------------------------------

class Pickle:
    """Writes pickle opcodes (protocol 2 unless told)."""

    def __init__(self, proto=2):
        self.b = bytearray(b"\x80" + bytes([proto]))

    def op(self, raw):
        self.b += raw
        return self

    def glob(self, module, name):
        return self.op(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def str(self, s):
        e = s.encode()
        return self.op(b"X" + struct.pack("<I", len(e)) + e)

    def int(self, n):
        return self.op(b"J" + struct.pack("<i", n))

    def ints(self, xs):
        self.op(b"(")
        for x in xs:
            self.int(x)
        return self.op(b"t")

    def storage(self, typ, key, numel, module="torch"):
        self.op(b"(").str("storage").glob(module, typ).str(key).str("cpu").int(numel).op(b"t")
        return self.op(b"Q")

    def odict(self):
        return self.glob("collections", "OrderedDict").op(b")R")

    def tensor(self, fn, typ, key, numel, offset, shape, stride, *extra):
        """extra: callables appending the trailing arguments."""
        self.glob("torch._utils", fn).op(b"(").storage(typ, key, numel).int(offset)
        self.ints(shape).ints(stride).op(b"\x89").odict()
        for e in extra:
            e(self)
        return self.op(b"tR")

    def bytes(self):
        return bytes(self.b + b".")


def write_zip(name, entries, folder="archive", deflate=()):
    """Write entries {name: bytes} under folder/, stored (or deflated)."""
    with zipfile.ZipFile(path(name), "w") as z:
        for entry, data in entries.items():
            info = zipfile.ZipInfo(f"{folder}/{entry}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if entry in deflate else zipfile.ZIP_STORED
            z.writestr(info, data)


def bigendian():
    # A torch 2.x archive written on a big-endian machine.
    torch.manual_seed(11)
    w, h = randn(2, 3), randn(4, dtype=torch.float16)
    p = Pickle().op(b"}(").str("w").tensor("_rebuild_tensor_v2", "FloatStorage", "0", 6, 0, (2, 3), (3, 1))
    p.str("h").tensor("_rebuild_tensor_v2", "HalfStorage", "1", 4, 0, (4,), (1,)).op(b"u")
    be = lambda t: t.numpy().byteswap().tobytes()
    write_zip("bigendian.bin", {"data.pkl": p.bytes(), "byteorder": b"big", "data/0": be(w),
                                "data/1": be(h), "version": b"3\n"})
    ref("bigendian.ref.safetensors", [("w", w), ("h", h)])


def torch2():
    # What torch 2.x writes beyond torch 1.13: _rebuild_tensor_v3 over an
    # UntypedStorage for the newer dtypes, the metadata argument,
    # _rebuild_from_type_v2 and _rebuild_parameter_with_state; plus a
    # deflated storage, bytes, sets, torch.Size and torch.device values.
    torch.manual_seed(12)
    w = randn(2, 3)
    f8 = torch.randint(0, 256, (2, 4), dtype=torch.uint8)     # float8_e4m3fn bytes
    u16 = torch.randint(0, 65535, (3,), dtype=torch.int32).to(torch.int16)
    pw = randn(3)
    z = randn(4, 4)
    empty = lambda p: p.op(b"}")
    p = Pickle().op(b"}(")
    p.str("w").tensor("_rebuild_tensor_v2", "FloatStorage", "0", 6, 0, (2, 3), (3, 1), empty)
    p.str("f8").glob("torch._utils", "_rebuild_tensor_v3").op(b"(").storage("UntypedStorage", "1", 8, "torch.storage")
    p.int(0).ints((2, 4)).ints((4, 1)).op(b"\x89").odict().glob("torch", "float8_e4m3fn").op(b"tR")
    p.str("u16").glob("torch._utils", "_rebuild_tensor_v3").op(b"(").storage("UntypedStorage", "2", 6)
    p.int(0).ints((3,)).ints((1,)).op(b"\x89").odict().glob("torch", "uint16").op(b"tR")
    # Parameter(w[::2]) with a Python attribute, the way Parameter pickles it.
    p.str("param").glob("torch._tensor", "_rebuild_from_type_v2").op(b"(")
    p.glob("torch._utils", "_rebuild_parameter_with_state").glob("torch.nn.parameter", "Parameter").op(b"(")
    p.tensor("_rebuild_tensor_v2", "FloatStorage", "3", 3, 0, (3,), (1,)).op(b"\x88").odict().op(b"}t")
    p.op(b"}").str("tag").str("lora").op(b"stR")
    p.str("zipped").tensor("_rebuild_tensor_v2", "FloatStorage", "4", 16, 0, (4, 4), (4, 1))
    p.str("bytes").glob("_codecs", "encode").op(b"(").str("\u00ff\u0000abc").str("latin1").op(b"tR")
    p.str("size").glob("torch", "Size").op(b"(").ints((2, 3)).op(b"tR")
    p.str("device").glob("torch", "device").op(b"(").str("cuda").int(0).op(b"tR")
    p.str("set").glob("builtins", "set").op(b"(](").int(1).int(2).op(b"etR")
    p.op(b"u")
    entries = {
        "data.pkl": p.bytes(), ".format_version": b"1", ".storage_alignment": b"64",
        "byteorder": b"little", "data/0": tensor_bytes(w), "data/1": tensor_bytes(f8),
        "data/2": tensor_bytes(u16), "data/3": tensor_bytes(pw), "data/4": tensor_bytes(z),
        "version": b"3\n", ".data/serialization_id": b"0123456789",
    }
    write_zip("torch2.bin", entries, deflate={"data/4"})
    write_ref("torch2.ref.safetensors", [
        ("w", "F32", (2, 3), tensor_bytes(w)),
        ("f8", "F8_E4M3", (2, 4), tensor_bytes(f8)),
        ("u16", "U16", (3,), tensor_bytes(u16)),
        ("param", "F32", (3,), tensor_bytes(pw)),
        ("zipped", "F32", (4, 4), tensor_bytes(z)),
    ])


def evil():
    """Pickles that run code when torch.load(weights_only=False) reads them."""
    torch.manual_seed(13)
    w = tensor_bytes(randn(2))

    def arch(name, pkl, extra=None):
        entries = {"data.pkl": pkl, "data/0": w, "version": b"3\n"}
        entries.update(extra or {})
        write_zip(os.path.join("evil", name), entries)

    # os.system("echo pwned") via GLOBAL + REDUCE.
    arch("os_system.bin", Pickle().glob("os", "system").op(b"(").str("echo pwned").op(b"tR").bytes())
    # posix.system after a valid tensor: refused mid-dict.
    p = Pickle().op(b"}(").str("w").tensor("_rebuild_tensor_v2", "FloatStorage", "0", 2, 0, (2,), (1,))
    p.str("x").glob("posix", "system").op(b"(").str("id").op(b"tR").op(b"u")
    arch("posix_system.bin", p.bytes())
    # builtins.eval through protocol 4's STACK_GLOBAL.
    p = Pickle(4).op(b"\x8c\x08builtins\x8c\x04eval\x93").op(b"(").str("__import__('os').getcwd()").op(b"tR")
    arch("eval.bin", p.bytes())
    # An unknown class: NEWOBJ then BUILD with attributes.
    p = Pickle().glob("__main__", "Exploit").op(b")\x81").op(b"}").str("cmd").str("rm -rf /").op(b"sb")
    arch("newobj_build.bin", p.bytes())
    # INST names the class inline.
    arch("inst.bin", Pickle().op(b"(").op(b"isubprocess\nPopen\n").bytes())
    # EXT1: a global from copyreg's extension registry.
    arch("ext.bin", Pickle().op(b"\x82\x01").op(b")R").bytes())
    # Allowed globals used to instantiate: OBJ, REDUCE on a storage type.
    arch("obj.bin", Pickle().op(b"(").glob("collections", "OrderedDict").op(b"o").bytes())
    arch("reduce_storage.bin", Pickle().glob("torch", "FloatStorage").op(b")R").bytes())
    # A persistent id that is not a storage.
    arch("persid.bin", Pickle().op(b"(").str("module").str("os").op(b"tQ").bytes())
    # A module torch blocks even for allow-listed names (nt.system).
    arch("nt_system.bin", Pickle().glob("nt", "system").op(b"(").str("calc").op(b"tR").bytes())


def read_safetensors(p):
    """The tensors of a safetensors file, in file order (a small reader)."""
    names = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}
    with open(p, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    out = collections.OrderedDict()
    for k, v in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = v["data_offsets"]
        t = torch.frombuffer(bytearray(raw[8 + n + a:8 + n + b]), dtype=names[v["dtype"]])
        out[k] = t.reshape(v["shape"]).clone()
    return out


def tiny():
    # The repository's examples (examples/tiny-llama, examples/tiny-lora) as
    # torch.save writes them, so that every tool's output from these files
    # can be compared with its output from the safetensors originals: the
    # model sharded in two, with k_proj and v_proj of layer 0 views of one
    # fused storage and two weights of layer 1 saved transposed (strided
    # views); the adapter as PEFT < 0.7 saved adapter_model.bin.
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "examples")
    model = read_safetensors(os.path.join(root, "tiny-llama", "model.safetensors"))
    order = ["model.embed_tokens.weight"]
    for layer in range(2):
        pre = f"model.layers.{layer}."
        order += [pre + n + ".weight" for n in (
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm")]
    order += ["model.norm.weight", "lm_head.weight"]
    assert sorted(order) == sorted(model)
    k, v = "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight"
    fused = torch.cat([model[k], model[v]])
    views = {k: fused[:model[k].shape[0]], v: fused[model[k].shape[0]:]}
    for name in ("model.layers.1.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        views[name] = model[name].t().contiguous().t()
        assert not views[name].is_contiguous()
    split = order.index("model.layers.1.self_attn.q_proj.weight")
    weight_map, total = {}, 0
    for i, names in enumerate((order[:split], order[split:])):
        sd = collections.OrderedDict((n, views.get(n, model[n])) for n in names)
        shard = f"pytorch_model-{i + 1:05d}-of-00002.bin"
        save(sd, "tiny-llama", shard)
        for n, t in sd.items():
            weight_map[n] = shard
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(path("tiny-llama", "pytorch_model.bin.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")
    for name in ("config.json", "generation_config.json"):
        shutil.copy(os.path.join(root, "tiny-llama", name), path("tiny-llama", name))
    save(read_safetensors(os.path.join(root, "tiny-lora", "adapter_model.safetensors")), "tiny-lora", "adapter_model.bin")
    shutil.copy(os.path.join(root, "tiny-lora", "adapter_config.json"), path("tiny-lora", "adapter_config.json"))


def main():
    for d in ("evil", "sharded", "adapter", "tiny-llama", "tiny-lora"):
        shutil.rmtree(os.path.join(OUT, d), ignore_errors=True)
    plain()
    dtypes()
    views()
    nested()
    renamed()
    proto4()
    sharded()
    adapter()
    legacy()
    torchscript()
    bigendian()
    torch2()
    evil()
    tiny()


if __name__ == "__main__":
    main()
