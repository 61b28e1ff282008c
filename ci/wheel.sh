#!/usr/bin/env bash
# The package as a user gets it: build the wheel and the sdist, install the wheel (not the checkout)
# into a fresh virtual environment outside the repository, and run the demo and the Neural Flow
# page from it. A module or a page file (JS/CSS) missing from the wheel fails here, not on a
# user's first run.
#
#   bash ci/wheel.sh
#
# PYTHON   the interpreter that makes the environments (default: python3)
# Leaves the wheel and the sdist in dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet build 2>&1 | grep -v "^WARNING: Location" || true
rm -rf dist
"$work/tools/bin/python" -m build --outdir dist . > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel=$(ls dist/bpcore-*.whl)
sdist=$(ls dist/bpcore-*.tar.gz)
echo "wheel: built $wheel and $sdist"

# what must be inside: both import packages, the Flow page's own files, the license
listing=$("$work/tools/bin/python" -m zipfile -l "$wheel")
for needed in bpcore/__init__.py backends/__init__.py bpcore/viz/page/flow.html bpcore/viz/page/flow.js \
              bpcore/viz/page/flow.css bpcore/nn/linear.py bpcore/onnx/export.py LICENSE; do
    grep -q "$needed" <<< "$listing" || { echo "wheel: $needed is missing from $wheel" >&2; exit 1; }
done
contents=$(tar -tzf "$sdist")
grep -q "/LICENSE$" <<< "$contents" || { echo "wheel: LICENSE is missing from $sdist" >&2; exit 1; }

# a fresh environment, outside the repository, with the wheel and the viz extra
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "$root/$wheel[viz]" 2>&1 | grep -v "^WARNING: Location" || true
[ -x "$work/venv/bin/python" ] && "$work/venv/bin/python" -c "import bpcore.viz, matplotlib" 2>/dev/null \
    || { echo "wheel: installing $wheel[viz] failed" >&2; exit 1; }
cd "$work"
env -u PYTHONPATH "$work/venv/bin/python" - "$work/venv" <<'PY'
import sys
import backends, bpcore
for module in (bpcore, backends):
    assert module.__file__.startswith(sys.argv[1]), f"{module.__name__} imported from {module.__file__}, not the wheel"
print(f"wheel: bpcore {bpcore.__version__} imported from {bpcore.__file__}")
PY
env -u PYTHONPATH "$work/venv/bin/python" "$root/examples/spiral.py" --out "$work/out" | tail -3
env -u PYTHONPATH "$work/venv/bin/python" "$root/examples/neural_flow.py" --out "$work/out" | tail -2
for file in spiral_boundary.png spiral_curves.png flow.html; do
    [ -s "$work/out/$file" ] || { echo "wheel: the run wrote no $file" >&2; exit 1; }
done
# the page inlines its JS and CSS from the package data: a missing file would leave it empty
grep -q "function" "$work/out/flow.html" || { echo "wheel: flow.html holds no script" >&2; exit 1; }
echo "wheel: the demo and the Neural Flow page ran from the installed wheel"
