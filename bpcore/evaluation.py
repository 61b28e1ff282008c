"""evaluate and predict, and the checks and metrics they share with fit.

Data given to any of them go through one ``_prepare``: lists and pandas-like
tables become arrays, X moves to the model's device in its dtype, y is shaped
and typed for the loss, and every value check (lengths, NaN/Inf, labels) runs
once, before anything is computed. Metrics count on the device and are summed
on the host once per pass.
"""
from __future__ import annotations

import contextlib
import functools
import math

import backends

from ._checks import check_int
from .losses import BCELoss, BCEWithLogitsLoss, Loss, SoftmaxCrossEntropyLoss
from .module import Layer


def _on_model_device(function):
    """Run ``function(model, ...)`` with the model's device current (CuPy with several GPUs)."""
    @functools.wraps(function)
    def on_device(model, *args, **kwargs):
        device = getattr(model, "device", None)
        with device.activate() if isinstance(device, backends.Backend) else contextlib.nullcontext():
            return function(model, *args, **kwargs)
    return on_device


# -- metrics -------------------------------------------------------------------
def _accuracy_counter(loss_fn):
    """(correct count as a 0-d device array, number of items) for a batch, by the loss's kind."""
    if isinstance(loss_fn, SoftmaxCrossEntropyLoss):
        def count(xp, out, target):
            predicted = xp.argmax(out, axis=1)
            return xp.sum(xp.astype(predicted == xp.astype(target, predicted.dtype), out.dtype)), out.shape[0]
    elif isinstance(loss_fn, (BCEWithLogitsLoss, BCELoss)):
        threshold = 0.0 if isinstance(loss_fn, BCEWithLogitsLoss) else 0.5
        def count(xp, out, target):
            agree = (out > threshold) == (target > 0.5)
            return xp.sum(xp.astype(agree, out.dtype)), math.prod(out.shape)
    else:
        raise ValueError(f"metric 'accuracy' needs a classification loss (BCELoss, BCEWithLogitsLoss, "
                         f"SoftmaxCrossEntropyLoss), got {type(loss_fn).__name__}")
    return count


_METRICS = {"accuracy": _accuracy_counter}


def _resolve_metrics(metrics, loss_fn):
    if metrics is None:
        return {}
    if isinstance(metrics, str) or not hasattr(metrics, "__iter__"):
        raise TypeError(f"metrics must be a list of names such as ['accuracy'], got {metrics!r}")
    resolved = {}
    for name in metrics:
        if name not in _METRICS:
            raise ValueError(f"unknown metric {name!r}; available: {', '.join(_METRICS)}")
        resolved[name] = _METRICS[name](loss_fn)
    return resolved


# -- checking and moving the data ------------------------------------------------
def _table_to_array(value, what):
    """Lists, tuples and pandas tables become host arrays (as Keras accepts them); arrays pass."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "to_numpy") and not hasattr(value, "__dlpack__")):
        return backends.host_array_from(value, what)
    return value


@_on_model_device
def _prepare(model, loss_fn, X, y, what):
    """(X, y) on the model's device, y shaped and typed for the loss; every check done once."""
    X = model._accept_input(_table_to_array(X, f"{what}: X"), f"{what} X")
    y = _table_to_array(y, f"{what}: y")
    xp = model.xp
    if X.ndim < 1 or X.shape[0] == 0:
        raise ValueError(f"{what}: X must hold at least one sample, got shape {tuple(X.shape)}")
    if not hasattr(y, "shape") or not hasattr(y, "dtype"):
        raise TypeError(f"{what}: y must be an array (host NumPy or {model.device.spec}), "
                        f"got {type(y).__name__}")
    if len(y.shape) == 0 or y.shape[0] != X.shape[0]:
        n_y = y.shape[0] if len(y.shape) else "a scalar"
        raise ValueError(f"{what}: X has {X.shape[0]} samples but y has {n_y}")
    if not bool(xp.all(xp.isfinite(X))):
        raise ValueError(f"{what}: X contains NaN or infinite values")
    was_training = model.training
    model.eval()
    try:
        example = model.forward(X[:1, ...])
    finally:
        model.train(was_training)
    template = xp.zeros((X.shape[0],) + tuple(example.shape[1:]), dtype=example.dtype,
                        device=model.device.device)
    backend = loss_fn._backend_for(template)
    target = loss_fn._accept_target(backend, template, y)
    if xp.isdtype(target.dtype, "real floating") and not bool(xp.all(xp.isfinite(target))):
        raise ValueError(f"{what}: y contains NaN or infinite values")
    return X, target


def _check_common(model, loss_fn, batch_size):
    if not isinstance(model, Layer):
        raise TypeError(f"model must be a bpcore Layer, got {type(model).__name__}")
    if not isinstance(loss_fn, Loss):
        raise TypeError(f"loss_fn must be a bpcore loss such as BCEWithLogitsLoss(), got {type(loss_fn).__name__}")
    check_int("", "batch_size", batch_size)


# -- evaluation and prediction -------------------------------------------------------
@_on_model_device
def _evaluate_prepared(model, loss_fn, X, y, batch_size, counters):
    xp = model.xp
    was_training = model.training
    model.eval()
    checked, loss_fn.check_targets = loss_fn.check_targets, False
    try:
        values, items = [], dict.fromkeys(counters, 0)
        for start in range(0, X.shape[0], batch_size):
            stop = min(X.shape[0], start + batch_size)
            out = model.forward(X[start:stop, ...])
            row = [loss_fn.forward(out, y[start:stop, ...]) * (stop - start)]
            for name, count in counters.items():
                correct, total = count(xp, out, y[start:stop, ...])
                row.append(correct)
                items[name] += total
            values.append(xp.stack([xp.astype(xp.asarray(v), X.dtype) for v in row]))
    finally:
        loss_fn.check_targets = checked
        model.train(was_training)
    sums = model.device.to_numpy(xp.sum(xp.stack(values), axis=0)).astype("float64")
    scores = {"loss": float(sums[0]) / X.shape[0]}
    for i, name in enumerate(counters, start=1):
        scores[name] = float(sums[i]) / items[name]
    return scores


def evaluate(model, loss_fn, X, y, metrics=None, batch_size: int = 1024) -> dict:
    """Mean loss (and metrics) over (X, y) in eval mode: {"loss": float, "accuracy": float, ...}."""
    _check_common(model, loss_fn, batch_size)
    X, y = _prepare(model, loss_fn, X, y, "evaluate")
    return _evaluate_prepared(model, loss_fn, X, y, batch_size, _resolve_metrics(metrics, loss_fn))


@_on_model_device
def predict(model, X, batch_size: int = 1024, probabilities: bool = False):
    """The model's outputs for X in eval mode, as a host NumPy array.

    With ``probabilities=True`` the outputs are taken as logits: a sigmoid is applied
    when there is one output column, a softmax over the columns otherwise.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"model must be a bpcore Layer, got {type(model).__name__}")
    check_int("", "batch_size", batch_size)
    X = model._accept_input(_table_to_array(X, "predict: X"), "predict X")
    xp = model.xp
    was_training = model.training
    model.eval()
    try:
        n = X.shape[0]
        outputs = [model.forward(X[start:min(n, start + batch_size), ...]) for start in range(0, n, batch_size)]
    finally:
        model.train(was_training)
    out = xp.concat(outputs, axis=0) if outputs else model.forward(X)      # an empty X: (0, n_out)
    if probabilities:
        from .layers import stable_sigmoid

        if out.ndim == 2 and out.shape[1] > 1:
            shifted = xp.exp(out - xp.max(out, axis=1, keepdims=True))
            out = shifted / xp.sum(shifted, axis=1, keepdims=True)
        else:
            out = stable_sigmoid(xp, out)
    return model.device.to_numpy(out)
