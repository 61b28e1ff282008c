"""ci/gpu.sh and its gate, dry-run on the CPU: a machine that cannot run the GPU check is stopped
with one clear line (never a traceback), and a run passes only when every backend under test
passed its own cases. No GPU here: a fake nvidia-smi stands in for the driver, and NumPy for the
backends under test where the script must get to its end."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from gpu_gate import gate_lines, required_backends

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="ci/gpu.sh needs bash and timeout")


def fake_driver(tmp_path, output="NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB", status=0) -> str:
    """A folder holding an nvidia-smi that prints ``output``, to put first on PATH."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho '{output}'\nexit {status}\n")
    script.chmod(0o755)
    return str(folder)


def run_gpu_sh(tmp_path, *args, path_first=None, **env) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not os.path.exists(os.path.join(p, "nvidia-smi")))      # no real driver
    environment = dict(os.environ, PATH=os.pathsep.join(filter(None, [path_first, path])), PYTHON=sys.executable,
                       BPCORE_GPU_RESULTS=str(tmp_path / "gpu-results.md"), **env)
    environment.pop("BPCORE_REQUIRE_GPU", None)
    return subprocess.run(["bash", str(ROOT / "ci" / "gpu.sh"), *args], capture_output=True, text=True,
                          env=environment, timeout=300, cwd=tmp_path)


def assert_one_line(done, *words):
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ci/gpu.sh: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_without_a_driver_it_stops_with_one_line(tmp_path):
    assert_one_line(run_gpu_sh(tmp_path), "no NVIDIA driver here (nvidia-smi not found)")


def test_a_driver_that_fails_stops_it_with_one_line(tmp_path):
    done = run_gpu_sh(tmp_path, path_first=fake_driver(tmp_path, "NVIDIA-SMI has failed", status=9))
    assert_one_line(done, "nvidia-smi failed: NVIDIA-SMI has failed")


def test_with_a_driver_but_no_usable_cupy_it_names_cupy_and_why(tmp_path):
    done = run_gpu_sh(tmp_path, path_first=fake_driver(tmp_path))
    assert_one_line(done, "'cupy' cannot be used here", "CuPy")


def test_torch_cuda_alone_under_test_is_named_with_its_reason(tmp_path):
    done = run_gpu_sh(tmp_path, path_first=fake_driver(tmp_path), BPCORE_GPU_BACKENDS="torch:cuda")
    assert_one_line(done, "'torch:cuda' cannot be used here")


def test_an_unknown_backend_under_test_is_one_line_too(tmp_path):
    done = run_gpu_sh(tmp_path, path_first=fake_driver(tmp_path), BPCORE_GPU_BACKENDS="tpu")
    assert_one_line(done, "unknown device or backend 'tpu'")


def test_it_passes_when_the_backends_under_test_pass(tmp_path):
    """The whole script to its end, NumPy standing in for the GPU backends: one summary line per
    backend, the verdict, the report; exit 0."""
    done = run_gpu_sh(tmp_path, str(ROOT / "tests" / "test_backends.py"), "-k", "synchronize",
                      path_first=fake_driver(tmp_path), BPCORE_GPU_BACKENDS="numpy",
                      BPCORE_GPU_BENCH_ARGS="--nets spiral --rounds 1 --steps 1 --no-fit")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.splitlines()[-2:]
    assert last[0].startswith("numpy: tests 1 passed, 0 failed, 0 skipped: PASS; benchmark ran"), last
    assert last[1] == "ci/gpu.sh: PASS on numpy"
    report = (tmp_path / "gpu-results.md").read_text()
    assert "NVIDIA H100 80GB HBM3" in report and "spiral" in report and last[0] in report


# -- the gate itself ------------------------------------------------------------------------------
STATUS = {"numpy": None, "cupy": "CuPy is not installed", "torch:cuda": "no CUDA GPU"}


def test_the_gate_asks_a_pass_of_each_backend_under_test():
    assert required_backends("1", STATUS) == ["cupy", "torch:cuda"]
    assert required_backends("cupy, torch:cuda", STATUS) == ["cupy", "torch:cuda"]
    assert required_backends("0", STATUS) == [] and required_backends(None, STATUS) == []
    outcomes = {"torch:cuda": {"passed": 40, "failed": 0, "skipped": 2},
                "cupy": {"passed": 0, "failed": 0, "skipped": 42}}
    lines, ok = gate_lines(["cupy", "torch:cuda"], outcomes, STATUS)      # CuPy all skipped, torch passed
    assert not ok
    assert lines[0] == ("GPU gate: cupy         0 passed, 0 failed, 42 skipped: FAIL, no case passed "
                        "(CuPy is not installed)")
    assert lines[1].endswith("40 passed, 0 failed, 2 skipped: PASS")
    assert gate_lines(["torch:cuda"], outcomes, STATUS)[1]
    assert not gate_lines(["torch:cuda"], {"torch:cuda": {"passed": 3, "failed": 1, "skipped": 0}}, STATUS)[1]
    assert "not a backend spec" in gate_lines(["gpu0"], outcomes, STATUS)[0][0]


def test_a_run_whose_gpu_cases_all_skip_fails_the_gate():
    """In a real pytest run: numpy's cases pass, CuPy's are skipped here, so requiring CuPy fails."""
    test = str(ROOT / "tests" / "test_backends.py")
    env = dict(os.environ, BPCORE_REQUIRE_GPU="numpy,cupy")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", test,
                           "-k", "synchronize"], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert done.returncode == 1, done.stdout
    gate = [line for line in done.stdout.splitlines() if line.startswith("GPU gate:")]
    assert gate[0].startswith("GPU gate: numpy        1 passed") and gate[0].endswith("PASS")
    assert gate[1].startswith("GPU gate: cupy         0 passed, 0 failed, 1 skipped: FAIL, no case passed")
    env["BPCORE_REQUIRE_GPU"] = "numpy"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", test,
                           "-k", "synchronize"], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout
