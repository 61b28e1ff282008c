"""Helpers shared by the tests: tolerances from the dtype, data on a backend."""
from __future__ import annotations

import numpy as np


def tolerance(dtype: str, factor: float = 100.0) -> dict:
    """rtol/atol for comparing results computed in ``dtype``: a multiple of its machine epsilon."""
    eps = float(np.finfo(dtype).eps)
    return {"rtol": factor * eps, "atol": factor * eps}


def host(backend, array) -> np.ndarray:
    """Any array (backend or host) -> host NumPy."""
    if isinstance(array, (np.ndarray, np.generic)):
        return np.asarray(array)
    return backend.to_numpy(array)


def normal(rng, shape, dtype="float64") -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)
