"""Helpers shared by the tests: tolerances from the dtype, data on a backend."""
from __future__ import annotations

import contextlib

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


def on(backend, layer):
    """The layer in float64 on ``backend``."""
    return layer.astype("float64").to(backend)


def forward_backward(layer, backend, x, grad_out):
    """bpcore forward and backward on ``backend``; host (out, dL/dx)."""
    out = layer(backend.asarray(x))
    grad_in = layer.backward(backend.asarray(grad_out))
    return host(backend, out), host(backend, grad_in)


def torch_forward_backward(torch_fn, x, grad_out):
    """torch_fn(x) and dL/dx for the upstream gradient grad_out, by autograd; host arrays."""
    x_t = to_torch(x, requires_grad=True)
    out_t = torch_fn(x_t)
    out_t.backward(to_torch(grad_out))
    return from_torch(out_t), from_torch(x_t.grad)


def checked_forward_backward(layer, backend, x, grad_out):
    """Forward and backward of ``layer`` on ``backend``; host (out, grad_out, grad_in).

    ``grad_out`` is an array, or a function of the output's shape (``rng.standard_normal``). Any
    RuntimeWarning (overflow in exp, invalid value) fails, and the host inputs must come back
    unchanged (numpy and torch arrays may share memory with them). grad_in is None where the
    layer returns none (integer inputs).
    """
    import warnings

    x_before = x.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = layer(backend.asarray(x))
        if callable(grad_out):
            grad_out = grad_out(tuple(out.shape))
        grad_out_before = grad_out.copy()
        grad_in = layer.backward(backend.asarray(grad_out))
    np.testing.assert_array_equal(x, x_before, err_msg=f"{layer!r}: forward changed its input in place")
    np.testing.assert_array_equal(grad_out, grad_out_before, err_msg=f"{layer!r}: backward changed grad_out in place")
    return host(backend, out), grad_out, (None if grad_in is None else host(backend, grad_in))


# -- counting host syncs ----------------------------------------------------------------------------
# What makes a GPU wait for its queue and copy to the host: reading a value (bool/float/int), an
# explicit to_numpy/synchronize, or NumPy converting the array (__array__, refused on the
# simulated device as CuPy refuses it). Training code must do none of them per batch. Copies the
# other way (host -> device, "asarray") are counted too: data moved every step instead of once.
SYNC_SPEC = "array_api_strict:device1"
_SYNC_METHODS = ("__bool__", "__float__", "__int__", "__index__", "__array__")


class SyncCounter:
    """Counts of host syncs by kind, e.g. {"__float__": 2, "to_numpy": 1}; ``total`` sums them."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def add(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __repr__(self):
        return f"SyncCounter({self.counts})"


@contextlib.contextmanager
def count_syncs(backend=None):
    """Count host syncs on ``backend`` (default: the simulated device ``array_api_strict:device1``)
    while the block runs: ``with count_syncs() as syncs: ...; assert syncs.total == 0``.

    Counts ``to_numpy`` and ``synchronize`` of the backend and ``__bool__``, ``__float__``,
    ``__int__``, ``__index__``, ``__array__`` of its arrays, and its host -> device copies
    (``asarray``, where every host array moved onto the backend goes, layers' inputs included).
    On device1, ``np.asarray(array)`` raises, as it does for a CuPy array. Reusable by any test
    (issue 15's speed work relies on it).
    """
    import backends

    backend = backends.get(backend or SYNC_SPEC)
    counter = SyncCounter()
    array_type = type(backend.asarray(np.zeros(1)))
    saved_type = {name: array_type.__dict__[name] for name in _SYNC_METHODS if name in array_type.__dict__}
    saved_backend = {name: vars(backend).get(name) for name in ("to_numpy", "synchronize", "asarray")}

    def counting(name, method):
        def run(self, *args, **kwargs):
            if backend.owns(self):
                counter.add(name)
            return method(self, *args, **kwargs)
        return run

    def counting_bound(name, method):
        def run(*args, **kwargs):
            counter.add(name)
            return method(*args, **kwargs)
        return run

    for name, method in saved_type.items():
        setattr(array_type, name, counting(name, method))
    for name in saved_backend:
        setattr(backend, name, counting_bound(name, getattr(type(backend), name).__get__(backend)))
    try:
        yield counter
    finally:
        for name, method in saved_type.items():
            setattr(array_type, name, method)
        for name, value in saved_backend.items():
            if value is None:
                vars(backend).pop(name, None)
            else:
                setattr(backend, name, value)
