"""Dropout: inverted dropout with a mask drawn on the device from a seeded stream."""
from __future__ import annotations

from .module import Layer


class Dropout(Layer):
    """Zero each entry with probability p in training and scale the rest by 1 / (1 - p).

    The expectation of the output equals the input, so eval mode is the identity.
    Backward multiplies grad_out by the same mask: dL/dx = grad_out * mask / (1 - p).

    Args:
        p: drop probability in [0, 1).
        seed: seeds the backend's random stream (None: fresh entropy). The mask is
            drawn on the model's device; the same seed gives the same masks on the
            same backend. Moving the layer restarts the stream from the seed.
    """

    def __init__(self, p: float = 0.5, seed: int | None = None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"Dropout: seed must be a non-negative int or None, got {seed!r}")
        self.p = float(p)
        self.seed = seed
        self._stream = None

    def config(self) -> dict:
        return {"p": self.p, "seed": self.seed}

    def forward(self, x):
        """x: any shape -> same shape."""
        x = self.check_input(x)
        if not self.training or self.p == 0.0:
            self.save_for_backward(shape=tuple(x.shape), scale=None)     # the identity
            return x
        if self._stream is None or self._stream.backend is not self._backend:
            self._stream = self._backend.random(self.seed)
        keep = self._stream.uniform(x.shape, self._dtype) >= self.p
        scale = self.xp.astype(keep, x.dtype) * (1.0 / (1.0 - self.p))      # mask / (1 - p)
        self.save_for_backward(shape=tuple(x.shape), scale=scale)
        return x * scale

    def random_state(self):
        """The mask stream's position (JSON-able), saved in checkpoints; None before the first mask."""
        return self._stream.get_state() if self._stream is not None else None

    def set_random_state(self, state) -> None:
        """Continue drawing masks from a position given by :meth:`random_state`."""
        self._stream = self._backend.random(self.seed)
        self._stream.set_state(state)

    def backward(self, grad_out):
        shape, scale = self.saved("shape", "scale")
        self.check_grad_out(grad_out, shape)
        return grad_out if scale is None else grad_out * scale

    def __repr__(self):
        return f"Dropout(p={self.p})"
