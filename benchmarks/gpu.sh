#!/usr/bin/env bash
# The GPU benchmark in one command: convpool's bench report on the default GPU adapter, then
# PyTorch (CUDA) on the same workloads where a python3 with CUDA-enabled torch exists, then
# one table: convpool, PyTorch, and their ratio.
#
#   benchmarks/gpu.sh [--bin PATH] [--quick] [--out DIR]
#
#   --bin PATH   a prebuilt bench_report binary (for a machine without a Rust toolchain; build
#                it elsewhere with `cargo build --release --example bench_report`, it is
#                <target dir>/release/examples/bench_report); default: build it here
#   --quick      the report's quick mode and fewer PyTorch runs
#   --out DIR    where the JSON, Markdown and SVG go (default: gpu-bench-out)
#
# The report skips the single-threaded CPU reference (--no-reference) to stay short; the fast
# CPU path stays in it. Pick the adapter with WGPU_ADAPTER_NAME / WGPU_BACKEND as usual. On a
# machine with only a Vulkan driver, the loader (libvulkan1) must be installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="" quick="" out="gpu-bench-out" runs=21
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --quick) quick="--quick"; runs=7; shift ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--bin PATH] [--quick] [--out DIR]" >&2; exit 2 ;;
  esac
done
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"   # Mesa's drivers warn without it
mkdir -p "$out"
if [ -z "$bin" ]; then
  # Ask cargo where it put the binary: CARGO_TARGET_DIR (or a config) may move it.
  bin=$(cd "$here/.." && cargo build --release --quiet --example bench_report --message-format=json \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "bench_report" and m.get("executable"):
        print(m["executable"])')
  [ -x "$bin" ] || { echo "gpu.sh: cargo built no bench_report binary" >&2; exit 1; }
fi

echo "== convpool bench report ($bin)"
"$bin" $quick --no-reference --json "$out/convpool.json" --md "$out/convpool.md" --svg "$out/convpool.svg"

peer=""
if command -v python3 >/dev/null && python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "== PyTorch on CUDA, same workloads"
  python3 "$here/torch_peer.py" --device cuda --runs "$runs" --json "$out/pytorch.json" >/dev/null
  peer="$out/pytorch.json"
else
  echo "== no python3 with CUDA-enabled torch here: the table has convpool's columns only"
fi

if ! command -v python3 >/dev/null; then
  cat "$out/convpool.md"
  exit 0
fi
python3 - "$out/convpool.json" "$peer" <<'EOF' | tee "$out/table.md"
import json, sys
ours = json.load(open(sys.argv[1]))
peer = {r["workload"]: r for r in json.load(open(sys.argv[2]))} if sys.argv[2] else {}
gpu = [r for r in ours if r["backend"] == "gpu"]
fast = {r["workload"]: r for r in ours if r["backend"] == "cpu-fast"}
order = lambda r: (r["workload"][0] != "W", int(r["workload"][1:]))
adapter = gpu[0]["adapter"] if gpu else "no GPU adapter"
torch_on = next(iter(peer.values()))["adapter"] if peer else "not run"
print(f"\nconvpool on {adapter}; PyTorch: {torch_on}. Medians, ms; ratio = PyTorch / convpool (above 1: convpool is faster).\n")
print("| workload | op | convpool GPU | kernel | PyTorch | ratio | convpool fast CPU |")
print("|---|---|---:|---:|---:|---:|---:|")
f = lambda v: "–" if v is None else f"{v:.3f}"
for r in sorted(gpu, key=order):
    p = peer.get(r["workload"])
    ratio = f"{p['median_ms'] / r['median_ms']:.2f}" if p else "–"
    c = fast.get(r["workload"])
    print(f"| {r['workload']} | {r['op']} | {f(r['median_ms'])} | {f(r['kernel_ms'])} | {f(p and p['median_ms'])} | {ratio} | {f(c and c['median_ms'])} |")
EOF
echo
echo "files: $out/convpool.json $out/convpool.md $out/convpool.svg ${peer:+$peer} $out/table.md"
