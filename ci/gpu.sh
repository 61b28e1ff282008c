#!/usr/bin/env bash
# One command on a CUDA machine: the GPU test cases and the step benchmark on each backend under
# test (CuPy and PyTorch on CUDA), everything written to benchmarks/gpu-results.md with the date.
#
#   bash ci/gpu.sh [pytest arguments]        (default: -m gpu, the cases on the GPU backends)
#
# Exit status 0 only when every backend under test passed at least one case and failed none
# (BPCORE_REQUIRE_GPU, tests/gpu_gate.py) and ran its benchmark; the last lines are one summary
# line per backend and the verdict. A machine that cannot run it (no driver, no GPU, CuPy or a CUDA
# build of torch missing) stops it at once with one line saying what is missing, never a traceback.
#
# BPCORE_GPU_BACKENDS  the backends under test, by spec (default "cupy torch:cuda"; "torch:cuda" on
#                      a machine without CuPy, "cupy" without a CUDA build of torch)
# BPCORE_GPU_RESULTS   where the report goes (default benchmarks/gpu-results.md)
# BPCORE_GPU_TEST_TIMEOUT, BPCORE_GPU_BENCH_TIMEOUT   seconds (default 420, and 90 per backend)
# BPCORE_GPU_BENCH_ARGS  more arguments for bench_step.py (tests/test_gpu_script.py: a tiny round)
#
# Needs Python with NumPy, pytest and the backends under test (CuPy; PyTorch, a CUDA build); no
# network. bpcore runs from the checkout (PYTHONPATH). array-api-compat and array-api-strict come
# from ./wheels when they are missing; fetch them on a machine with network, for the GPU machine's
# Python (3.12 here):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d wheels "array-api-compat>=1.16" "array-api-strict>=2.5"
#
# pip installs them into the environment; where it is read-only they go to a --target folder put
# on PYTHONPATH. Budget: about 10 minutes in all.
set -uo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
results="${BPCORE_GPU_RESULTS:-benchmarks/gpu-results.md}"
read -r -a under_test <<< "${BPCORE_GPU_BACKENDS:-cupy torch:cuda}"
log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT

stop() {    # one line on stderr, then exit 2: the machine cannot run the GPU check
    echo "ci/gpu.sh: $*" >&2
    exit 2
}

# -- can this machine run it? Each check ends the script with one line. ---------------------------
[ "${#under_test[@]}" -gt 0 ] || stop "BPCORE_GPU_BACKENDS is empty: name the backends under test (cupy, torch:cuda)"
command -v nvidia-smi >/dev/null || stop "no NVIDIA driver here (nvidia-smi not found); run this on a CUDA machine"
gpus=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1) \
    || stop "nvidia-smi failed: $(echo "$gpus" | head -1)"
[ -n "$gpus" ] || stop "nvidia-smi lists no GPU"
command -v "$python" >/dev/null || stop "no Python interpreter '$python' (set PYTHON)"

missing=$("$python" -c 'import importlib.util as u; print(" ".join(m for m in ("numpy", "pytest", "array_api_compat", "array_api_strict") if u.find_spec(m) is None))' 2>&1) \
    || stop "$python cannot run: $(echo "$missing" | tail -1)"
case " $missing " in *" numpy "*|*" pytest "*) stop "missing: $missing (install numpy and pytest)";; esac
if [ -n "$missing" ]; then
    ls wheels/*.whl >/dev/null 2>&1 \
        || stop "missing: $missing, and no wheels/ folder to install them from (see the pip download line in ci/gpu.sh)"
    if ! "$python" -m pip install --quiet --no-index --no-deps wheels/*.whl >/dev/null 2>&1; then
        site="${TMPDIR:-/tmp}/bpcore-gpu-site"         # a read-only environment: install beside it
        "$python" -m pip install --quiet --no-index --no-deps --upgrade --target "$site" wheels/*.whl >/dev/null 2>&1 \
            || stop "could not install wheels/*.whl (pip install --target $site failed)"
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# Every backend under test must be usable here: else one line naming it and why (no traceback).
unusable=$("$python" - "${under_test[@]}" 2>&1 <<'PY'
import sys
try:
    import backends
    for spec in sys.argv[1:]:
        try:
            backends.get(spec)
        except (backends.BackendUnavailableError, ValueError) as error:
            print(str(error).replace("\n", " "))
            break
except Exception as error:  # noqa: BLE001 (the one line below instead of a traceback)
    print(f"bpcore's backends do not load: {type(error).__name__}: {error}".replace("\n", " "))
PY
) || unusable="bpcore's backends do not load: $(echo "$unusable" | tail -1)"
[ -z "$unusable" ] || stop "$(echo "$unusable" | head -1 | cut -c1-600)"

export BPCORE_REQUIRE_GPU="$(IFS=,; echo "${under_test[*]}")" PYTHONUNBUFFERED=1

# -- the machine ----------------------------------------------------------------------------------
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "$gpus"
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

# -- the GPU test cases ---------------------------------------------------------------------------
if [ "$#" -eq 0 ]; then set -- -m gpu; fi
start=$(date +%s)
timeout "${BPCORE_GPU_TEST_TIMEOUT:-420}" "$python" -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee "$log/tests.txt"
tests_rc=${PIPESTATUS[0]}
tests_s=$(( $(date +%s) - start ))

# -- the step benchmark, on each backend under test -------------------------------------------------
declare -A bench_rc
for spec in "${under_test[@]}"; do
    echo "== benchmark --device $spec" | tee -a "$log/bench.txt"
    # shellcheck disable=SC2086 (the extra arguments are words)
    timeout "${BPCORE_GPU_BENCH_TIMEOUT:-90}" "$python" benchmarks/bench_step.py --device "$spec" \
        ${BPCORE_GPU_BENCH_ARGS:-} 2>&1 \
        | tee -a "$log/bench.txt"
    bench_rc[$spec]=${PIPESTATUS[0]}
done

# -- the report and the verdict -------------------------------------------------------------------
summary=$(grep -E "[0-9]+ (passed|failed)" "$log/tests.txt" | tail -1)
lines=()
verdict=0
[ "$tests_rc" -eq 0 ] || verdict=1
for spec in "${under_test[@]}"; do
    gate=$(grep -E "^GPU gate: $spec " "$log/tests.txt" | tail -1 | sed -E "s/^GPU gate: $spec +//")
    [ -n "$gate" ] || { gate="no GPU gate line (the test run ended early, exit status $tests_rc)"; verdict=1; }
    case "$gate" in *PASS*) ;; *) verdict=1;; esac
    if [ "${bench_rc[$spec]}" -eq 0 ]; then bench="benchmark ran"; else bench="benchmark FAILED (exit status ${bench_rc[$spec]})"; verdict=1; fi
    lines+=("$spec: tests $gate; $bench")
done
{
    echo "# GPU results"
    echo
    echo "Written by \`bash ci/gpu.sh\` on $(date -u +%Y-%m-%d). Tests: \`${summary:-no summary line}\`"
    echo "(exit status $tests_rc, ${tests_s} s)."
    echo
    echo '```text'
    printf '%s\n' "${lines[@]}"
    echo '```'
    echo
    echo "## Machine"
    echo
    echo '```text'
    cat "$log/machine.txt"
    echo '```'
    echo
    echo "## Step benchmark (\`benchmarks/bench_step.py --device SPEC\`)"
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
printf '%s\n' "${lines[@]}"
if [ "$verdict" -eq 0 ]; then
    echo "ci/gpu.sh: PASS on ${under_test[*]}"
else
    echo "ci/gpu.sh: FAIL (see the lines above and $results)"
fi
exit "$verdict"
