#!/usr/bin/env bash
# Everything worth doing on a machine with a GPU (a GPU is rarely at hand), in stages:
#   info      `gpu-bptt info` and nvidia-smi: device, driver, whether every kernel compiles
#   tests     the GPU tests (`pytest -m gpu`)
#   targets   the large-batch and small-batch presets: the cuda backend's and the persistent
#             kernels' targets against cuDNN, with every contender found (our cuda variants,
#             cuDNN with TF32 off and on, the CuPy loop, JAX on the GPU)
#   lstm, gru the same presets for the LSTM and the GRU (`--cell`): against cuDNN's nn.LSTM and
#             nn.GRU with TF32 off and on, and JAX on the GPU
#   tune      `gpu-bptt bench --tune`: every step kernel version and the persistent algorithm over
#             a (B, H) grid, next to what "auto" picks (the data for the auto rules)
#   long-seq  the long-seq preset (T up to 16384)
# Each stage runs under its own time limit (seconds, $LIMIT_<stage>, e.g. LIMIT_tune=300), so one
# that overruns is cut short without losing the others; a bench run saves its finished sizes as it
# goes. The default limits keep `info tests targets`, `lstm gru` and `tune long-seq` each under
# 10 minutes.
# Results and a log go to bench/results/ (or $GPU_CHECK_RESULTS). With a directory argument, this
# run's log, JSON and Markdown are copied there after every stage, and at the end every file of
# the run (plots included) in one .tar.gz.
# Needs the project's cuda extra (and torch with CUDA for the cuDNN contenders).
#   usage: bash bench/gpu_check.sh [COPY_TO_DIR [STAGE ...]]     (default: every stage, in order)
set -u
cd "$(dirname "$0")/.."
RESULTS=${GPU_CHECK_RESULTS:-bench/results}
mkdir -p "$RESULTS"
stamp=$(date -u +%Y%m%dT%H%M%S)
log="$RESULTS/gpu-check-$stamp.log"
marker=$(mktemp)  # files newer than this one are this run's
PY=${PYTHON:-$(command -v python3 || command -v python)}
copy_to=${1:-}
[ $# -ge 1 ] && shift
stages=${*:-info tests targets lstm gru tune long-seq}
# GPU timings come from device events: a few repeats give a stable median, and no pause is needed
BENCH=(bench/bench_elman.py --out "$RESULTS" --repeats 10 --budget 3 --pause 0)

if ! "$PY" -c "import cupy; cupy.cuda.runtime.getDeviceCount()" >/dev/null 2>&1; then
    echo "CuPy cannot see a GPU here; install gpu_bptt[cuda12] (or [cuda13]) on a GPU machine" | tee "$log"
    exit 2
fi

stage() {  # stage NAME DEFAULT_LIMIT COMMAND...: run under a time limit, record its exit code
    local name=$1 default=$2 var="LIMIT_${1//-/_}"
    shift 2
    local limit=${!var:-$default}
    echo "== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    PYTHONUNBUFFERED=1 timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    [ $rc -eq 124 ] && echo "$name: cut short at its ${limit}s limit"
    echo "$name exit code: $rc ($((SECONDS - t0))s)"
}

collect() {  # copy this run's log, JSON and Markdown out (after every stage: a run cut short
             # from outside still leaves what it finished)
    [ -n "$copy_to" ] || return 0
    mkdir -p "$copy_to"
    for f in $(find "$RESULTS" -newer "$marker" -type f); do
        case "$f" in *.log|*.json|*.md) cp "$f" "$copy_to"/ ;; esac
    done
}

echo "stages: $stages" | tee "$log"
for s in $stages; do
    case "$s" in
        info)
            stage info 90 "$PY" -m gpu_bptt.cli info
            nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv || true ;;
        tests) stage tests 240 "$PY" -m pytest -m gpu -q -rs tests ;;
        targets) stage targets 260 "$PY" "${BENCH[@]}" --preset large-batch --preset small-batch \
                     --markdown "$RESULTS/gpu-latest.md" ;;
        lstm|gru) stage "$s" 270 "$PY" "${BENCH[@]}" --cell "$s" --preset large-batch \
                      --preset small-batch --markdown "$RESULTS/gpu-$s-latest.md" ;;
        # a ranking needs fewer repeats than a reported time; H=2048 (the costliest row) comes last
        tune) stage tune 240 "$PY" "${BENCH[@]}" --repeats 5 --budget 1 --tune \
                  --markdown "$RESULTS/gpu-tune-latest.md" ;;
        long-seq) stage long-seq 300 "$PY" "${BENCH[@]}" --preset long-seq \
                      --markdown "$RESULTS/gpu-long-seq-latest.md" ;;
        *) echo "unknown stage $s (stages: info tests targets lstm gru tune long-seq)"; echo "$s exit code: 2" ;;
    esac 2>&1 | tee -a "$log"
    collect
done
status=0
grep -q "exit code: [^0]" "$log" && status=1
if [ -n "$copy_to" ]; then
    # everything this run wrote (plots included) in one archive: a transfer may bring back a
    # handful of files only
    new=$(find "$RESULTS" -newer "$marker" -type f)
    [ -n "$new" ] && tar czf "$copy_to/gpu-check-$stamp.tar.gz" $new
fi
rm -f "$marker"
exit $status
