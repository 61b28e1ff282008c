"""BatchNorm1d and LayerNorm with their full hand-written backward passes.

Both normalize x to x_hat = (x - mean) / sqrt(var + eps) and output
y = weight * x_hat + bias. They differ in the axis the statistics run over:
the batch (axis 0, one mean per feature) for BatchNorm, the features (last
axis, one mean per sample) for LayerNorm.

The backward pass goes through the mean and the variance too (they depend on
every x_i). With g = dL/dy, dx_hat = g * weight, and m the number of values
averaged (batch for BatchNorm, features for LayerNorm):

    dL/dx_i = (1 / (m sigma)) (m dx_hat_i - sum_j dx_hat_j - x_hat_i sum_j dx_hat_j x_hat_j)

Derivation: x_hat_i = (x_i - mu) / sigma with sigma = sqrt(var + eps),
d mu / d x_j = 1/m and d var / d x_j = 2 (x_j - mu) / m, so
d x_hat_i / d x_j = (delta_ij - 1/m) / sigma - x_hat_i x_hat_j / (m sigma).
Summing dx_hat_i against it gives the line above. The parameters get
dL/dweight = sum g * x_hat and dL/dbias = sum g over the same axis the
statistics did not average (the batch, for both layers).
"""
from __future__ import annotations


from . import init as _init
from .._checks import check_int, check_number
from .module import Layer


def _normalized_backward(xp, grad_x_hat, x_hat, inv_std, axis):
    """dL/dx from dL/dx_hat through x_hat = (x - mean) / std, statistics taken along ``axis``."""
    count = x_hat.shape[axis]
    sum_grad = xp.sum(grad_x_hat, axis=axis, keepdims=True)
    sum_grad_x_hat = xp.sum(grad_x_hat * x_hat, axis=axis, keepdims=True)
    return (inv_std / count) * (count * grad_x_hat - sum_grad - x_hat * sum_grad_x_hat)


def _affine_forward(x_hat, weight, bias):
    """y = weight * x_hat + bias, or x_hat itself without learned parameters."""
    return x_hat if weight is None else x_hat * weight.data + bias.data


def _affine_backward(xp, grad_out, x_hat, weight, bias, axes):
    """Backprop through y = weight * x_hat + bias: adds dL/dweight = sum g x_hat and
    dL/dbias = sum g over ``axes`` (when there are parameters) and returns dL/dx_hat."""
    if weight is None:
        return grad_out
    weight._accumulate_new(xp.sum(grad_out * x_hat, axis=axes))
    bias._accumulate_new(xp.sum(grad_out, axis=axes))
    return grad_out * weight.data


class BatchNorm1d(Layer):
    """Batch normalization over the batch axis of (batch, n) inputs, as ``torch.nn.BatchNorm1d``.

    Training: normalize with the batch mean and the biased batch variance, and update
    running_mean = (1 - momentum) running_mean + momentum mean and running_var likewise
    with the unbiased variance (var * batch / (batch - 1)). Eval: normalize with the running
    statistics. A training batch of one sample is refused, as PyTorch does.

    Args:
        n: features. eps: added to the variance.
        momentum: weight of the new batch statistics; None for a cumulative average over all
            batches so far (weight 1 / batches seen, counted in the ``num_batches_tracked`` buffer),
            as PyTorch does.
        affine: learn ``weight`` (starts at 1) and ``bias`` (starts at 0).
    """

    _min_training_batch = 2          # the variance of one sample is undefined: fit checks batches
    _buffer_names = ("running_mean", "running_var")

    def __init__(self, n: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__()
        self.n = check_int("BatchNorm1d", "n", n)
        self.eps = check_number("BatchNorm1d", "eps", eps, low_open=True)
        self.momentum = None if momentum is None else check_number("BatchNorm1d", "momentum", momentum, 0.0, 1.0)
        self.affine = bool(affine)
        self.weight = self._make_parameter(_init.ones(n)) if affine else None
        self.bias = self._make_parameter(_init.zeros(n)) if affine else None
        self.running_mean = self._backend.asarray(_init.zeros(n), dtype=self._dtype)
        self.running_var = self._backend.asarray(_init.ones(n), dtype=self._dtype)
        if self.momentum is None:       # the count is state too: it travels with to() and checkpoints
            self.num_batches_tracked = self._backend.asarray(_init.zeros(()), dtype="int64")
            self._buffer_names = ("running_mean", "running_var", "num_batches_tracked")
        self._x_hat = None
        self._inv_std = None
        self._used_batch_statistics = False

    def config(self) -> dict:
        return {"n": self.n, "eps": self.eps, "momentum": self.momentum, "affine": self.affine}

    def forward(self, x):
        """x: (batch, n) -> (batch, n)."""
        x = self._accept_input(x)
        if x.ndim != 2 or x.shape[1] != self.n:
            raise ValueError(f"{self._name()}: expected input of shape (batch, {self.n}), got {tuple(x.shape)}")
        xp = self.xp
        batch = x.shape[0]
        if self.training:
            if batch < 2:
                raise ValueError(f"{self._name()}: training needs more than 1 sample per batch to estimate "
                                 f"the variance, got input of shape {tuple(x.shape)} (use eval() to predict one)")
            mean = xp.mean(x, axis=0)
            centered = x - mean
            var = xp.mean(centered * centered, axis=0)                  # biased: used to normalize
            m = self.momentum
            if m is None:                # cumulative average: the k-th batch weighs 1/k (no host sync)
                self.num_batches_tracked = self.num_batches_tracked + 1
                m = 1.0 / xp.astype(self.num_batches_tracked, x.dtype)
            self.running_mean = (1 - m) * self.running_mean + m * mean
            self.running_var = (1 - m) * self.running_var + m * (var * (batch / (batch - 1)))
        else:
            centered = x - self.running_mean
            var = self.running_var
        self._inv_std = 1.0 / xp.sqrt(var + self.eps)
        self._x_hat = centered * self._inv_std
        self._used_batch_statistics = self.training
        return _affine_forward(self._x_hat, self.weight, self.bias)

    def backward(self, grad_out):
        """grad_out: (batch, n) -> dL/dx (batch, n); adds dL/dweight, dL/dbias (n,)."""
        x_hat = self._x_hat
        if x_hat is None:
            raise self._no_forward()
        self._check_grad_out(grad_out, x_hat.shape)
        xp = self.xp
        grad_x_hat = _affine_backward(xp, grad_out, x_hat, self.weight, self.bias, axes=0)
        if not self._used_batch_statistics:          # eval: mean and var are constants
            return grad_x_hat * self._inv_std
        return _normalized_backward(xp, grad_x_hat, x_hat, self._inv_std, axis=0)

    def __repr__(self):
        return f"BatchNorm1d({self.n}, eps={self.eps:g}, momentum={self.momentum}, affine={self.affine})"


class LayerNorm(Layer):
    """Layer normalization over the last axis, as ``torch.nn.LayerNorm(n)``.

    Each sample is normalized by its own mean and (biased) variance over its n
    features, in training and eval alike; ``weight`` (n,) starts at 1 and ``bias`` at 0.
    """

    @classmethod
    def _saved_numbers_needed(cls, config: dict) -> int:
        # without elementwise_affine, LayerNorm(n) holds no array at all
        return super()._saved_numbers_needed(config) if config.get("elementwise_affine", True) else 0

    def __init__(self, n: int, eps: float = 1e-5, elementwise_affine: bool = True):
        super().__init__()
        self.n = check_int("LayerNorm", "n", n)
        self.eps = check_number("LayerNorm", "eps", eps, low_open=True)
        self.elementwise_affine = bool(elementwise_affine)
        self.weight = self._make_parameter(_init.ones(n)) if elementwise_affine else None
        self.bias = self._make_parameter(_init.zeros(n)) if elementwise_affine else None
        self._x_hat = None
        self._inv_std = None

    def config(self) -> dict:
        return {"n": self.n, "eps": self.eps, "elementwise_affine": self.elementwise_affine}

    def forward(self, x):
        """x: (..., n) -> (..., n)."""
        x = self._accept_input(x)
        if x.ndim < 1 or x.shape[-1] != self.n:
            raise ValueError(f"{self._name()}: expected input of shape (..., {self.n}), got {tuple(x.shape)}")
        xp = self.xp
        centered = x - xp.mean(x, axis=-1, keepdims=True)
        var = xp.mean(centered * centered, axis=-1, keepdims=True)
        self._inv_std = 1.0 / xp.sqrt(var + self.eps)
        self._x_hat = centered * self._inv_std
        return _affine_forward(self._x_hat, self.weight, self.bias)

    def backward(self, grad_out):
        """grad_out: (..., n) -> dL/dx (..., n); adds dL/dweight, dL/dbias (n,) summed over the rest."""
        x_hat = self._x_hat
        if x_hat is None:
            raise self._no_forward()
        self._check_grad_out(grad_out, x_hat.shape)
        xp = self.xp
        leading = tuple(range(grad_out.ndim - 1))
        grad_x_hat = _affine_backward(xp, grad_out, x_hat, self.weight, self.bias, axes=leading)
        return _normalized_backward(xp, grad_x_hat, x_hat, self._inv_std, axis=-1)

    def __repr__(self):
        extra = "" if self.elementwise_affine else ", elementwise_affine=False"
        return f"LayerNorm({self.n}, eps={self.eps:g}{extra})"
