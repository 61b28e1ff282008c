"""PyTorch autograd as an oracle for what the layer cases do not cover: losses, a whole MLP, Sigmoid
at large magnitudes; in float64, to 1e-8.

Each test runs bpcore forward and backward (the loss's backward) and compares the output, dL/d(input)
and every parameter gradient with what ``torch.autograd`` computes from the same numbers. The bpcore
side runs on every backend (via the ``backend`` fixture); the torch side always runs on the CPU from
the same host arrays. Every layer's own oracle check is in tests/test_layer_cases.py (one table of
cases in tests/layer_cases.py). The whole module is skipped when torch is not installed.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from helpers import (ORACLE_TOL, assert_matches_torch, checked_forward_backward, from_torch, host, to_torch,  # noqa: E402
                     tolerance, torch_forward_backward)
from layer_cases import EXTREME_ROW  # noqa: E402
from torch_twins import BUILDERS, torch_twin  # noqa: E402

import bpcore as bp  # noqa: E402


def run_bpcore_layer(layer, backend, x, grad_out):
    """Forward and backward on ``backend`` in float64, RuntimeWarnings as errors, inputs checked
    unchanged; host (out, grad_in)."""
    out, _, grad_in = checked_forward_backward(layer.astype("float64").to(backend), backend, x, grad_out)
    return out, grad_in


# -- Sigmoid at large magnitudes --------------------------------------------

def test_sigmoid_exact_at_large_magnitudes(backend):
    """Sigmoid of +-50 and +-1000: no overflow, and tiny values kept to full relative precision."""
    x = np.array([EXTREME_ROW])
    grad_out = np.ones_like(x)
    out, grad_in = run_bpcore_layer(bp.Sigmoid(), backend, x, grad_out)
    tiny = math.exp(-50.0) / (1.0 + math.exp(-50.0))
    expected = np.array([[0.0, tiny, 0.5, 1.0 / (1.0 + math.exp(-50.0)), 1.0]])
    # atol=0: sigmoid(-50) ~ 2e-22 must be right to its own precision, not just "about 0".
    np.testing.assert_allclose(out, expected, rtol=tolerance("float64")["rtol"], atol=0.0)
    np.testing.assert_allclose(grad_in, expected * (1.0 - expected), rtol=tolerance("float64")["rtol"], atol=0.0)
    expected_out, expected_grad = torch_forward_backward(torch.sigmoid, x, grad_out)
    np.testing.assert_allclose(out, expected_out, rtol=ORACLE_TOL["rtol"], atol=0.0)
    np.testing.assert_allclose(grad_in, expected_grad, rtol=ORACLE_TOL["rtol"], atol=0.0)


# -- a whole MLP --------------------------------------------------------------

def test_every_activation_has_a_torch_twin_with_the_same_defaults():
    assert all(cls in BUILDERS for cls in bp.ACTIVATIONS.values())
    assert bp.LeakyReLU().slope == torch.nn.LeakyReLU().negative_slope == 0.01


@pytest.mark.parametrize("activation", sorted(bp.ACTIVATIONS))
def test_mlp_matches_torch(backend, rng, activation):
    sizes = [4, 6, 3, 1]
    model = bp.mlp(sizes, activation=activation, seed=11).astype("float64")
    state = model.state_dict()
    for name in state:
        if name.endswith(".b"):                      # non-zero biases, so they are really tested
            state[name] = rng.standard_normal(state[name].shape)
    model.load_state_dict(state)
    twin = torch_twin(model)
    x = 2.0 * rng.standard_normal((8, sizes[0]))
    grad_out = rng.standard_normal((8, sizes[-1]))

    out, grad_in = run_bpcore_layer(model, backend, x, grad_out)
    expected_out, expected_grad_in = torch_forward_backward(twin.module, x, grad_out)
    assert_matches_torch(out, expected_out, f"mlp({activation}) output")
    assert_matches_torch(grad_in, expected_grad_in, f"mlp({activation}) dL/dx")
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.W", "0.b", "2.W", "2.b", "4.W", "4.b"] and sorted(twin.grads) == sorted(names)
    for name, p in model.named_parameters():
        assert_matches_torch(host(backend, p.grad), from_torch(twin.grads[name]()), f"mlp({activation}) dL/d{name}")


# -- losses -------------------------------------------------------------------

def run_bpcore_loss(loss_fn, backend, pred, target):
    """bpcore loss value and dL/dpred on ``backend`` in float64, as host values."""
    loss = loss_fn.forward(backend.asarray(pred, dtype="float64"), target)
    grad = loss_fn.backward()
    return float(host(backend, loss)), host(backend, grad)


def torch_loss_and_grad(torch_loss, pred, target_t):
    pred_t = to_torch(pred, requires_grad=True)
    loss_t = torch_loss(pred_t, target_t)
    loss_t.backward()
    return loss_t.item(), from_torch(pred_t.grad)


def check_loss_against_torch(loss_fn, torch_loss, backend, pred, target, torch_target):
    loss, grad = run_bpcore_loss(loss_fn, backend, pred, target)
    expected_loss, expected_grad = torch_loss_and_grad(torch_loss, pred, torch_target)
    assert math.isfinite(loss) and np.all(np.isfinite(grad))
    assert grad.shape == pred.shape
    assert_matches_torch(loss, expected_loss, f"{loss_fn!r} value")
    assert_matches_torch(grad, expected_grad, f"{loss_fn!r} dL/dpred")


def test_mse_matches_torch(backend, rng):
    pred, target = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    check_loss_against_torch(bp.MSELoss(), F.mse_loss, backend, pred, target, to_torch(target))


def test_mse_column_prediction_with_flat_target_matches_torch(backend, rng):
    """pred (N, 1) with target (N,) is a per-row comparison, not an (N, N) broadcast."""
    pred, target = rng.standard_normal((7, 1)), rng.standard_normal(7)
    check_loss_against_torch(bp.MSELoss(), F.mse_loss, backend, pred, target, to_torch(target[:, None]))


def test_bce_matches_torch_including_certain_probabilities(backend, rng):
    """p of exactly 0 and 1: torch clamps each log at -100 and its gradient's denominator at 1e-12."""
    certain_p = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    certain_y = np.array([0.0, 1.0, 0.0, 1.0, 0.3, 0.7])
    pred = np.concatenate([certain_p, rng.uniform(0.01, 0.99, 6)])[:, None]
    target = np.concatenate([certain_y, rng.uniform(0.0, 1.0, 6)])[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)    # log(0) is never evaluated
        check_loss_against_torch(bp.BCELoss(), F.binary_cross_entropy, backend, pred, target,
                                 to_torch(target))


def test_bce_with_logits_matches_torch_at_huge_logits(backend, rng):
    logits = np.concatenate([[-1000.0, -1000.0, 1000.0, 1000.0, -50.0, 50.0, 0.0],
                             3.0 * rng.standard_normal(5)])[:, None]
    target = np.concatenate([[0.0, 1.0, 0.0, 1.0, 0.5, 0.2, 1.0],
                             rng.integers(0, 2, 5).astype(np.float64)])[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)    # no overflow anywhere
        check_loss_against_torch(bp.BCEWithLogitsLoss(), F.binary_cross_entropy_with_logits, backend,
                                 logits, target, to_torch(target))


def test_softmax_cross_entropy_matches_torch(backend, rng):
    batch, classes = 7, 4
    logits = 3.0 * rng.standard_normal((batch, classes))
    logits[0] = [-1000.0, 0.0, 50.0, 1000.0]             # huge logits stay finite
    labels = rng.integers(0, classes, batch)
    labels[0] = 0                                         # the label with probability ~ exp(-2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        check_loss_against_torch(bp.SoftmaxCrossEntropyLoss(), F.cross_entropy, backend, logits, labels,
                                 torch.tensor(labels, dtype=torch.int64))
