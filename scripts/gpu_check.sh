#!/usr/bin/env bash
# The whole GPU check in one device call: install, GPU tests, examples compiled, benchmarks.
# Logs go to $OUT (or ./gpu_logs). Usage: bash scripts/gpu_check.sh [tests|examples|bench]...
set -uo pipefail
out="${OUT:-gpu_logs}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
parts=("${@:-tests examples bench}")
parts=(${parts[*]})

nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used --format=csv > "$out/gpu.txt" 2>&1
if ! python3 -m pip install --no-build-isolation --no-deps -e . > "$out/install.log" 2>&1; then
  tail -40 "$out/install.log"; exit 1
fi
status=0
for part in "${parts[@]}"; do
  case "$part" in
    tests)
      python3 -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$out/gpu_tests.log" | tail -25
      status=$((status | ${PIPESTATUS[0]})) ;;
    examples)
      for example in quickstart softmax layer_norm gemm reducer producer_consumer flash_attention; do
        echo "== examples/$example.py"
        python3 "examples/$example.py" 2>&1 | tail -8
        status=$((status | ${PIPESTATUS[0]}))
      done 2>&1 | tee "$out/examples.log" ;;
    bench)
      python3 benchmarks/bench.py 2>&1 | tee "$out/bench.log" | tail -30 ;;
  esac
done
exit $status
