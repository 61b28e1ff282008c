"""Losses: a scalar from predictions and targets, and dL/d(pred) for backward.

Each loss averages over the batch (PyTorch's ``reduction="mean"``),
``forward(pred, target)`` returns a 0-d array on pred's backend and
``backward()`` returns dL/dpred with pred's shape. Targets may be host NumPy
arrays; they are moved to pred's device and cast to its dtype.

Every call checks shapes and dtypes, which costs nothing on a device. Target *values*
(probabilities in [0, 1], labels in range) need their numbers on the host, a device-to-host
sync, so they are checked where data enter: ``fit`` and ``evaluate`` check them once (and the
first batch's predictions), and ``loss_fn.check(target)`` does it for a hand-written loop.
``check_targets = True`` checks values on every call as well (one sync each; for debugging).
"""
from __future__ import annotations

import math
import numbers

import backends

from .nn.activations import stable_sigmoid
from .nn.parameter import dtype_name


class Loss:
    """Base class: subclasses define ``_forward(xp, pred, target)`` and ``_backward(xp)``."""

    def __init__(self):
        self.check_targets = False       # per-call value checks: off, so a training step never syncs
        self._backend = None
        self._grad = None        # dL/dpred, computed in forward while its inputs are at hand

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def forward(self, pred, target):
        """The mean loss over the batch as a 0-d array."""
        backend = self._backend_for(pred)
        with backend.activate():
            target = self._accept_target(backend, pred, target)
            return self._forward(backend.xp, pred, target)

    def backward(self):
        """dL/dpred for the last forward call, with pred's shape."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}: backward() called before forward()")
        return self._grad

    def check(self, target) -> None:
        """Check the values of ``target`` (already accepted for this loss), once, where data
        enter ``fit``/``evaluate``: a ValueError naming the loss if they break its rules
        (BCE targets in [0, 1]). The base loss has no rule on values."""

    # -- input checks ------------------------------------------------------
    def _backend_for(self, pred):
        backend = self._backend
        if backend is None or not backend.owns(pred):
            try:
                backend = backends.backend_of(pred)
            except TypeError:
                raise TypeError(f"{type(self).__name__}: pred must be an array, "
                                f"got {type(pred).__name__}") from None
            self._backend = backend
        if not backend.isdtype(pred.dtype, "real floating"):
            raise TypeError(f"{type(self).__name__}: pred must be floating point, got dtype {pred.dtype}")
        if pred.ndim == 0 or pred.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}: pred must have a non-empty batch axis, "
                             f"got shape {tuple(pred.shape)}")
        return backend

    def _move_target(self, backend, pred, target, dtype):
        """target -> array on pred's backend; host targets get ``dtype`` (None: pred's dtype).

        Host targets that are not integers keep their dtype when ``dtype`` (labels) is asked
        for, so the caller can refuse them by name.
        """
        if backends.is_host_array(target):
            if dtype is None:
                dtype = dtype_name(pred.dtype)
            elif target.dtype.kind not in "iu":
                dtype = None
        return backends.accept_array(backend, target, type(self).__name__, "target", against="pred", dtype=dtype)

    def _match_shape(self, pred, target):
        """Refuse shape mismatches; (N, 1) pred with (N,) target is reshaped, never broadcast."""
        name = type(self).__name__
        if tuple(target.shape) == tuple(pred.shape):
            return target
        if pred.ndim == 2 and pred.shape[1] == 1 and tuple(target.shape) == (pred.shape[0],):
            return self._backend.xp.reshape(target, (pred.shape[0], 1))
        if target.ndim == 0 or target.shape[0] != pred.shape[0]:
            raise ValueError(f"{name}: batch size mismatch: pred has {pred.shape[0]} rows, "
                             f"target has shape {tuple(target.shape)}")
        raise ValueError(f"{name}: target shape {tuple(target.shape)} does not match pred shape "
                         f"{tuple(pred.shape)}")

    def _accept_target(self, backend, pred, target):
        if backend.owns(target) and target.dtype == pred.dtype and target.shape == pred.shape:
            return target                      # already as the loss needs it (fit prepares y so)
        target = self._move_target(backend, pred, target, None)
        xp = backend.xp
        if xp.isdtype(target.dtype, "real floating"):
            if target.dtype != pred.dtype:
                raise TypeError(f"{type(self).__name__}: target dtype {target.dtype} differs from "
                                f"pred dtype {pred.dtype}")
        else:
            target = xp.astype(target, pred.dtype)
        return self._match_shape(pred, target)

    def __repr__(self):
        return f"{type(self).__name__}()"


def _require_range(loss: Loss, xp, values, low, high, what):
    """Raise ValueError unless low <= values <= high (one host sync: min and max read together)."""
    to_python = int if xp.isdtype(values.dtype, "integral") else float
    backend = backends.backend_of(values)          # the loss's, or the target's before any forward
    with backend.activate():
        both = xp.stack([xp.min(values), xp.max(values)])
    smallest, largest = (to_python(v) for v in backend.to_numpy(both))
    if not (low <= smallest and largest <= high):
        allowed = f"be >= {low}" if high == math.inf else f"lie in [{low}, {high}]"
        raise ValueError(f"{type(loss).__name__}: {what} must {allowed}, "
                         f"got values from {smallest} to {largest}")


class MSELoss(Loss):
    """L = mean((pred - target)^2) over every entry; dL/dpred = 2 (pred - target) / size."""

    def _forward(self, xp, pred, target):
        diff = pred - target
        size = math.prod(pred.shape)
        self._grad = (2.0 / size) * diff
        return xp.sum(diff * diff) / size


class _BinaryTargets:
    """Binary cross-entropy targets are probabilities: ``check`` refuses values outside [0, 1]."""

    def check(self, target) -> None:
        _require_range(self, backends.backend_of(target).xp, target, 0.0, 1.0, "target")


class BCELoss(_BinaryTargets, Loss):
    """Binary cross-entropy on probabilities p in [0, 1]:

    L = -mean(y log p + (1 - y) log(1 - p)), with each log clamped at -100 as
    PyTorch does, so p = 0 or 1 gives a finite loss.
    dL/dp = (p - y) / (p (1 - p)) / size, the denominator kept >= 1e-12.
    """

    _LOG_FLOOR = -100.0

    def _forward(self, xp, pred, target):
        if self.check_targets:
            _require_range(self, xp, pred, 0.0, 1.0, "pred (probabilities)")
            _require_range(self, xp, target, 0.0, 1.0, "target")
        size = math.prod(pred.shape)
        log_p = self._clamped_log(xp, pred)
        log_1mp = self._clamped_log(xp, 1.0 - pred)
        # maximum with a cached device constant, not clip or a Python scalar: no GPU sync
        denominator = xp.maximum(pred * (1.0 - pred), self._backend.constant(1e-12, pred.dtype))
        self._grad = (pred - target) / denominator / size
        return -xp.sum(target * log_p + (1.0 - target) * log_1mp) / size


    def _clamped_log(self, xp, p):
        """max(log p, -100), without ever evaluating log(0)."""
        positive = p > 0
        floor, one = self._backend.constant(self._LOG_FLOOR, p.dtype), self._backend.constant(1.0, p.dtype)
        return xp.maximum(xp.where(positive, xp.log(xp.where(positive, p, one)), floor), floor)


class BCEWithLogitsLoss(_BinaryTargets, Loss):
    """Binary cross-entropy on logits z (a sigmoid and BCE fused, stable for any |z|):

    L = mean(max(z, 0) - z y + log(1 + exp(-|z|)));  dL/dz = (sigmoid(z) - y) / size.
    """

    def _forward(self, xp, pred, target):
        if self.check_targets:
            _require_range(self, xp, target, 0.0, 1.0, "target")
        size = math.prod(pred.shape)
        exp_neg_abs = xp.exp(-xp.abs(pred))          # shared by the loss and sigmoid(z)
        self._grad = (stable_sigmoid(xp, pred, exp_neg_abs) - target) / size
        per_entry = xp.maximum(pred, self._backend.constant(0.0, pred.dtype)) - pred * target + xp.log1p(exp_neg_abs)
        return xp.sum(per_entry) / size


class SoftmaxCrossEntropyLoss(Loss):
    """Softmax and cross-entropy fused, on logits z (batch, classes) and integer labels (batch,),
    or on sequences: logits (batch, time, classes) and labels (batch, time).

    L = -mean over labelled positions p of log softmax(z_p)[label_p];
    dL/dz_p = (softmax(z_p) - onehot(label_p)) / count, count = the number of positions averaged.
    Labels of shape (batch, 1) with (batch, classes) logits are accepted and flattened.

    Args:
        ignore_index: a label value that marks a position to leave out (padding), as PyTorch's
            ``ignore_index``: those positions add nothing to the loss, get a zero gradient and are
            not counted, so the mean divides by the number of other positions over all of batch
            x time, exactly as ``torch.nn.functional.cross_entropy``. None (the default) ignores
            nothing. A batch whose every label is ignored has loss 0 and a zero gradient here
            (PyTorch returns NaN: 0 / 0); the count is kept >= 1 on the device, with no sync.
            An ignored label is never "out of range", whatever its value.
    """

    def __init__(self, ignore_index: int | None = None):
        super().__init__()
        if ignore_index is not None and (isinstance(ignore_index, bool)
                                         or not isinstance(ignore_index, numbers.Integral)):
            raise ValueError(f"SoftmaxCrossEntropyLoss: ignore_index must be an int or None, got {ignore_index!r}")
        self.ignore_index = None if ignore_index is None else int(ignore_index)

    def check(self, target) -> None:
        """Labels are class indices: every one >= 0 (or equal to ``ignore_index``). The upper
        bound needs the number of classes: the first batch's call checks it (fit, evaluate)."""
        xp = backends.backend_of(target).xp
        if math.prod(target.shape):
            _require_range(self, xp, self._labels_in_play(xp, target), 0, math.inf, self._what_labels())

    def _labels_in_play(self, xp, labels):
        """``labels`` with the ignored ones replaced by 0, for range checks (an ignored label is
        never out of range)."""
        if self.ignore_index is None:
            return labels
        return xp.where(labels == self.ignore_index, xp.zeros_like(labels), labels)

    def _what_labels(self, classes=None) -> str:
        label = "labels" if classes is None else f"labels (for {classes} classes)"
        return label if self.ignore_index is None else f"{label} other than ignore_index={self.ignore_index}"

    def _accept_target(self, backend, pred, target):
        name = type(self).__name__
        xp = backend.xp
        if pred.ndim not in (2, 3):
            raise ValueError(f"{name}: pred must be logits of shape (batch, classes) or (batch, time, classes), "
                             f"got {tuple(pred.shape)}")
        target = self._move_target(backend, pred, target, "int64")
        if not backend.isdtype(target.dtype, "integral"):
            raise TypeError(f"{name}: labels must be integer class indices, got dtype {target.dtype} "
                            f"(for one-hot targets pass their argmax)")
        batch, classes = pred.shape[0], pred.shape[-1]
        if pred.ndim == 2 and target.ndim == 2 and target.shape[1] == 1:
            target = xp.reshape(target, (target.shape[0],))
        expected = tuple(pred.shape[:-1])
        if target.ndim == 0 or target.shape[0] != batch:
            raise ValueError(f"{name}: batch size mismatch: pred has {batch} rows, "
                             f"labels have shape {tuple(target.shape)}")
        if tuple(target.shape) != expected:
            raise ValueError(f"{name}: labels must have shape {expected} (pred's {tuple(pred.shape)} without its "
                             f"classes), got {tuple(target.shape)}")
        if self.check_targets:
            _require_range(self, xp, self._labels_in_play(xp, target), 0, classes - 1, self._what_labels(classes))
        return target

    def _forward(self, xp, pred, labels):
        classes = pred.shape[-1]
        shifted = pred - xp.max(pred, axis=-1, keepdims=True)
        log_probs = shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))
        class_ids = xp.arange(classes, dtype=labels.dtype, device=self._backend.device)
        onehot = xp.astype(xp.expand_dims(labels, axis=-1) == class_ids, pred.dtype)
        probs = xp.exp(log_probs)
        if self.ignore_index is None:
            count = math.prod(labels.shape)
        else:
            # kept: 1 at a labelled position, 0 at an ignored one; the mean is over the kept ones,
            # counted on the device (no sync) and kept >= 1 so an all-ignored batch gives 0, not 0/0
            kept = xp.expand_dims(xp.astype(labels != self.ignore_index, pred.dtype), axis=-1)
            onehot, probs = onehot * kept, probs * kept
            count = xp.maximum(xp.sum(kept), self._backend.constant(1.0, pred.dtype))
        self._grad = (probs - onehot) / count
        return -xp.sum(onehot * log_probs) / count

    def __repr__(self):
        extra = "" if self.ignore_index is None else f"ignore_index={self.ignore_index}"
        return f"{type(self).__name__}({extra})"
