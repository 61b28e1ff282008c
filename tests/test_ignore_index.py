"""SoftmaxCrossEntropyLoss over sequences (N, T, C) + (N, T), and ignore_index as PyTorch's."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_matches_torch, count_syncs, host

import backends
import bpcore as bp

N, T, C = 4, 6, 5


def _labels(rng, shape, ignore_index=None, ignored=0.3):
    labels = rng.integers(0, C, size=shape)
    if ignore_index is not None:
        labels[rng.random(shape) < ignored] = ignore_index
    return labels


def _ours(backend, logits, labels, ignore_index):
    loss_fn = bp.SoftmaxCrossEntropyLoss(ignore_index=ignore_index)
    loss = loss_fn(backend.asarray(logits), backend.asarray(labels))
    return float(host(backend, loss)), host(backend, loss_fn.backward())


def _torch(logits, labels, ignore_index):
    torch = pytest.importorskip("torch")
    z = torch.tensor(logits, requires_grad=True)
    moved = z if z.ndim == 2 else z.permute(0, 2, 1)           # torch wants the classes on axis 1
    loss = torch.nn.functional.cross_entropy(moved, torch.tensor(labels),
                                             ignore_index=-100 if ignore_index is None else ignore_index)
    loss.backward()
    return float(loss.detach()), z.grad.numpy()


@pytest.mark.parametrize("shape", [(N,), (N, T)], ids=["rows", "sequences"])
@pytest.mark.parametrize("ignore_index", [None, -100, 0], ids=["none", "-100", "class0"])
def test_matches_torch(backend, rng, shape, ignore_index):
    logits = 3.0 * rng.standard_normal(shape + (C,))
    labels = _labels(rng, shape, ignore_index)
    loss, grad = _ours(backend, logits, labels, ignore_index)
    expected_loss, expected_grad = _torch(logits, labels, ignore_index)
    assert_matches_torch(np.asarray(loss), np.asarray(expected_loss), "loss")
    assert_matches_torch(grad, expected_grad, "dL/dlogits")


def test_ignored_positions_leave_the_mean(backend, rng):
    """The mean divides by the labelled positions only: padding changes nothing."""
    logits = rng.standard_normal((N, T, C))
    labels = _labels(rng, (N, T))
    padded_logits = np.concatenate([logits, rng.standard_normal((N, 3, C))], axis=1)
    padded_labels = np.concatenate([labels, np.full((N, 3), -1)], axis=1)
    loss, grad = _ours(backend, logits, labels, None)
    padded_loss, padded_grad = _ours(backend, padded_logits, padded_labels, -1)
    np.testing.assert_allclose(padded_loss, loss, rtol=1e-12)
    np.testing.assert_allclose(padded_grad[:, :T], grad, rtol=1e-12, atol=1e-15)
    assert not padded_grad[:, T:].any()


def test_a_batch_with_every_label_ignored_has_zero_loss_and_gradient(backend, rng):
    logits = rng.standard_normal((N, T, C))
    labels = np.full((N, T), 2)
    loss, grad = _ours(backend, logits, labels, 2)
    assert loss == 0.0 and not grad.any()
    expected, _ = _torch(logits, labels, 2)   # what the docstring says torch gives: 0 / 0
    assert np.isnan(expected)


def test_gradcheck_through_a_sequence_model(backend, rng):
    model = bp.Sequential(bp.Linear(3, 8, seed=0), bp.Tanh(), bp.Linear(8, C, seed=1)).to(backend)
    report = bp.gradcheck(model, bp.SoftmaxCrossEntropyLoss(ignore_index=-100), rng.standard_normal((N, T, 3)),
                          _labels(rng, (N, T), -100))
    assert report.passed, str(report)


def test_no_sync_on_the_simulated_device(rng):
    backend = backends.get("array_api_strict:device1")
    logits, labels = backend.asarray(rng.standard_normal((N, T, C))), backend.asarray(_labels(rng, (N, T), -100))
    loss_fn = bp.SoftmaxCrossEntropyLoss(ignore_index=-100)
    with count_syncs() as syncs:
        loss_fn(logits, labels)
        loss_fn.backward()
    assert syncs.total == 0, syncs


def test_range_checks_pass_ignored_labels_and_refuse_others(rng):
    logits = rng.standard_normal((N, T, C))
    loss_fn = bp.SoftmaxCrossEntropyLoss(ignore_index=-100)
    loss_fn.check_targets = True
    labels = _labels(rng, (N, T), -100)
    loss_fn(logits, labels)
    loss_fn.check(labels)
    labels[0, 0] = C
    with pytest.raises(ValueError, match=r"labels \(for 5 classes\) other than ignore_index=-100 must lie in \[0, 4\]"):
        loss_fn(logits, labels)
    labels[0, 0] = -3
    with pytest.raises(ValueError, match=r"labels other than ignore_index=-100 must be >= 0, got values from -3"):
        loss_fn.check(labels)
    unignored = bp.SoftmaxCrossEntropyLoss()
    with pytest.raises(ValueError, match=r"labels must be >= 0"):
        unignored.check(np.full((N, T), -100))


def test_fit_and_evaluate_accept_ignored_labels_where_data_enter(backend, rng):
    X = rng.standard_normal((16, T, 3)).astype("float32")
    y = _labels(rng, (16, T), -100)
    model = bp.Sequential(bp.Linear(3, 8, seed=0), bp.Tanh(), bp.Linear(8, C, seed=1)).to(backend)
    loss_fn = bp.SoftmaxCrossEntropyLoss(ignore_index=-100)
    history = bp.fit(model, loss_fn, bp.optim.Adam(model.parameters(), lr=1e-2), X, y, epochs=2, batch_size=8,
                     validation_data=(X, y), progress=False)
    assert np.isfinite(history["val_loss"]).all()
    scores = bp.evaluate(model, loss_fn, X, y)
    manual = _ours(backend, bp.predict(model, X).astype("float64"), y, -100)[0]
    np.testing.assert_allclose(scores["loss"], manual, rtol=1e-5)
    y[3, 2] = -7
    with pytest.raises(ValueError, match="fit: y: .*must be >= 0, got values from -7"):
        bp.fit(model, loss_fn, bp.optim.SGD(model.parameters()), X, y, progress=False)
    y[3, 2] = C
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\]"):
        bp.evaluate(model, loss_fn, X, y)


def test_accuracy_over_sequences(rng):
    X = rng.standard_normal((8, T, 3)).astype("float32")
    model = bp.Sequential(bp.Linear(3, C, seed=0))
    y = np.argmax(bp.predict(model, X), axis=-1)
    y[0, :2] = (y[0, :2] + 1) % C                 # two of 8 T positions wrong
    scores = bp.evaluate(model, bp.SoftmaxCrossEntropyLoss(), X, y, metrics=["accuracy"])
    assert scores["accuracy"] == pytest.approx(1 - 2 / (8 * T))
    with pytest.raises(ValueError, match="accuracy.*ignore_index=-100"):
        bp.evaluate(model, bp.SoftmaxCrossEntropyLoss(ignore_index=-100), X, y, metrics=["accuracy"])


@pytest.mark.parametrize("ignore_index", [1.0, True, "pad"])
def test_ignore_index_must_be_an_int(ignore_index):
    with pytest.raises(ValueError, match="ignore_index must be an int or None"):
        bp.SoftmaxCrossEntropyLoss(ignore_index=ignore_index)


@pytest.mark.parametrize("pred_shape, label_shape, message", [
    ((N, T, C), (N, T + 1),
     r"labels must have shape \(4, 6\) \(pred's \(4, 6, 5\) without its classes\), got \(4, 7\)"),
    ((N, T, C), (N,), r"labels must have shape \(4, 6\)"),
    ((N, C), (N, T), r"labels must have shape \(4,\)"),
    ((N, T, 2, C), (N, T, 2), r"pred must be logits of shape \(batch, classes\) or \(batch, time, classes\)"),
])
def test_shapes_are_named(pred_shape, label_shape, message):
    with pytest.raises(ValueError, match=message):
        bp.SoftmaxCrossEntropyLoss()(np.zeros(pred_shape), np.zeros(label_shape, dtype="int64"))


def test_repr_names_ignore_index():
    assert repr(bp.SoftmaxCrossEntropyLoss()) == "SoftmaxCrossEntropyLoss()"
    assert repr(bp.SoftmaxCrossEntropyLoss(ignore_index=-100)) == "SoftmaxCrossEntropyLoss(ignore_index=-100)"
