#!/usr/bin/env bash
# Every GPU measurement the issues ask for, in one call on a lent GPU machine (its python3
# holds torch; nibabel, pydicom, pynrrd and PyWavelets travel as wheels in .whl/, see
# docs/benchmarks.md). Writes JSON and logs to $OUT.
#
#   bash benchmarks/gpu_lease.sh smoke   # about a minute: every path once, tiny budgets
#   bash benchmarks/gpu_lease.sh         # the measurements (about 8 minutes)
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
nproc
if [ "${1:-}" = smoke ]; then
    timeout 150 python3 benchmarks/speed.py --device cuda --presets pixelwise --slices 8 \
        --repeats 1 --out "$OUT/speed_smoke.json"
    timeout 150 python3 benchmarks/gpu_checks.py data/cxr.nii.gz --out "$OUT" --smoke
    exit
fi
# Synthesis (512 x 512 x 36 -> 141) and training steps on the GPU, float32 and bf16
timeout 200 python3 benchmarks/speed.py --device cuda --threads 16 --presets pixelwise lite paper \
    --repeats 3 --case-timeout 90 --out "$OUT/speed_gpu.json" 2>&1 | tee "$OUT/speed_gpu.log"
# Training throughput on the same machine's 16 CPU cores, for the GPU/CPU ratio
timeout 80 python3 benchmarks/speed.py --device cpu --threads 16 --presets pixelwise lite \
    --cases train --repeats 3 --case-timeout 35 --out "$OUT/speed_cpu16.json" 2>&1 \
    | tee "$OUT/speed_cpu16.log"
# Training precision and the paper preset on the dev chest CT at r = 4
timeout 280 python3 benchmarks/gpu_checks.py data/cxr.nii.gz --out "$OUT" --seconds 60 \
    --paper-seconds 90 2>&1 | grep -v Warning | tee "$OUT/gpu_checks.log"
