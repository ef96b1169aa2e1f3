"""What the peer harnesses (torch_peer.py, cpu_peers.py) share: the timing of one cell and
its row in the bench report's JSON format."""
import statistics
import time


def timed(f, runs, sync=lambda: None):
    """The times in ms of `runs` calls of f, after three warm-up calls; `sync` waits for the
    device after each call."""
    for _ in range(3):
        f()
    sync()
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        f()
        sync()
        t.append((time.perf_counter() - s) * 1e3)
    return t


def row(wid, op, backend, runs, gflop, gb, where):
    """A report row from the times `runs` (ms): their median, min and max, and GFLOP/s and
    GB/s from the cell's GFLOP and GB per call. `runs_ms` keeps the times, so that the report
    can merge the rows of several invocations."""
    med = statistics.median(runs)
    return {
        "workload": wid, "op": op, "backend": backend,
        "median_ms": med, "min_ms": min(runs), "max_ms": max(runs), "runs_ms": runs,
        "gflops": gflop / (med / 1e3) if gflop else None,
        "gbps": gb / (med / 1e3) if gb else None,
        "kernel_ms": None, "adapter": where,
    }
