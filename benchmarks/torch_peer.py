#!/usr/bin/env python3
"""PyTorch on the bench report's workloads (W1-W10, T1 of BENCHMARKS.md), as the peer of
convpool's GPU path (--device cuda) or of its fast CPU path (--device cpu).

    python3 benchmarks/torch_peer.py --device cuda [--runs 21] [--json FILE] [--only W1,W9]
    python3 benchmarks/torch_peer.py --device cpu --threads 2

Inputs are made once on the device, outside the timer; each cell is timed after warm-up
calls, synchronised (torch.cuda.synchronize) so the clock stops when the device is done;
medians, min and max of --runs calls, in milliseconds. TF32 is off (convpool computes in full
FP32), cuDNN's benchmark mode is off (it is a documented source of run-to-run nondeterminism).
Prints one JSON row per workload in the bench report's format, backend "pytorch-cuda" or
"pytorch-cpu"; GFLOP/s and GB/s are computed as the report does.
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F

from peer_rows import row, timed

FORWARD = {"W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"}


def conv_flops(n, cin, cout, oh, ow, kh, kw, groups=1):
    return 2.0 * n * cout * oh * ow * (cin // groups) * kh * kw


def workloads(dev):
    """(id, op, make) where make() returns (callable, gflop, gb)."""
    r = lambda *s: torch.randn(*s, device=dev)

    def conv(n, cin, hw, cout, k, s, p):
        def make():
            x, w = r(n, cin, hw, hw), r(cout, cin, k, k)
            o = (hw + 2 * p - k) // s + 1
            return (lambda: F.conv2d(x, w, stride=s, padding=p)), conv_flops(n, cin, cout, o, o, k, k) / 1e9, None
        return make

    def convt():
        x, w = r(1, 64, 28, 28), r(64, 32, 4, 4)
        return (lambda: F.conv_transpose2d(x, w, stride=2, padding=1)), 2.0 * x.numel() * 32 * 16 / 1e9, None

    def maxpool():
        x = r(8, 64, 112, 112)
        out = 8 * 64 * 56 * 56
        return (lambda: F.max_pool2d(x, 3, 2, 1, return_indices=True)), None, (x.numel() + 2 * out) * 4 / 1e9

    def pool_unpool():
        x = r(8, 64, 112, 112)
        out = 8 * 64 * 56 * 56

        def f():
            v, i = F.max_pool2d(x, 2, 2, return_indices=True)
            return F.max_unpool2d(v, i, 2, output_size=(112, 112))
        return f, None, (2 * x.numel() + 2 * out) * 4 / 1e9

    def avgpool():
        x = r(8, 64, 112, 112)
        return (lambda: F.avg_pool2d(x, 2, 2)), None, (x.numel() + 8 * 64 * 56 * 56) * 4 / 1e9

    def conv_backward():
        x, w, gy = r(8, 64, 56, 56), r(64, 64, 3, 3), r(8, 64, 56, 56)

        def f():
            torch.nn.grad.conv2d_input(x.shape, w, gy, padding=1)
            torch.nn.grad.conv2d_weight(x, w.shape, gy, padding=1)
            gy.sum((0, 2, 3))
        return f, 2 * conv_flops(8, 64, 64, 56, 56, 3, 3) / 1e9, None

    def convt_backward():
        x = r(1, 64, 28, 28).requires_grad_()
        w = r(64, 32, 4, 4).requires_grad_()
        b = torch.zeros(32, device=dev, requires_grad=True)
        gy = r(1, 32, 56, 56)

        def f():
            y = F.conv_transpose2d(x, w, b, stride=2, padding=1)
            torch.autograd.grad(y, (x, w, b), gy)
        return f, 2 * 2.0 * x.numel() * 32 * 16 / 1e9, None

    def train_step():
        net = SegNet().to(dev)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        x = r(32, 1, 32, 32)
        y = torch.randint(0, 3, (32, 32, 32), device=dev)

        def f():
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        return f, None, None

    return [
        ("W1", "conv2d", conv(1, 64, 56, 64, 3, 1, 1)),
        ("W2", "conv2d", conv(8, 64, 56, 64, 3, 1, 1)),
        ("W3", "conv2d", conv(1, 3, 224, 64, 7, 2, 3)),
        ("W4", "conv2d", conv(1, 256, 14, 256, 3, 1, 1)),
        ("W5", "conv_transpose2d", convt),
        ("W6", "max_pool2d+indices", maxpool),
        ("W7", "max_pool2d+indices, max_unpool2d", pool_unpool),
        ("W8", "avg_pool2d", avgpool),
        ("W9", "conv2d backward (input+weight+bias)", conv_backward),
        ("W10", "conv_transpose2d backward", convt_backward),
        ("T1", "training step (train_segnet, batch 32)", train_step),
    ]


class SegNet(torch.nn.Module):
    """examples/train_segnet's network: two encoder stages with pooling indices, two decoder
    stages that unpool with them, a 1x1 classifier over 3 classes."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.c3 = torch.nn.Conv2d(32, 16, 3, padding=1)
        self.c4 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.c5 = torch.nn.Conv2d(16, 3, 1)

    def forward(self, x):
        p1, i1 = F.max_pool2d(F.relu(self.c1(x)), 2, return_indices=True)
        p2, i2 = F.max_pool2d(F.relu(self.c2(p1)), 2, return_indices=True)
        u2 = F.max_unpool2d(p2, i2, 2, output_size=(16, 16))
        u1 = F.max_unpool2d(F.relu(self.c3(u2)), i1, 2, output_size=(32, 32))
        return self.c5(F.relu(self.c4(u1)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--only", default="", help="comma-separated workload ids")
    ap.add_argument("--json", default="", help="also write the rows to this file")
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_peer: this PyTorch has no CUDA device (use --device cpu)")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    dev = torch.device(a.device)
    if a.device == "cuda":
        sync = torch.cuda.synchronize
        where = torch.cuda.get_device_name(0)
    else:
        sync = lambda: None
        where = f"cpu, {torch.get_num_threads()} threads"
    only = {w for w in a.only.split(",") if w}
    rows = []
    for wid, op, make in workloads(dev):
        if only and wid not in only:
            continue
        torch.manual_seed(0)
        # The forward workloads run as inference; the backward ones and T1 need autograd.
        with torch.inference_mode(wid in FORWARD):
            f, gflop, gb = make()
            runs = timed(f, a.runs, sync)
        r = row(wid, op, f"pytorch-{a.device}", runs, gflop, gb,
                f"PyTorch {torch.__version__} on {where}")
        rows.append(r)
        print(json.dumps(r), flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
