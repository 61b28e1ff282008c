"""Where data enter fit, evaluate and predict: one set of checks for all three.

Data given to any of them go through one ``_prepare``: lists and pandas-like
tables become arrays, X moves to the model's device in its dtype, y is shaped
and typed for the loss, and every value check (lengths, NaN/Inf, labels) runs
once, before anything is computed. Layers and losses then only check shapes
and dtypes, which cost nothing on a device.
"""
from __future__ import annotations

import contextlib
import functools

import backends

from .._checks import check_cast_range, check_finite, check_int
from ..losses import Loss
from ..nn.kit import TRACKED as _TRACKED
from ..nn.kit import check_index_range
from ..nn.module import Layer


def _on_model_device(function):
    """Run ``function(model, ...)`` with the model's device current (CuPy with several GPUs)."""
    @functools.wraps(function)
    def on_device(model, *args, **kwargs):
        device = getattr(model, "device", None)
        with device.activate() if isinstance(device, backends.Backend) else contextlib.nullcontext():
            return function(model, *args, **kwargs)
    return on_device


def _table_to_array(value, what):
    """Lists, tuples and pandas tables become host arrays (as Keras accepts them); arrays pass."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "to_numpy") and not hasattr(value, "__dlpack__")):
        return backends.host_array_from(value, what)
    return value


def _checked_X(model, X, what):
    """X on the model's device as its first layer takes it (floats in the model's dtype, or integer
    indices kept integers: ``Layer.input_indices``), every value checked (one sync on a GPU).
    Float values a float32 cast would turn into inf are refused first (float64 1e39), naming the
    overflow rather than the inf it would make."""
    X = _table_to_array(X, f"{what}: X")
    below = model.input_indices()
    if below is None and backends.is_host_array(X):
        check_cast_range(X, model.dtype, f"{what}: X")
    X = model.check_input(X, what=f"{what} X")
    if below is not None:       # the layers check per call only where that costs no sync: here always
        check_index_range(model.device, X, below, model._name, f"{what} X")
    return X


@_on_model_device
def _prepare(model, loss_fn, X, y, what):
    """(X, y) on the model's device, y shaped and typed for the loss; every check done once."""
    X = _checked_X(model, X, what)
    y = _table_to_array(y, f"{what}: y")
    if getattr(y, "requires_grad", False):
        raise TypeError(_TRACKED.format(f"{what}: y"))
    xp = model.xp
    if X.ndim < 1 or X.shape[0] == 0:
        raise ValueError(f"{what}: X must hold at least one sample, got shape {tuple(X.shape)}")
    if not hasattr(y, "shape") or not hasattr(y, "dtype"):
        raise TypeError(f"{what}: y must be an array (host NumPy or {model.device.spec}), "
                        f"got {type(y).__name__}")
    if len(y.shape) == 0 or y.shape[0] != X.shape[0]:
        n_y = y.shape[0] if len(y.shape) else "a scalar"
        raise ValueError(f"{what}: X has {X.shape[0]} samples but y has {n_y}")
    if xp.isdtype(X.dtype, "real floating"):
        check_finite(xp, X, f"{what}: X")
    was_training = model.training
    model.eval()
    try:
        with model.device.quiet_floating_point():   # as fit's steps: no RuntimeWarning from the probe
            example = model.forward(X[:1, ...])     # one row tells the output's shape for y's checks
    except (ValueError, TypeError) as error:
        # the layer saw the probe's (1, ...) shape: say what X itself is, and which argument
        raise type(error)(f"{what}: X of shape {tuple(X.shape)} does not fit the model (its first row was "
                          f"refused): {error}") from None
    finally:
        model.train(was_training)
    template = xp.zeros((X.shape[0],) + tuple(example.shape[1:]), dtype=example.dtype,
                        device=model.device.device)
    backend = loss_fn._backend_for(template)
    try:
        target = loss_fn._accept_target(backend, template, y)
    except (ValueError, TypeError) as error:      # say which argument: the loss only knows "target"
        raise type(error)(f"{what}: y: {error}") from None
    if xp.isdtype(target.dtype, "real floating"):
        check_finite(xp, target, f"{what}: y")
    try:
        loss_fn._check_entering(target, template)    # the loss's value rules (BCE: targets in [0, 1])
    except ValueError as error:
        raise ValueError(f"{what}: y: {error}") from None
    return X, target


class _FirstBatchChecks:
    """``loss_fn.check_targets`` on for the first batch, off after it, as found at the end.

    The one place where fit and evaluate switch a loss's per-call value checks: the data were
    checked where they entered (``_prepare``), but the predictions only exist batch by batch, so
    the first batch checks them (BCELoss: a logits model gives values outside [0, 1]); the
    other batches then check no values (no device sync per step).
    """

    def __init__(self, loss_fn):
        self.loss_fn = loss_fn

    def __enter__(self):
        self.found = self.loss_fn.check_targets
        self.loss_fn.check_targets = True            # the first batch: one sync
        self.done = False
        return self

    def first_batch_done(self):
        self.loss_fn.check_targets = False
        self.done = True

    def __exit__(self, *exc):
        self.loss_fn.check_targets = self.found


def _check_common(model, loss_fn, batch_size, owner: str = ""):
    """The arguments fit and evaluate share; ``owner`` ("fit", "evaluate") starts the messages."""
    prefix = f"{owner}: " if owner else ""
    if not isinstance(model, Layer):
        raise TypeError(f"{prefix}model must be a bpcore Layer, got {type(model).__name__}")
    if not isinstance(loss_fn, Loss):
        raise TypeError(f"{prefix}loss_fn must be a bpcore loss such as BCEWithLogitsLoss(), got "
                        f"{type(loss_fn).__name__}")
    check_int(owner, "batch_size", batch_size)
