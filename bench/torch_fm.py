#!/usr/bin/env python3
"""torch_fm.py - the deterministic world-model training step of DESIGN.md section 5 in PyTorch (CPU or CUDA).

Same architecture, batch and thread count as ew_bench_nn (models/nnbench.c), for a side-by-side
figure: forward, backward and one Adam update per step; prints one JSON line with
torch_fm_train_samples_per_s = batch / median step time. Exits 0 with a "skip" line when
PyTorch is not installed.

With --device cuda everything lives on the GPU and each timed step ends with
torch.cuda.synchronize(); TF32 is off for matmul and cuDNN unless --tf32 (PyTorch enables it for
cuDNN convolutions by default, which would not be an fp32 comparison).

Usage: torch_fm.py [--threads N] [--steps N] [--warmup N] [--batch N] [--device cpu|cuda] [--tf32]
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--tf32", action="store_true")
    args = ap.parse_args()
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError:
        print(json.dumps({"skip": "PyTorch (python3-torch) is not installed"}))
        return 0

    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"skip": "PyTorch has no CUDA device"}))
        return 0
    dev = torch.device(args.device)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    B, NCOND, H, W, NF = args.batch, 20, 117, 24, 64
    HH, HW = 14, 3
    HID = 4 * NF * HH * HW  # 256 x 14 x 3 = 10752

    def mlp(n_in):
        return nn.Sequential(nn.Linear(n_in, 4 * NF), nn.LeakyReLU(0.2),
                             nn.Linear(4 * NF, 4 * NF), nn.LeakyReLU(0.2),
                             nn.Linear(4 * NF, HID))

    class FM(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc1 = nn.Conv2d(3 * NCOND, NF, 4, 2, 1)           # 117x24 -> 58x12
            self.enc2 = nn.Conv2d(NF, 2 * NF, 4, 2, 1)              # 58x12 -> 29x6
            self.enc3 = nn.Conv2d(2 * NF, 4 * NF, 4, 2, 1)          # 29x6 -> 14x3
            self.drop = nn.Dropout2d(0.1)
            self.senc = mlp(5 * NCOND)
            self.aenc = mlp(2)
            self.res1 = nn.Conv2d(4 * NF, NF, 1)
            self.res2 = nn.Conv2d(NF, NF, 3, 1, 1)
            self.res3 = nn.Conv2d(NF, 4 * NF, 1)
            self.dec1 = nn.ConvTranspose2d(4 * NF, 2 * NF, 4, 2, 1, output_padding=(1, 0))  # -> 29x6
            self.dec2 = nn.ConvTranspose2d(2 * NF, NF, 4, 2, 1)                           # -> 58x12
            self.dec3 = nn.ConvTranspose2d(NF, 3, 4, 2, 1, output_padding=(1, 0))         # -> 117x24
            self.head = nn.Sequential(nn.Linear(HID, 4 * NF), nn.LeakyReLU(0.2),
                                      nn.Linear(4 * NF, 4 * NF), nn.LeakyReLU(0.2),
                                      nn.Linear(4 * NF, 5))

        def forward(self, x, s, a):
            lr = lambda t: F.leaky_relu(t, 0.2)
            h = self.drop(lr(self.enc1(x)))
            h = self.drop(lr(self.enc2(h)))
            h = self.drop(lr(self.enc3(h)))
            h = h + self.senc(s).view(-1, 4 * NF, HH, HW) + self.aenc(a).view(-1, 4 * NF, HH, HW)
            r = lr(self.res1(h))
            r = lr(self.res2(r))
            h = h + self.res3(r)
            d = lr(self.dec1(h))
            d = lr(self.dec2(d))
            img = torch.sigmoid(self.dec3(d) + x[:, 3 * (NCOND - 1):])
            ds = self.head(h.flatten(1))
            return img, s[:, 5 * (NCOND - 1):] + ds

    model = FM().to(dev)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(B, 3 * NCOND, H, W, generator=g)
    s = torch.randn(B, 5 * NCOND, generator=g)
    a = torch.randn(B, 2, generator=g)
    ti = torch.rand(B, 3, H, W, generator=g)
    ts = torch.randn(B, 5, generator=g)
    x, s, a, ti, ts = (t.to(dev) for t in (x, s, a, ti, ts))

    def step():
        opt.zero_grad(set_to_none=False)
        img, st = model(x, s, a)
        loss = F.mse_loss(img, ti) + F.mse_loss(st, ts)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({"torch_fm_train_samples_per_s": B / med, "step_ms": med * 1e3,
                      "threads": args.threads, "batch": B, "torch": torch.__version__,
                      "device": args.device, "tf32": args.tf32,
                      "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else "",
                      "mkldnn": bool(torch.backends.mkldnn.is_available()),
                      "cores": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
