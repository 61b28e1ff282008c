"""Shared fixtures: the `backend` fixture runs a test once per registered backend.

A backend that cannot run here (no torch, no CuPy, no GPU) is SKIPPED with its
reason, never dropped. Backends on a GPU carry the `gpu` marker. BPCORE_REQUIRE_GPU=1 fails the
run unless every GPU backend (cupy, torch:cuda) passed at least one case and failed none;
BPCORE_REQUIRE_GPU=cupy (a comma list of specs) asks it of those backends only (ci/gpu.sh sets it
to the backends under test). One "GPU gate:" line per backend ends the run.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from gpu_gate import gate_lines, is_gpu_spec, required_backends

import backends

# BPCORE_HIDE_BACKENDS=torch (what `BPCORE_TORCH=none bash ci/test.sh` sets): torch is then not
# a backend and not an oracle either; tests that need it skip as if it were not installed.
if "torch" in backends._registry._hidden():
    sys.modules["torch"] = None

# Backends that train; onnx (export, forward only) has its own tests in test_onnx.py.
BACKEND_STATUS = backends.status(trains=True)


def _backend_params():
    for spec, reason in BACKEND_STATUS.items():
        marks = [pytest.mark.runs_on(spec)] + ([pytest.mark.gpu] if is_gpu_spec(spec) else [])
        if reason is not None:
            marks.append(pytest.mark.skip(reason=reason))
        yield pytest.param(spec, marks=marks, id=spec)


BACKEND_PARAMS = list(_backend_params())


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request):
    """A usable Backend; tests using it run once per backend."""
    return backends.get(request.param)


@pytest.fixture
def rng():
    """A seeded host Generator: every backend sees the same numbers."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """torch on one thread for the whole run (each pytest-xdist worker is a process of its own): the
    tests' torch ops are tiny, and extra threads only contend for the cores. On this project's
    2-core machine, busy with other work, a CNN gradient check on the torch backend took 16 s with
    torch's 2 threads and 1.4 s with one."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the GPU gate: BPCORE_REQUIRE_GPU=1 (every GPU backend) or "cupy,torch:cuda" (a list of specs) --------
def pytest_collection_modifyitems(items):
    """The specs of a case's ``runs_on`` marks (the ``backend`` fixture's, test_checkpoint_round_trip's
    pairs) ride on its report as a user property, so that pytest-xdist's controller can count them too."""
    for item in items:
        specs = sorted({spec for mark in item.iter_markers("runs_on") for spec in mark.args})
        if specs:
            item.user_properties.append(("backends", ",".join(specs)))


_outcomes: dict[str, dict[str, int]] = {}      # spec -> {"passed": n, "failed": n, "skipped": n}


def pytest_runtest_logreport(report):
    specs = dict(report.user_properties).get("backends")
    if not specs:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed) or \
            (report.when == "teardown" and report.failed):
        for spec in specs.split(","):
            counts = _outcomes.setdefault(spec, {"passed": 0, "failed": 0, "skipped": 0})
            counts[report.outcome] += 1


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):        # a pytest-xdist worker: the controller counts
        return
    _, ok = gate_lines(required_backends(os.environ.get("BPCORE_REQUIRE_GPU"), BACKEND_STATUS), _outcomes,
                       BACKEND_STATUS)
    if not ok:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line per skip reason with its count, so the result is not buried (``-rs`` lists each case);
    then, under BPCORE_REQUIRE_GPU, one line per required backend (ci/gpu.sh collects them)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped and "s" not in (config.option.reportchars or ""):
        counts: dict[str, int] = {}
        for report in skipped:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
            reason = reason.removeprefix("Skipped: ")
            counts[reason] = counts.get(reason, 0) + 1
        terminalreporter.section("skipped, by reason (pytest -rs lists every case)", sep="-")
        for reason, count in sorted(counts.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{count:>5}  {reason}")
    lines, _ = gate_lines(required_backends(os.environ.get("BPCORE_REQUIRE_GPU"), BACKEND_STATUS), _outcomes,
                          BACKEND_STATUS)
    if lines:
        terminalreporter.section("GPU gate (BPCORE_REQUIRE_GPU)", sep="-")
        for line in lines:
            terminalreporter.write_line(line, red="FAIL" in line, green="PASS" in line)
