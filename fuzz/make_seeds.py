#!/usr/bin/env python3
"""Writes the seed corpora of the safetensors and NGSIM fuzz targets (fuzz/corpus/<name>/seed-*).
Small valid files of every shape the readers accept, plus near-misses; the fuzzers' own
findings are added next to them as crash-*/regress-* files. Run from the repository root."""
import json
import os
import struct

def st(tensors, meta=None, pad=True, raw_header=None):
    """tensors: list of (name, dtype, shape, bytes)."""
    hdr = {}
    if meta is not None:
        hdr["__metadata__"] = meta
    data = b""
    for name, dtype, shape, blob in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = raw_header if raw_header is not None else json.dumps(hdr, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data

def f32(*v): return struct.pack("<%df" % len(v), *v)
def f64(*v): return struct.pack("<%dd" % len(v), *v)
def f16(*v): return struct.pack("<%de" % len(v), *v)
def bf16(*v): return b"".join(struct.pack("<f", x)[2:] for x in v)
def i32(*v): return struct.pack("<%di" % len(v), *v)

SEEDS_ST = {
    "f32_small": st([("enc.w", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6)), ("enc.b", "F32", [3], f32(0, -1, 2.5))],
                    meta={"format": "pt", "step": "12"}),
    "dtypes": st([("a", "F16", [2], f16(1.5, -2)), ("b", "BF16", [2, 1], bf16(3.0, 0.25)),
                  ("c", "F64", [1], f64(7.0)), ("d", "I32", [2], i32(1, -1)), ("e", "U8", [3], b"\x01\x02\x03"),
                  ("f", "BOOL", [1], b"\x01"), ("g", "I64", [1], struct.pack("<q", 5))]),
    "scalar_empty": st([("s", "F32", [], f32(3.0)), ("z", "F32", [0, 4], b""), ("t", "F32", [1, 1, 1, 1], f32(2.0))]),
    "meta_only": st([], meta={"k": "v", "unicode": "\u00e9\u4e2d"}),
    "nopad": st([("x", "F32", [1], f32(1.0))], pad=False),
    "opt_state": st([("w", "F32", [2], f32(1, 2)), ("opt.m.w", "F32", [2], f32(0, 0)),
                     ("opt.v.w", "F32", [2], f32(0, 0))], meta={"optimizer": "adam", "t": "3"}),
    "escapes": st([("we\\\"ird\\u0041", "F32", [1], f32(1.0))],
                  raw_header=b'{"we\\"ird\\u0041":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'),
    "bad_overlap": st([], raw_header=b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                     b'"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}') + f32(1, 2),
    "bad_shape": st([], raw_header=b'{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}')
                 + f32(1),
    "nested": st([], raw_header=b'{"__metadata__":{"a":"b"},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],'
                                b'"extra":[[[[1]]]]}}') + f32(1),
}

ROWS = [
    # Vehicle_ID Frame_ID Total_Frames Global_Time Local_X Local_Y Global_X Global_Y v_Length v_Width
    # v_Class v_Vel v_Acc Lane_ID Preceding Following Space_Headway Time_Headway
    (1, 10, 5, 1000, 18.0, 100.0, 18.0, 100.0, 15.0, 6.0, 2, 40.0, 0.5, 2, 0, 2, 0.0, 0.0),
    (1, 11, 5, 1100, 18.1, 104.0, 18.1, 104.0, 15.0, 6.0, 2, 40.1, 0.5, 2, 0, 2, 0.0, 0.0),
    (1, 12, 5, 1200, 18.2, 108.0, 18.2, 108.0, 15.0, 6.0, 2, 40.2, 0.4, 2, 0, 2, 0.0, 0.0),
    (1, 13, 5, 1300, 18.4, 112.1, 18.4, 112.1, 15.0, 6.0, 2, 40.3, 0.2, 2, 0, 2, 0.0, 0.0),
    (1, 15, 5, 1500, 18.9, 120.2, 18.9, 120.2, 15.0, 6.0, 2, 40.5, 0.0, 2, 0, 2, 0.0, 0.0),
    (2, 10, 3, 1000, 6.0, 60.0, 6.0, 60.0, 40.0, 8.5, 3, 30.0, -1.0, 1, 1, 0, 40.0, 1.3),
    (2, 11, 3, 1100, 6.0, 63.0, 6.0, 63.0, 40.0, 8.5, 3, 29.9, -1.0, 1, 1, 0, 45.0, 1.5),
    (2, 12, 3, 1200, 6.0, 66.0, 6.0, 66.0, 40.0, 8.5, 3, 29.8, -1.0, 1, 1, 0, 42.0, 1.4),
    (7, 11, 2, 1100, 42.0, 10.0, 42.0, 10.0, 7.0, 3.0, 1, 0.0, 0.0, 5, 0, 0, 0.0, 9999.99),
    (7, 12, 2, 1200, 42.0, 10.0, 42.0, 10.0, 7.0, 3.0, 1, 0.0, 0.0, 5, 0, 0, 0.0, 9999.99),
]
COLS = ("Vehicle_ID Frame_ID Total_Frames Global_Time Local_X Local_Y Global_X Global_Y v_Length v_Width "
        "v_Class v_Vel v_Acc Lane_ID Preceding Following Space_Headway Time_Headway").split()

def text_rows(rows, sep="  "):
    return "".join(sep.join(str(v) for v in r) + "\n" for r in rows)

SEEDS_NG = {
    # first byte: loader options (bit 0: no smoothing; bits 1-3: n_main)
    "text": b"\x00" + text_rows(ROWS).encode(),
    "text_nosmooth_3lanes": b"\x07" + text_rows(ROWS).encode(),
    "text_commas_crlf": b"\x00" + text_rows(ROWS, ",").replace("\n", "\r\n").encode(),
    "csv_header": b"\x00" + (",".join(COLS) + ",Location\n" + "".join(
        ",".join(str(v) for v in r) + ",us-101\n" for r in ROWS)).encode(),
    "csv_reordered": b"\x01" + ("frame_id,VEHICLE_ID,local_y,Local_X,v_length,v_width,v_class,v_vel,v_acc,lane_id\n" +
                                "".join("%d,%d,%g,%g,%g,%g,%d,%g,%g,%d\n" % (r[1], r[0], r[5], r[4], r[8], r[9], r[10],
                                                                          r[11], r[12], r[13]) for r in ROWS)).encode(),
    "bad_order": b"\x00" + text_rows([ROWS[1], ROWS[0]]).encode(),
    "bad_field": b"\x00" + text_rows(ROWS[:2]).replace("40.1", "4x.1").encode(),
    "blank_lines": b"\x00\n\n  \n" + text_rows(ROWS[:3]).encode() + b"\n\n",
}

def write(folder, seeds):
    os.makedirs(folder, exist_ok=True)
    for name, blob in seeds.items():
        with open(os.path.join(folder, "seed-" + name), "wb") as f:
            f.write(blob)

if __name__ == "__main__":
    write("fuzz/corpus/safetensors", SEEDS_ST)
    write("fuzz/corpus/ngsim", SEEDS_NG)
