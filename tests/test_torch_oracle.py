"""PyTorch autograd as an oracle: every layer and loss of bpcore, in float64, to 1e-8.

Each test runs a bpcore layer (or loss) forward and backward with a random
upstream gradient ``grad_out`` and compares the output, dL/d(input) and every
parameter gradient with what ``torch.autograd`` computes from the same numbers.
The bpcore side runs on every backend (via the ``backend`` fixture); the torch
side always runs on the CPU from the same host arrays. The whole module is
skipped when torch is not installed.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from helpers import ORACLE_TOL, assert_matches_torch, from_torch, host, to_torch, tolerance  # noqa: E402

import backends  # noqa: E402
import bpcore as bp  # noqa: E402

# The oracle bound: float64 results of bpcore and torch agree to 1e-8.

# Values that overflow a naive exp(-x) (|x| = 1000) or sit on a kink (0).
EXTREME_ROW = [-1000.0, -50.0, 0.0, 50.0, 1000.0]



def layer_input(rng, batch=6, width=5):
    """Random inputs of moderate size plus a row of extreme values (and an exact 0)."""
    x = 2.0 * rng.standard_normal((batch, width))
    x[0] = EXTREME_ROW
    return x


def run_bpcore_layer(layer, backend, x, grad_out):
    """Forward and backward on ``backend`` in float64; returns host (out, grad_in).

    Any RuntimeWarning (overflow in exp, invalid value) fails the test, and the
    host inputs must come back unchanged (torch shares memory with them).
    """
    x_before, grad_out_before = x.copy(), grad_out.copy()
    layer.astype("float64").to(backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = layer(backend.asarray(x))
        grad_in = layer.backward(backend.asarray(grad_out))
    np.testing.assert_array_equal(x, x_before, err_msg="forward changed its input in place")
    np.testing.assert_array_equal(grad_out, grad_out_before, err_msg="backward changed grad_out in place")
    return host(backend, out), host(backend, grad_in)


def torch_output_and_input_grad(torch_fn, x, grad_out):
    """torch_fn(x) and dL/dx for the upstream gradient grad_out, by autograd."""
    x_t = to_torch(x, requires_grad=True)
    out_t = torch_fn(x_t)
    out_t.backward(to_torch(grad_out))
    return from_torch(out_t), from_torch(x_t.grad)


def check_layer_against_torch(layer, torch_fn, backend, x, grad_out):
    out, grad_in = run_bpcore_layer(layer, backend, x, grad_out)
    expected_out, expected_grad_in = torch_output_and_input_grad(torch_fn, x, grad_out)
    assert out.shape == expected_out.shape
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad_in))
    assert_matches_torch(out, expected_out, f"{layer!r} output")
    assert_matches_torch(grad_in, expected_grad_in, f"{layer!r} dL/dinput")


# -- activations (no parameters) -------------------------------------------

# name -> (bpcore layer factory, the same function in torch)
ACTIVATION_ORACLES = {
    "Identity": (bp.Identity, lambda x: x * 1.0),
    "ReLU": (bp.ReLU, torch.relu),
    "LeakyReLU(0.2)": (lambda: bp.LeakyReLU(0.2), lambda x: F.leaky_relu(x, negative_slope=0.2)),
    "Sigmoid": (bp.Sigmoid, torch.sigmoid),
    "Tanh": (bp.Tanh, torch.tanh),
    "Softmax": (bp.Softmax, lambda x: torch.softmax(x, dim=-1)),
    "GELU": (bp.GELU, lambda x: F.gelu(x, approximate="tanh")),
}


@pytest.mark.parametrize("name", list(ACTIVATION_ORACLES))
def test_activation_matches_torch(backend, rng, name):
    make_layer, torch_fn = ACTIVATION_ORACLES[name]
    x = layer_input(rng)
    grad_out = rng.standard_normal(x.shape)
    check_layer_against_torch(make_layer(), torch_fn, backend, x, grad_out)


def test_leaky_relu_accepts_torch_keyword(backend, rng):
    x = layer_input(rng)
    grad_out = rng.standard_normal(x.shape)
    check_layer_against_torch(bp.LeakyReLU(negative_slope=0.2),
                              lambda t: F.leaky_relu(t, negative_slope=0.2), backend, x, grad_out)


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmax_along_each_axis_matches_torch(backend, rng, dim):
    x = layer_input(rng)
    grad_out = rng.standard_normal(x.shape)
    check_layer_against_torch(bp.Softmax(dim=dim), lambda t: torch.softmax(t, dim=dim), backend, x, grad_out)


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
    expected_out, expected_grad = torch_output_and_input_grad(torch.sigmoid, x, grad_out)
    np.testing.assert_allclose(out, expected_out, rtol=ORACLE_TOL["rtol"], atol=0.0)
    np.testing.assert_allclose(grad_in, expected_grad, rtol=ORACLE_TOL["rtol"], atol=0.0)


# -- Linear -----------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_linear_matches_torch(backend, rng, bias):
    batch, n_in, n_out = 6, 4, 3
    x = rng.standard_normal((batch, n_in))
    grad_out = rng.standard_normal((batch, n_out))
    W = rng.standard_normal((n_in, n_out))
    b = rng.standard_normal(n_out)
    layer = bp.Linear(n_in, n_out, bias=bias).astype("float64")
    layer.load_state_dict({"W": W, "b": b} if bias else {"W": W})
    out, grad_in = run_bpcore_layer(layer, backend, x, grad_out)

    torch_layer = torch.nn.Linear(n_in, n_out, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        torch_layer.weight.copy_(to_torch(W.T))       # torch keeps W as (n_out, n_in)
        if bias:
            torch_layer.bias.copy_(to_torch(b))
    expected_out, expected_grad_in = torch_output_and_input_grad(torch_layer, x, grad_out)

    assert_matches_torch(out, expected_out, "Linear output")
    assert_matches_torch(grad_in, expected_grad_in, "Linear dL/dx")
    assert_matches_torch(host(backend, layer.W.grad), from_torch(torch_layer.weight.grad).T, "Linear dL/dW")
    if bias:
        assert_matches_torch(host(backend, layer.b.grad), from_torch(torch_layer.bias.grad), "Linear dL/db")
    else:
        assert layer.b is None and [name for name, _ in layer.named_parameters()] == ["W"]


# -- a whole MLP --------------------------------------------------------------

# bp.ACTIVATIONS name -> the torch module with the same defaults.
TORCH_ACTIVATION_MODULES = {
    "relu": lambda: torch.nn.ReLU(),
    "leaky_relu": lambda: torch.nn.LeakyReLU(),          # negative_slope 0.01, bpcore's default too
    "sigmoid": lambda: torch.nn.Sigmoid(),
    "tanh": lambda: torch.nn.Tanh(),
    "gelu": lambda: torch.nn.GELU(approximate="tanh"),
    "identity": lambda: torch.nn.Identity(),
}


def test_every_activation_has_a_torch_oracle():
    assert set(TORCH_ACTIVATION_MODULES) == set(bp.ACTIVATIONS)


def torch_mlp_like(model):
    """A torch.nn.Sequential with the structure and the exact weights of a bpcore mlp."""
    modules = []
    for layer in model:
        if isinstance(layer, bp.Linear):
            linear = torch.nn.Linear(layer.n_in, layer.n_out, dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(to_torch(host(layer.device, layer.W.data).T))
                linear.bias.copy_(to_torch(host(layer.device, layer.b.data)))
            modules.append(linear)
        else:
            name = next(key for key, cls in bp.ACTIVATIONS.items() if type(layer) is cls)
            modules.append(TORCH_ACTIVATION_MODULES[name]())
    return torch.nn.Sequential(*modules)


@pytest.mark.parametrize("activation", sorted(bp.ACTIVATIONS))
def test_mlp_matches_torch(backend, rng, activation):
    sizes = [4, 6, 3, 1]
    model = bp.mlp(sizes, activation=activation, seed=11).astype("float64")
    state = model.state_dict()
    for name in state:
        if name.endswith(".b"):                      # non-zero biases, so they are really tested
            state[name] = rng.standard_normal(state[name].shape)
    model.load_state_dict(state)
    torch_model = torch_mlp_like(model)
    x = 2.0 * rng.standard_normal((8, sizes[0]))
    grad_out = rng.standard_normal((8, sizes[-1]))

    out, grad_in = run_bpcore_layer(model, backend, x, grad_out)
    expected_out, expected_grad_in = torch_output_and_input_grad(torch_model, x, grad_out)
    assert_matches_torch(out, expected_out, f"mlp({activation}) output")
    assert_matches_torch(grad_in, expected_grad_in, f"mlp({activation}) dL/dx")

    torch_linears = [m for m in torch_model if isinstance(m, torch.nn.Linear)]
    bp_linears = [layer for layer in model if isinstance(layer, bp.Linear)]
    assert len(bp_linears) == len(torch_linears) == len(sizes) - 1
    for i, (ours, theirs) in enumerate(zip(bp_linears, torch_linears)):
        assert_matches_torch(host(backend, ours.W.grad), from_torch(theirs.weight.grad).T,
                             f"mlp({activation}) Linear {i} dL/dW")
        assert_matches_torch(host(backend, ours.b.grad), from_torch(theirs.bias.grad),
                             f"mlp({activation}) Linear {i} dL/db")


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


# -- the oracle itself can fail -----------------------------------------------

class _TanhMissingSquare(bp.Tanh):
    """A planted bug: dy/dx = 1 - y instead of 1 - y^2."""

    def backward(self, grad_out):
        return grad_out * (1.0 - self.saved("y"))


def test_oracle_catches_a_planted_backward_bug(rng):
    x = layer_input(rng)
    grad_out = rng.standard_normal(x.shape)
    with pytest.raises(AssertionError, match="dL/dinput differs from torch"):
        check_layer_against_torch(_TanhMissingSquare(), torch.tanh, backends.get("numpy"), x, grad_out)


def test_oracle_catches_a_wrong_slope(rng):
    x = layer_input(rng)
    grad_out = rng.standard_normal(x.shape)
    with pytest.raises(AssertionError, match="output differs from torch"):
        check_layer_against_torch(bp.LeakyReLU(0.2), lambda t: F.leaky_relu(t, negative_slope=0.2 + 1e-6),
                                  backends.get("numpy"), x, grad_out)
