#!/usr/bin/env bash
# The wheels that benchmarks/gpu.sh installs on the lent GPU machine. That machine has
# Python 3.12 with JAX, numpy, scipy, scikit-image, h5py, matplotlib and opencv, but no
# keras and no network, and at most 64 MiB of files travel with a run. Run this here,
# where pip reaches an index:
#   bash benchmarks/gpu_wheels.sh          # fills .whl/ (git ignores it), checks the 64 MiB
#   bash benchmarks/gpu_wheels.sh --list   # prints the pins only (name==version per line)
# The versions are requirements.txt's, so the device runs what the tests ran here.
set -euo pipefail
cd "$(dirname "$0")/.."
# keras and its two needs the image lacks; pycocotools and imgaug for the data path.
NAMES="keras namex optree pycocotools imgaug"
LIMIT=$((64 * 1024 * 1024))
PYTHON=${PYTHON:-python3}

pins=""
for name in $NAMES; do
    pin=$(grep -i -E "^${name}==[^ #]+" requirements.txt | head -1 | cut -d' ' -f1) || true
    if [ -z "$pin" ]; then
        echo "gpu_wheels.sh: requirements.txt pins no version of $name (expected a line $name==VERSION)" >&2
        exit 2
    fi
    pins="$pins $pin"
done
if [ "${1:-}" = "--list" ]; then
    printf '%s\n' $pins
    exit 0
fi

rm -rf .whl.tmp
mkdir .whl.tmp
# pip matches each manylinux tag exactly, so name the ones these packages publish.
$PYTHON -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl.tmp $pins
# Swapped in whole, so a failed download never leaves a half-filled .whl behind.
rm -rf .whl
mv .whl.tmp .whl

# What travels: tracked files, untracked files git does not ignore, and the carried .whl.
tree=$(git ls-files -z -c -o --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null \
       | awk '{s += $1} END {print s + 0}')
wheels=$(stat -c %s .whl/*.whl | awk '{s += $1} END {print s + 0}')
total=$((tree + wheels))
ls -l .whl
echo "travels: $((total / 1024)) KiB (tree $((tree / 1024)) KiB + .whl $((wheels / 1024)) KiB)" \
     "of $((LIMIT / 1024)) KiB"
if [ "$total" -gt "$LIMIT" ]; then
    echo "gpu_wheels.sh: $total bytes would travel, more than the 64 MiB limit" >&2
    exit 1
fi
