#!/usr/bin/env bash
# The GPU check: run once whenever a CUDA GPU is at hand (under ten minutes on one H200).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # OUT_DIR: default $OUT, else ./gpu-check
#
# 1. a full-depth Qwen3-8B (random weights, bf16) verification profile on CUDA, eager, over
#    R in {1, 16, 64} x B in {1..512} at context 2048, with every drafter's cost (gamma 1, 4, 7);
# 2. the same grid replayed from CUDA graphs;
# 3. the `gpu`-marked tests;
# 4. one JSON, OUT_DIR/gpu-check.json: both profiles against the roofline of the GPU they ran on
#    (benchmarks/gpu_compare.py), the drafter costs against the roofline's, and the tests' result.
#
# Needs torch with CUDA, transformers, and dsbench's light dependencies. On the workplace's H200
# image pydantic is missing: carry its wheels for Python 3.12 in .whl/ (benchmarks/gpu_wheels.sh
# downloads them); they are installed to /tmp/site when present.
set -uo pipefail
OUT_DIR=${1:-${OUT:-gpu-check}}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT_DIR/gpu.txt"
GRID=(--target qwen3-8b --device cuda --dtype bf16 --concurrency 1,16,64 --batch-tokens 1,16,64,256,512
      --context 2048 --repeats 10 --warmup-passes 3 --force)

timeout 270 $PY -m dsbench profile "${GRID[@]}" --draft all --gamma 1,4,7 --out "$OUT_DIR/eager.json"
echo "eager profile: rc $?"
timeout 180 $PY -m dsbench profile "${GRID[@]}" --cuda-graph --out "$OUT_DIR/graphs.json"
echo "graph profile: rc $?"
timeout 120 $PY -m pytest -q -m gpu tests/test_profile_measured.py -p no:cacheprovider 2>&1 | tee "$OUT_DIR/gpu-tests.log"
tests_rc=${PIPESTATUS[0]}
$PY benchmarks/gpu_compare.py "$OUT_DIR/eager.json" "$OUT_DIR/graphs.json" --tests-rc "$tests_rc" \
    --tests-log "$OUT_DIR/gpu-tests.log" > "$OUT_DIR/gpu-check.json"
echo "wrote $OUT_DIR/gpu-check.json (rc $?)"
