"""Conv2d: a 2-D convolution (cross-correlation, as PyTorch) written as im2col + one matrix product.

Layout is NCHW outside: x (N, C, H, W), weight W (OC, C, kH, kW), output (N, OC, OH, OW) with

    OH = floor((H + 2 padH - dilH (kH - 1) - 1) / strideH) + 1      (OW likewise)

The im2col idea
---------------
Output pixel (n, o, i, j) is a dot product between the filter W[o] (C kH kW numbers) and the
patch of the padded input under it, x_pad[n, :, i s + a d, j s + b d] for a < kH, b < kW.
Copy every patch of every image into one row of a matrix ``cols``: then the whole convolution
of the whole batch is one matrix product,

    y_rows = cols @ W_mat^T + b,    cols: (N OH OW, kH kW C),  W_mat: (OC, kH kW C),  y_rows: (N OH OW, OC)

Each row of ``cols`` is one patch read channels-last, (a, b, c), and W_mat is W with its axes
in that order, ``permute_dims(W, (0, 2, 3, 1))``. The rows of y are pixels (n, i, j) with their
OC channels: the output in channels-last memory, handed on as its (N, OC, OH, OW) view (windows.py
explains the layout). ``cols`` is built without any per-pixel loop: for each kernel offset (a, b)
the values it multiplies form a *strided slice* of the padded input, and stacking the kH kW
slices gives the patches (windows.py, ``sliding_windows``; NumPy and CuPy build them as one
strided view instead).

The backward formulas
---------------------
With g = dL/dy as rows (N OH OW, OC), the chain rule through y_rows = cols @ W_mat^T + b gives,
exactly as for Linear, single matrix products over the whole batch:

    dL/dW_mat = g^T @ cols                  (OC, kH kW C)   -> permuted back to (OC, C, kH, kW)
    dL/db     = sum of g over its rows      (OC,)
    dL/dcols  = g @ W_mat                   (N OH OW, kH kW C)

and dL/dx is **col2im** of dL/dcols: every entry of cols is a copy of one input entry, so the
gradient of that input entry is the *sum* over all its copies. col2im walks the same kH kW
strided slices as im2col and adds instead of reading, then drops the padding
(``add_windows``; the standard has no scatter-add, and kH kW slice updates replace it).
NumPy's fast path computes dL/dcols one kernel offset at a time and adds each piece while it is
in cache (``conv_input_grad`` in windows.py and backends/_strided.py).

Pooling (pooling.py) reads the same windows: max-pooling keeps a running maximum and sends
each window's gradient to the one position that held it, average pooling spreads it evenly.
"""
from __future__ import annotations

import math

from .._checks import check_int
from . import init as _init
from .module import Layer
from .windows import (channels_first, channels_last, check_image_input, conv_input_grad, pad, pair,
                      sliding_windows, too_big, unpad, window_output)

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
                                             _init.host_rng(seed, "Conv2d"), shape=shape))
        self.b = self.parameter(_init.zeros(self.out_channels)) if bias else None

    def config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation), "bias": self.b is not None, "init": self.init}

    def forward(self, x):
        """x: (N, C, H, W) -> y: (N, OC, OH, OW), one matrix product: y_rows = cols @ W_mat^T + b."""
        x = self.check_input(x)
        check_image_input(self, x, self.in_channels)
        xp = self.xp
        out_hw = window_output(self, x.shape, self.kernel_size, self.stride, self.padding, self.dilation)
        try:
            x_pad = pad(xp, channels_last(xp, x), self.padding)                # (N, Hp, Wp, C)
            patches = sliding_windows(self.backend, x_pad, self.kernel_size, self.stride, self.dilation, out_hw)
            cols = xp.reshape(patches, (-1, math.prod(self.kernel_size) * self.in_channels))  # (N OH OW, kH kW C)
        except MemoryError as error:
            itemsize = 4 if self._dtype == "float32" else 8
            raise too_big(self, x.shape, out_hw, self.in_channels, itemsize, error) from None
        self.save_for_backward(cols=cols, x_shape=tuple(x.shape), out_hw=out_hw)     # cols: what dL/dW needs
        y = cols @ xp.matrix_transpose(self._w_mat())                              # (N OH OW, OC)
        if self.b is not None:
            y += self.b.data
        return channels_first(xp, xp.reshape(y, (-1,) + out_hw + (self.out_channels,)))

    def backward(self, grad_out):
        """Backprop through y_rows = cols @ W_mat^T + b.

        Args:
            grad_out: dL/dy, shape (N, OC, OH, OW).
        Returns:
            dL/dx, shape (N, C, H, W) = col2im(g @ W_mat) with g = grad_out as rows (N OH OW, OC).
            Adds dL/dW = g^T @ cols (permuted to W's shape) and dL/db = sum of g over its rows.
        """
        grad_rows = self._param_grads(grad_out)
        x_shape, out_hw = self.saved("x_shape", "out_hw")
        (n, c, h, w), (ph, pw) = x_shape, self.padding
        grad_pad = conv_input_grad(self.backend, grad_rows, self._w_mat(), (n, h + 2 * ph, w + 2 * pw, c), out_hw,
                                   self.kernel_size, self.stride, self.dilation)
        return channels_first(self.xp, unpad(grad_pad, self.padding, (h, w)))

    def backward_params(self, grad_out):
        """Only the parameter gradients of :meth:`backward`; skips g @ W_mat and col2im."""
        self._param_grads(grad_out)

    def _w_mat(self):
        """W (OC, C, kH, kW) as W_mat (OC, kH kW C), the order of a channels-last patch."""
        xp = self.xp
        return xp.reshape(xp.permute_dims(self.W.data, (0, 2, 3, 1)), (self.out_channels, -1))

    def _param_grads(self, grad_out):
        """Add dL/dW and dL/db; return grad_out as rows (N OH OW, OC)."""
        cols, x_shape, out_hw = self.saved("cols", "x_shape", "out_hw")
        self.check_grad_out(grad_out, (x_shape[0], self.out_channels) + out_hw)
        xp = self.xp
        # a free view when grad_out is channels-last in memory (it is when the layer above is a
        # bpcore layer), else one transposing copy
        grad_rows = xp.reshape(channels_last(xp, grad_out), (-1, self.out_channels))
        # dL/dW_mat = g^T @ cols, computed as its transpose cols^T @ g (kH kW C, OC): the same
        # product, which OpenBLAS runs faster for a long, narrow g (measured on the CIFAR-sized net)
        grad_w_t = xp.matrix_transpose(cols) @ grad_rows
        (kh, kw), c = self.kernel_size, self.in_channels
        self.W.accumulate_grad(xp.permute_dims(xp.reshape(grad_w_t, (kh, kw, c, self.out_channels)), (3, 2, 0, 1)))
        if self.b is not None:
            self.b.accumulate_grad(xp.sum(grad_rows, axis=0))                      # dL/db = sum over rows
        return grad_rows

    def __repr__(self):
        extra = "".join(f", {name}={getattr(self, name)}" for name, default in
                        (("stride", (1, 1)), ("padding", (0, 0)), ("dilation", (1, 1)))
                        if getattr(self, name) != default)
        bias = "" if self.b is not None else ", bias=False"
        return f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}{extra}{bias})"
