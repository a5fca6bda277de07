#!/usr/bin/env bash
# The GPU check, in one go (under 5 minutes on an H100/H200): runs tests/gpu/test_cuda.py (the fused
# kernel through CuPy against the float64 NumPy "hvp" route) and bench/bench_gpu.py (ms per
# meta-step, minimaml's kernel vs JAX and torch.func, T = 25 and 1024, S = 1 and 5, second order).
#
#   bash bench/gpu_check.sh [RESULTS_DIR]      # default: $OUT if set, else bench/results
#
# Writes into RESULTS_DIR: environment.txt (GPU, driver, Python packages), gpu_tests.txt,
# bench_gpu.txt and bench_gpu.json. Runs from a plain checkout: no install step (the repository
# root goes on PYTHONPATH); needs numpy, and CuPy for the tests (JAX, PyTorch for the peers).
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-${OUT:-bench/results}}
mkdir -p "$RESULTS"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MINIMAML_CACHE_DIR=${MINIMAML_CACHE_DIR:-$RESULTS/.cache}

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || echo "nvidia-smi failed"
  command -v nvcc >/dev/null && nvcc --version | tail -2
  "$PY" - <<'PYEOF'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "cupy", "jax", "torch"):
    try:
        m = importlib.import_module(name)
        print(name, m.__version__)
    except Exception as e:
        print(name, "unavailable:", type(e).__name__, e)
PYEOF
} 2>&1 | tee "$RESULTS/environment.txt"

echo "== tests/gpu/test_cuda.py" | tee "$RESULTS/gpu_tests.txt"
timeout 150 "$PY" -m pytest tests/gpu/test_cuda.py -q -rs -s -p no:cacheprovider 2>&1 | tee -a "$RESULTS/gpu_tests.txt"
tests_rc=${PIPESTATUS[0]}

echo "== bench/bench_gpu.py" | tee "$RESULTS/bench_gpu.txt"
timeout 170 "$PY" bench/bench_gpu.py --out "$RESULTS/bench_gpu.json" 2>&1 | tee -a "$RESULTS/bench_gpu.txt"
bench_rc=${PIPESTATUS[0]}

echo "tests exit $tests_rc (5: all skipped, no CuPy/GPU), bench exit $bench_rc; results in $RESULTS" | tee -a "$RESULTS/bench_gpu.txt"
exit $(( tests_rc != 0 || bench_rc != 0 ))
