#!/usr/bin/env bash
# The GPU measurements, on the lent machine (JAX, no TensorFlow; see benchmarks/README.md):
#   bash benchmarks/gpu.sh            # large_eval and large (1024 px, 3 images), float32 and bf16
# In the order that keeps what the issue asks for if the run is cut short at the device's
# per-call limit: inference at BATCHES, then training at TRAIN_CONFIG with the RUN_STEPS run,
# then inference at EXTRA_BATCHES (larger batches: throughput beyond the paper's 3).
# Where keras is missing and a folder .whl of wheels is there (benchmarks/gpu_wheels.sh
# makes it), they are installed under /tmp/site first. CONFIG, BATCHES, EXTRA_BATCHES,
# POLICIES, ITERATIONS and TRACES (below) override the defaults (the CPU check:
# CONFIG=tiny_eval BATCHES=2 ITERATIONS=3 bash benchmarks/gpu.sh).
# Each measurement is one JSON line in $RESULTS (default benchmarks/results/gpu.jsonl).
set -uo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-large_eval}
BATCHES=${BATCHES:-3}
EXTRA_BATCHES=${EXTRA_BATCHES-12}
POLICIES=${POLICIES:-"float32 mixed_bfloat16"}
ITERATIONS=${ITERATIONS:-30}
RESULTS=${RESULTS:-benchmarks/results/gpu.jsonl}
PYTHON=${PYTHON:-python3}
if [ -d .whl ] && ! $PYTHON -c "import keras" 2>/dev/null; then
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
mkdir -p "$(dirname "$RESULTS")"
command -v nvidia-smi >/dev/null && nvidia-smi -L
# Training (gpu_train.py): TRAIN=0 skips it; one line per policy, then a RUN_STEPS run
# (data loading included; its loss must fall) under the last policy.
TRAIN=${TRAIN:-1}
TRAIN_CONFIG=${TRAIN_CONFIG:-large}
TRAIN_BATCH=${TRAIN_BATCH:-3}
TRAIN_ITERATIONS=${TRAIN_ITERATIONS:-10}
RUN_STEPS=${RUN_STEPS:-300}
status=0
# TRACES=DIR: a JAX profiler trace of each BATCHES and training line there
# (gpu_CONFIG_bN_POLICY.xplane.pb.gz, train_...; benchmarks/profile_ops.py reads them).
TRACES=${TRACES:-}
profile() {  # the --profile argument for the trace named $1, or nothing
    [ -n "$TRACES" ] && echo "--profile=$TRACES/$1.xplane.pb.gz"
}
inference() {  # one gpu.py line per batch size and policy
    for batch in "$@"; do
        for policy in $POLICIES; do
            # shellcheck disable=SC2046  # an empty profile() adds no argument
            $PYTHON benchmarks/gpu.py --config "$CONFIG" --batch "$batch" --policy "$policy" \
                --iterations "$ITERATIONS" --output "$RESULTS" \
                $(profile "gpu_${CONFIG}_b${batch}_${policy}") || status=1
        done
    done
}
[ -n "$TRACES" ] && mkdir -p "$TRACES"
# shellcheck disable=SC2086  # the lists split on spaces
inference $BATCHES
if [ "$TRAIN" = 1 ]; then
    data=$(mktemp -d)
    trap 'rm -rf "$data"' EXIT  # also when timeout stops the run
    last=""
    for policy in $POLICIES; do last=$policy; done
    for policy in $POLICIES; do
        steps=0
        [ "$policy" = "$last" ] && steps=$RUN_STEPS
        $PYTHON benchmarks/gpu_train.py --config "$TRAIN_CONFIG" --batch "$TRAIN_BATCH" \
            --policy "$policy" --iterations "$TRAIN_ITERATIONS" --run-steps "$steps" \
            --data "$data/shapes" --output "$RESULTS" \
            $(profile "train_${TRAIN_CONFIG}_b${TRAIN_BATCH}_${policy}") || status=1
    done
fi
# Not traced: at most 8 files come back from the device.
# shellcheck disable=SC2086
TRACES= inference $EXTRA_BATCHES
exit $status
