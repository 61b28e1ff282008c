"""Pooling over (N, C, H, W) inputs: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1).

Both sliding-window pools read their windows with conv.py's ``windows`` (the im2col strided
slices, giving (N, C, kH kW, OH, OW)) and send gradients back with ``add_windows`` (col2im):

    max:      y = max over the window;  dL/dx gets dL/dy at the one position that held the
              maximum (the first one, in row-major window order, when several tie, as PyTorch),
              0 elsewhere. Padding is -inf, so it is never the maximum.
    average:  y = sum over the window / (kH kW) (padding counts as zeros, PyTorch's
              count_include_pad=True); every position of the window gets dL/dy / (kH kW).

Overlapping windows (stride < kernel) simply add their gradients in col2im.
"""
from __future__ import annotations

import math

from .conv import add_windows, check_image_input, pad, pair, unpad, windows, window_output
from .module import Layer


class _Pool2d(Layer):
    """What MaxPool2d and AvgPool2d share: the window arguments, their checks and the caches."""

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

    def _patches(self, x, fill):
        """(N, C, kH kW, OH, OW) windows of x padded with ``fill``, and (OH, OW)."""
        check_image_input(self, x)
        out_hw = window_output(self, x.shape, self.kernel_size, self.stride, self.padding)
        patches = windows(self.xp, pad(self.xp, x, self.padding, fill), self.kernel_size, self.stride, (1, 1), out_hw)
        return patches, out_hw

    def _as_output(self, y, channels, out_hw):
        """y (N, C, OH, OW) reshaped to the shape it has: a no-op view on array libraries, but a
        tracer (ndonnx, for ONNX export) loses static shapes through reductions and needs them back."""
        return self.xp.reshape(y, (-1, channels) + out_hw)

    def _to_input(self, grad_windows, x_shape, out_hw):
        """col2im of (N, C, kH kW, OH, OW) window gradients, padding dropped: dL/dx (N, C, H, W)."""
        n, c, h, w = x_shape
        padded_shape = (n, c, h + 2 * self.padding[0], w + 2 * self.padding[1])
        grad_pad = add_windows(self.xp, grad_windows, padded_shape, self.kernel_size, self.stride, (1, 1), out_hw)
        return unpad(grad_pad, self.padding, x_shape)

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
        patches, out_hw = self._patches(x, -math.inf)
        argmax = self.xp.argmax(patches, axis=2)           # (N, C, OH, OW); the first maximum on ties
        self.save_for_backward(argmax=argmax, x_shape=tuple(x.shape), out_hw=out_hw)
        return self._as_output(self.xp.max(patches, axis=2), x.shape[1], out_hw)

    def backward(self, grad_out):
        """grad_out: (N, C, OH, OW) -> dL/dx (N, C, H, W): each dL/dy goes to its window's argmax."""
        argmax, x_shape, out_hw = self.saved("argmax", "x_shape", "out_hw")
        self.check_grad_out(grad_out, x_shape[:2] + out_hw)
        xp = self.xp
        positions = xp.arange(math.prod(self.kernel_size), device=grad_out.device)
        routed = positions[None, None, :, None, None] == argmax[:, :, None, :, :]   # one-hot over the window
        return self._to_input(xp.astype(routed, grad_out.dtype) * grad_out[:, :, None, :, :], x_shape, out_hw)


class AvgPool2d(_Pool2d):
    """Mean over each kH x kW window, as ``torch.nn.AvgPool2d`` (count_include_pad=True).

    x (N, C, H, W) -> (N, C, OH, OW); backward gives every position of a window dL/dy / (kH kW).
    """

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, OH, OW)."""
        x = self.check_input(x)
        patches, out_hw = self._patches(x, 0.0)
        self.save_for_backward(x_shape=tuple(x.shape), out_hw=out_hw)
        return self._as_output(self.xp.mean(patches, axis=2), x.shape[1], out_hw)

    def backward(self, grad_out):
        """grad_out: (N, C, OH, OW) -> dL/dx (N, C, H, W)."""
        x_shape, out_hw = self.saved("x_shape", "out_hw")
        self.check_grad_out(grad_out, x_shape[:2] + out_hw)
        xp = self.xp
        count = math.prod(self.kernel_size)
        shared = xp.broadcast_to(grad_out[:, :, None, :, :] / count, x_shape[:2] + (count,) + out_hw)
        return self._to_input(shared, x_shape, out_hw)


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
