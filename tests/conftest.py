"""Shared fixtures: the `backend` fixture runs a test once per registered backend.

A backend that cannot run here (no torch, no CuPy, no GPU) is SKIPPED with its
reason, never dropped. Backends on a GPU carry the `gpu` marker; with
BPCORE_REQUIRE_GPU=1 the run fails when no GPU case passed (ci/gpu.sh sets it).
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import backends

# BPCORE_HIDE_BACKENDS=torch (what `BPCORE_TORCH=none bash ci/test.sh` sets): torch is then not
# a backend and not an oracle either; tests that need it skip as if it were not installed.
if "torch" in backends._registry._hidden():
    sys.modules["torch"] = None

# Backends that train; onnx (export, forward only) has its own tests in test_onnx.py.
BACKEND_STATUS = backends.status(trains=True)


def is_gpu_spec(spec: str) -> bool:
    return "cuda" in spec or spec.startswith("cupy")


def _backend_params():
    for spec, reason in BACKEND_STATUS.items():
        marks = [pytest.mark.gpu] if is_gpu_spec(spec) else []
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


_gpu_cases_passed = 0


def pytest_runtest_logreport(report):
    global _gpu_cases_passed
    if report.when == "call" and report.passed and "gpu" in report.keywords:
        _gpu_cases_passed += 1


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):        # a pytest-xdist worker: the controller counts
        return
    if os.environ.get("BPCORE_REQUIRE_GPU") == "1" and _gpu_cases_passed == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = ("BPCORE_REQUIRE_GPU=1 but no GPU test case passed: every GPU backend was skipped "
                   f"({ {s: r for s, r in BACKEND_STATUS.items() if is_gpu_spec(s)} })")
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line per skip reason with its count, so the result is not buried (``-rs`` lists each case)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped or "s" in (config.option.reportchars or ""):
        return
    counts: dict[str, int] = {}
    for report in skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        counts[reason] = counts.get(reason, 0) + 1
    terminalreporter.section("skipped, by reason (pytest -rs lists every case)", sep="-")
    for reason, count in sorted(counts.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{count:>5}  {reason}")
