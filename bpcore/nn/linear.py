"""Linear: y = x @ W + b, with its hand-written backward pass.

Shapes follow the (batch, features) layout; W is (n_in, n_out) as in the
lessons, so the forward is one matmul and dL/dW = x^T @ dL/dy. Inputs may have
more leading axes, (..., n_in) as in PyTorch: a sequence (N, T, n_in) is N T samples.
"""
from __future__ import annotations

from .._checks import check_int
from . import init as _init
from .module import Layer


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
        in_features, out_features: PyTorch's names for n_in and n_out (give one name of each pair).
    """

    def __init__(self, n_in: int | None = None, n_out: int | None = None, init: str = "he", seed=None,
                 bias: bool = True, *, in_features: int | None = None, out_features: int | None = None):
        super().__init__()
        n_in = _one_of("n_in", n_in, "in_features", in_features)
        n_out = _one_of("n_out", n_out, "out_features", out_features)
        self.n_in = check_int("Linear", "n_in", n_in)
        self.n_out = check_int("Linear", "n_out", n_out)
        self._input_shape = ("batch", ..., self.n_in)      # what check_input accepts: (batch, ..., n_in)
        if init not in _init.SCHEMES:
            raise ValueError(f"Linear: unknown init {init!r}; choose one of {', '.join(_init.SCHEMES)}")
        self.init = init
        rng = _init.host_rng(seed, type(self).__name__)
        self.W = self.parameter(_init.weight(init, n_in, n_out, rng))
        self.b = self.parameter(_init.zeros(n_out)) if bias else None

    def config(self) -> dict:
        return {"n_in": self.n_in, "n_out": self.n_out, "init": self.init, "bias": self.b is not None}

    def forward(self, x):
        """x: (batch, n_in), or (batch, ..., n_in) -> y = x @ W + b: (batch, n_out), or (..., n_out)."""
        x = self.check_input(x, shape=self._input_shape)
        self.save_for_backward(x=x)
        if x.ndim != 2:              # one 2-D matmul: NumPy's (N, T, n_in) @ W skips BLAS (14x slower)
            flat = self.xp.reshape(x, (-1, self.n_in)) @ self.W.data      # -1: N may be symbolic (ONNX)
            y = self.xp.reshape(flat, (-1,) + tuple(x.shape[1:-1]) + (self.n_out,))
        else:
            y = x @ self.W.data
        if self.b is not None:
            y += self.b.data
        return y

    def backward(self, grad_out):
        """Backprop through y = x @ W + b.

        Args:
            grad_out: dL/dy, shape (batch, n_out) (or (..., n_out)).
        Returns:
            dL/dx = grad_out @ W^T, shape (batch, n_in). Adds dL/dW = x^T @ grad_out
            and dL/db = sum over the batch of grad_out into W.grad and b.grad.
        """
        self.backward_params(grad_out)
        if grad_out.ndim != 2:       # as in forward: one 2-D matmul
            flat = self.xp.reshape(grad_out, (-1, self.n_out)) @ self.W.data.T
            return self.xp.reshape(flat, grad_out.shape[:-1] + (self.n_in,))
        return grad_out @ self.W.data.T

    def backward_params(self, grad_out):
        """Only the parameter gradients of :meth:`backward`; skips the matmul for dL/dx."""
        x = self.saved("x")
        self.check_grad_out(grad_out, x.shape[:-1] + (self.n_out,))
        if x.ndim != 2:              # (..., n_in): every leading position is one more sample
            x = self.xp.reshape(x, (-1, self.n_in))
            grad_out = self.xp.reshape(grad_out, (-1, self.n_out))
        self.W.accumulate_grad(x.T @ grad_out)                      # dL/dW = x^T @ dL/dy
        if self.b is not None:
            self.b.accumulate_grad(self.xp.sum(grad_out, axis=0))   # dL/db = sum_batch dL/dy

    def __repr__(self):
        extra = "" if self.b is not None else ", bias=False"
        return f"Linear({self.n_in}, {self.n_out}{extra})"


def _one_of(name, value, alias, alias_value):
    """The width given as ``name`` or as PyTorch's ``alias``; both or neither is an error."""
    if value is not None and alias_value is not None:
        raise TypeError(f"Linear: give {name} or {alias}, not both")
    if value is None and alias_value is None:
        raise TypeError(f"Linear: missing the width {name} (or {alias}, as PyTorch calls it)")
    return value if value is not None else alias_value
