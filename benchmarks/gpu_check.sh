#!/usr/bin/env bash
# GPU verification of the cupy backend (issue 6), in one call on a machine with a CUDA GPU,
# CuPy and PyTorch:   bash benchmarks/gpu_check.sh
#
#   1. the GPU parity tests (tests/test_cupy_backend.py, GCN_REQUIRE_GPU=1: no silent skips);
#   2. benchmarks/bench_gpu.py --tf32: ms per learning iteration, cupy vs PyTorch + cuDNN;
#   3. the paper-scale texture preset end to end through the training CLI, with its wall time.
#
# Results go to $OUT (a new temporary folder if unset), at most 8 files: env.txt, pytest.txt,
# bench.txt, bench.json, train.txt, summary.txt and one sample image. Each step has a
# timeout; together they stay under about 8 minutes. Set PYTHON to choose the interpreter.
set -u
cd "$(dirname "$0")/.."
repo=$PWD
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
summary="$OUT/summary.txt"
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

# secs_since START: seconds elapsed since START (from date +%s%N)
secs_since() {
    local ms=$((($(date +%s%N) - $1) / 1000000))
    printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

{
    date -u
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
        --format=csv
    "$PY" - <<'EOF'
import sys
print("python", sys.version.split()[0], sys.executable)
for mod in ("numpy", "cupy", "torch"):
    try:
        m = __import__(mod)
        print(mod, m.__version__)
    except Exception as exc:
        print(mod, "unavailable:", exc)
import cupy, torch
print("CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
print("cuDNN", torch.backends.cudnn.version(), "device", torch.cuda.get_device_name(0))
EOF
} >"$OUT/env.txt" 2>&1
note "== environment =="
cat "$OUT/env.txt" >>"$summary"

note "== 1. GPU parity tests =="
t0=$(date +%s%N)
GCN_REQUIRE_GPU=1 timeout 130 "$PY" -m pytest -q -rs -p no:cacheprovider \
    tests/test_cupy_backend.py >"$OUT/pytest.txt" 2>&1
rc=$?
note "pytest rc=$rc in $(secs_since "$t0") s: $(tail -n 1 "$OUT/pytest.txt")"

note "== 2. benchmark =="
t0=$(date +%s%N)
timeout 110 "$PY" benchmarks/bench_gpu.py --tf32 --json "$OUT/bench.json" >"$OUT/bench.txt" 2>&1
rc=$?
note "bench rc=$rc in $(secs_since "$t0") s"
head -n 12 "$OUT/bench.txt" >>"$summary"

note "== 3. paper-scale texture preset through the CLI =="
work=$(mktemp -d)
if ! (cd "$work" && "$PY" -c "import gcn_numpy.train") >"$OUT/train.txt" 2>&1; then
    note "the training CLI gcn_numpy.train is not there yet: paper-scale run not done"
else
    t0=$(date +%s%N)
    (cd "$work" && timeout 230 "$PY" -m gcn_numpy.train --preset texture-paper --backend cupy) \
        >>"$OUT/train.txt" 2>&1
    rc=$?
    wall=$(secs_since "$t0")
    if [ "$rc" = 124 ]; then
        note "paper-scale run timed out after $wall s (limit 230 s)"
    else
        note "paper-scale run rc=$rc, wall time $wall s"
    fi
    tail -n 5 "$OUT/train.txt" >>"$summary"
    { echo "== files written =="; (cd "$work" && find . -type f | sort | head -n 50); } \
        >>"$OUT/train.txt"
    sample=$(find "$work" -name '*.png' -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-)
    [ -n "$sample" ] && cp "$sample" "$OUT/sample.png" && note "last image written: $sample"
fi
note "results in $OUT"
