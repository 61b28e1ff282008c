#!/usr/bin/env bash
# Install bpcore with its test dependencies into a virtual environment and run the whole suite.
#
#   bash ci/test.sh [pytest arguments]
#
# BPCORE_VENV   where the virtual environment lives (default: .venv in the repository)
# PYTHON        the interpreter that creates it (default: python3)
# BPCORE_TORCH  the torch requirement installed first (default: torch==2.13.0; "none": no torch, and a
#               torch already in the environment is hidden from the tests, BPCORE_HIDE_BACKENDS=torch)
# BPCORE_WORKERS pytest-xdist workers (default: auto, one per core; 0 runs in one process)
# BPCORE_GPU_API 1: also install CuPy and NCCL to check their API without a GPU (see below; CI sets it)
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${BPCORE_VENV:-.venv}"
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
python="$venv/bin/python"

extras="test,data,viz,onnx"    # onnx: ndonnx, onnx, onnxruntime for bp.onnx.export (tests/test_onnx.py)
torch_req="${BPCORE_TORCH:-torch==2.13.0}"
if [ "$torch_req" != "none" ]; then
    # A pinned CPU build first: on this project's machines torch==2.13.0 is a local CPU wheel,
    # while an unpinned "torch" would pull a CUDA build of several GB.
    "$python" -m pip install --quiet "$torch_req"
    extras="$extras,torch"
else
    export BPCORE_HIDE_BACKENDS="torch${BPCORE_HIDE_BACKENDS:+,$BPCORE_HIDE_BACKENDS}"
fi
"$python" -m pip install --quiet -e ".[$extras]"
# bp.distributed's tests launch `mpiexec -n 2`: mpi4py and MPICH (with its mpiexec) from the index.
# Without them those tests are skipped with the reason.
"$python" -m pip install --quiet -e ".[mpi]" || echo "note: mpi4py/mpich not installed; distributed tests skipped"

# BPCORE_GPU_API=1 (what .ci/run sets): also CuPy and NCCL, which install and import without a GPU,
# so that tests/test_gpu_api.py checks every CuPy name bpcore calls against the real module (a missing
# CuPy is then a failure, not a skip). backends.available() still leaves CuPy out: no GPU is usable.
if [ "${BPCORE_GPU_API:-0}" = "1" ]; then
    "$python" -m pip install --quiet -e ".[gpu-api]"
    export BPCORE_CHECK_GPU_API=1
fi

# The Neural Flow page is tested in a real headless Chromium when one can be had: Debian's
# chromium package plus Playwright for Python (which drives it; no browser download).
# BPCORE_BROWSER=0 skips this; without Chromium those tests are skipped with the reason.
if [ "${BPCORE_BROWSER:-1}" != "0" ]; then
    if ! command -v chromium >/dev/null && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) \
            >/dev/null 2>&1 || echo "note: could not install chromium; the browser tests will be skipped"
    fi
    "$python" -m pip install --quiet -e ".[browser]" || echo "note: playwright not installed; browser tests skipped"
fi

"$python" -c 'import backends; print("backends usable here:", ", ".join(backends.available()))'
# The floors of the architecture (pyproject.toml, [tool.importlinter]): imports only go down.
"$(dirname "$python")/lint-imports" --no-cache --no-logo
# BPCORE_MINIMUMS=1: also check that the declared minimum versions work (ci/minimums.sh, ~30 s)
[ "${BPCORE_MINIMUMS:-0}" = "1" ] && bash ci/minimums.sh
workers="${BPCORE_WORKERS:-auto}"
if [ "$workers" != "0" ] && "$python" -c "import xdist" 2>/dev/null; then
    exec "$python" -m pytest -n "$workers" "$@"
fi
exec "$python" -m pytest "$@"
