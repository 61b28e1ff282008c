"""Dropout: inverted dropout with a mask made on the device by a counter-based generator."""
from __future__ import annotations

import secrets

import backends

from .._checks import Setting, check_number
from .module import Layer


class Dropout(Layer):
    """Zero each entry with probability p in training and scale the rest by 1 / (1 - p).

    The expectation of the output equals the input, so eval mode is the identity.
    Backward multiplies grad_out by the same mask: dL/dx = grad_out * mask / (1 - p).

    Args:
        p: drop probability in [0, 1).
        seed: an int in [0, 2**64), or None for a fresh one. Mask number k of the layer is a pure
            function of (seed, k, entry index) (``backends/_random.py``): the same seed gives the
            same masks on every backend, bit for bit, and moving the layer does not restart them.
            The layer's random state is two integers (:meth:`random_state`).
    """

    # checked on every assignment (dropout.p = 0.3 between epochs), as in the constructor
    p = Setting(lambda self, p: check_number("Dropout", "p", p, 0.0, 1.0, high_open=True))

    def __init__(self, p: float = 0.5, seed: int | None = None):
        super().__init__()
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 64):
            raise ValueError(f"Dropout: seed must be an int in [0, 2**64) or None, got {seed!r}")
        self.p = p
        self.seed = seed
        self._mask_seed = secrets.randbits(64) if seed is None else seed
        self._masks_drawn = 0    # with the seed, the whole random state: mask k is a function of (seed, k)

    def config(self) -> dict:
        return {"p": self.p, "seed": self.seed}

    def forward(self, x):
        """x: any shape -> same shape."""
        x = self.check_input(x)
        if not self.training or self.p == 0.0:
            self.save_for_backward(shape=tuple(x.shape), scale=None)     # the identity
            return x
        bits = self.backend.random_bits(self._mask_seed, self._masks_drawn, x.shape)   # [0, 2**32)
        self._masks_drawn += 1
        keep = bits >= round(self.p * 2 ** 32)      # P(bits >= p 2**32) = 1 - p, to within 2**-33
        scale = self.xp.astype(keep, x.dtype) * (1.0 / (1.0 - self.p))      # mask / (1 - p)
        self.save_for_backward(shape=tuple(x.shape), scale=scale)
        return x * scale

    def random_state(self) -> dict:
        """The mask stream's position, {"generator", "seed", "calls"} (JSON-able, saved in checkpoints)."""
        return {"generator": backends.RANDOM_GENERATOR, "seed": self._mask_seed, "calls": self._masks_drawn}

    def set_random_state(self, state) -> None:
        """Continue the masks from a position given by :meth:`random_state` (saved on any backend)."""
        state = backends.checked_random_state(state)         # ValueError naming what is wrong
        self._mask_seed, self._masks_drawn = state["seed"], state["calls"]

    def backward(self, grad_out):
        shape, scale = self.saved("shape", "scale")
        self.check_grad_out(grad_out, shape)
        return grad_out if scale is None else grad_out * scale

    def __repr__(self):
        return f"Dropout(p={self.p})"
