"""Helpers shared by the bp.optim tests: two float64 parameters, gradient sequences, and the
``torch`` fixture (the oracle; a test that takes it is skipped when torch is not installed)."""
from __future__ import annotations

import pytest

import backends
import bpcore as bp

NUMPY = backends.get("numpy")

# Two parameters of different shapes: a matrix and a vector.
PARAM_SHAPES = [(3, 4), (4,)]
ORACLE_STEPS = 10


@pytest.fixture
def torch():
    """The torch module; the test is skipped when torch is not installed."""
    return pytest.importorskip("torch")


def make_params(rng, backend=NUMPY):
    """float64 Parameters of PARAM_SHAPES on ``backend`` with random values."""
    return [bp.Parameter(backend.asarray(rng.standard_normal(shape), dtype="float64", copy=True), backend)
            for shape in PARAM_SHAPES]


def gradient_sequence(rng, steps=ORACLE_STEPS):
    """Random gradients whose size changes from step to step (so amsgrad's running max matters)."""
    scales = [1.0, 0.05, 2.0, 0.3, 0.01, 1.5, 0.2, 3.0, 0.02, 0.7, 1.0, 0.1]
    return [[scales[step % len(scales)] * rng.standard_normal(shape) for shape in PARAM_SHAPES]
            for step in range(steps)]


def set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = p.backend.asarray(g, dtype="float64", copy=True)
