"""Metrics that fit and evaluate count on the device, batch by batch, and sum on the host once.

A metric is a factory ``make(loss_fn) -> count``, where ``count(xp, out, target)`` gives
(number correct as a 0-d device array, number of items) for one batch.
"""
from __future__ import annotations

import math

from ..losses import BCELoss, BCEWithLogitsLoss, SoftmaxCrossEntropyLoss


def _accuracy_counter(loss_fn):
    """(correct count as a 0-d device array, number of items) for a batch, by the loss's kind."""
    if isinstance(loss_fn, SoftmaxCrossEntropyLoss):
        if loss_fn.ignore_index is not None:
            # the number of labelled positions is known only on the device; fit and evaluate count
            # items on the host (no sync per batch), so this pair is refused rather than miscounted
            raise ValueError(f"metric 'accuracy' cannot yet leave out ignored labels: "
                             f"SoftmaxCrossEntropyLoss(ignore_index={loss_fn.ignore_index}) is given; drop "
                             f"metrics=['accuracy'], or use a loss without ignore_index")

        def count(xp, out, target):      # logits (batch, classes) or (batch, time, classes)
            predicted = xp.argmax(out, axis=-1)
            agree = predicted == xp.astype(target, predicted.dtype)
            return xp.sum(xp.astype(agree, out.dtype)), math.prod(target.shape)
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
