#!/usr/bin/env bash
# One command on a CUDA machine: the GPU test cases on cupy and torch:cuda, then the step
# benchmark on both, everything written to benchmarks/gpu-results.md with the date.
#
#   bash ci/gpu.sh [pytest arguments]        (default: -m gpu, the cases on the GPU backends)
#
# Needs Python with NumPy, CuPy, PyTorch (a CUDA build) and pytest; no network. bpcore runs from
# the checkout (PYTHONPATH). array-api-compat and array-api-strict come from ./wheels when they are
# missing; fetch them on a machine with network, for the GPU machine's Python (3.12 here):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d wheels "array-api-compat>=1.16" "array-api-strict>=2.5"
#
# pip installs them into the environment; where it is read-only they go to a --target folder put
# on PYTHONPATH. Budget: about 10 minutes in all (BPCORE_GPU_TEST_TIMEOUT, BPCORE_GPU_BENCH_TIMEOUT).
set -uo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
results="${BPCORE_GPU_RESULTS:-benchmarks/gpu-results.md}"     # where the report goes
log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT

missing=$("$python" -c 'import importlib.util as u; print(" ".join(m for m in ("array_api_compat", "array_api_strict") if u.find_spec(m) is None))')
if [ -n "$missing" ]; then
    if ! ls wheels/*.whl >/dev/null 2>&1; then
        echo "missing: $missing, and no wheels/ folder to install them from (see the pip download line above)" >&2
        exit 2
    fi
    if ! "$python" -m pip install --quiet --no-index --no-deps wheels/*.whl 2>/dev/null; then
        site="${TMPDIR:-/tmp}/bpcore-gpu-site"         # a read-only environment: install beside it
        "$python" -m pip install --quiet --no-index --no-deps --upgrade --target "$site" wheels/*.whl || exit 2
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export BPCORE_REQUIRE_GPU=1 PYTHONUNBUFFERED=1

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$python" - <<'PY'
import platform
import numpy, array_api_compat, array_api_strict
print("python", platform.python_version(), "| numpy", numpy.__version__, "| array-api-compat",
      array_api_compat.__version__, "| array-api-strict", array_api_strict.__version__)
for name in ("cupy", "torch"):
    try:
        module = __import__(name)
        cuda = getattr(getattr(module, "version", None), "cuda", None) if name == "torch" else None
        print(name, module.__version__, f"(CUDA {cuda})" if cuda else "")
    except ImportError:
        print(name, "not installed")
import backends
for spec, reason in backends.status().items():
    print(f"  {spec:<26} {'usable' if reason is None else 'UNUSABLE: ' + reason}")
PY
} 2>&1 | tee "$log/machine.txt"

if [ "$#" -eq 0 ]; then set -- -m gpu; fi
start=$(date +%s)
timeout "${BPCORE_GPU_TEST_TIMEOUT:-420}" "$python" -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee "$log/tests.txt"
tests_rc=${PIPESTATUS[0]}
tests_s=$(( $(date +%s) - start ))

bench_rc=0
for device in cuda torch:cuda; do
    echo "== benchmark --device $device" | tee -a "$log/bench.txt"
    timeout "${BPCORE_GPU_BENCH_TIMEOUT:-90}" "$python" benchmarks/bench_step.py --device "$device" 2>&1 \
        | tee -a "$log/bench.txt" || bench_rc=1
done

summary=$(grep -E "[0-9]+ (passed|failed)" "$log/tests.txt" | tail -1)
{
    echo "# GPU results"
    echo
    echo "Written by \`bash ci/gpu.sh\` on $(date -u +%Y-%m-%d). Tests: \`${summary:-no summary line}\`"
    echo "(exit status $tests_rc, ${tests_s} s); benchmarks exit status $bench_rc."
    echo
    echo "## Machine"
    echo
    echo '```text'
    cat "$log/machine.txt"
    echo '```'
    echo
    echo "## Step benchmark (\`benchmarks/bench_step.py --device cuda | torch:cuda\`)"
    echo
    echo '```text'
    cat "$log/bench.txt"
    echo '```'
    echo
    echo "## Test failures and errors"
    echo
    echo '```text'
    grep -E "^(FAILED|ERROR)" "$log/tests.txt" || echo "none"
    echo '```'
} > "$results"
echo "wrote $results"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
