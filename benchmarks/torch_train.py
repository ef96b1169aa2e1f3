#!/usr/bin/env python3
"""PyTorch's CPU times for W9, W10 and T1 of BENCHMARKS.md, to compare with the fast path.

    pip install torch && python3 benchmarks/torch_train.py [--threads 2] [--runs 21]

W9: the input, weight and bias gradients of W2's layer (N=8, 64->64, 56x56, 3x3, pad 1);
W10: the same for W5's transposed convolution (1x64x28x28, 64->32, 4x4, stride 2, pad 1);
T1: one training step (forward, loss, backward, SGD momentum 0.9) of the train_segnet network,
batch 32. Medians of --runs calls after two warm-up calls, in milliseconds.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def median_ms(f, runs):
    for _ in range(2):
        f()
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        f()
        t.append((time.perf_counter() - s) * 1e3)
    return statistics.median(t)


def w9():
    x = torch.randn(8, 64, 56, 56)
    w = torch.randn(64, 64, 3, 3)
    gy = torch.randn(8, 64, 56, 56)
    return lambda: (
        torch.nn.grad.conv2d_input(x.shape, w, gy, padding=1),
        torch.nn.grad.conv2d_weight(x, w.shape, gy, padding=1),
        gy.sum((0, 2, 3)),
    )


def w10():
    x = torch.randn(1, 64, 28, 28, requires_grad=True)
    w = torch.randn(64, 32, 4, 4, requires_grad=True)
    b = torch.zeros(32, requires_grad=True)
    gy = torch.randn(1, 32, 56, 56)

    def step():
        y = F.conv_transpose2d(x, w, b, stride=2, padding=1)
        torch.autograd.grad(y, (x, w, b), gy)

    return step


class SegNet(torch.nn.Module):
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


def t1():
    net = SegNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(32, 1, 32, 32)
    y = torch.randint(0, 3, (32, 32, 32))

    def step():
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=21)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"PyTorch {torch.__version__}, {a.threads} threads, medians of {a.runs}")
    for name, make in [("W9", w9), ("W10", w10), ("T1", t1)]:
        print(f"{name}: {median_ms(make(), a.runs):.2f} ms")


if __name__ == "__main__":
    main()
