#!/usr/bin/env python3
"""Independent safetensors reader/writer for tests/test_checkpoint.c (numpy + json only).

  safetensors_interop.py check FILE        read a file egoworld wrote, check every value
  safetensors_interop.py write FILE        write a reference file for egoworld to read
  safetensors_interop.py torch-check FILE  the same check through the real safetensors library
  safetensors_interop.py torch-write FILE  the reference file through the real safetensors library
Exit status 0 and "OK" on success; any mismatch raises.
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "U8": np.uint8}

# What egoworld's test writes (keep in sync with write_interop_file in test_checkpoint.c).
EXPECTED = {
    "enc.conv1.weight": ([2, 3, 1, 2], np.arange(12, dtype=np.float32) * np.float32(0.5) - np.float32(3)),
    "bias": ([3], np.array([1.5, -2.25, 1e-30], dtype=np.float32)),
    "na\u00efve \"quoted\"\\name": ([1], np.array([42.0], dtype=np.float32)),
    "empty": ([2, 0], np.zeros(0, dtype=np.float32)),
}
EXPECTED_META = {"config": '{"width": 64, "name": "wm"}', "step": "1234", "note": "\u00fcn\u00efcode \u2713"}


def parse(path):
    raw = open(path, "rb").read()
    assert len(raw) >= 8, "short file"
    (n,) = struct.unpack("<Q", raw[:8])
    assert 8 + n <= len(raw), "header past end"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors, spans = {}, []
    for name, info in header.items():
        assert set(info) == {"dtype", "shape", "data_offsets"}, info
        b, e = info["data_offsets"]
        dt = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
        arr = np.frombuffer(data[b:e], dtype=dt)
        assert arr.size == int(np.prod(info["shape"], dtype=np.int64)), name
        tensors[name] = (info["dtype"], list(info["shape"]), arr.reshape(info["shape"]))
        spans.append((b, e))
    spans.sort()
    at = 0
    for b, e in spans:
        assert b == at, "offsets not contiguous"
        at = e
    assert at == len(data), "data section not covered exactly"
    return n, meta, tensors


def check(path):
    n, meta, tensors = parse(path)
    assert (8 + n) % 8 == 0, "header not padded to 8 bytes"
    assert meta == EXPECTED_META, meta
    assert set(tensors) == set(EXPECTED), sorted(tensors)
    for name, (shape, values) in EXPECTED.items():
        dtype, got_shape, arr = tensors[name]
        assert dtype == "F32" and got_shape == shape, (name, dtype, got_shape)
        assert np.array_equal(arr.reshape(-1).view(np.uint32), values.view(np.uint32)), name
    print("OK")


def reference_tensors():
    bf = np.array([1.5, -3.0], dtype=np.float32).view(np.uint32) >> 16
    return {
        "a": ("F32", [2, 2], np.array([1, 2, 3, 4], dtype="<f4")),
        "h": ("F16", [3], np.array([0.5, -2, 65504], dtype="<f2")),
        "d": ("F64", [2], np.array([1 / 3, -1e10], dtype="<f8")),
        "bf": ("BF16", [2], bf.astype("<u2")),
        "i": ("I64", [1], np.array([7], dtype="<i8")),
        "\u00fcmlaut.w": ("F32", [1], np.array([0.125], dtype="<f4")),
    }


def write(path):
    header, chunks, at = {"__metadata__": {"format": "pt", "k\u00e9y": "v"}}, [], 0
    for name in sorted(reference_tensors()):  # data order differs from egoworld's insertion order
        dtype, shape, arr = reference_tensors()[name]
        b = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(b)]}
        chunks.append(b)
        at += len(b)
    text = json.dumps(header).encode("utf-8")  # ensure_ascii: names arrive \u-escaped
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
    print("OK")


def torch_check(path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        assert f.metadata() == EXPECTED_META, f.metadata()
    assert set(tensors) == set(EXPECTED), sorted(tensors)
    for name, (shape, values) in EXPECTED.items():
        t = tensors[name]
        assert t.dtype == torch.float32 and list(t.shape) == shape, name
        assert np.array_equal(t.reshape(-1).numpy().view(np.uint32), values.view(np.uint32)), name
    print("OK")


def torch_write(path):
    import torch
    from safetensors.torch import save_file

    out = {}
    for name, (dtype, shape, arr) in reference_tensors().items():
        if dtype == "BF16":
            t = torch.tensor([1.5, -3.0], dtype=torch.bfloat16)
        else:
            t = torch.from_numpy(arr.copy()).reshape(shape)
        out[name] = t
    save_file(out, path, metadata={"format": "pt", "k\u00e9y": "v"})
    print("OK")


if __name__ == "__main__":
    cmd, path = sys.argv[1], sys.argv[2]
    {"check": check, "write": write, "torch-check": torch_check, "torch-write": torch_write}[cmd](path)
