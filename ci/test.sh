#!/usr/bin/env bash
# Install bpcore with its test dependencies into a virtual environment and run the whole suite.
#
#   bash ci/test.sh [pytest arguments]
#
# BPCORE_VENV   where the virtual environment lives (default: .venv in the repository)
# PYTHON        the interpreter that creates it (default: python3)
# BPCORE_TORCH  the torch requirement installed first (default: torch==2.13.0; "none" to skip torch)
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${BPCORE_VENV:-.venv}"
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
python="$venv/bin/python"

extras="test,data,viz"
torch_req="${BPCORE_TORCH:-torch==2.13.0}"
if [ "$torch_req" != "none" ]; then
    # A pinned CPU build first: on this project's machines torch==2.13.0 is a local CPU wheel,
    # while an unpinned "torch" would pull a CUDA build of several GB.
    "$python" -m pip install --quiet "$torch_req"
    extras="test,data,viz,torch"
fi
"$python" -m pip install --quiet -e ".[$extras]"

"$python" -c 'import backends; print("backends usable here:", ", ".join(backends.available()))'
exec "$python" -m pytest "$@"
