"""Gradient clipping: ``clip_grad_norm_`` and ``clip_grad_value_`` against ``torch.nn.utils`` in
float64, by hand, on every backend, on a model, and the arguments they refuse.

Tests against torch take the ``torch`` fixture (tests/optim_helpers.py) and are skipped, test by
test, when torch is not installed.
"""
from __future__ import annotations

import math

import numpy as np
import optim_helpers
import pytest
from helpers import host, tolerance
from optim_helpers import NUMPY, PARAM_SHAPES, make_params, set_grads

import bpcore as bp
from bpcore import optim

CLIP_TOL = {"rtol": 1e-12, "atol": 1e-12}
torch = optim_helpers.torch      # the fixture: the torch module, or the test is skipped


# ---------------------------------------------------------------- gradient clipping

def grads_for_clipping(scale):
    rng = np.random.default_rng(21)
    return [scale * rng.standard_normal(shape) for shape in PARAM_SHAPES]


def clip_pair(torch, grads):
    params = make_params(np.random.default_rng(0))
    set_grads(params, grads)
    tensors = [torch.zeros(shape, dtype=torch.float64, requires_grad=True) for shape in PARAM_SHAPES]
    for t, g in zip(tensors, grads):
        t.grad = torch.tensor(g)
    return params, tensors


@pytest.mark.parametrize("norm_type", [2, 2.0, 1, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(torch, norm_type, max_norm):
    grads = grads_for_clipping(1.0)
    params, tensors = clip_pair(torch, grads)
    total = optim.clip_grad_norm_(params, max_norm=max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(tensors, max_norm=max_norm, norm_type=norm_type)
    assert float(total) == pytest.approx(float(expected), rel=1e-12, abs=1e-12)
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), **CLIP_TOL)
    if max_norm > float(total):              # below max_norm: the gradients are left exactly as they were
        for p, g in zip(params, grads):
            np.testing.assert_array_equal(p.grad, g)
    else:
        assert not np.allclose(params[0].grad, grads[0])


@pytest.mark.parametrize("clip_value", [0.0, 0.3, 10.0])
def test_clip_grad_value_matches_torch(torch, clip_value):
    grads = grads_for_clipping(1.0)
    params, tensors = clip_pair(torch, grads)
    assert optim.clip_grad_value_(params, clip_value) is None
    torch.nn.utils.clip_grad_value_(tensors, clip_value)
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), **CLIP_TOL)


@pytest.mark.parametrize("norm_type, expected", [
    (2, math.sqrt(9 + 16 + 144)),            # sqrt(3^2 + 4^2 + 12^2) = 13
    (1, 3 + 4 + 12),
    (math.inf, 12.0),
])
def test_clip_grad_norm_by_hand(norm_type, expected):
    a = bp.Parameter(np.zeros(2), NUMPY)
    b = bp.Parameter(np.zeros(1), NUMPY)
    a.grad, b.grad = np.array([3.0, -4.0]), np.array([12.0])
    total = optim.clip_grad_norm_([a, b], max_norm=1.0, norm_type=norm_type)
    assert float(total) == pytest.approx(expected, rel=1e-14)
    scale = 1.0 / (expected + 1e-6)
    np.testing.assert_allclose(a.grad, [3.0 * scale, -4.0 * scale], rtol=1e-14)
    np.testing.assert_allclose(b.grad, [12.0 * scale], rtol=1e-14)


@pytest.mark.parametrize("norm_type", [2, 1, math.inf])
def test_clipping_on_every_backend(backend, norm_type):
    grads = grads_for_clipping(2.0)
    reference = make_params(np.random.default_rng(0))
    set_grads(reference, grads)
    expected_total = float(optim.clip_grad_norm_(reference, max_norm=1.0, norm_type=norm_type))
    model_params = make_params(np.random.default_rng(0), backend)
    set_grads(model_params, grads)
    total = optim.clip_grad_norm_(model_params, max_norm=1.0, norm_type=norm_type)
    assert backend.owns(total)
    assert float(host(backend, total)) == pytest.approx(expected_total, rel=1e-12)
    for p, q in zip(model_params, reference):
        assert backend.owns(p.grad)
        np.testing.assert_allclose(host(backend, p.grad), q.grad, **tolerance("float64"))
    optim.clip_grad_value_(model_params, 0.1)
    for p, q in zip(model_params, reference):
        assert backend.owns(p.grad)
        np.testing.assert_allclose(host(backend, p.grad), np.clip(q.grad, -0.1, 0.1), **tolerance("float64"))


def test_clipping_accepts_a_model():
    model = bp.mlp([3, 4, 1], seed=0).astype("float64")
    for p in model.parameters():
        p.grad = np.full(p.shape, 10.0)
    total = optim.clip_grad_norm_(model, max_norm=1.0)
    assert float(total) == pytest.approx(10.0 * math.sqrt(sum(p.data.size for p in model.parameters())))
    norm = math.sqrt(sum(float(np.sum(p.grad ** 2)) for p in model.parameters()))
    assert norm == pytest.approx(1.0, rel=1e-5)
    optim.clip_grad_value_(model, 0.5)
    assert all(np.all(p.grad <= 0.5) for p in model.parameters())


@pytest.mark.parametrize("kwargs, match", [
    ({"max_norm": -1.0}, "max_norm"), ({"max_norm": float("nan")}, "max_norm"),
    ({"max_norm": float("inf")}, "max_norm"), ({"max_norm": "1"}, "max_norm"),
    ({"max_norm": 1.0, "norm_type": 0}, "norm_type"), ({"max_norm": 1.0, "norm_type": -2.0}, "norm_type"),
    ({"max_norm": 1.0, "norm_type": "fro"}, "norm_type"),
])
def test_clip_grad_norm_refuses_bad_arguments(kwargs, match):
    params = make_params(np.random.default_rng(0))
    set_grads(params, grads_for_clipping(1.0))
    before = [p.grad.copy() for p in params]
    with pytest.raises(ValueError, match=match):
        optim.clip_grad_norm_(params, **kwargs)
    for p, g in zip(params, before):
        np.testing.assert_array_equal(p.grad, g)


def test_clipping_refuses_bad_inputs():
    with pytest.raises(ValueError, match="clip_value"):
        optim.clip_grad_value_(make_params(np.random.default_rng(0)), -0.5)
    with pytest.raises(ValueError, match="no parameters"):
        optim.clip_grad_norm_([], max_norm=1.0)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        optim.clip_grad_norm_([np.ones(3)], max_norm=1.0)
