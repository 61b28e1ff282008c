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


# The PyTorch oracle: float64 results of bpcore and torch agree to 1e-8.
ORACLE_TOL = {"rtol": 1e-8, "atol": 1e-8}


def assert_matches_torch(actual, expected, what):
    np.testing.assert_allclose(actual, expected, **ORACLE_TOL, err_msg=f"{what} differs from torch")


def to_torch(array, requires_grad=False):
    """A float64 CPU leaf tensor holding a copy of a host array (torch imported only here)."""
    import torch

    return torch.tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


def from_torch(tensor):
    return tensor.detach().numpy().copy()
