#!/usr/bin/env bash
# Build the documentation site (Sphinx, PyData theme) into docs/_build/html, warnings as errors.
#
#   bash ci/docs.sh [sphinx-build arguments]
#
# BPCORE_VENV   the virtual environment to use (default: .venv in the repository; created if missing)
# PYTHON        the interpreter that creates it (default: python3)
#
# Installs the "docs" extra (Sphinx, pydata-sphinx-theme, myst-nb, sphinx-gallery, ipykernel, and
# bpcore's viz, data and onnx extras), then builds from scratch: every tutorial (docs/tutorials/*.md,
# MyST notebooks) is executed and every example in examples/ is run for the gallery, so the numbers
# and pictures on the site are this build's.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${BPCORE_VENV:-.venv}"
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
python="$venv/bin/python"
"$python" -m pip install --quiet -e ".[docs]"

# from scratch: the gallery's generated pages and the executed notebooks are build products
rm -rf docs/_build docs/auto_examples
start=$(date +%s)
# (ipykernel warns on stderr that its local kernel talks over TCP without encryption: that line is
# dropped, everything else Sphinx and the kernels say is kept)
BPCORE_DOCS_EXECUTE="${BPCORE_DOCS_EXECUTE:-force}" MPLBACKEND=Agg \
    "$python" -m sphinx -W --keep-going -q -b html docs docs/_build/html "$@" \
    2> >(grep -v "Kernel is running over TCP without encryption" >&2)
echo "docs: built docs/_build/html/index.html in $(( $(date +%s) - start )) s"
