"""Losses, whole models and the checker itself: float64 gradient checks on every backend, and the
checker catches planted bugs. Every layer's own gradient check is in tests/test_layer_cases.py."""
from __future__ import annotations

import numpy as np
import pytest

import bpcore as bp

LOSS_CASES = {
    "MSELoss": (bp.MSELoss, lambda rng: rng.standard_normal((7, 1))),
    "BCELoss": (bp.BCELoss, lambda rng: rng.integers(0, 2, (7, 1)).astype("float64")),
    "BCEWithLogitsLoss": (bp.BCEWithLogitsLoss, lambda rng: rng.integers(0, 2, (7,))),
    "SoftmaxCrossEntropyLoss": (bp.SoftmaxCrossEntropyLoss, lambda rng: rng.integers(0, 3, (7,))),
}


@pytest.mark.parametrize("loss_name", sorted(LOSS_CASES))
def test_loss_gradients(backend, rng, loss_name):
    make_loss, make_target = LOSS_CASES[loss_name]
    n_out = 3 if loss_name == "SoftmaxCrossEntropyLoss" else 1
    layers = [bp.Linear(4, 5, seed=1), bp.Tanh(), bp.Linear(5, n_out, seed=2)]
    if loss_name == "BCELoss":
        layers.append(bp.Sigmoid())          # BCELoss takes probabilities
    model = bp.Sequential(*layers).to(backend)
    report = bp.gradcheck(model, make_loss(), rng.standard_normal((7, 4)), make_target(rng))
    assert report.passed, str(report)


@pytest.mark.parametrize("activation", sorted(bp.ACTIVATIONS))
def test_mlp_gradients(backend, rng, activation):
    model = bp.mlp([4, 6, 3, 1], activation=activation, seed=42).to(backend)
    x = rng.normal(0, 1, (8, 4))
    y = rng.integers(0, 2, (8, 1)).astype("float32")
    report = bp.gradcheck(model, bp.BCEWithLogitsLoss(), x, y)
    assert report.passed, str(report)


def test_lesson_table_accuracy():
    """The lesson's [4, 6, 3, 1] check shows absolute errors near 1e-12, relative near 1e-10."""
    rng = np.random.default_rng(7)
    model = bp.mlp([4, 6, 3, 1], activation="relu", seed=42)
    report = bp.gradcheck(model, bp.BCEWithLogitsLoss(), rng.normal(0, 1, (8, 4)),
                          rng.integers(0, 2, (8, 1)))
    assert report.passed
    assert report.max_abs_error < 1e-10
    assert report.max_rel_error < 1e-8


def test_large_tensors_are_sampled_with_a_directional_check(backend, rng):
    model = bp.Sequential(bp.Linear(30, 20, seed=0), bp.Tanh(), bp.Linear(20, 1, seed=1)).to(backend)
    report = bp.gradcheck(model, bp.MSELoss(), rng.standard_normal((4, 30)), rng.standard_normal((4, 1)),
                          max_entries=50)
    assert report.passed, str(report)
    first = report.rows[0]
    assert first.shape == (30, 20) and first.checked == "50 of 600 + dir."


def test_gradcheck_leaves_the_model_and_data_untouched(rng):
    model = bp.mlp([3, 4, 1], seed=0)
    before = model.state_dict()
    x = rng.standard_normal((5, 3)).astype("float32")
    x_before = x.copy()
    bp.gradcheck(model, bp.MSELoss(), x, rng.standard_normal((5, 1)))
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
        assert value.dtype == np.float32
    np.testing.assert_array_equal(x, x_before)
    assert all(not np.any(p.backend.to_numpy(p.grad)) for p in model.parameters())


class WrongSigmoid(bp.Sigmoid):
    """A planted bug: the derivative uses y instead of y (1 - y)."""

    def backward(self, grad_out):
        y = self.saved("y")
        return self.check_grad_out(grad_out, y.shape) * y


class ForgetsBiasGradient(bp.Linear):
    """A planted bug: dL/db is never accumulated."""

    def backward(self, grad_out):
        x = self.saved("x")
        self.W.accumulate_grad(x.T @ grad_out)
        return grad_out @ self.W.data.T


class WrongSoftmaxCrossEntropy(bp.SoftmaxCrossEntropyLoss):
    """A planted bug: the gradient forgets to divide by the batch size."""

    def _forward(self, xp, pred, labels):
        loss = super()._forward(xp, pred, labels)
        self._grad = self._grad * pred.shape[0]
        return loss


def test_checker_catches_a_wrong_activation_derivative(backend, rng):
    model = bp.Sequential(bp.Linear(4, 6, seed=0), WrongSigmoid(), bp.Linear(6, 1, seed=1)).to(backend)
    report = bp.gradcheck(model, bp.BCEWithLogitsLoss(), rng.standard_normal((8, 4)),
                          rng.integers(0, 2, (8, 1)))
    assert not report.passed
    failed = {row.name for row in report.rows if not row.passed}
    assert "0.W" in failed and "input" in failed
    assert "2.W" not in failed           # layers after the bug are still right
    assert "FAIL" in str(report)


def test_checker_catches_a_missing_bias_gradient(rng):
    model = bp.Sequential(ForgetsBiasGradient(3, 4, seed=0), bp.Tanh(), bp.Linear(4, 1, seed=1))
    report = bp.gradcheck(model, bp.MSELoss(), rng.standard_normal((5, 3)), rng.standard_normal((5, 1)))
    failed = [row.name for row in report.rows if not row.passed]
    assert failed == ["0.b"]


def test_checker_catches_a_wrong_loss_gradient(rng):
    model = bp.Sequential(bp.Linear(3, 4, seed=0))
    report = bp.gradcheck(model, WrongSoftmaxCrossEntropy(), rng.standard_normal((6, 3)),
                          rng.integers(0, 4, (6,)))
    assert not report.passed


def test_report_table_lists_every_row():
    report = bp.gradcheck(bp.mlp([2, 3, 1], seed=0), bp.MSELoss(), np.ones((2, 2)), np.zeros((2, 1)))
    text = str(report)
    for name in ("0.W", "0.b", "2.W", "2.b", "input", "overall: PASS"):
        assert name in text


@pytest.mark.parametrize("kwargs, match", [
    ({"eps": 0}, "eps"), ({"eps": -1e-5}, "eps"), ({"atol": "x"}, "atol"),
    ({"max_entries": 0}, "max_entries"),
])
def test_gradcheck_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bp.gradcheck(bp.mlp([2, 1], seed=0), bp.MSELoss(), np.ones((2, 2)), np.zeros((2, 1)), **kwargs)


def test_gradcheck_needs_a_model():
    with pytest.raises(TypeError, match="bpcore Layer"):
        bp.gradcheck(lambda x: x, bp.MSELoss(), np.ones((2, 2)), np.zeros((2, 1)))
