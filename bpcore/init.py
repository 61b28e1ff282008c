"""Initial weights, drawn on the host from a seeded NumPy Generator.

Drawing on the host (and only then moving to the device) is what makes one
seed give the same starting network on NumPy, PyTorch, CuPy and
array_api_strict, so results can be compared across backends exactly. This
is the one place in bpcore's layer code that uses NumPy directly.

Schemes for a weight matrix W of shape (fan_in, fan_out):

    he / kaiming      N(0, 2 / fan_in)                 ReLU-like activations
    he_uniform        U(-a, a), a = sqrt(6 / fan_in)
    lecun             N(0, 1 / fan_in)                 tanh, sigmoid (the lessons' choice)
    lecun_uniform     U(-a, a), a = sqrt(3 / fan_in)
    xavier / glorot   N(0, 2 / (fan_in + fan_out))
    xavier_uniform    U(-a, a), a = sqrt(6 / (fan_in + fan_out))
    zeros             all zeros
"""
from __future__ import annotations

import math

import numpy as np

SCHEMES = ("he", "he_uniform", "kaiming", "lecun", "lecun_uniform",
           "xavier", "xavier_uniform", "glorot", "zeros")
_ALIASES = {"kaiming": "he", "glorot": "xavier"}


def host_rng(seed) -> np.random.Generator:
    """A NumPy Generator from an int seed, None (fresh entropy) or a Generator (used as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative int, None or a numpy Generator, got {seed!r}")
    return np.random.default_rng(seed)


def weight(scheme: str, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """A (fan_in, fan_out) float64 host array drawn by ``scheme`` (see the module docstring)."""
    scheme = _ALIASES.get(scheme, scheme)
    shape = (fan_in, fan_out)
    if scheme == "zeros":
        return np.zeros(shape)
    if scheme == "he":
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
    if scheme == "he_uniform":
        return _uniform(rng, math.sqrt(6.0 / fan_in), shape)
    if scheme == "lecun":
        return rng.normal(0.0, math.sqrt(1.0 / fan_in), shape)
    if scheme == "lecun_uniform":
        return _uniform(rng, math.sqrt(3.0 / fan_in), shape)
    if scheme == "xavier":
        return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
    if scheme == "xavier_uniform":
        return _uniform(rng, math.sqrt(6.0 / (fan_in + fan_out)), shape)
    raise ValueError(f"unknown init {scheme!r}; choose one of {', '.join(SCHEMES)}")


def _uniform(rng, limit, shape):
    return rng.uniform(-limit, limit, shape)


def zeros(size: int) -> np.ndarray:
    """A host vector of zeros (biases start at zero)."""
    return np.zeros(size)


def ones(size: int) -> np.ndarray:
    """A host vector of ones (normalization scales start at one)."""
    return np.ones(size)
