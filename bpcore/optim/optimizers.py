"""Optimizers: update parameters in place from their gradients.

Update rules and argument names follow ``torch.optim``, so a user's numbers
match PyTorch's step for step. Every update is an in-place Array API
operation on the parameter's own device: no host round trips.
"""
from __future__ import annotations

import math

import backends

from .._checks import check_number
from ..nn.parameter import Parameter, checked_host_cast, dtype_name


class Optimizer:
    """Base class: holds the parameter list, hyper-parameters and per-parameter state.

    Args:
        params: an iterable of :class:`Parameter` (e.g. ``model.parameters()``).

    ``lr`` is a plain attribute, so schedules (``StepLR``, ...) and users can change it
    between steps. ``state_dict()`` / ``load_state_dict()`` save and restore the
    hyper-parameters and every buffer (momentum, Adam's moments) as host NumPy.
    """

    _hyper: tuple[str, ...] = ("lr",)   # attributes saved by state_dict

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
        with self.params[0].backend.activate():
            for p in self.params:
                self._update(p)

    def _state_of(self, p):
        """The parameter's state; buffers follow the parameter if the model moved or was cast."""
        state = self.state.get(id(p))
        if state is None:
            state = self.state[id(p)] = {}
        for key, value in state.items():
            if hasattr(value, "shape") and not (p.backend.owns(value) and value.dtype == p.data.dtype):
                state[key] = p.backend.asarray(backends.to_host(value), dtype=dtype_name(p.data.dtype),
                                               copy=True)
        return state

    def _snapshot_state(self) -> dict:
        """Device copies of every buffer (numbers as they are), for putting back into ``self.state``."""
        owners = {id(p): p for p in self.params}
        return {key: {name: (owners[key].backend.xp.asarray(value, copy=True) if hasattr(value, "shape")
                             else value) for name, value in buffers.items()}
                for key, buffers in self.state.items()}

    def state_dict(self) -> dict:
        """{"type", "hyper": {name: value}, "state": {param index: {buffer: host array or number}}}."""
        state = {}
        for index, p in enumerate(self.params):
            buffers = self.state.get(id(p))
            if buffers:
                state[index] = {k: (backends.to_host(v).copy() if hasattr(v, "shape") else v)
                                for k, v in buffers.items()}
        return {"type": type(self).__name__,
                "hyper": {name: getattr(self, name) for name in self._hyper},
                "state": state}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` saved; refuses (changing nothing) a dict that does not fit."""
        self._write_state(self._check_state(state_dict))

    def _check_state(self, state_dict: dict):
        """(hyper-parameters, new state) from ``state_dict`` after every check; changes nothing.

        Checked: the optimizer type, each parameter index, each buffer's shape, finiteness and
        range in the parameter's dtype, every step count (an int >= 0) and other number, and
        the hyper-parameters (through the constructor's own checks).
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or not {"type", "hyper", "state"} <= set(state_dict):
            raise TypeError(f"{name}.load_state_dict expects the dict made by state_dict()")
        if state_dict["type"] != name:
            raise ValueError(f"{name}.load_state_dict: the state is of a {str(state_dict['type'])[:60]}")
        if not isinstance(state_dict["state"], dict) or not isinstance(state_dict["hyper"], dict):
            raise TypeError(f"{name}.load_state_dict: 'state' and 'hyper' must be dicts")
        new_state = {}
        for index, buffers in state_dict["state"].items():
            if isinstance(index, str) and index.isdigit() and len(index) < 10:
                index = int(index)                  # as JSON gives the keys
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.params):
                raise ValueError(f"{name}.load_state_dict: state for parameter {str(index)[:20]}, "
                                 f"but the optimizer has {len(self.params)} (indices 0 to {len(self.params) - 1})")
            if not isinstance(buffers, dict):
                raise TypeError(f"{name}.load_state_dict: the state of parameter {index} must be a dict")
            p = self.params[index]
            moved = {}
            for key, value in buffers.items():
                what = f"{name}.load_state_dict: {str(key)[:40]} of parameter {index}"
                if hasattr(value, "shape"):
                    value = backends.to_host(value)
                    if tuple(value.shape) != p.shape:
                        raise ValueError(f"{what} has shape {tuple(value.shape)}, the parameter {p.shape}")
                    value = checked_host_cast(value, dtype_name(p.data.dtype), what)
                    value = p.backend.asarray(value, dtype=dtype_name(p.data.dtype), copy=True)
                elif key == "step":
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise ValueError(f"{what} must be an int >= 0, got {str(value)[:40]}")
                elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"{what} must be an array or a finite number, got {str(value)[:40]}")
                moved[key] = value
            new_state[id(p)] = moved
        hyper = {k: v for k, v in state_dict["hyper"].items() if k in self._hyper}
        type(self)(self.params, **hyper)            # the constructor's checks, on the loaded values
        return hyper, new_state

    def _write_state(self, checked) -> None:
        """Store what :meth:`_check_state` gave."""
        hyper, new_state = checked
        for key, value in hyper.items():
            setattr(self, key, value)
        self.state = new_state

    def __repr__(self):
        settings = ", ".join(f"{k}={getattr(self, k)}" for k in self._hyper)
        return f"{type(self).__name__}({settings})"


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``::

        g = grad + weight_decay * theta
        with momentum: buf = g (first step), then buf = momentum * buf + (1 - dampening) * g;
                       g = g + momentum * buf (nesterov) or g = buf
        theta -= lr * g

    ``lr`` defaults to 1e-3, as in PyTorch.
    """

    _hyper = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params)
        self.lr = check_number("SGD", "lr", lr)
        self.momentum = check_number("SGD", "momentum", momentum)
        self.dampening = check_number("SGD", "dampening", dampening)
        self.weight_decay = check_number("SGD", "weight_decay", weight_decay)
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("SGD: nesterov=True needs momentum > 0 and dampening = 0")
        self.nesterov = bool(nesterov)

    def _update(self, p):
        grad = p.grad
        if self.weight_decay:
            grad = grad + self.weight_decay * p.data
        if self.momentum:                       # plain SGD keeps no state: nothing to look up
            state = self._state_of(p)
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = p.backend.xp.asarray(grad, copy=True)
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * grad
            grad = grad + self.momentum * buf if self.nesterov else buf
        p.data -= self.lr * grad



class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (weight decay added to the gradient, L2 style).

    g = grad + weight_decay * theta;  t += 1
    m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2   (v_max = max(v_max, v) with amsgrad)
    theta -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    _hyper = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        super().__init__(params)
        name = type(self).__name__
        self.lr = check_number(name, "lr", lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (check_number(name, "betas[0]", betas[0], 0.0, 1.0, high_open=True),
                      check_number(name, "betas[1]", betas[1], 0.0, 1.0, high_open=True))
        self.eps = check_number(name, "eps", eps)
        self.weight_decay = check_number(name, "weight_decay", weight_decay)
        self.amsgrad = bool(amsgrad)

    def _update(self, p):
        state = self._state_of(p)
        xp = p.backend.xp
        beta1, beta2 = self.betas
        grad = p.grad
        if self.weight_decay:
            if self._decoupled:
                p.data *= 1.0 - self.lr * self.weight_decay     # AdamW: decay the weights directly
            else:
                grad = grad + self.weight_decay * p.data
        if "exp_avg" not in state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
            if self.amsgrad:
                state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg *= beta1
        exp_avg += (1.0 - beta1) * grad
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * (grad * grad)
        if self.amsgrad:
            state["max_exp_avg_sq"] = second_moment = xp.maximum(state["max_exp_avg_sq"], exp_avg_sq)
        else:
            second_moment = exp_avg_sq
        bias_correction1 = 1.0 - beta1 ** step
        bias_correction2_sqrt = math.sqrt(1.0 - beta2 ** step)
        denominator = xp.sqrt(second_moment) / bias_correction2_sqrt + self.eps
        p.data -= (self.lr / bias_correction1) * (exp_avg / denominator)


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay.

    theta *= 1 - lr * weight_decay, then the Adam step on the plain gradient.
    """

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop``.

    g = grad + weight_decay * theta;  s = alpha s + (1 - alpha) g^2
    centered: a = alpha a + (1 - alpha) g, denominator = sqrt(s - a^2) + eps; else sqrt(s) + eps
    momentum > 0: buf = momentum buf + g / denominator, theta -= lr buf; else theta -= lr g / denominator
    """

    _hyper = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        super().__init__(params)
        self.lr = check_number("RMSprop", "lr", lr)
        self.alpha = check_number("RMSprop", "alpha", alpha, 0.0, 1.0)
        self.eps = check_number("RMSprop", "eps", eps)
        self.weight_decay = check_number("RMSprop", "weight_decay", weight_decay)
        self.momentum = check_number("RMSprop", "momentum", momentum)
        self.centered = bool(centered)

    def _update(self, p):
        state = self._state_of(p)
        xp = p.backend.xp
        grad = p.grad
        if self.weight_decay:
            grad = grad + self.weight_decay * p.data
        if "square_avg" not in state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.data)
            if self.momentum > 0:
                state["momentum_buffer"] = xp.zeros_like(p.data)
            if self.centered:
                state["grad_avg"] = xp.zeros_like(p.data)
        state["step"] += 1
        square_avg = state["square_avg"]
        square_avg *= self.alpha
        square_avg += (1.0 - self.alpha) * (grad * grad)
        if self.centered:
            grad_avg = state["grad_avg"]
            grad_avg *= self.alpha
            grad_avg += (1.0 - self.alpha) * grad
            denominator = xp.sqrt(square_avg - grad_avg * grad_avg) + self.eps
        else:
            denominator = xp.sqrt(square_avg) + self.eps
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += grad / denominator
            p.data -= self.lr * buf
        else:
            p.data -= self.lr * (grad / denominator)
