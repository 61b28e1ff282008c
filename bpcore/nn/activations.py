"""The activations, each with its hand-written backward pass right under its forward.

Every layer uses only Array API standard functions on ``self.xp``, so the
same lines run on NumPy, CuPy, PyTorch and array_api_strict.
"""
from __future__ import annotations

import math

from .._checks import check_number
from .module import Layer


class _Elementwise(Layer):
    """An activation applied entry by entry; it has no parameters."""

    def _start(self, x):
        return self._accept_input(x)

    def _cached(self, value, grad_out):
        if value is None:
            raise self._no_forward()
        self._check_grad_out(grad_out, value.shape)
        return value


class Identity(_Elementwise):
    """y = x; dL/dx = dL/dy."""

    def __init__(self):
        super().__init__()
        self._shape = None

    def forward(self, x):
        x = self._start(x)
        self._shape = tuple(x.shape)
        return x

    def backward(self, grad_out):
        if self._shape is None:
            raise self._no_forward()
        self._check_grad_out(grad_out, self._shape)
        return grad_out


class ReLU(_Elementwise):
    """y = max(x, 0); dy/dx = 1 where x > 0, else 0.

    The slope is cached as a 0/1 float array: multiplying by it is much
    faster than ``where`` on a random mask (no branch per entry).
    """

    def __init__(self):
        super().__init__()
        self._slope = None

    def forward(self, x):
        x = self._start(x)
        self._slope = self.xp.astype(x > 0, x.dtype)
        return x * self._slope              # = max(x, 0), with no Python scalar (a sync on torch CUDA)

    def backward(self, grad_out):
        slope = self._cached(self._slope, grad_out)
        return grad_out * slope


class LeakyReLU(_Elementwise):
    """y = x where x > 0, else slope * x; dy/dx = 1 or slope.

    ``slope`` is PyTorch's ``negative_slope`` (either name works).
    """

    def __init__(self, slope: float = 0.01, *, negative_slope: float | None = None):
        super().__init__()
        if negative_slope is not None:
            slope = negative_slope
        self.slope = check_number("LeakyReLU", "slope", slope, low=-math.inf)
        self._local_slope = None

    def config(self) -> dict:
        return {"slope": self.slope}

    def forward(self, x):
        x = self._start(x)
        # dy/dx per entry: 1 where x > 0, else slope (arithmetic, not where: see ReLU)
        self._local_slope = self.xp.astype(x > 0, x.dtype) * (1.0 - self.slope) + self.slope
        return x * self._local_slope

    def backward(self, grad_out):
        local_slope = self._cached(self._local_slope, grad_out)
        return grad_out * local_slope

    def __repr__(self):
        return f"LeakyReLU({self.slope})"


class Sigmoid(_Elementwise):
    """y = 1 / (1 + exp(-x)); dy/dx = y (1 - y).

    Computed from e = exp(-|x|) <= 1, so no exp ever overflows:
    y = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0.
    """

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x):
        x = self._start(x)
        self._y = stable_sigmoid(self.xp, x)
        return self._y

    def backward(self, grad_out):
        y = self._cached(self._y, grad_out)
        return grad_out * y * (1.0 - y)


def stable_sigmoid(xp, x, exp_neg_abs=None):
    """Sigmoid of x without overflow for any |x| (shared by Sigmoid and BCEWithLogitsLoss).

    With e = exp(-|x|) <= 1: sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e)
    for x < 0, written as (p + (1 - p) e) / (1 + e) with p = 1 if x >= 0 else 0,
    which is exact in both branches and needs no ``where``. ``exp_neg_abs``
    may pass e when the caller has it already.
    """
    e = xp.exp(-xp.abs(x)) if exp_neg_abs is None else exp_neg_abs
    nonnegative = xp.astype(x >= 0, x.dtype)
    return (nonnegative + (1.0 - nonnegative) * e) / (1.0 + e)


class Tanh(_Elementwise):
    """y = tanh(x); dy/dx = 1 - y^2."""

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x):
        x = self._start(x)
        self._y = self.xp.tanh(x)
        return self._y

    def backward(self, grad_out):
        y = self._cached(self._y, grad_out)
        return grad_out * (1.0 - y * y)


class Softmax(_Elementwise):
    """y_i = exp(x_i) / sum_j exp(x_j) along ``dim`` (default: the last axis).

    Stable: the row maximum is subtracted first. Backward, with g = dL/dy:
    dL/dx_i = y_i (g_i - sum_j g_j y_j).
    """

    def __init__(self, dim: int = -1):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise ValueError(f"Softmax: dim must be an int, got {dim!r}")
        self.dim = dim
        self._y = None

    def config(self) -> dict:
        return {"dim": self.dim}

    def forward(self, x):
        x = self._start(x)
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"{self._name()}: dim {self.dim} is out of range for input of shape {tuple(x.shape)}")
        xp = self.xp
        exp = xp.exp(x - xp.max(x, axis=self.dim, keepdims=True))
        self._y = exp / xp.sum(exp, axis=self.dim, keepdims=True)
        return self._y

    def backward(self, grad_out):
        y = self._cached(self._y, grad_out)
        return y * (grad_out - self.xp.sum(grad_out * y, axis=self.dim, keepdims=True))

    def __repr__(self):
        return f"Softmax(dim={self.dim})"


class GELU(_Elementwise):
    """GELU with the tanh approximation (PyTorch's ``GELU(approximate="tanh")``).

    y = 0.5 x (1 + t), t = tanh(u), u = sqrt(2/pi) (x + 0.044715 x^3);
    dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    The exact form needs erf, which the Array API standard does not have.
    """

    _C = math.sqrt(2.0 / math.pi)
    _A = 0.044715

    def __init__(self):
        super().__init__()
        self._x = None
        self._t = None

    def forward(self, x):
        x = self._start(x)
        self._x = x
        self._t = self.xp.tanh(self._C * (x + self._A * x * x * x))
        return 0.5 * x * (1.0 + self._t)

    def backward(self, grad_out):
        x = self._cached(self._x, grad_out)
        t = self._t
        slope = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * self._C * (1.0 + 3.0 * self._A * x * x)
        return grad_out * slope


ACTIVATIONS = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "gelu": GELU,
    "identity": Identity,
}
