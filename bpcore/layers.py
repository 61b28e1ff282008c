"""Linear and the activations, each with its hand-written backward pass.

Every layer uses only Array API standard functions on ``self.xp``, so the
same lines run on NumPy, CuPy, PyTorch and array_api_strict. Shapes follow
the (batch, features) layout.
"""
from __future__ import annotations

import math

from . import init as _init
from ._checks import check_int, check_number
from .module import Layer, Sequential


class Linear(Layer):
    """y = x @ W + b with W of shape (n_in, n_out) and b of shape (n_out,).

    Args:
        n_in, n_out: input and output widths.
        init: how W is drawn: "he" (default, N(0, 2/n_in)), "he_uniform",
            "lecun", "lecun_uniform", "xavier", "xavier_uniform" or "zeros".
            b starts at zero.
        seed: int, None or a NumPy Generator; W is drawn on the host so one
            seed gives the same layer on every backend.
        bias: whether the layer has b.
    """

    def __init__(self, n_in: int, n_out: int, init: str = "he", seed=None, bias: bool = True):
        super().__init__()
        self.n_in = check_int("Linear", "n_in", n_in)
        self.n_out = check_int("Linear", "n_out", n_out)
        if init not in _init.SCHEMES:
            raise ValueError(f"Linear: unknown init {init!r}; choose one of {', '.join(_init.SCHEMES)}")
        self.init = init
        rng = _init.host_rng(seed)
        self.W = self._make_parameter(_init.weight(init, n_in, n_out, rng))
        self.b = self._make_parameter(_init.zeros(n_out)) if bias else None
        self._x = None

    def config(self) -> dict:
        return {"n_in": self.n_in, "n_out": self.n_out, "init": self.init, "bias": self.b is not None}

    def forward(self, x):
        """x: (batch, n_in) -> y = x @ W + b: (batch, n_out)."""
        x = self._accept_input(x)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"{self._name()}: expected input of shape (batch, {self.n_in}), "
                             f"got {tuple(x.shape)}")
        self._x = x
        y = x @ self.W.data
        if self.b is not None:
            y += self.b.data
        return y

    def backward(self, grad_out):
        """Backprop through y = x @ W + b.

        Args:
            grad_out: dL/dy, shape (batch, n_out).
        Returns:
            dL/dx = grad_out @ W^T, shape (batch, n_in). Adds dL/dW = x^T @ grad_out
            and dL/db = sum over the batch of grad_out into W.grad and b.grad.
        """
        self.backward_params(grad_out)
        return grad_out @ self.W.data.T

    def backward_params(self, grad_out):
        """Only the parameter gradients of :meth:`backward`; skips the matmul for dL/dx."""
        x = self._x
        if x is None:
            raise self._no_forward()
        self._check_grad_out(grad_out, (x.shape[0], self.n_out))
        self.W._accumulate_new(x.T @ grad_out)          # dL/dW = x^T @ dL/dy
        if self.b is not None:
            self.b._accumulate_new(self.xp.sum(grad_out, axis=0))   # dL/db = sum_batch dL/dy

    def __repr__(self):
        extra = "" if self.b is not None else ", bias=False"
        return f"Linear({self.n_in}, {self.n_out}{extra})"


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
        return self.xp.maximum(x, 0.0)

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
# The lessons' initial scales: N(0, 2/n_in) for ReLU-like, N(0, 1/n_in) for tanh and sigmoid.
_INIT_FOR = {"relu": "he", "leaky_relu": "he", "gelu": "he",
             "sigmoid": "lecun", "tanh": "lecun", "identity": "lecun"}


def mlp(sizes, activation: str = "relu", seed=None, init: str | None = None) -> Sequential:
    """A multi-layer perceptron: Linear, activation, ..., Linear (the last layer has no activation).

    Args:
        sizes: widths from input to output, e.g. [2, 16, 8, 1].
        activation: one of "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "identity".
        seed: int, None or NumPy Generator; one seed gives the same network on every backend.
        init: weight init for every Linear; by default "he" (N(0, 2/n_in)) for ReLU-like
            activations and "lecun" (N(0, 1/n_in)) for tanh, sigmoid and identity.
    Returns:
        A float32 :class:`Sequential` on the CPU; use ``.to(device)`` and ``.astype()``.
    """
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or len(sizes) < 2:
        raise ValueError(f"mlp: sizes must list at least an input and an output width, got {sizes!r}")
    for i, size in enumerate(sizes):
        check_int("mlp", f"sizes[{i}]", size)
    if activation not in ACTIVATIONS:
        raise ValueError(f"mlp: unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    rng = _init.host_rng(seed)
    scheme = init if init is not None else _INIT_FOR[activation]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out, init=scheme, seed=rng))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return Sequential(*layers)
