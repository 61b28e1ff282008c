"""Layers take (..., features) as PyTorch does: a sequence (N, T, C) is N T samples.

Linear, LayerNorm, the activations and Dropout run on (N, T, C) with the same numbers as on the
(N T, C) rows, equal PyTorch to 1e-8 in float64 (output, dL/dx, every parameter gradient), pass
gradcheck on every backend, and name the expected shape when the last axis is wrong; 2-D input
gives what it gave before.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_matches_torch, host, tolerance

import bpcore as bp

N, T, C = 3, 5, 4

# name -> (factory of a bpcore layer for width C, torch function of (x, layer) or None)
LAYERS = {
    "Linear": lambda: bp.Linear(C, 6, seed=0),
    "LayerNorm": lambda: bp.LayerNorm(C),
    "GELU": bp.GELU,
    "ReLU": bp.ReLU,
    "Tanh": bp.Tanh,
    "Sigmoid": bp.Sigmoid,
    "LeakyReLU": lambda: bp.LeakyReLU(0.1),
    "Softmax": bp.Softmax,
    "Identity": bp.Identity,
    "Dropout(eval)": lambda: bp.Dropout(0.5, seed=0).eval(),
}


def _sequence(rng, shape=(N, T, C)):
    return 2.0 * rng.standard_normal(shape)


def _forward_backward(layer, backend, x, grad_out):
    layer.astype("float64").to(backend)
    out = layer(backend.asarray(x))
    grad_in = layer.backward(backend.asarray(grad_out))
    grads = {name: host(backend, p.grad) for name, p in layer.named_parameters()}
    return host(backend, out), host(backend, grad_in), grads


@pytest.mark.parametrize("name", list(LAYERS))
def test_sequence_is_rows(backend, rng, name):
    """(N, T, C) gives the same output, dL/dx and parameter gradients as its N T rows as (N T, C)."""
    x = _sequence(rng)
    width = 6 if name == "Linear" else C
    grad_out = rng.standard_normal((N, T, width))
    out, grad_in, grads = _forward_backward(LAYERS[name](), backend, x, grad_out)
    flat_out, flat_grad_in, flat_grads = _forward_backward(LAYERS[name](), backend, x.reshape(N * T, C),
                                                           grad_out.reshape(N * T, width))
    tol = tolerance("float64")
    assert out.shape == (N, T, width) and grad_in.shape == (N, T, C)
    np.testing.assert_allclose(out.reshape(N * T, width), flat_out, **tol)
    np.testing.assert_allclose(grad_in.reshape(N * T, C), flat_grad_in, **tol)
    for key in flat_grads:
        np.testing.assert_allclose(grads[key], flat_grads[key], **tol)


def test_sequence_layers_match_torch(backend, rng):
    """Linear, LayerNorm, GELU(tanh), ReLU, Tanh on (N, T, C) against torch.nn in float64, to 1e-8."""
    torch = pytest.importorskip("torch")
    x = _sequence(rng)
    grad_out = rng.standard_normal((N, T, 6))
    model = bp.Sequential(bp.LayerNorm(C), bp.Linear(C, 8, seed=1), bp.GELU(), bp.Linear(8, 8, seed=2),
                          bp.ReLU(), bp.Linear(8, 6, seed=3), bp.Tanh())
    model.astype("float64").to(backend)
    ln, lin1, _, lin2, _, lin3, _ = model.layers
    reference = torch.nn.Sequential(torch.nn.LayerNorm(C), torch.nn.Linear(C, 8), torch.nn.GELU(approximate="tanh"),
                                    torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 6),
                                    torch.nn.Tanh()).double()
    with torch.no_grad():
        for ours, theirs in ((lin1, reference[1]), (lin2, reference[3]), (lin3, reference[5])):
            theirs.weight.copy_(torch.tensor(host(backend, ours.W.data).T))
            theirs.bias.copy_(torch.tensor(host(backend, ours.b.data)))
    out = model(backend.asarray(x))
    grad_in = model.backward(backend.asarray(grad_out))
    x_t = torch.tensor(x, requires_grad=True)
    out_t = reference(x_t)
    out_t.backward(torch.tensor(grad_out))
    assert_matches_torch(host(backend, out), out_t.detach().numpy(), "output")
    assert_matches_torch(host(backend, grad_in), x_t.grad.numpy(), "dL/dx")
    assert_matches_torch(host(backend, ln.weight.grad), reference[0].weight.grad.numpy(), "LayerNorm weight grad")
    assert_matches_torch(host(backend, ln.bias.grad), reference[0].bias.grad.numpy(), "LayerNorm bias grad")
    for ours, theirs in ((lin1, reference[1]), (lin2, reference[3]), (lin3, reference[5])):
        assert_matches_torch(host(backend, ours.W.grad), theirs.weight.grad.numpy().T, f"{ours!r} W grad")
        assert_matches_torch(host(backend, ours.b.grad), theirs.bias.grad.numpy(), f"{ours!r} b grad")


def test_gradcheck_on_sequences(backend, rng):
    model = bp.Sequential(bp.Linear(C, 6, seed=0), bp.LayerNorm(6), bp.GELU(), bp.Dropout(0.3, seed=1),
                          bp.Tanh(), bp.LeakyReLU(), bp.Linear(6, 2, seed=2)).to(backend)
    report = bp.gradcheck(model, bp.MSELoss(), _sequence(rng), rng.standard_normal((N, T, 2)))
    assert report.passed, str(report)


def test_dropout_in_training_drops_the_same_entries_forward_and_backward(backend, rng):
    layer = bp.Dropout(0.5, seed=4).astype("float64").to(backend)
    x = np.abs(_sequence(rng)) + 1.0           # no zeros: a zero in the output means a dropped entry
    out = host(backend, layer(backend.asarray(x)))
    grad_in = host(backend, layer.backward(backend.asarray(np.ones((N, T, C)))))
    kept = out != 0
    assert out.shape == (N, T, C) and 0 < kept.sum() < kept.size
    np.testing.assert_allclose(out[kept], 2.0 * x[kept], **tolerance("float64"))
    np.testing.assert_array_equal(grad_in, np.where(kept, 2.0, 0.0))


@pytest.mark.parametrize("layer, message", [
    (lambda: bp.Linear(C, 6), r"expected input of shape \(batch, \.\.\., 4\), got \(3, 5, 7\)"),
    (lambda: bp.LayerNorm(C), r"expected input of shape \(\.\.\., 4\), got \(3, 5, 7\)"),
])
def test_a_wrong_last_axis_names_the_expected_shape(layer, message):
    with pytest.raises(ValueError, match=message):
        layer()(np.zeros((N, T, 7), dtype="float32"))


def test_two_dimensional_messages_are_unchanged():
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 4\), got \(3, 7\)"):
        bp.Linear(C, 6)(np.zeros((N, 7), dtype="float32"))
    with pytest.raises(ValueError, match=r"backward expected grad_out of shape \(3, 5, 6\)"):
        layer = bp.Linear(C, 6)
        layer(np.zeros((N, T, C), dtype="float32"))
        layer.backward(layer.backend.asarray(np.zeros((N * T, 6), dtype="float32")))
