"""Dropout beyond the layer cases: the kept fraction and the expectation, masks by seed, eval and
p = 0 as the identity, the backward's mask, a gradient check with one fixed mask, refused p.

Dropout's generic checks (gradient check in train and eval, simulated device, ONNX, the torch
twin in eval) are cases in tests/layer_cases.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import forward_backward, host, on

import bpcore as bp

@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keeps_one_minus_p_and_the_expectation(backend, rng, p):
    drop = on(backend, bp.Dropout(p, seed=11))
    x = rng.uniform(0.5, 1.5, (1000, 1000))
    out = host(backend, drop(backend.asarray(x)))
    kept = out != 0
    assert abs(kept.mean() - (1 - p)) < 0.004, f"kept fraction {kept.mean()} for p={p}"
    np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-12)
    assert out.mean() == pytest.approx(x.mean(), rel=0.02)


def dropout_mask(backend, seed, shape=(50, 40), p=0.5):
    drop = on(backend, bp.Dropout(p, seed=seed))
    return host(backend, drop(backend.asarray(np.ones(shape)))) != 0


def test_dropout_is_deterministic_by_seed(backend):
    first = dropout_mask(backend, 5)
    np.testing.assert_array_equal(dropout_mask(backend, 5), first)
    assert not np.array_equal(dropout_mask(backend, 6), first)
    drop = on(backend, bp.Dropout(0.5, seed=5))
    ones = backend.asarray(np.ones((50, 40)))
    masks = [host(backend, drop(ones)) != 0 for _ in range(2)]
    np.testing.assert_array_equal(masks[0], first)
    assert not np.array_equal(masks[1], masks[0])      # the stream moves on between batches


def test_dropout_eval_and_p_zero_are_the_identity(backend, rng):
    x, grad_out = rng.standard_normal((20, 7)), rng.standard_normal((20, 7))
    for drop in (on(backend, bp.Dropout(0.5, seed=1)).eval(), on(backend, bp.Dropout(0.0, seed=1)),
                 on(backend, bp.Dropout(0))):
        out, grad_in = forward_backward(drop, backend, x, grad_out)
        np.testing.assert_array_equal(out, x)
        np.testing.assert_array_equal(grad_in, grad_out)


@pytest.mark.parametrize("p", [1.0, 1, -0.1, 1.5, True, False, float("nan"), "0.5", None])
def test_dropout_refuses_p_outside_0_1(p):
    with pytest.raises(ValueError, match=r"Dropout: p must be a finite number in \[0, 1\)"):
        bp.Dropout(p)
    dropout = bp.Dropout(0.5)
    with pytest.raises(ValueError, match=r"Dropout: p must be a finite number in \[0, 1\)"):
        dropout.p = p                       # later assignments are checked as the constructor checks
    assert dropout.p == 0.5


def test_dropout_backward_uses_the_forward_mask(backend, rng):
    p = 0.3
    drop = on(backend, bp.Dropout(p, seed=2))
    for _ in range(2):                                  # and the newest mask after a second forward
        x = rng.uniform(1.0, 2.0, (30, 8))             # never 0, so out == 0 exactly where dropped
        grad_out = rng.standard_normal((30, 8))
        out, grad_in = forward_backward(drop, backend, x, grad_out)
        mask = (out != 0).astype(np.float64)
        assert 0 < mask.mean() < 1
        np.testing.assert_allclose(out, x * mask / (1 - p), rtol=1e-12)
        np.testing.assert_allclose(grad_in, grad_out * mask / (1 - p), rtol=1e-12, atol=0)


class FixedMaskDropout(bp.Dropout):
    """Dropout that goes back to its first mask at every forward (through the public random state)."""

    def forward(self, x):
        self.set_random_state(dict(self.random_state(), calls=0))
        return super().forward(x)


def dropout_net(backend, dropout):
    return on(backend, bp.Sequential(bp.Linear(4, 6, seed=0), bp.Tanh(), dropout, bp.Linear(6, 2, seed=1)))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradcheck_dropout_with_a_fixed_mask(backend, rng, mode):
    model = dropout_net(backend, FixedMaskDropout(0.5, seed=3))
    x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 2))
    model(backend.asarray(x))
    mask = host(backend, model[2].saved("scale"))
    assert 0 < (mask == 0).mean() < 1                  # some entries dropped, some kept
    model.train(mode == "train")
    report = bp.gradcheck(model, bp.MSELoss(), x, y)
    assert report.passed, str(report)


def test_fixed_mask_dropout_really_repeats_its_mask(backend, rng):
    """The premise of the check above: the subclass draws one mask, an ordinary Dropout a new one each time."""
    x = backend.asarray(rng.uniform(1.0, 2.0, (8, 6)))
    fixed, plain = on(backend, FixedMaskDropout(0.5, seed=3)), on(backend, bp.Dropout(0.5, seed=3))
    first = host(backend, fixed(x))
    np.testing.assert_array_equal(host(backend, fixed(x)), first)
    np.testing.assert_array_equal(host(backend, plain(x)), first)       # the same seed: the same first mask
    assert not np.array_equal(host(backend, plain(x)), first)


def test_dropout_on_images_drops_entries_and_backprops_the_mask(backend, rng):
    layer = bp.Dropout(0.5, seed=0).astype("float64").to(backend)
    x = rng.standard_normal((2, 3, 4, 4)) + 5.0
    out = host(backend, layer(backend.asarray(x)))
    kept = out != 0
    assert out.shape == x.shape and 0 < kept.mean() < 1
    np.testing.assert_allclose(out[kept], 2.0 * x[kept])
    grad = host(backend, layer.backward(backend.asarray(np.ones(x.shape))))
    np.testing.assert_array_equal(grad, 2.0 * kept)
