#!/usr/bin/env python3
"""Writes fuzz/corpus/TARGET/ seeds from ../shared/fixtures, ../shared/tokenizers and data/: small files, since
AFL++ mutates small inputs far faster. Run once from the repository root; the output is committed."""
import json, os, struct, glob

root = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(root)
shared = os.path.join(os.path.dirname(repo), "shared")
out = lambda t: os.makedirs(os.path.join(root, "corpus", t), exist_ok=True) or os.path.join(root, "corpus", t)

def put(target, name, data):
    with open(os.path.join(out(target), name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# safetensors: each fixture's 1-D tensors only (a few hundred bytes of data), header as the fixture has it.
for fx in sorted(glob.glob(os.path.join(shared, "fixtures", "*", "model.safetensors"))):
    d = open(fx, "rb").read()
    n = struct.unpack("<Q", d[:8])[0]
    h = json.loads(d[8:8 + n])
    small = {k: v for k, v in h.items() if k != "__metadata__" and len(v["shape"]) == 1 and v["shape"][0] <= 128}
    keep = dict(list(sorted(small.items()))[:3])
    header, data, off = {"__metadata__": h.get("__metadata__", {"format": "pt"})}, b"", 0
    for k, v in keep.items():
        b = d[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]]
        header[k] = {"dtype": v["dtype"], "shape": v["shape"], "data_offsets": [off, off + len(b)]}
        data += b; off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    put("safetensors", os.path.basename(os.path.dirname(fx)) + ".safetensors", struct.pack("<Q", len(hj)) + hj + data)
put("safetensors", "dtypes.safetensors", (lambda hj: struct.pack("<Q", len(hj)) + hj + bytes(range(22)))(
    json.dumps({"a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}, "b": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]},
                "c": {"dtype": "U8", "shape": [6], "data_offsets": [16, 22]}}, separators=(",", ":")).encode()))

# config: the fixtures' config.json (all three dialects).
for fx in sorted(glob.glob(os.path.join(shared, "fixtures", "*", "config.json"))):
    put("config", os.path.basename(os.path.dirname(fx)) + ".json", open(fx, "rb").read())
# ... and GSA and power attention, which have no fixture: small configs with every optional part switched on.
put("config", "gsa-tiny.json", json.dumps({"model_type": "gsa", "hidden_size": 64, "num_heads": 2, "num_kv_heads": 1, "num_hidden_layers": 2,
    "vocab_size": 97, "num_slots": 16, "hidden_ratio": 2, "use_short_conv": True, "conv_size": 3, "feature_map": "t2r",
    "statex_layer_num_slots": [16, 32]}))
put("config", "power-tiny.json", json.dumps({"model_type": "power_attention", "hidden_size": 64, "num_heads": 2, "head_dim": 8,
    "num_hidden_layers": 2, "vocab_size": 97, "degree": 2, "gating": True, "hidden_ratio": 2}))

# tokenizer: each shared tokenizer.json cut to its first 300 ids and the merges among them.
for tj in sorted(glob.glob(os.path.join(shared, "tokenizers", "*", "tokenizer.json"))):
    t = json.load(open(tj, encoding="utf-8"))
    m = t["model"]
    vocab = {k: v for k, v in m["vocab"].items() if v < 300}
    def parts(x): return x.split(" ", 1) if isinstance(x, str) else x
    m["merges"] = [x for x in m.get("merges", []) if all(p in vocab for p in parts(x)) and "".join(parts(x)) in vocab][:64]
    m["vocab"] = vocab
    t["added_tokens"] = [a for a in t.get("added_tokens", []) if a["id"] < 300]
    put("tokenizer", os.path.basename(os.path.dirname(tj)) + ".json", json.dumps(t, ensure_ascii=False))

# data: the first byte picks the reader (0 text, 1 jsonl, 2 parquet, 3 uint16 tokens, 4 npy).
for kind, name in [(0, "tiny.txt"), (1, "tiny.jsonl"), (2, "tiny.parquet"), (3, "tiny-uint16.bin"), (4, "tiny-int32.npy")]:
    put("data", name, bytes([kind]) + open(os.path.join(repo, "data", "examples", name), "rb").read())

# sweep: the repository's sweep files, and a small one of each axis kind.
for sw in sorted(glob.glob(os.path.join(repo, "data", "sweeps", "*.json"))):
    put("sweep", os.path.basename(sw), open(sw, "rb").read())
base = {"model": {"config": "config.json", "hidden_size": 32}, "recipe": "lpt", "pretrain": {"data": "synth:mqar", "steps": 2}}
put("sweep", "grid.json", json.dumps(dict(base, grid={"pretrain.seed": [0, 1], "pretrain.lr": [1e-3, 3e-3]})))
put("sweep", "zip.json", json.dumps(dict(base, zip={"pretrain.seed": [0, 1], "model.hidden_size": [32, 64]})))
put("sweep", "random.json", json.dumps(dict(base, random={"seed": 0, "count": 2, "axes": {"pretrain.lr": {"log_uniform": [1e-4, 1e-2]}, "pretrain.steps": {"int_range": [1, 4]}}})))

# checkpoint: the first byte picks the file (0 manifest.json, 1 metrics.jsonl, 2 cursor.json).
put("checkpoint", "manifest.json", b"\x00" + json.dumps({"step": 3, "files": {"trainer.json": {"bytes": 11, "sha256": "00" * 32}}, "written_utc": "2026-01-01T00:00:00Z"}).encode())
put("checkpoint", "metrics.jsonl", b"\x01" + b"".join(json.dumps({"step": s, "loss": 5.5 - s / 10, "lr": 1e-3}).encode() + b"\n" for s in range(1, 5)) + b'{"step": 5, "lo')
put("checkpoint", "cursor.json", b"\x02" + json.dumps({"format": "statex-cursor/1", "epoch": 0, "batches": 3, "source": {"file": 0, "offset": 128}}).encode())
