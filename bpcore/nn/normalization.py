"""BatchNorm1d, BatchNorm2d and LayerNorm with their full hand-written backward passes.

Both normalize x to x_hat = (x - mean) / sqrt(var + eps) and output
y = weight * x_hat + bias. They differ in the axis the statistics run over:
the batch (axis 0, one mean per feature) for BatchNorm1d, the batch and both
image axes (N, H, W: one mean per channel) for BatchNorm2d, the features (last
axis, one mean per sample) for LayerNorm.

The backward pass goes through the mean and the variance too (they depend on
every x_i). With g = dL/dy, dx_hat = g * weight, and m the number of values
averaged (batch for BatchNorm1d, N H W for BatchNorm2d, features for LayerNorm):

    dL/dx_i = (1 / (m sigma)) (m dx_hat_i - sum_j dx_hat_j - x_hat_i sum_j dx_hat_j x_hat_j)

Derivation: x_hat_i = (x_i - mu) / sigma with sigma = sqrt(var + eps),
d mu / d x_j = 1/m and d var / d x_j = 2 (x_j - mu) / m, so
d x_hat_i / d x_j = (delta_ij - 1/m) / sigma - x_hat_i x_hat_j / (m sigma).
Summing dx_hat_i against it gives the line above. The parameters get
dL/dweight = sum g * x_hat and dL/dbias = sum g over the same axis the
statistics did not average (the batch, for both layers).
"""
from __future__ import annotations

import math

from . import init as _init
from .._checks import Setting, check_int, check_number
from .module import Layer


def _normalized_backward(xp, grad_x_hat, x_hat, inv_std, axis):
    """dL/dx from dL/dx_hat through x_hat = (x - mean) / std, statistics taken along ``axis`` (an int
    or a tuple of axes: BatchNorm2d averages over the batch and both image axes)."""
    axes = axis if isinstance(axis, tuple) else (axis,)
    count = 1
    for a in axes:
        count *= x_hat.shape[a]
    sum_grad = xp.sum(grad_x_hat, axis=axis, keepdims=True)
    sum_grad_x_hat = xp.sum(grad_x_hat * x_hat, axis=axis, keepdims=True)
    return (inv_std / count) * (count * grad_x_hat - sum_grad - x_hat * sum_grad_x_hat)


def _affine_forward(x_hat, weight, bias, view=None):
    """y = weight * x_hat + bias, or x_hat itself without learned parameters; ``view`` reshapes the
    (n,) parameters to broadcast (BatchNorm2d's (1, C, 1, 1))."""
    if weight is None:
        return x_hat
    if view is None:
        return x_hat * weight.data + bias.data
    xp = weight.backend.xp
    return x_hat * xp.reshape(weight.data, view) + xp.reshape(bias.data, view)


def _affine_backward(xp, grad_out, x_hat, weight, bias, axes, view=None):
    """Backprop through y = weight * x_hat + bias: adds dL/dweight = sum g x_hat and
    dL/dbias = sum g over ``axes`` (when there are parameters) and returns dL/dx_hat."""
    if weight is None:
        return grad_out
    weight.accumulate_grad(xp.sum(grad_out * x_hat, axis=axes))
    bias.accumulate_grad(xp.sum(grad_out, axis=axes))
    return grad_out * (weight.data if view is None else xp.reshape(weight.data, view))


class _BatchNorm(Layer):
    """Batch normalization, per feature (channel) over every other axis; BatchNorm1d and 2d set the axes.

    Training: normalize with the batch mean and the biased batch variance, and update
    running_mean = (1 - momentum) running_mean + momentum mean and running_var likewise
    with the unbiased variance (var * m / (m - 1), m values averaged per feature). Eval: normalize
    with the running statistics. A training batch with one value per feature is refused, as PyTorch does.

    Args:
        num_features: features (channels). eps: added to the variance.
        momentum: weight of the new batch statistics; None for a cumulative average over all
            batches so far (weight 1 / batches seen, counted in the ``num_batches_tracked`` buffer),
            as PyTorch does.
        affine: learn ``weight`` (starts at 1) and ``bias`` (starts at 0).
    """

    _axes: tuple = (0,)          # the axes the statistics average over
    _ndim = 2                    # the input's number of dimensions

    # checked on every assignment, as in the constructor
    eps = Setting(lambda self, eps: check_number(type(self).__name__, "eps", eps, low_open=True))
    momentum = Setting(lambda self, momentum: self._momentum_rule(momentum))

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__()
        owner = type(self).__name__
        n = check_int(owner, self._size_name, num_features)
        self.eps = eps
        self.momentum = momentum
        self.affine = bool(affine)
        self.weight = self.parameter(_init.ones(n)) if affine else None
        self.bias = self.parameter(_init.zeros(n)) if affine else None
        self.register_buffer("running_mean", _init.zeros(n))
        self.register_buffer("running_var", _init.ones(n))
        if self.momentum is None:       # the count is state too: it travels with to() and checkpoints
            self.register_buffer("num_batches_tracked", _init.zeros((), dtype="int64"))
        self._sample_shape = None        # one sample's shape at the last forward: (n,) or (C, H, W)

    def _momentum_rule(self, momentum):
        """A number in [0, 1], or None (a cumulative average) chosen when the layer is built: None
        needs the count of batches, a buffer made only then."""
        owner = type(self).__name__
        if momentum is None:
            if Setting.slot_of("momentum") in vars(self) and "num_batches_tracked" not in self._buffer_names:
                raise ValueError(f"{owner}: momentum=None (a cumulative average) must be chosen when the layer "
                                 f"is built, {owner}(n, momentum=None): it counts the batches from the start")
            return None
        return check_number(owner, "momentum", momentum, 0.0, 1.0)

    @property
    def _min_training_batch(self) -> int:
        """Samples a training batch needs for 2 values per feature (the variance of 1 is undefined),
        which fit checks before training: 2 for (batch, n) input, 1 for images of H x W >= 2
        (as PyTorch), from the input the last forward saw (fit's probe of X); 2 before any."""
        per_sample = math.prod(self._sample_shape[1:]) if self._sample_shape is not None else 1
        return 1 if per_sample >= 2 else 2

    @property
    def num_features(self) -> int:
        return self.running_mean.shape[0]

    def config(self) -> dict:
        return {self._size_name: self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine}

    def _view(self):
        """The shape that broadcasts an (n,) statistic against the input: (1, n) or (1, n, 1, 1)."""
        return (1, self.num_features) + (1,) * (self._ndim - 2)

    def forward(self, x):
        """x: (batch, n) for BatchNorm1d, (batch, C, H, W) for BatchNorm2d -> the same shape."""
        x = self.check_input(x, shape=self._expected_shape())
        self._sample_shape = tuple(x.shape[1:])
        xp, axes, view = self.xp, self._axes, self._view()
        if self.training:
            count = 1
            for a in axes:
                count *= x.shape[a]
            if count < 2:
                raise ValueError(f"{self._name()}: a training batch needs more than 1 sample per channel (the "
                                 f"variance of one value is undefined); got input of shape {tuple(x.shape)}. Use "
                                 f"eval() to predict one sample, or a batch_size that leaves no last batch of 1")
            mean = xp.mean(x, axis=axes, keepdims=True)
            centered = x - mean
            var = xp.mean(centered * centered, axis=axes, keepdims=True)     # biased: used to normalize
            m = self.momentum
            if "num_batches_tracked" in self._buffer_names:   # made with momentum=None: count every batch
                self.num_batches_tracked = self.num_batches_tracked + 1
            if m is None:                # cumulative average: the k-th batch weighs 1/k (no host sync)
                m = 1.0 / xp.astype(self.num_batches_tracked, x.dtype)
            n = self.num_features
            self.running_mean = (1 - m) * self.running_mean + m * xp.reshape(mean, (n,))
            self.running_var = (1 - m) * self.running_var + m * (xp.reshape(var, (n,)) * (count / (count - 1)))
        else:
            centered = x - xp.reshape(self.running_mean, view)
            var = xp.reshape(self.running_var, view)
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        x_hat = centered * inv_std
        self.save_for_backward(x_hat=x_hat, inv_std=inv_std, used_batch_statistics=self.training)
        return _affine_forward(x_hat, self.weight, self.bias, view)

    def backward(self, grad_out):
        """grad_out: the input's shape -> dL/dx (same shape); adds dL/dweight, dL/dbias (n,)."""
        x_hat, inv_std, used_batch_statistics = self.saved("x_hat", "inv_std", "used_batch_statistics")
        self.check_grad_out(grad_out, x_hat.shape)
        xp = self.xp
        grad_x_hat = _affine_backward(xp, grad_out, x_hat, self.weight, self.bias, self._axes, self._view())
        if not used_batch_statistics:          # eval: mean and var are constants
            return grad_x_hat * inv_std
        return _normalized_backward(xp, grad_x_hat, x_hat, inv_std, axis=self._axes)

    def __repr__(self):
        return (f"{type(self).__name__}({self.num_features}, eps={self.eps:g}, momentum={self.momentum}, "
                f"affine={self.affine})")


class BatchNorm1d(_BatchNorm):
    """Batch normalization over the batch axis of (batch, n) inputs, as ``torch.nn.BatchNorm1d``.

    See :class:`_BatchNorm` for the running statistics; ``n`` is the number of features.
    """

    _size_name = "n"

    def __init__(self, n: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__(n, eps, momentum, affine)

    @property
    def n(self) -> int:
        return self.num_features

    def _expected_shape(self):
        return ("batch", self.num_features)


class BatchNorm2d(_BatchNorm):
    """Batch normalization per channel of (N, C, H, W) inputs, over N, H and W, as ``torch.nn.BatchNorm2d``.

    The same running-statistics rules as BatchNorm1d, with N H W values per channel
    (the unbiased variance uses N H W - 1). weight and bias have shape (C,).
    """

    _size_name = "num_features"
    _axes = (0, 2, 3)
    _ndim = 4

    def _expected_shape(self):
        return ("batch", self.num_features, "height", "width")


class LayerNorm(Layer):
    """Layer normalization over the last axis, as ``torch.nn.LayerNorm(n)``.

    Each sample is normalized by its own mean and (biased) variance over its n
    features, in training and eval alike; ``weight`` (n,) starts at 1 and ``bias`` at 0.
    """

    eps = Setting(lambda self, eps: check_number("LayerNorm", "eps", eps, low_open=True))   # on every assignment

    def __init__(self, n: int, eps: float = 1e-5, elementwise_affine: bool = True):
        super().__init__()
        self.n = check_int("LayerNorm", "n", n)
        self.eps = eps
        self.elementwise_affine = bool(elementwise_affine)
        self.weight = self.parameter(_init.ones(n)) if elementwise_affine else None
        self.bias = self.parameter(_init.zeros(n)) if elementwise_affine else None

    def config(self) -> dict:
        return {"n": self.n, "eps": self.eps, "elementwise_affine": self.elementwise_affine}

    def forward(self, x):
        """x: (..., n) -> (..., n)."""
        x = self.check_input(x, shape=(..., self.n))
        xp = self.xp
        centered = x - xp.mean(x, axis=-1, keepdims=True)
        var = xp.vecdot(centered, centered, axis=-1)[..., None] * (1.0 / self.n)   # no (..., n) temporary
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        centered *= inv_std                  # x_hat, in place: a transformer calls this on every token
        x_hat = centered
        self.save_for_backward(x_hat=x_hat, inv_std=inv_std)
        if self.weight is None:
            return x_hat
        y = x_hat * self.weight.data
        y += self.bias.data
        return y

    def backward(self, grad_out):
        """grad_out: (..., n) -> dL/dx (..., n); adds dL/dweight, dL/dbias (n,) summed over the rest.

        The module docstring's formula with m = n, one row at a time; the row sums are dot products
        (``vecdot``, no (..., n) temporary) and the arithmetic runs in place on dL/dx_hat.
        """
        x_hat, inv_std = self.saved("x_hat", "inv_std")
        self.check_grad_out(grad_out, x_hat.shape)
        xp = self.xp
        leading = tuple(range(grad_out.ndim - 1))
        grad_x_hat = _affine_backward(xp, grad_out, x_hat, self.weight, self.bias, axes=leading)
        if grad_x_hat is grad_out:
            grad_x_hat = grad_out * 1.0      # a copy: grad_out is the caller's
        sum_grad = xp.sum(grad_x_hat, axis=-1, keepdims=True)
        sum_grad_x_hat = xp.vecdot(grad_x_hat, x_hat, axis=-1)[..., None]
        grad_x_hat *= self.n
        grad_x_hat -= sum_grad
        grad_x_hat -= x_hat * sum_grad_x_hat
        grad_x_hat *= inv_std * (1.0 / self.n)
        return grad_x_hat

    def __repr__(self):
        extra = "" if self.elementwise_affine else ", elementwise_affine=False"
        return f"LayerNorm({self.n}, eps={self.eps:g}{extra})"
