"""The GPU gate of the test run (conftest.py calls it; ci/gpu.sh sets BPCORE_REQUIRE_GPU).

A GPU run that skipped every case of the backend it was there for must not pass: with
``BPCORE_REQUIRE_GPU=1`` every GPU backend (cupy, torch:cuda), or with ``BPCORE_REQUIRE_GPU=cupy``
(a comma list of specs) each backend named, must pass at least one case and fail none. The run
ends with one "GPU gate:" line per backend.
"""
from __future__ import annotations


def is_gpu_spec(spec: str) -> bool:
    return "cuda" in spec or spec.startswith("cupy")


def required_backends(value: str | None, status: dict) -> list[str]:
    """The specs BPCORE_REQUIRE_GPU asks a pass of: "1" is every GPU backend, else a comma list."""
    if not value or value == "0":
        return []
    if value == "1":
        return [spec for spec in status if is_gpu_spec(spec)]
    return [spec.strip() for spec in value.split(",") if spec.strip()]


def gate_lines(required, outcomes, status) -> tuple[list[str], bool]:
    """One line per required backend, and whether each of them passed at least one case."""
    lines, ok = [], True
    for spec in required:
        counts = outcomes.get(spec, {"passed": 0, "failed": 0, "skipped": 0})
        line = f"GPU gate: {spec:<12} {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
        if spec not in status:
            ok, line = False, f"{line}: FAIL, not a backend spec (known: {', '.join(status)})"
        elif counts["passed"] == 0:
            reason = status[spec] or "no case on it was selected"
            ok, line = False, f"{line}: FAIL, no case passed ({reason})"
        elif counts["failed"]:
            ok, line = False, f"{line}: FAIL"
        else:
            line = f"{line}: PASS"
        lines.append(line)
    return lines, ok
