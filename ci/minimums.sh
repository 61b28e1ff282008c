#!/usr/bin/env bash
# The declared minimum versions must work: install exactly them in a fresh venv and run a smoke subset.
#
#   bash ci/minimums.sh          (BPCORE_MIN_VENV: where the venv lives, default .venv-minimums)
#
# Keep the pins equal to the floors in pyproject.toml (array-api-compat 1.15 and array-api-strict 2.2
# fail: no scalar promotion in xp.maximum(tensor, 0.0), ReLU refused; array-api-strict 2.3 and 2.4
# cannot deepcopy arrays, which gradcheck does: 40 of these cases fail with them).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${BPCORE_MIN_VENV:-.venv-minimums}"
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet "array-api-compat==1.16.0" "array-api-strict==2.5" \
    "numpy>=1.26" "tqdm>=4.60" "pytest>=7" "hypothesis>=6"
"$venv/bin/python" -m pip install --quiet --no-deps -e .
BPCORE_HIDE_BACKENDS=torch "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_gradients.py tests/test_layer_cases.py tests/test_devices.py tests/test_syncs.py tests/test_backends.py
