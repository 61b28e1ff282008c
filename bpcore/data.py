"""Small data sets from the lessons, made on the host with a seeded NumPy Generator.

Each returns ``(X, y)`` as host NumPy arrays: X float32 of shape (n, features)
and y shaped for the loss the lesson uses ((n, 1) float32 for binary
cross-entropy). Move them with ``backend.asarray`` or pass them to a model,
which moves host arrays itself.
"""
from __future__ import annotations

import math

import numpy as np

from .init import host_rng


def _check_count(name: str, n, minimum: int = 2) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name}: n must be an int >= {minimum}, got {n!r}")
    return int(n)


def _check_noise(name: str, noise) -> float:
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (0 <= noise < math.inf):
        raise ValueError(f"{name}: noise must be a finite number >= 0, got {noise!r}")
    return float(noise)


def xor():
    """The four XOR points: X (4, 2) float32, y (4, 1) float32 = [0, 1, 1, 0]."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)
    return X, y


def spiral(n: int = 400, noise: float = 0.3, seed=0):
    """Two interleaved spirals, standardized: X (n, 2) float32, y (n, 1) float32 in {0, 1}.

    For each point theta = sqrt(u) * 2 pi with u ~ U(0, 1) and r = 2 theta + pi;
    class 0 is (r cos theta, r sin theta), class 1 the same point reflected
    through the origin; then Gaussian noise of std ``noise`` is added and each
    feature is standardized to mean 0 and std 1. Class 0 has ceil(n/2) points.
    """
    n = _check_count("spiral", n)
    noise = _check_noise("spiral", noise)
    rng = host_rng(seed)
    n0 = (n + 1) // 2
    n1 = n - n0
    theta = np.sqrt(rng.random(n)) * 2 * np.pi
    radius = 2 * theta + np.pi
    sign = np.concatenate([np.ones(n0), -np.ones(n1)])
    points = sign[:, None] * np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    points += rng.normal(0.0, noise, points.shape)
    X = (points - points.mean(axis=0)) / points.std(axis=0)
    y = np.concatenate([np.zeros(n0), np.ones(n1)])[:, None]
    return X.astype(np.float32), y.astype(np.float32)
