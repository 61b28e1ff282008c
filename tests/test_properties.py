"""Hypothesis properties of layers and losses over small random shapes, on the numpy backend.

Shapes are drawn from batch sizes 1..9 and widths 1..7 (batch 1 and width 1
are always tried, through ``@example``); the numbers come from a seeded host
Generator whose seed Hypothesis draws, so a failure is reproducible from the
falsifying example Hypothesis prints.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import tolerance
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import bpcore as bp

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None)

batch_sizes = st.integers(min_value=1, max_value=9)
widths = st.integers(min_value=1, max_value=7)
seeds = st.integers(min_value=0, max_value=2**32 - 1)

# Every elementwise or row-wise activation: the mlp names, plus Softmax.
ACTIVATION_FACTORIES = {**bp.ACTIVATIONS, "softmax": bp.Softmax}
# Activations with a kink at 0, where central differences are meaningless.
KINKED_ACTIVATIONS = {"relu", "leaky_relu"}

EPS64 = float(np.finfo(np.float64).eps)
# Central differences: a step of eps^(1/3) balances the truncation error (~ h^2 |f'''|)
# against rounding (~ eps |f| / h), leaving an error ~ eps^(2/3) times the size of f
# and its derivatives; 1e4 covers |f'''| up to ~2000 (BCE at p = 0.1).
FD_STEP = EPS64 ** (1.0 / 3.0)
FD_TOL = {"rtol": 1e4 * EPS64 ** (2.0 / 3.0), "atol": 1e4 * EPS64 ** (2.0 / 3.0)}


def assert_within_rounding(actual, exact, magnitude, dtype):
    """|actual - exact| <= tol * magnitude, where magnitude bounds the terms summed (|x| @ |W| + |b|).

    A sum of n <= 9 products rounds with relative error ~ n eps of its terms'
    magnitudes, well inside ``tolerance(dtype)`` (100 eps).
    """
    actual = np.asarray(actual, dtype=np.float64)
    bound = tolerance(dtype)["atol"] * magnitude
    excess = np.abs(actual - exact) - bound
    assert actual.shape == exact.shape
    assert np.all(excess <= 0), f"max excess over the rounding bound {excess.max():.3e} (dtype {dtype})"


# -- (a) Linear follows the NumPy formulas --------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@PROPERTY_SETTINGS
@given(batch=batch_sizes, n_in=widths, n_out=widths, bias=st.booleans(), seed=seeds)
@example(batch=1, n_in=1, n_out=1, bias=True, seed=0)
@example(batch=1, n_in=7, n_out=3, bias=False, seed=1)
def test_linear_matches_numpy_formulas(dtype, batch, n_in, n_out, bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype) if bias else np.zeros(n_out, dtype)
    grad_out = rng.standard_normal((batch, n_out)).astype(dtype)
    layer = bp.Linear(n_in, n_out, bias=bias).astype(dtype)
    layer.load_state_dict({"W": W, "b": b} if bias else {"W": W})

    out = layer(x)
    grad_in = layer.backward(grad_out)

    # The exact values, from the same (rounded) inputs, in float64.
    x64, W64, b64, g64 = (a.astype(np.float64) for a in (x, W, b, grad_out))
    assert out.dtype == np.dtype(dtype) and grad_in.dtype == np.dtype(dtype)
    assert out.shape == (batch, n_out) and grad_in.shape == (batch, n_in)
    assert layer.W.grad.shape == (n_in, n_out)
    assert_within_rounding(out, x64 @ W64 + b64, np.abs(x64) @ np.abs(W64) + np.abs(b64), dtype)
    assert_within_rounding(grad_in, g64 @ W64.T, np.abs(g64) @ np.abs(W64).T, dtype)
    assert_within_rounding(layer.W.grad, x64.T @ g64, np.abs(x64).T @ np.abs(g64), dtype)
    if bias:
        assert layer.b.grad.shape == (n_out,)
        assert_within_rounding(layer.b.grad, g64.sum(axis=0), np.abs(g64).sum(axis=0), dtype)
    else:
        assert layer.b is None


# -- (b) activations: shapes, and gradcheck of Linear -> act -> Linear ----------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(ACTIVATION_FACTORIES))
@PROPERTY_SETTINGS
@given(batch=batch_sizes, width=widths, seed=seeds)
@example(batch=1, width=1, seed=0)
def test_activation_preserves_shape_and_dtype(name, dtype, batch, width, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width)).astype(dtype)
    grad_out = rng.standard_normal((batch, width)).astype(dtype)
    activation = ACTIVATION_FACTORIES[name]().astype(dtype)
    out = activation(x)
    grad_in = activation.backward(grad_out)
    assert out.shape == x.shape and grad_in.shape == x.shape
    assert out.dtype == np.dtype(dtype) and grad_in.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad_in))


@pytest.mark.parametrize("name", sorted(ACTIVATION_FACTORIES))
@PROPERTY_SETTINGS
@given(batch=batch_sizes, n_in=widths, width=widths, n_out=widths, seed=seeds)
@example(batch=1, n_in=1, width=1, n_out=1, seed=0)
@example(batch=1, n_in=3, width=7, n_out=2, seed=1)
def test_activation_between_linears_passes_gradcheck(name, batch, n_in, width, n_out, seed):
    rng = np.random.default_rng(seed)
    model = bp.Sequential(bp.Linear(n_in, width, seed=rng), ACTIVATION_FACTORIES[name](),
                          bp.Linear(width, n_out, seed=rng)).astype("float64")
    state = model.state_dict()
    state["0.b"], state["2.b"] = rng.standard_normal(width), rng.standard_normal(n_out)
    model.load_state_dict(state)
    x = rng.standard_normal((batch, n_in))
    target = rng.standard_normal((batch, n_out))
    if name in KINKED_ACTIVATIONS:
        pre_activation = x @ state["0.W"] + state["0.b"]
        assume(np.min(np.abs(pre_activation)) > 1e-3)   # far from the kink compared with gradcheck's eps
    report = bp.gradcheck(model, bp.MSELoss(), x, target)
    assert report.passed, str(report)
    assert [row.name for row in report.rows] == ["0.W", "0.b", "2.W", "2.b", "input"]


# -- (c) gradients accumulate; zero_grad resets them ------------------------------

@PROPERTY_SETTINGS
@given(batch=batch_sizes, n_in=widths, width=widths, n_out=widths, seed=seeds)
@example(batch=1, n_in=1, width=1, n_out=1, seed=0)
def test_gradients_accumulate_and_zero_grad_resets(batch, n_in, width, n_out, seed):
    rng = np.random.default_rng(seed)
    model = bp.mlp([n_in, width, n_out], activation="tanh", seed=rng).astype("float64")
    x = rng.standard_normal((batch, n_in))
    grad_out = rng.standard_normal((batch, n_out))
    tol = tolerance("float64")

    def grads():
        # Copies: .grad is updated in place by the next backward.
        return {name: np.array(p.grad, copy=True) for name, p in model.named_parameters()}

    model(x)
    first_grad_in = np.array(model.backward(grad_out), copy=True)
    once = grads()
    assert any(np.any(g != 0) for g in once.values())

    second_grad_in = model.backward(grad_out)                  # same forward cache
    np.testing.assert_allclose(second_grad_in, first_grad_in, **tol)   # dL/dx is not accumulated
    for name, g in grads().items():
        np.testing.assert_allclose(g, 2.0 * once[name], **tol, err_msg=f"{name} after two backwards")

    model(x)
    model.backward(grad_out)                                   # a fresh forward adds again
    for name, g in grads().items():
        np.testing.assert_allclose(g, 3.0 * once[name], **tol, err_msg=f"{name} after three backwards")

    model.zero_grad()
    for name, p in model.named_parameters():
        assert p.grad.shape == p.shape, name
        np.testing.assert_array_equal(p.grad, np.zeros(p.shape), err_msg=f"{name} after zero_grad")

    model(x)
    model.backward(grad_out)
    for name, g in grads().items():
        np.testing.assert_allclose(g, once[name], **tol, err_msg=f"{name}: first backward after zero_grad")


# -- (d) each loss's backward equals central differences ----------------------------

def central_differences(loss_fn, pred, target):
    """(L(pred + h e_i) - L(pred - h e_i)) / 2h for every entry i of pred, in float64."""
    numeric = np.zeros_like(pred)
    for index in np.ndindex(pred.shape):
        shifted = pred.copy()
        shifted[index] = pred[index] + FD_STEP
        loss_plus = float(loss_fn.forward(shifted, target))
        shifted[index] = pred[index] - FD_STEP
        loss_minus = float(loss_fn.forward(shifted, target))
        numeric[index] = (loss_plus - loss_minus) / (2.0 * FD_STEP)
    return numeric


def assert_loss_backward_matches_central_differences(loss_fn, pred, target):
    loss_fn.forward(pred, target)
    analytic = np.array(loss_fn.backward(), copy=True)   # copied before the probes below overwrite it
    assert analytic.shape == pred.shape
    np.testing.assert_allclose(analytic, central_differences(loss_fn, pred, target), **FD_TOL,
                               err_msg=f"{loss_fn!r} backward vs central differences")


# name -> (loss factory, pred(rng, batch, width), target(rng, batch, width))
LOSS_CASES = {
    "MSELoss": (bp.MSELoss,
                lambda rng, n, k: rng.standard_normal((n, k)),
                lambda rng, n, k: rng.standard_normal((n, k))),
    "BCELoss": (bp.BCELoss,
                lambda rng, n, k: rng.uniform(0.1, 0.9, (n, k)),      # away from the clamps at 0 and 1
                lambda rng, n, k: rng.uniform(0.0, 1.0, (n, k))),
    "BCEWithLogitsLoss": (bp.BCEWithLogitsLoss,
                          lambda rng, n, k: 3.0 * rng.standard_normal((n, k)),
                          lambda rng, n, k: rng.integers(0, 2, (n, k)).astype(np.float64)),
    "SoftmaxCrossEntropyLoss": (bp.SoftmaxCrossEntropyLoss,
                                lambda rng, n, k: 3.0 * rng.standard_normal((n, k)),
                                lambda rng, n, k: rng.integers(0, k, n)),
}


@pytest.mark.parametrize("loss_name", sorted(LOSS_CASES))
@PROPERTY_SETTINGS
@given(batch=batch_sizes, width=widths, seed=seeds)
@example(batch=1, width=1, seed=0)
@example(batch=1, width=7, seed=1)
def test_loss_backward_matches_central_differences(loss_name, batch, width, seed):
    make_loss, make_pred, make_target = LOSS_CASES[loss_name]
    rng = np.random.default_rng(seed)
    assert_loss_backward_matches_central_differences(make_loss(), make_pred(rng, batch, width),
                                                     make_target(rng, batch, width))


class _MSELossWithoutMean(bp.MSELoss):
    """A planted bug: the gradient forgets to divide by the number of entries."""

    def backward(self):
        return super().backward() * self._grad.size


def test_central_difference_check_catches_a_planted_bug():
    rng = np.random.default_rng(0)
    with pytest.raises(AssertionError, match="backward vs central differences"):
        assert_loss_backward_matches_central_differences(
            _MSELossWithoutMean(), rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))
