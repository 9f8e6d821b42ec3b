#!/usr/bin/env bash
# Issue 4's GPU checks in one call of the device tool, from the repository root:
#     bash benchmarks/device_check.sh            (on the GPU machine; at most 8 minutes, planned for ~5)
#     DEVICE_CHECK_QUICK=1 bash benchmarks/device_check.sh   (a CPU smoke run of this script)
# 1. tests/gpu: the CUDA-only code paths (activation estimate vs real peak memory, no host sync in a
#    training step, the fast path end to end with resume, GPU vs CPU augmentation, real out-of-memory).
# 2. benchmarks/train_throughput.py at the sizes (50,000 PNGs at 32 px, 10,000 JPEGs at 224 px),
#    the article's loop beside the engine, plus a torch.compile run to weigh compile time against gain.
# Logs and JSON go to $OUT (the device tool brings them back). Needs torch, torchvision, Pillow,
# safetensors, numpy and pytest, all in the device image; nothing is installed.
set -u -o pipefail
OUT=${OUT:-$(mktemp -d)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export RESNET_APP_CACHE_DIR="${TMPDIR:-/tmp}/resnet-app-device-cache"
PY=${PYTHON:-python3}
if [ "${DEVICE_CHECK_QUICK:-0}" = 1 ]; then
    bench_args=(--device cpu --quick)
else
    bench_args=(--device cuda --compile)
fi

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
    "$PY" -c "import os, torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cores', os.cpu_count())"
} 2>&1 | tee "$OUT/machine.txt"

echo "== tests/gpu"
timeout 120 "$PY" -m pytest tests/gpu -v -s -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log"
tests_status=${PIPESTATUS[0]}

echo "== benchmark"
timeout 360 "$PY" benchmarks/train_throughput.py "${bench_args[@]}" --json-out "$OUT/throughput.json" 2>&1 \
    | tee "$OUT/throughput.log"
bench_status=${PIPESTATUS[0]}

echo "tests/gpu exit $tests_status, benchmark exit $bench_status"
[ "$tests_status" -eq 0 ] && [ "$bench_status" -eq 0 ]
