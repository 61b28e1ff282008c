"""The activations, each with its hand-written backward pass right under its forward.

Every layer uses only Array API standard functions on ``self.xp``, so the
same lines run on NumPy, CuPy, PyTorch and array_api_strict.
"""
from __future__ import annotations

import math

from .._checks import Setting, check_number
from .chunks import in_row_blocks
from .module import Layer


class Identity(Layer):
    """y = x; dL/dx = dL/dy."""

    def forward(self, x):
        """x: any shape -> the same x."""
        x = self.check_input(x)
        self.save_for_backward(shape=tuple(x.shape))
        return x

    def backward(self, grad_out):
        return self.check_grad_out(grad_out, self.saved("shape"))


class ReLU(Layer):
    """y = max(x, 0); dy/dx = 1 where x > 0, else 0.

    Forward keeps its output y (the layer above usually keeps it too, so it costs no memory);
    backward rebuilds the slope from it: 1 where y > 0 (which is where x > 0), else 0.
    """

    def forward(self, x):
        """x: any shape -> the same shape."""
        x = self.check_input(x)
        # a cached 0-d device constant, not the Python 0 (a host-to-device copy on torch CUDA)
        y = self.xp.maximum(x, self.backend.constant(0.0, x.dtype))
        self.save_for_backward(y=y)
        return y

    def backward(self, grad_out):
        y = self.saved("y")
        grad_out = self.check_grad_out(grad_out, y.shape)
        slope = self.xp.astype(y > 0, grad_out.dtype)       # 0/1: a multiply, no branch per entry (where)
        slope *= grad_out                                   # in place: slope is ours, just made
        return slope


class LeakyReLU(Layer):
    """y = x where x > 0, else slope * x; dy/dx = 1 or slope.

    ``slope`` is PyTorch's ``negative_slope`` (either name works).
    """

    slope = Setting(lambda self, slope: check_number("LeakyReLU", "slope", slope, low=-math.inf))

    def __init__(self, slope: float = 0.01, *, negative_slope: float | None = None):
        super().__init__()
        if negative_slope is not None:
            slope = negative_slope
        self.slope = slope                      # checked on this and every later assignment

    @property
    def negative_slope(self) -> float:
        """PyTorch's name for :attr:`slope`."""
        return self.slope

    @negative_slope.setter
    def negative_slope(self, value):
        self.slope = value

    def config(self) -> dict:
        return {"slope": self.slope}

    def forward(self, x):
        """x: any shape -> the same shape."""
        x = self.check_input(x)
        # dy/dx per entry: 1 where x > 0, else slope (arithmetic, not where: see ReLU)
        local_slope = self.xp.astype(x > 0, x.dtype) * (1.0 - self.slope) + self.slope
        self.save_for_backward(local_slope=local_slope)
        return x * local_slope

    def backward(self, grad_out):
        local_slope = self.saved("local_slope")
        return self.check_grad_out(grad_out, local_slope.shape) * local_slope

    def __repr__(self):
        return f"LeakyReLU({self.slope})"


class Sigmoid(Layer):
    """y = 1 / (1 + exp(-x)); dy/dx = y (1 - y).

    Computed from e = exp(-|x|) <= 1, so no exp ever overflows:
    y = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0.
    """

    def forward(self, x):
        """x: any shape -> the same shape."""
        y = stable_sigmoid(self.xp, self.check_input(x))
        self.save_for_backward(y=y)
        return y

    def backward(self, grad_out):
        y = self.saved("y")
        return self.check_grad_out(grad_out, y.shape) * y * (1.0 - y)


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


class Tanh(Layer):
    """y = tanh(x); dy/dx = 1 - y^2."""

    def forward(self, x):
        """x: any shape -> the same shape."""
        y = self.xp.tanh(self.check_input(x))
        self.save_for_backward(y=y)
        return y

    def backward(self, grad_out):
        y = self.saved("y")
        grad_out = self.check_grad_out(grad_out, y.shape)
        slope = self.backend.constant(1.0, y.dtype) - y * y           # 1 - y^2
        slope *= grad_out                                              # in place: slope is ours, just made
        return slope


class Softmax(Layer):
    """y_i = exp(x_i) / sum_j exp(x_j) along ``dim`` (default: the last axis), row by row.

    Stable: the row maximum is subtracted first. Backward, with g = dL/dy:
    dL/dx_i = y_i (g_i - sum_j g_j y_j).
    """

    def __init__(self, dim: int = -1):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise ValueError(f"Softmax: dim must be an int, got {dim!r}")
        self.dim = dim

    def config(self) -> dict:
        return {"dim": self.dim}

    def forward(self, x):
        """x: any shape with axis ``dim`` -> the same shape, each row along ``dim`` summing to 1."""
        x = self.check_input(x)
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"{self._name()}: dim {self.dim} is out of range for input of shape {tuple(x.shape)}")
        xp = self.xp
        if x.shape[self.dim] == 0:                 # rows of no entries: nothing to normalize (as torch)
            self.save_for_backward(y=x)
            return x
        exp = xp.exp(x - xp.max(x, axis=self.dim, keepdims=True))
        y = exp / xp.sum(exp, axis=self.dim, keepdims=True)
        self.save_for_backward(y=y)
        return y

    def backward(self, grad_out):
        y = self.saved("y")
        grad_out = self.check_grad_out(grad_out, y.shape)
        return y * (grad_out - self.xp.sum(grad_out * y, axis=self.dim, keepdims=True))

    def __repr__(self):
        return f"Softmax(dim={self.dim})"


class GELU(Layer):
    """GELU with the tanh approximation (PyTorch's ``GELU(approximate="tanh")``).

    y = 0.5 x (1 + t), t = tanh(u), u = sqrt(2/pi) (x + 0.044715 x^3);
    dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    The exact form needs erf, which the Array API standard does not have.
    """

    _C = math.sqrt(2.0 / math.pi)
    _A = 0.044715

    # Forward keeps only the slope dy/dx for backward, and works in place (the standard's *=, +=) on
    # arrays it made, one cache-sized block of rows at a time (bpcore/nn/chunks.py): a transformer's
    # MLP runs GELU on (N, T, 4E) arrays, where each pass over memory costs more than the arithmetic.
    def forward(self, x):
        """x: any shape -> the same shape."""
        x = self.check_input(x)
        y, slope = in_row_blocks(self.backend, x, self._value_and_slope, outputs=2)
        self.save_for_backward(slope=slope)
        return y

    def _value_and_slope(self, x):
        """(y, dy/dx) for a block of x."""
        C, A = self._C, self._A
        square = x * x
        u = square * (C * A)                 # u = C (x + A x^3) = x (C A x^2 + C)
        u += C
        u *= x
        t = self.xp.tanh(u)
        y = t + 1.0                          # y = 0.5 x (1 + t)
        y *= x
        y *= 0.5
        # dy/dx = 0.5 (1 + t) + a (1 - t^2), a = 0.5 x C (1 + 3 A x^2)
        square *= 1.5 * C * A
        square += 0.5 * C
        square *= x                          # a
        u = t * t
        u -= 1.0
        square *= u                          # -a (1 - t^2)
        t *= 0.5
        t += 0.5                             # 0.5 (1 + t)
        t -= square
        return y, t

    def backward(self, grad_out):
        slope = self.saved("slope")
        grad_out = self.check_grad_out(grad_out, slope.shape)
        return grad_out * slope


ACTIVATIONS = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "gelu": GELU,
    "identity": Identity,
}
