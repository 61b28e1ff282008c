"""One seed and one data set give the same outputs and gradients on every backend."""
from __future__ import annotations

import numpy as np
import pytest

import bpcore as bp
from helpers import host, tolerance


def forward_backward(spec, activation, loss_fn, x, y):
    model = bp.mlp([4, 16, 8, 3], activation=activation, seed=11).to(spec)
    out = model(x)
    loss = loss_fn.forward(out, y)
    grad_x = model.backward(loss_fn.backward())
    backend = model.device
    grads = {name: backend.to_numpy(p.grad) for name, p in model.named_parameters()}
    return host(backend, out), float(loss), host(backend, grad_x), grads


@pytest.mark.parametrize("activation", sorted(bp.ACTIVATIONS))
def test_same_results_as_numpy(backend, activation):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, 4)).astype("float32")
    labels = rng.integers(0, 3, 32)
    reference = forward_backward("numpy", activation, bp.SoftmaxCrossEntropyLoss(), x, labels)
    result = forward_backward(backend.spec, activation, bp.SoftmaxCrossEntropyLoss(), x, labels)
    tol = tolerance("float32")
    np.testing.assert_allclose(result[0], reference[0], **tol)
    assert result[1] == pytest.approx(reference[1], rel=tol["rtol"])
    np.testing.assert_allclose(result[2], reference[2], **tol)
    for name, grad in reference[3].items():
        assert result[3][name].dtype == np.float32
        np.testing.assert_allclose(result[3][name], grad, **tol, err_msg=name)


def test_training_runs_stay_close(backend):
    """Twenty SGD steps of the spiral net: float32 rounding differs, trajectories stay together."""
    X, y = bp.data.spiral(200, seed=0)
    runs = {}
    for spec in ("numpy", backend.spec):
        model = bp.mlp([2, 16, 8, 1], activation="tanh", seed=0).to(spec)
        loss_fn, opt = bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(20):
            opt.zero_grad()
            loss_fn.forward(model(X), y)
            model.backward(loss_fn.backward())
            opt.step()
        runs[spec] = model.state_dict()
    for name, value in runs["numpy"].items():
        np.testing.assert_allclose(runs[backend.spec][name], value, **tolerance("float32", 1e4))
