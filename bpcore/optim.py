"""Optimizers: update parameters in place from their gradients.

Update rules and argument names follow ``torch.optim``, so a user's numbers
match PyTorch's step for step. Every update is an in-place Array API
operation on the parameter's own device: no host round trips.
"""
from __future__ import annotations

import math

import backends

from .module import Parameter, dtype_name


def _check_number(owner: str, name: str, value, low=0.0, high=math.inf, high_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value!r}")
    if value < low or value > high or (high_open and value == high):
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{owner}: {name} must be in {bound}, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: holds the parameter list and per-parameter state.

    Args:
        params: an iterable of :class:`Parameter` (e.g. ``model.parameters()``).
    """

    def __init__(self, params):
        name = type(self).__name__
        if isinstance(params, Parameter):
            raise TypeError(f"{name}: params must be an iterable of Parameters "
                            f"(model.parameters()), got a single Parameter")
        try:
            params = list(params)
        except TypeError:
            raise TypeError(f"{name}: params must be an iterable of Parameters, "
                            f"got {type(params).__name__}") from None
        if not params:
            raise ValueError(f"{name}: got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"{name}: params[{i}] must be a Parameter, got {type(p).__name__}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{name}: a parameter appears more than once in params")
        self.params = params
        self.state: dict[int, dict] = {}   # id(parameter) -> that parameter's buffers

    def zero_grad(self):
        """Set every parameter's gradient to zero."""
        for p in self.params:
            p.zero_grad()

    def step(self):
        """Apply one update to every parameter from its current gradient."""
        for p in self.params:
            self._update(p, self._state_of(p))

    def _state_of(self, p):
        """The parameter's state; buffers follow the parameter if the model moved or was cast."""
        state = self.state.setdefault(id(p), {})
        for key, value in state.items():
            if hasattr(value, "shape") and not (p.backend.owns(value) and value.dtype == p.data.dtype):
                state[key] = p.backend.asarray(backends.to_host(value), dtype=dtype_name(p.data.dtype),
                                               copy=True)
        return state


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``.

    g = grad + weight_decay * theta
    with momentum: buf = g (first step), then buf = momentum * buf + (1 - dampening) * g;
                   g = g + momentum * buf (nesterov) or g = buf
    theta -= lr * g
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params)
        self.lr = _check_number("SGD", "lr", lr)
        self.momentum = _check_number("SGD", "momentum", momentum)
        self.dampening = _check_number("SGD", "dampening", dampening)
        self.weight_decay = _check_number("SGD", "weight_decay", weight_decay)
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("SGD: nesterov=True needs momentum > 0 and dampening = 0")
        self.nesterov = bool(nesterov)

    def _update(self, p, state):
        grad = p.grad
        if self.weight_decay:
            grad = grad + self.weight_decay * p.data
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = p.backend.xp.asarray(grad, copy=True)
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * grad
            grad = grad + self.momentum * buf if self.nesterov else buf
        p.data -= self.lr * grad

    def __repr__(self):
        return (f"SGD(lr={self.lr}, momentum={self.momentum}, dampening={self.dampening}, "
                f"weight_decay={self.weight_decay}, nesterov={self.nesterov})")
