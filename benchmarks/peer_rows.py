"""What the peer harnesses (torch_peer.py, cpu_peers.py) share: the timing of one cell and
its row in the bench report's JSON format."""
import statistics
import time


def timed(f, runs, sync=lambda: None):
    """Median, min and max in ms of `runs` calls of f, after three warm-up calls; `sync`
    waits for the device after each call."""
    for _ in range(3):
        f()
    sync()
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        f()
        sync()
        t.append((time.perf_counter() - s) * 1e3)
    return statistics.median(t), min(t), max(t)


def row(wid, op, backend, med, lo, hi, gflop, gb, where):
    """A report row: GFLOP/s and GB/s from the cell's GFLOP and GB per call."""
    return {
        "workload": wid, "op": op, "backend": backend,
        "median_ms": med, "min_ms": lo, "max_ms": hi,
        "gflops": gflop / (med / 1e3) if gflop else None,
        "gbps": gb / (med / 1e3) if gb else None,
        "kernel_ms": None, "adapter": where,
    }
