#!/usr/bin/env bash
# Everything worth doing on a machine with a GPU, in one go (a GPU is rarely at hand):
#   1. `gpu-bptt info` and nvidia-smi (device, driver, whether every kernel compiles);
#   2. the GPU tests (`pytest -m gpu`);
#   3. the GPU benchmark presets (large-batch, small-batch, long-seq) with every contender found
#      (our cuda variants, cuDNN with TF32 off and on, the CuPy loop, JAX on the GPU).
# Results and a log go to bench/results/; with a directory argument the log, JSON and Markdown
# are copied there too, with every file of the run (plots included) in one .tar.gz.
# Needs the project installed with its cuda extra (and torch with CUDA for the cuDNN contenders).
#   usage: bash bench/gpu_check.sh [COPY_TO_DIR]
set -u
cd "$(dirname "$0")/.."
RESULTS=bench/results
mkdir -p "$RESULTS"
stamp=$(date -u +%Y%m%dT%H%M%S)
log="$RESULTS/gpu-check-$stamp.log"
marker=$(mktemp)  # files newer than this one are this run's
PY=${PYTHON:-$(command -v python3 || command -v python)}

if ! "$PY" -c "import cupy; cupy.cuda.runtime.getDeviceCount()" >/dev/null 2>&1; then
    echo "CuPy cannot see a GPU here; install gpu_bptt[cuda12] (or [cuda13]) on a GPU machine" | tee "$log"
    exit 2
fi
status=0
{
    echo "== gpu-bptt info"
    "$PY" -m gpu_bptt.cli info
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv || true
    echo "== pytest -m gpu"
    "$PY" -m pytest -m gpu -q -rs tests
    echo "pytest exit code: $?"
    echo "== benchmarks"
    "$PY" bench/bench_elman.py --preset large-batch --preset small-batch --preset long-seq \
        --out "$RESULTS" --markdown "$RESULTS/gpu-latest.md"
    echo "bench exit code: $?"
} 2>&1 | tee "$log"
grep -q "exit code: [^0]" "$log" && status=1
if [ $# -ge 1 ]; then
    # A few files only (a transfer may bring back a handful): the log, the JSON and the Markdown
    # table as they are, and everything this run wrote (plots included) in one archive.
    mkdir -p "$1"
    new=$(find "$RESULTS" -newer "$marker" -type f)
    for f in $new; do case "$f" in *.log|*.json|*.md) cp "$f" "$1"/ ;; esac; done
    [ -n "$new" ] && tar czf "$1/gpu-check-$stamp.tar.gz" $new
fi
rm -f "$marker"
exit $status
