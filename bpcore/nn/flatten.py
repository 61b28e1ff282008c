"""Flatten: (N, C, H, W) -> (N, C H W), the bridge from convolutions to Linear layers."""
from __future__ import annotations

import math

from .module import Layer


class Flatten(Layer):
    """Merge the dimensions start_dim..end_dim into one, as ``torch.nn.Flatten`` (default: all but the batch).

    Backward reshapes dL/dy back to the input's shape: flattening only renames positions.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        for name, value in (("start_dim", start_dim), ("end_dim", end_dim)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"Flatten: {name} must be an int, got {value!r}")
        self.start_dim, self.end_dim = start_dim, end_dim

    def config(self) -> dict:
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}

    def forward(self, x):
        """x: (N, d1, ..., dk) -> (N, d1 ... dk) with the defaults."""
        x = self.check_input(x)
        ndim = x.ndim
        start = self.start_dim + ndim if self.start_dim < 0 else self.start_dim
        end = self.end_dim + ndim if self.end_dim < 0 else self.end_dim
        if not 0 <= start <= end < ndim:
            raise ValueError(f"{self._name()}: cannot flatten dimensions {self.start_dim}..{self.end_dim} of an "
                             f"input of shape {tuple(x.shape)}")
        shape = tuple(x.shape)
        out_shape = shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]
        self.save_for_backward(x_shape=shape, out_shape=out_shape)
        # the batch axis as -1 when it is kept: its size may be symbolic while tracing (ONNX export);
        # an empty array's -1 would be ambiguous, and its sizes are all known
        empty = 0 in shape
        target = (-1,) + out_shape[1:] if start >= 1 and not empty else out_shape
        return self.xp.reshape(x, target)

    def backward(self, grad_out):
        """grad_out: the flattened shape -> dL/dx in the input's shape."""
        x_shape, out_shape = self.saved("x_shape", "out_shape")
        self.check_grad_out(grad_out, out_shape)
        return self.xp.reshape(grad_out, x_shape)

    def __repr__(self):
        default = (self.start_dim, self.end_dim) == (1, -1)
        extra = "" if default else f"start_dim={self.start_dim}, end_dim={self.end_dim}"
        return f"Flatten({extra})"
