#!/usr/bin/env bash
# The one GPU run: install the carried wheels, check the GPU, measure every figure within the budget.
#
#   bash benchmarks/gpu/run.sh [options of python -m vidrestore.bench.gpu]   e.g.  --quick --device cpu
#
# Installs .whl/*.whl (made by fetch_wheels.sh; the project itself is not installed) into $SITE, plus the
# fallbacks whose floor the machine's own packages miss, puts them and the checkout on PYTHONPATH and the
# carried detector weights on VIDRESTORE_WEIGHTS, prints the GPU (name, memory, driver, torch and CUDA),
# then runs `python -m vidrestore.bench.gpu --budget 480`: report.md, figures.json and run.log go to
# $OUT (default benchmarks/gpu/out). Without --quick it stops at once when torch sees no CUDA device.
set -uo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
OUT_DIR=${OUT:-benchmarks/gpu/out}
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
PIP_INSTALL=("$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE")
mkdir -p "$OUT_DIR"

if compgen -G ".whl/*.whl" >/dev/null; then
  "${PIP_INSTALL[@]}" .whl/*.whl || { echo "run.sh: installing the carried wheels failed" >&2; exit 1; }
  fallbacks=$(PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" benchmarks/gpu/wheels.py needed .whl/fallback)
  if [ -n "$fallbacks" ]; then
    # shellcheck disable=SC2086  # one path per word
    "${PIP_INSTALL[@]}" $fallbacks || { echo "run.sh: installing the fallback wheels failed" >&2; exit 1; }
  fi
else
  echo "run.sh: no carried wheels in .whl/ (bash benchmarks/gpu/fetch_wheels.sh): using what is installed"
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export VIDRESTORE_WEIGHTS="$PWD/.whl/weights${VIDRESTORE_WEIGHTS:+:$VIDRESTORE_WEIGHTS}"
export VIDRESTORE_OFFLINE=1 PYTHONUNBUFFERED=1

quick=0
for arg in "$@"; do [ "$arg" = "--quick" ] && quick=1; done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
QUICK=$quick "$PYTHON" - <<'EOF' || exit 3
import os, sys
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}: {p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} multiprocessors")
elif os.environ["QUICK"] != "1":
    sys.exit("run.sh: torch sees no CUDA device (for the CPU check: --quick --device cpu)")
EOF

exec "$PYTHON" -m vidrestore.bench.gpu --budget 480 --out "$OUT_DIR" "$@"
