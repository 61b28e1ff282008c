"""Conv2d: a 2-D convolution (cross-correlation, as PyTorch) written as im2col + one matmul.

Layout is NCHW: x (N, C, H, W), weight W (OC, C, kH, kW), output (N, OC, OH, OW) with

    OH = floor((H + 2 padH - dilH (kH - 1) - 1) / strideH) + 1      (OW likewise)

The im2col idea
---------------
Output pixel (n, o, i, j) is a dot product between the filter W[o] (C kH kW numbers) and the
patch of the padded input under it, x_pad[n, :, i s + a d, j s + b d] for a < kH, b < kW.
Copy every patch into one column of a matrix ``cols`` of shape (N, C kH kW, OH OW): then the
whole convolution is one matrix product,

    y[n] = W_mat @ cols[n] + b,    W_mat = W.reshape(OC, C kH kW).

``cols`` is built without any per-pixel loop: for each kernel offset (a, b) the values it
multiplies form a *strided slice* of the padded input,

    x_pad[:, :, a d : a d + s (OH - 1) + 1 : s,  b d : b d + s (OW - 1) + 1 : s]     (N, C, OH, OW)

so stacking the kH kW slices (``xp.stack``) and a ``reshape`` give ``cols``. Slices, stack,
reshape and matmul are all in the Array API standard (it has no ``as_strided``), so these very
lines run on NumPy, CuPy, PyTorch and array_api_strict.

The backward formulas
---------------------
With g = dL/dy reshaped to grad_out_cols (N, OC, OH OW), the chain rule through
y[n] = W_mat @ cols[n] + b gives, exactly as for Linear:

    dL/dW_mat  = sum_n grad_out_cols[n] @ cols[n]^T       -> reshape to (OC, C, kH, kW)
    dL/db      = sum of g over n, i, j                     (OC,)
    dL/dcols[n] = W_mat^T @ grad_out_cols[n]               (N, C kH kW, OH OW)

and dL/dx is **col2im** of dL/dcols: every entry of cols is a copy of one input entry, so the
gradient of that input entry is the *sum* over all its copies. col2im walks the same kH kW
strided slices as im2col and adds (``g_pad[slice] = g_pad[slice] + piece``) instead of reading,
then drops the padding. (The standard has no scatter-add; kH kW slice additions replace it.)
When the windows tile the input exactly (stride == kernel, no dilation, nothing left over, as in
a 2x2 max-pool on an even image) every entry sits in one window, and im2col / col2im are plain
reshapes and axis permutations, which skip the per-offset copies.

Pooling (pooling.py) reuses the same two helpers: max-pooling routes each window's gradient to
the one position that held its maximum, average pooling spreads it evenly over the window.
"""
from __future__ import annotations

import math

from .._checks import check_int
from . import init as _init
from .module import Layer


# A window's sizes (kernel, stride, padding, dilation) above this describe no image a computer holds;
# bounding them turns a typo or a forged checkpoint into a clear error instead of a MemoryError.
MAX_WINDOW = 2 ** 16


def pair(owner: str, name: str, value, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints (as PyTorch's ``kernel_size=3`` or ``(3, 5)``), each in [minimum, MAX_WINDOW]."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")
        return (check_int(owner, f"{name}[0]", value[0], minimum, MAX_WINDOW),
                check_int(owner, f"{name}[1]", value[1], minimum, MAX_WINDOW))
    size = check_int(owner, name, value, minimum, MAX_WINDOW)
    return (size, size)


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1, as PyTorch."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def pad(xp, x, padding, value=0.0):
    """x (N, C, H, W) with ``padding`` (pH, pW) rows/columns of ``value`` added on each side."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    # Built by concatenation rather than xp.full((N, ...)) and a slice assignment, so that the batch
    # size may be unknown while tracing (ONNX export with a symbolic batch axis).
    if ph:
        edge = xp.zeros_like(x[:, :, :1, :]) + value                 # (N, C, 1, W) of `value`
        x = xp.concat([edge] * ph + [x] + [edge] * ph, axis=2)
    if pw:
        edge = xp.zeros_like(x[:, :, :, :1]) + value                 # (N, C, H + 2 pH, 1)
        x = xp.concat([edge] * pw + [x] + [edge] * pw, axis=3)
    return x


def _offset_slices(kernel, stride, dilation, out_hw):
    """For each kernel offset (a, b), row-major, the (rows, cols) slices of the padded input it reads."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    return [(slice(a * dh, a * dh + sh * (oh - 1) + 1, sh), slice(b * dw, b * dw + sw * (ow - 1) + 1, sw))
            for a in range(kh) for b in range(kw)]


def _tiles(x_shape, kernel, stride, dilation, out_hw):
    """Whether the windows tile the (padded) input exactly: stride == kernel, no dilation, nothing
    left over. Then im2col and col2im are pure reshapes (no copies per kernel offset)."""
    return (stride == kernel and dilation == (1, 1)
            and x_shape[2] == out_hw[0] * kernel[0] and x_shape[3] == out_hw[1] * kernel[1])


def windows(xp, x_pad, kernel, stride, dilation, out_hw):
    """The patches of ``x_pad`` (N, C, Hp, Wp): shape (N, C, kH kW, OH, OW), offsets row-major."""
    c = x_pad.shape[1]                      # the batch axis is -1 in reshapes: it may be symbolic (ONNX)
    if _tiles(x_pad.shape, kernel, stride, dilation, out_hw):
        # x_pad[n, c, i kH + a, j kW + b] is patch (a, b) of window (i, j): split the axes, reorder
        split = xp.reshape(x_pad, (-1, c, out_hw[0], kernel[0], out_hw[1], kernel[1]))
        return xp.reshape(xp.permute_dims(split, (0, 1, 3, 5, 2, 4)), (-1, c, kernel[0] * kernel[1]) + out_hw)
    return xp.stack([x_pad[:, :, rows, cols] for rows, cols in _offset_slices(kernel, stride, dilation, out_hw)],
                    axis=2)


def add_windows(xp, grad_windows, padded_shape, kernel, stride, dilation, out_hw):
    """col2im: the (N, C, kH kW, OH, OW) window gradients summed back into an array of ``padded_shape``.

    Each input entry gets the sum of the gradients of all its copies (one per window holding it).
    """
    n, c = padded_shape[:2]
    if _tiles(padded_shape, kernel, stride, dilation, out_hw):
        # each entry is in exactly one window: col2im is the inverse reshape of windows()
        split = xp.reshape(grad_windows, (n, c, kernel[0], kernel[1]) + out_hw)
        return xp.reshape(xp.permute_dims(split, (0, 1, 4, 2, 5, 3)), padded_shape)
    grad_pad = xp.zeros(padded_shape, dtype=grad_windows.dtype, device=grad_windows.device)
    for k, (rows, cols) in enumerate(_offset_slices(kernel, stride, dilation, out_hw)):
        grad_pad[:, :, rows, cols] = grad_pad[:, :, rows, cols] + grad_windows[:, :, k, ...]
    return grad_pad


def unpad(grad_pad, padding, shape):
    """The inverse of :func:`pad` for gradients: the (N, C, H, W) centre of ``grad_pad``."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return grad_pad
    return grad_pad[:, :, ph:ph + shape[2], pw:pw + shape[3]]


def check_image_input(layer, x, channels=None):
    """Refuse anything but a 4-D (N, C, H, W) array (with ``channels`` channels when given)."""
    if x.ndim != 4:
        raise ValueError(f"{layer._name()}: expected a 4-D input (batch, channels, height, width), "
                         f"got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{layer._name()}: expected {channels} input channels, got input of shape "
                         f"{tuple(x.shape)} with {x.shape[1]}")


def window_output(layer, x_shape, kernel, stride, padding, dilation=(1, 1)):
    """(OH, OW) for a sliding window over (N, C, H, W); a clear error when the window does not fit."""
    h, w = x_shape[2], x_shape[3]
    reach = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    if reach[0] > h + 2 * padding[0] or reach[1] > w + 2 * padding[1]:
        raise ValueError(f"{layer._name()}: the kernel spans {reach[0]}x{reach[1]} (kernel_size {kernel}, "
                         f"dilation {dilation}) but the padded input is only {h + 2 * padding[0]}x"
                         f"{w + 2 * padding[1]} (input {tuple(x_shape)}, padding {padding})")
    out_hw = (output_size(h, kernel[0], stride[0], padding[0], dilation[0]),
              output_size(w, kernel[1], stride[1], padding[1], dilation[1]))
    if out_hw[0] <= 0 or out_hw[1] <= 0:
        raise ValueError(f"{layer._name()}: output size {out_hw} is not positive for input {tuple(x_shape)}")
    return out_hw


class Conv2d(Layer):
    """2-D convolution over (N, C, H, W) inputs, as ``torch.nn.Conv2d`` (cross-correlation, no flip).

    Args:
        in_channels, out_channels: C and OC.
        kernel_size, stride, padding, dilation: an int or a pair (height, width). Padding adds
            zeros on both sides; dilation spaces the kernel's taps.
        bias: whether the layer has b (OC,), starting at zero.
        init: how W (OC, C, kH, kW) is drawn: "he" (default, N(0, 2 / fan_in)), "he_uniform",
            "lecun", "lecun_uniform", "xavier", "xavier_uniform" or "zeros", with
            fan_in = C kH kW and fan_out = OC kH kW (PyTorch's ``calculate_fan_in_and_fan_out``).
        seed: int, None or a NumPy Generator; W is drawn on the host, so one seed gives the same
            layer on every backend.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 bias: bool = True, init: str = "he", seed=None):
        super().__init__()
        self.in_channels = check_int("Conv2d", "in_channels", in_channels)
        self.out_channels = check_int("Conv2d", "out_channels", out_channels)
        self.kernel_size = pair("Conv2d", "kernel_size", kernel_size)
        self.stride = pair("Conv2d", "stride", stride)
        self.padding = pair("Conv2d", "padding", padding, minimum=0)
        self.dilation = pair("Conv2d", "dilation", dilation)
        if init not in _init.SCHEMES:
            raise ValueError(f"Conv2d: unknown init {init!r}; choose one of {', '.join(_init.SCHEMES)}")
        self.init = init
        receptive = self.kernel_size[0] * self.kernel_size[1]
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        self.W = self.parameter(_init.weight(init, self.in_channels * receptive, self.out_channels * receptive,
                                             _init.host_rng(seed), shape=shape))
        self.b = self.parameter(_init.zeros(self.out_channels)) if bias else None

    def config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation), "bias": self.b is not None, "init": self.init}

    def forward(self, x):
        """x: (N, C, H, W) -> y: (N, OC, OH, OW), y[n] = W_mat @ cols[n] + b."""
        x = self.check_input(x)
        check_image_input(self, x, self.in_channels)
        xp = self.xp
        out_hw = window_output(self, x.shape, self.kernel_size, self.stride, self.padding, self.dilation)
        patches = windows(xp, pad(xp, x, self.padding), self.kernel_size, self.stride, self.dilation, out_hw)
        cols = xp.reshape(patches, (-1, self.in_channels * math.prod(self.kernel_size), out_hw[0] * out_hw[1]))
        self.save_for_backward(cols=cols, x_shape=tuple(x.shape), out_hw=out_hw)   # cols: what dL/dW needs
        y = xp.reshape(self.W.data, (self.out_channels, -1)) @ cols            # (N, OC, OH OW)
        if self.b is not None:
            y = y + xp.reshape(self.b.data, (1, self.out_channels, 1))
        return xp.reshape(y, (-1, self.out_channels) + out_hw)

    def backward(self, grad_out):
        """Backprop through y[n] = W_mat @ cols[n] + b.

        Args:
            grad_out: dL/dy, shape (N, OC, OH, OW).
        Returns:
            dL/dx, shape (N, C, H, W) = col2im(W_mat^T @ grad_out_cols). Adds
            dL/dW = sum_n grad_out_cols[n] @ cols[n]^T and dL/db = sum of grad_out over N, OH, OW.
        """
        grad_cols = self._param_grads(grad_out)
        xp = self.xp
        x_shape, out_hw = self.saved("x_shape", "out_hw")
        (n, c, h, w), (ph, pw) = x_shape, self.padding
        grad_patches = xp.matrix_transpose(xp.reshape(self.W.data, (self.out_channels, -1))) @ grad_cols
        grad_patches = xp.reshape(grad_patches, (n, c, math.prod(self.kernel_size)) + out_hw)
        grad_pad = add_windows(xp, grad_patches, (n, c, h + 2 * ph, w + 2 * pw), self.kernel_size, self.stride,
                               self.dilation, out_hw)
        return unpad(grad_pad, self.padding, x_shape)

    def backward_params(self, grad_out):
        """Only the parameter gradients of :meth:`backward`; skips W^T @ g and col2im."""
        self._param_grads(grad_out)

    def _param_grads(self, grad_out):
        """Add dL/dW and dL/db; return grad_out as (N, OC, OH OW) columns."""
        cols, x_shape, out_hw = self.saved("cols", "x_shape", "out_hw")
        self.check_grad_out(grad_out, (x_shape[0], self.out_channels) + out_hw)
        xp = self.xp
        grad_cols = xp.reshape(grad_out, (x_shape[0], self.out_channels, -1))
        # dL/dW_mat = sum_n grad_cols[n] @ cols[n]^T (a stacked matmul and a sum: on NumPy 3-20x faster
        # than tensordot over the batch and pixel axes, which copies both operands first)
        grad_w = xp.sum(grad_cols @ xp.matrix_transpose(cols), axis=0)
        self.W.accumulate_grad(xp.reshape(grad_w, self.W.shape))
        if self.b is not None:
            self.b.accumulate_grad(xp.sum(grad_cols, axis=(0, 2)))          # dL/db = sum over n, pixels
        return grad_cols

    def __repr__(self):
        extra = "".join(f", {name}={getattr(self, name)}" for name, default in
                        (("stride", (1, 1)), ("padding", (0, 0)), ("dilation", (1, 1)))
                        if getattr(self, name) != default)
        bias = "" if self.b is not None else ", bias=False"
        return f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}{extra}{bias})"
