"""Gradient clipping, as ``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_``.

Both run on the device in place of the gradients: no host transfer, no sync.
"""
from __future__ import annotations

import math

from .._checks import check_number
from ..nn.parameter import Parameter


def _grads(params, owner):
    params = list(params.parameters() if hasattr(params, "parameters") else params)
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{owner}: params[{i}] must be a Parameter, got {type(p).__name__}")
    return params


def clip_grad_norm_(params, max_norm: float, norm_type: float = 2.0):
    """Scale all gradients together so their joint norm is at most ``max_norm`` (as PyTorch).

    total = (sum over every gradient entry of |g|^p)^(1/p) (max |g| for p = inf);
    every g *= min(1, max_norm / (total + 1e-6)). Runs on the device without a sync.
    Returns the total norm before clipping, a 0-d array.
    """
    params = _grads(params, "clip_grad_norm_")
    max_norm = check_number("clip_grad_norm_", "max_norm", max_norm)
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float)) or not norm_type > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be > 0 (or inf), got {norm_type!r}")
    if not params:
        raise ValueError("clip_grad_norm_: no parameters given")
    backend = params[0].backend
    with backend.activate():                  # on "cuda:1" the sums and the scale stay on GPU 1
        return _clip_norm(backend.xp, params, max_norm, norm_type)


def _clip_norm(xp, params, max_norm, norm_type):
    if math.isinf(norm_type):
        total = xp.max(xp.stack([xp.max(xp.abs(p.grad)) for p in params]))
    else:
        total = xp.sum(xp.stack([xp.sum(xp.abs(p.grad) ** norm_type) for p in params])) ** (1.0 / norm_type)
    # minimum with a cached device constant, not clip or a Python scalar: no GPU sync
    scale = xp.minimum(max_norm / (total + 1e-6), params[0].backend.constant(1.0, total.dtype))
    for p in params:
        p.grad = p.grad * scale
    return total


def clip_grad_value_(params, clip_value: float) -> None:
    """Clamp every gradient entry to [-clip_value, clip_value] (as PyTorch)."""
    params = _grads(params, "clip_grad_value_")
    clip_value = check_number("clip_grad_value_", "clip_value", clip_value)
    for p in params:
        with p.backend.activate():
            low, high = p.backend.constant(-clip_value, p.grad.dtype), p.backend.constant(clip_value, p.grad.dtype)
            p.grad = p.backend.xp.minimum(p.backend.xp.maximum(p.grad, low), high)
