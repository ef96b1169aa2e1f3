#!/usr/bin/env python3
"""The CPU peers of convpool's fast path on the bench report's workloads: ONNX Runtime (W1-W8,
one-node models built with onnx.helper; MaxPool with its Indices output, then MaxUnpool for
W7) and PyTorch (W1-W10 and T1, through benchmarks/torch_peer.py), whichever are installed.

    pip install onnx onnxruntime torch
    python3 benchmarks/cpu_peers.py --threads 2 [--runs 21] [--json FILE]

Both run with the given thread count (the report passes its own), inputs made once outside
the timer, after warm-up calls; medians, min and max of --runs calls, in milliseconds. Prints
one JSON row per cell in the bench report's format, backend "onnxruntime-cpu" or
"pytorch-cpu"; a peer that is not installed is named on stderr and skipped.
"""
import argparse
import json
import os
import subprocess
import sys

from peer_rows import row, timed


def ort_workloads():
    """(id, op, nodes) per workload: a list of (node, inputs, weights, outputs)."""
    import numpy as np
    from onnx import helper

    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s, dtype=np.float32)

    def conv(n, cin, hw, cout, k, s, p):
        x, w = r(n, cin, hw, hw), r(cout, cin, k, k)
        node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)
        o = (hw + 2 * p - k) // s + 1
        return [(node, {"x": x}, {"w": w}, ["y"])], 2.0 * n * cout * o * o * cin * k * k / 1e9, None

    def convt():
        x, w = r(1, 64, 28, 28), r(64, 32, 4, 4)
        node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[4, 4], strides=[2, 2], pads=[1] * 4)
        return [(node, {"x": x}, {"w": w}, ["y"])], 2.0 * x.size * 32 * 16 / 1e9, None

    def maxpool():
        x = r(8, 64, 112, 112)
        node = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
        return [(node, {"x": x}, {}, ["y", "i"])], None, (x.size + 2 * 8 * 64 * 56 * 56) * 4 / 1e9

    def pool_unpool():
        x = r(8, 64, 112, 112)
        pool = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[2, 2])
        unpool = helper.make_node("MaxUnpool", ["y", "i", "shape"], ["u"], kernel_shape=[2, 2], strides=[2, 2])
        shape = np.array(x.shape, dtype=np.int64)
        # The unpool's inputs are the pool's outputs, passed on in memory.
        return [(pool, {"x": x}, {}, ["y", "i"]), (unpool, None, {"shape": shape}, ["u"])], None, (2 * x.size + 2 * 8 * 64 * 56 * 56) * 4 / 1e9

    def avgpool():
        x = r(8, 64, 112, 112)
        node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
        return [(node, {"x": x}, {}, ["y"])], None, (x.size + 8 * 64 * 56 * 56) * 4 / 1e9

    return [
        ("W1", "conv2d", lambda: conv(1, 64, 56, 64, 3, 1, 1)),
        ("W2", "conv2d", lambda: conv(8, 64, 56, 64, 3, 1, 1)),
        ("W3", "conv2d", lambda: conv(1, 3, 224, 64, 7, 2, 3)),
        ("W4", "conv2d", lambda: conv(1, 256, 14, 256, 3, 1, 1)),
        ("W5", "conv_transpose2d", convt),
        ("W6", "max_pool2d+indices", maxpool),
        ("W7", "max_pool2d+indices, max_unpool2d", pool_unpool),
        ("W8", "avg_pool2d", avgpool),
    ]


def session(node, feeds, weights, outputs, threads):
    """An ONNX Runtime session of one node: `feeds` its runtime inputs (None: they come from
    the previous node, given at run time), `weights` its initializers."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    kind = lambda n: TensorProto.INT64 if n == "i" else TensorProto.FLOAT
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    ins = [n for n in node.input if n not in weights]
    graph = helper.make_graph(
        [node], "peer",
        [helper.make_tensor_value_info(n, kind(n), None) for n in ins],
        [helper.make_tensor_value_info(n, kind(n), None) for n in outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]), ins


def onnxruntime_rows(threads, runs):
    import onnxruntime as ort

    rows = []
    for wid, op, make in ort_workloads():
        nodes, gflop, gb = make()
        steps = [session(node, feeds, weights, outs, threads) + (feeds, outs) for node, feeds, weights, outs in nodes]

        def run():
            prev = {}
            for sess, ins, feeds, outs in steps:
                given = feeds if feeds is not None else {n: prev[n] for n in ins}
                prev = dict(zip(outs, sess.run(outs, given)))
        rows.append(row(wid, op, "onnxruntime-cpu", timed(run, runs), gflop, gb,
                        f"ONNX Runtime {ort.__version__}, {threads} threads"))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    rows = []
    try:
        import onnx, onnxruntime, numpy  # noqa: F401
        rows += onnxruntime_rows(a.threads, a.runs)
    except ImportError as e:
        print(f"cpu_peers: ONNX Runtime skipped ({e}; pip install onnx onnxruntime)", file=sys.stderr)
    here = os.path.dirname(os.path.abspath(__file__))
    torch_rows = subprocess.run(
        [sys.executable, os.path.join(here, "torch_peer.py"), "--device", "cpu",
         "--threads", str(a.threads), "--runs", str(a.runs)],
        capture_output=True, text=True,
    )
    if torch_rows.returncode == 0:
        rows += [json.loads(l) for l in torch_rows.stdout.splitlines() if l.startswith("{")]
    else:
        last = (torch_rows.stderr.strip().splitlines() or ["failed"])[-1]
        print(f"cpu_peers: PyTorch skipped ({last}; pip install torch)", file=sys.stderr)
    for r in rows:
        print(json.dumps(r))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
