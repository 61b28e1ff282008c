"""Losses: a scalar from predictions and targets, and dL/d(pred) for backward.

Each loss averages over the batch (PyTorch's ``reduction="mean"``),
``forward(pred, target)`` returns a 0-d array on pred's backend and
``backward()`` returns dL/dpred with pred's shape. Targets may be host NumPy
arrays; they are moved to pred's device and cast to its dtype.

Every call checks shapes and dtypes, which costs nothing on a device. Target *values*
(probabilities in [0, 1], labels in range) need their numbers on the host, a device-to-host
sync, so they are checked where data enter: ``fit`` and ``evaluate`` check them once (and the
first batch's predictions), and ``loss_fn.check(target)`` does it for a hand-written loop.

``check_targets`` chooses the per-call value checks:

- ``None`` (the default): labels of ``SoftmaxCrossEntropyLoss`` are checked on every call where
  that costs no sync (``backend.sync_free``: NumPy, array_api_strict, torch on the CPU), as
  PyTorch does on the CPU; on a GPU a batch with a label out of range gets a NaN loss instead
  (no sync), which fit's divergence check reports;
- ``True``: every value rule on every call (one sync each on a GPU; for debugging);
- ``False``: none (the values were checked where they entered, as fit and evaluate do).
"""
from __future__ import annotations

import math
import numbers

import backends

from ._checks import ArgumentTypeError, Setting, check_cast_range
from .nn.activations import stable_sigmoid
from .nn.kit import widened_indices
from .nn.parameter import dtype_name


class Loss:
    """Base class: subclasses define ``_forward(xp, pred, target)``, which returns the mean loss and
    sets ``self._grad`` (dL/dpred) while its inputs are at hand; ``backward()`` returns it."""

    def __init__(self):
        self.check_targets = None        # per-call value checks where they cost no sync (module docstring)
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
        (BCE targets in [0, 1]; labels >= 0, or in [0, classes - 1] with
        ``SoftmaxCrossEntropyLoss.check(labels, pred)``). The base loss has no rule on values."""

    def _check_entering(self, target, pred) -> None:
        """What fit and evaluate check where data enter: :meth:`check`, with the predictions'
        shape at hand for rules that need it (the number of classes)."""
        self.check(target)

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
            if target.dtype.kind in "fu" and target.dtype.itemsize >= 8:
                # before the cast, which would turn float64 1e39 into inf and uint64 2**63 into -2**63
                what = "labels" if dtype == "int64" else "target"
                check_cast_range(target, dtype, f"{type(self).__name__}: {what}")
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


def _ignore_index_rule(loss, value):
    """SoftmaxCrossEntropyLoss's ignore_index (a Setting's rule): an int or None."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise ArgumentTypeError(f"SoftmaxCrossEntropyLoss: ignore_index must be an int or None, got {value!r}")
    return None if value is None else int(value)


class SoftmaxCrossEntropyLoss(Loss):
    """Softmax and cross-entropy fused, on logits z (batch, classes) and integer labels (batch,),
    or on sequences: logits (batch, time, classes) and labels (batch, time).

    L = -mean over labelled positions p of log softmax(z_p)[label_p];
    dL/dz_p = (softmax(z_p) - onehot(label_p)) / count, count = the number of positions averaged.
    Labels of shape (batch, 1) with (batch, classes) logits are accepted and flattened. A label
    outside [0, classes - 1] (other than ``ignore_index``) is refused on every call where checking
    costs no device sync (``check_targets`` None, the default, on NumPy, array_api_strict and torch
    on the CPU); on a GPU that batch's loss is NaN instead.

    Args:
        ignore_index: a label value that marks a position to leave out (padding), as PyTorch's
            ``ignore_index``: those positions add nothing to the loss, get a zero gradient and are
            not counted, so the mean divides by the number of other positions over all of batch
            x time, exactly as ``torch.nn.functional.cross_entropy``. None (the default) ignores
            nothing. A batch whose every label is ignored has loss 0 and a zero gradient here
            (PyTorch returns NaN: 0 / 0); the count is kept >= 1 on the device, with no sync.
            An ignored label is never "out of range", whatever its value.
    """

    ignore_index = Setting(_ignore_index_rule)                 # checked on every assignment

    def __init__(self, ignore_index: int | None = None):
        super().__init__()
        self.ignore_index = ignore_index

    def check(self, target, pred=None) -> None:
        """Labels are class indices: every one >= 0 and, when ``pred`` is given, below its number of
        classes (its last axis); a label equal to ``ignore_index`` is never out of range."""
        backend = backends.backend_of(target)
        _check_labels(self, backend, target, None if pred is None else pred.shape[-1])

    def _check_entering(self, target, pred) -> None:
        self.check(target, pred)

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
        target = widened_indices(backend, target, name, "labels")      # int64 (torch: uint32 has no min)
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
        if self.check_targets or (self.check_targets is None and backend.sync_free):
            _check_labels(self, backend, target, classes)
        return target

    def _forward(self, xp, pred, labels):
        classes = pred.shape[-1]
        shifted = pred - xp.max(pred, axis=-1, keepdims=True)
        log_probs = shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))
        class_ids = xp.arange(classes, dtype=labels.dtype, device=self._backend.device)
        onehot = xp.astype(labels[..., None] == class_ids, pred.dtype)     # [..., None]: expand_dims costs 13 us
        probs = xp.exp(log_probs)
        if self.ignore_index is None:
            count = math.prod(labels.shape)
        else:
            # kept: 1 at a labelled position, 0 at an ignored one; the mean is over the kept ones,
            # counted on the device (no sync) and kept >= 1 so an all-ignored batch gives 0, not 0/0
            kept = xp.astype(labels != self.ignore_index, pred.dtype)[..., None]
            onehot, probs = onehot * kept, probs * kept
            count = xp.maximum(xp.sum(kept), self._backend.constant(1.0, pred.dtype))
        self._grad = (probs - onehot) / count
        loss = (0.0 - xp.sum(onehot * log_probs)) / count        # 0 - sum: an all-ignored batch gives 0, not -0
        if self.check_targets is None and not self._backend.sync_free:
            # A label outside [0, classes) matches no class, and its position would add 0 to the
            # loss without a word. Checking here would cost a device sync on a GPU: the batch's loss
            # becomes NaN instead, which fit's divergence check stops on. (math.nan is one object,
            # so Backend.constant finds the cached device constant: no host-to-device copy.)
            valid = (labels >= 0) & (labels < classes)
            if self.ignore_index is not None:
                valid = valid | (labels == self.ignore_index)
            loss = xp.where(xp.all(valid), loss, self._backend.constant(math.nan, pred.dtype))
        return loss

    def __repr__(self):
        extra = "" if self.ignore_index is None else f"ignore_index={self.ignore_index}"
        return f"{type(self).__name__}({extra})"


def _check_labels(loss, backend, labels, classes):
    """Raise ValueError unless every label lies in [0, classes - 1] (>= 0 when classes is None);
    a label equal to the loss's ``ignore_index`` is never out of range.

    Reads the smallest and largest label (one host read; free on a sync-free backend) and builds
    the message only when one is out of range.
    """
    if math.prod(labels.shape) == 0:
        return
    xp = backend.xp
    labels = widened_indices(backend, labels, type(loss).__name__, "labels")
    with backend.activate():
        in_play = loss._labels_in_play(xp, labels)
        smallest, largest = int(xp.min(in_play)), int(xp.max(in_play))
    high = math.inf if classes is None else classes - 1
    if 0 <= smallest and largest <= high:
        return
    what = f"{type(loss).__name__}: {loss._what_labels(classes)}"
    if smallest < 0:
        within = f"; they lie in [0, {classes - 1}]" if classes is not None else ""
        raise ValueError(f"{what} must be >= 0, got values from {smallest} to {largest} (label {smallest} is "
                         f"out of range{within})")
    raise ValueError(f"{what} must lie in [0, {classes - 1}], got values from {smallest} to {largest} "
                     f"(label {largest} is out of range)")
