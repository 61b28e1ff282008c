"""Pooling over (N, C, H, W) inputs: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1).

The sliding-window pools work on the channels-last view (N, H, W, C) of their input and read
each window position (a, b) as one strided slice of it (windows.py, ``offset_slices``):

    max:      y = a running maximum over the kH kW slices, with the position of the first
              maximum (row-major window order, as PyTorch on ties) kept for backward; dL/dx gets
              dL/dy at that one position, 0 elsewhere: no one-hot over the windows, and a backend
              may route it with one scatter (windows.py, ``route_max``). Padding is -inf, so it
              is never the maximum.
    average:  y = sum of the slices / (kH kW) (padding counts as zeros, PyTorch's
              count_include_pad=True); every position of the window gets dL/dy / (kH kW).

Overlapping windows (stride < kernel) add their gradients; tiling ones assign them.
"""
from __future__ import annotations

import math

from .module import Layer
from .windows import (channels_first, channels_last, check_image_input, offset_slices, pad, pair, route_max, tiles,
                      too_big, unpad, window_max, window_output)


class _Pool2d(Layer):
    """What MaxPool2d and AvgPool2d share: the window arguments, their checks and the padding."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        owner = type(self).__name__
        self.kernel_size = pair(owner, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else pair(owner, "stride", stride)
        self.padding = pair(owner, "padding", padding, minimum=0)
        if self.padding[0] > self.kernel_size[0] // 2 or self.padding[1] > self.kernel_size[1] // 2:
            raise ValueError(f"{owner}: padding {self.padding} must be at most half the kernel_size "
                             f"{self.kernel_size} (as PyTorch), else a window could hold only padding")

    def config(self) -> dict:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding)}

    def _padded(self, x, fill):
        """The channels-last view of x (N, H, W, C) padded with ``fill``, and (OH, OW)."""
        check_image_input(self, x)
        out_hw = window_output(self, x.shape, self.kernel_size, self.stride, self.padding)
        try:
            return pad(self.xp, channels_last(self.xp, x), self.padding, fill), out_hw
        except MemoryError as error:
            raise too_big(self, x.shape, out_hw, x.shape[1], (4 if self._dtype == "float32" else 8), error) from None

    def _as_output(self, y, channels, out_hw):
        """Channels-last y (N, OH, OW, C) as the (N, C, OH, OW) output. The reshape is a no-op view on
        array libraries, but a tracer (ndonnx, for ONNX export) loses static shapes through
        reductions and needs them back."""
        xp = self.xp
        return channels_first(xp, xp.reshape(y, (-1,) + out_hw + (channels,)))

    def _padded_shape(self, x_shape):
        n, c, h, w = x_shape
        return (n, h + 2 * self.padding[0], w + 2 * self.padding[1], c)

    def _to_input(self, grad_pad, x_shape):
        """Channels-last dL/dx_pad (N, Hp, Wp, C), padding dropped -> dL/dx (N, C, H, W)."""
        return channels_first(self.xp, unpad(grad_pad, self.padding, x_shape[2:]))

    def __repr__(self):
        stride = "" if self.stride == self.kernel_size else f", stride={self.stride}"
        padding = "" if self.padding == (0, 0) else f", padding={self.padding}"
        return f"{type(self).__name__}(kernel_size={self.kernel_size}{stride}{padding})"


class MaxPool2d(_Pool2d):
    """Maximum over each kH x kW window, as ``torch.nn.MaxPool2d`` (stride defaults to kernel_size).

    x (N, C, H, W) -> (N, C, OH, OW), OH = floor((H + 2 padH - kH) / strideH) + 1.
    Backward routes dL/dy to the argmax of each window (one position per window on ties).
    """

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, OH, OW)."""
        x = self.check_input(x)
        x_pad, out_hw = self._padded(x, -math.inf)
        largest, argmax = window_max(self.backend, x_pad, self.kernel_size, self.stride, out_hw)
        self.save_for_backward(argmax=argmax, x_shape=tuple(x.shape))
        return self._as_output(largest, x.shape[1], out_hw)

    def backward(self, grad_out):
        """grad_out: (N, C, OH, OW) -> dL/dx (N, C, H, W): each dL/dy goes to its window's argmax."""
        argmax, x_shape = self.saved("argmax", "x_shape")
        n, oh, ow, c = argmax.shape
        grad_out = self.check_grad_out(grad_out, (n, c, oh, ow))
        grad_pad = route_max(self.backend, channels_last(self.xp, grad_out), argmax, self._padded_shape(x_shape),
                             self.kernel_size, self.stride)
        return self._to_input(grad_pad, x_shape)


class AvgPool2d(_Pool2d):
    """Mean over each kH x kW window, as ``torch.nn.AvgPool2d`` (count_include_pad=True).

    x (N, C, H, W) -> (N, C, OH, OW); backward gives every position of a window dL/dy / (kH kW).
    """

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, OH, OW)."""
        x = self.check_input(x)
        x_pad, out_hw = self._padded(x, 0.0)
        total = None
        for rows, cols in offset_slices(self.kernel_size, self.stride, (1, 1), out_hw):
            piece = x_pad[:, rows, cols, :]
            total = piece if total is None else total + piece
        self.save_for_backward(x_shape=tuple(x.shape), out_hw=out_hw)
        return self._as_output(total / math.prod(self.kernel_size), x.shape[1], out_hw)

    def backward(self, grad_out):
        """grad_out: (N, C, OH, OW) -> dL/dx (N, C, H, W)."""
        x_shape, out_hw = self.saved("x_shape", "out_hw")
        grad_out = self.check_grad_out(grad_out, x_shape[:2] + out_hw)
        xp = self.xp
        share = channels_last(xp, grad_out) / math.prod(self.kernel_size)       # (N, OH, OW, C)
        grad_pad = xp.zeros(self._padded_shape(x_shape), dtype=grad_out.dtype, device=grad_out.device)
        overlap = not tiles(self.kernel_size, self.stride, (1, 1))
        for rows, cols in offset_slices(self.kernel_size, self.stride, (1, 1), out_hw):
            if overlap:
                grad_pad[:, rows, cols, :] += share
            else:
                grad_pad[:, rows, cols, :] = share
        return self._to_input(grad_pad, x_shape)


class AdaptiveAvgPool2d(Layer):
    """Global average pooling, as ``torch.nn.AdaptiveAvgPool2d(1)``: (N, C, H, W) -> (N, C, 1, 1).

    y[n, c] = mean of x[n, c] over H, W; dL/dx = dL/dy / (H W) at every position.
    Only output_size 1 (or (1, 1)) is supported.
    """

    def __init__(self, output_size=1):
        super().__init__()
        if pair("AdaptiveAvgPool2d", "output_size", output_size) != (1, 1):
            raise ValueError(f"AdaptiveAvgPool2d: only output_size=1 (global average pooling) is supported, "
                             f"got {output_size!r}; use AvgPool2d for other sizes")
        self.output_size = 1

    def config(self) -> dict:
        return {"output_size": 1}

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, 1, 1)."""
        x = self.check_input(x)
        check_image_input(self, x)
        if x.shape[2] * x.shape[3] == 0:
            raise ValueError(f"{self._name()}: an image of {x.shape[2]}x{x.shape[3]} pixels has no average "
                             f"(input of shape {tuple(x.shape)})")
        self.save_for_backward(x_shape=tuple(x.shape))
        return self.xp.mean(x, axis=(2, 3), keepdims=True)

    def backward(self, grad_out):
        """grad_out: (N, C, 1, 1) -> dL/dx (N, C, H, W)."""
        x_shape = self.saved("x_shape")
        self.check_grad_out(grad_out, x_shape[:2] + (1, 1))
        xp, (h, w) = self.xp, x_shape[2:]
        # a fresh array, not a read-only broadcast view: the layer below may update it in place
        return xp.zeros(x_shape, dtype=grad_out.dtype, device=grad_out.device) + grad_out / (h * w)

    def __repr__(self):
        return "AdaptiveAvgPool2d(output_size=1)"
