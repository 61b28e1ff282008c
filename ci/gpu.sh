#!/usr/bin/env bash
# Run the whole suite on a CUDA machine; fails if no GPU test case passed.
#
#   bash ci/gpu.sh [pytest arguments]
#
# Needs CuPy (pip install -e ".[cuda12]" or ".[cuda13]"), NumPy, pytest, and array-api-compat,
# array-api-strict and hypothesis. On a machine without network, put their wheels in ./wheels
# (pip download -d wheels array-api-compat array-api-strict hypothesis sortedcontainers attrs tqdm)
# and this script installs them from there. bpcore itself runs from the checkout (PYTHONPATH).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"

if [ -d wheels ]; then
    "$python" -m pip install --quiet --no-index --find-links wheels \
        array-api-compat array-api-strict hypothesis tqdm
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export BPCORE_REQUIRE_GPU=1

echo "== date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$python" - <<'PY'
import platform, numpy, array_api_compat
print("python", platform.python_version(), "| numpy", numpy.__version__, "| array-api-compat", array_api_compat.__version__)
for name in ("cupy", "torch"):
    try:
        module = __import__(name)
        print(name, module.__version__)
    except ImportError:
        print(name, "not installed")
import backends
for spec, reason in backends.status().items():
    print(f"  {spec:<18} {'usable' if reason is None else 'UNUSABLE: ' + reason}")
PY
exec "$python" -m pytest -q "$@"
