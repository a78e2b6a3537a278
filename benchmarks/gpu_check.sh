#!/usr/bin/env bash
# GPU verification of the cupy backend in one call, on a machine with a CUDA GPU, CuPy and
# PyTorch:   bash benchmarks/gpu_check.sh       (exit status 0 only if every step passed)
#
#   0. environment: GPU, driver, versions, compute-sanitizer;
#   1. the GPU tests, tests/test_cupy_gpu.py alone, GCN_REQUIRE_GPU=1 (no silent skips):
#      float64 to 1e-10, float32 to 1e-5 and TF32 to 1e-2 against the float64 reference with
#      the activation pattern pinned, kernels on NaN-poisoned memory, the paper's first layer,
#      the noise against its NumPy formula, the TF32 switch, Learner.step, resume, rollback;
#   2. compute-sanitizer --tool memcheck on one small case (every kernel once, each array its
#      own cudaMalloc), or a line saying that compute-sanitizer is not installed;
#   3. benchmarks/bench_gpu.py --tf32 at 64, 112 and 224 px: ms per learning iteration
#      against PyTorch + cuDNN, fp32 and TF32 like for like; fails when the results disagree
#      beyond its bounds;
#   4. the texture-paper preset through the training CLI: --iterations 100 per layer stage
#      (300 in all, the net grown to its 3 layers), one checkpoint at the end.
#
# Time: each step has a limit, 20 + 110 + 50 + 65 + 50 = 295 s together (compilation
# included; CuPy keeps compiled kernels on disk, so later steps reuse step 1's), so that the
# check, a rerun and the machine's start fit a 15-minute device lease. At its limit a step
# gets SIGINT (the training CLI then checkpoints and exits; pytest and Python print where
# they were) and SIGKILL 10 s later; it counts as failed.
#
# Results go to $OUT (a new temporary folder if unset), 8 files, no subfolders:
# summary.txt (environment, each step's status and time, the benchmark's tables),
# pytest.txt, sanitizer.txt, bench.txt, bench.json, train.txt, metrics.csv, grid.png.
# Set PYTHON to choose the interpreter.
set -u
cd "$(dirname "$0")/.."
repo=$PWD
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg PYTHONUNBUFFERED=1
summary="$OUT/summary.txt"
: >"$summary"
failed=0
start_all=$(date +%s%N)

note() { echo "$*" | tee -a "$summary"; }

# secs_since START: seconds elapsed since START (from date +%s%N)
secs_since() {
    local ms=$((($(date +%s%N) - $1) / 1000000))
    printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

# step NAME LIMIT LOG COMMAND...: run COMMAND under LIMIT seconds, output to LOG; note the
# status and time; a non-zero status or the limit fails the whole check
step() {
    local name=$1 limit=$2 log=$3 t0 rc
    shift 3
    t0=$(date +%s%N)
    timeout -s INT -k 10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    if [ "$rc" = 0 ]; then
        note "PASS $name in $(secs_since "$t0") s (limit $limit s)"
    else
        failed=1
        [ "$rc" = 124 ] || [ "$rc" = 137 ] && rc="$rc, stopped at the limit"
        note "FAIL $name: status $rc after $(secs_since "$t0") s (limit $limit s); see $log"
    fi
}

sanitizer=$(command -v compute-sanitizer || true)
[ -z "$sanitizer" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] &&
    sanitizer=/usr/local/cuda/bin/compute-sanitizer

note "== 0. environment =="
{
    date -u
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    command -v nvidia-smi >/dev/null &&
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    timeout 20 "$PY" - <<'EOF'
import sys
print("python", sys.version.split()[0], sys.executable)
for mod in ("numpy", "cupy", "torch"):
    try:
        m = __import__(mod)
        print(mod, m.__version__)
    except Exception as exc:
        print(mod, "unavailable:", exc)
try:
    import cupy, torch
    rt = cupy.cuda.runtime
    print("CUDA runtime", rt.runtimeGetVersion(), "driver", rt.driverGetVersion())
    print("cuDNN", torch.backends.cudnn.version(), "device", torch.cuda.get_device_name(0))
except Exception as exc:
    print("no CUDA device usable from Python:", exc)
EOF
    if [ -n "$sanitizer" ]; then
        "$sanitizer" --version | tail -n 1
    else
        echo "compute-sanitizer: not installed"
    fi
} 2>&1 | tee -a "$summary"

note "== 1. GPU tests =="
GCN_REQUIRE_GPU=1 step "GPU tests" 110 "$OUT/pytest.txt" \
    "$PY" -m pytest -q -rs --durations=5 -p no:cacheprovider tests/test_cupy_gpu.py
tail -n 1 "$OUT/pytest.txt" | tee -a "$summary"

note "== 2. compute-sanitizer memcheck =="
if [ -n "$sanitizer" ]; then
    # API errors are CuPy's to raise (a failed launch fails the test); memcheck is after
    # accesses outside an allocation, which the test's pool-less allocations make visible
    GCN_REQUIRE_GPU=1 step "memcheck" 50 "$OUT/sanitizer.txt" \
        "$sanitizer" --tool memcheck --error-exitcode 3 --report-api-errors no \
        --print-limit 20 "$PY" -m pytest -q -p no:cacheprovider tests/test_cupy_gpu.py \
        -k test_gpu_small_case_for_the_sanitizer
    grep -E "ERROR SUMMARY|passed|failed|error" "$OUT/sanitizer.txt" | tail -n 3 |
        tee -a "$summary"
else
    note "compute-sanitizer is not installed here: memcheck not run (not a failure)"
    echo "compute-sanitizer not installed" >"$OUT/sanitizer.txt"
fi

note "== 3. benchmark against PyTorch + cuDNN =="
step "benchmark" 65 "$OUT/bench.txt" \
    "$PY" benchmarks/bench_gpu.py --tf32 --sizes 64 112 224 --json "$OUT/bench.json"
sed -n '1,/^per kernel/p' "$OUT/bench.txt" | grep -v '^per kernel' >>"$summary"
grep '^FAIL' "$OUT/bench.txt" | tee -a "$summary"

note "== 4. texture-paper preset, 100 iterations per layer stage =="
work=$(mktemp -d)
step "paper-preset run" 50 "$OUT/train.txt" \
    "$PY" -m gcn_numpy.train --preset texture-paper --backend cupy --iterations 100 \
    --checkpoint-every 100000 --out "$work/run"
if [ -f "$work/run/metrics.csv" ]; then
    cp "$work/run/metrics.csv" "$OUT/metrics.csv"
    rows=$(($(wc -l <"$work/run/metrics.csv") - 1))
    note "iterations done: $rows of 300; first and last rows of metrics.csv:"
    sed -n '1,2p;$p' "$work/run/metrics.csv" | tee -a "$summary"
    # the first iteration compiles what step 1 did not: reported apart from the means
    awk -F, 'NR == 2 { printf "first iteration: %.2f s\n", $NF }
        NR > 2 { s[$2] += $NF; n[$2]++ }
        END { for (l in s) printf "layers %s: %.1f ms per iteration (%d iterations)\n",
              l, 1000 * s[l] / n[l], n[l] }' "$work/run/metrics.csv" | sort | tee -a "$summary"
    [ "$rows" = 300 ] || { failed=1; note "FAIL paper-preset run: $rows iterations, not 300"; }
fi
[ -f "$work/run/grid.png" ] && cp "$work/run/grid.png" "$OUT/grid.png"
tail -n 3 "$OUT/train.txt" >>"$summary"

note "== total $(secs_since "$start_all") s; $([ "$failed" = 0 ] && echo PASSED || echo FAILED) =="
note "results in $OUT"
exit "$failed"
