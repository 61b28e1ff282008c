"""NumPy on the CPU, through array-api-compat's standard namespace."""
from __future__ import annotations

import types

import array_api_compat.numpy as np_xp
import numpy as np

from ._base import Backend
from ._fast_paths import _PORTABLE_ONLY


# -- fast paths: the same results as array_api_compat.numpy, with less Python per call ------------
# np.sum and np.max go through NumPy's generic reduction wrapper, which costs 1.5 us a call on top
# of the reduction itself; the ufunc's own reduce is what that wrapper ends in for an ndarray. A
# small net makes several such calls a step (a bias gradient per layer, the loss's sum; min and max
# for SoftmaxCrossEntropyLoss's per-call label check).
# tests/test_backends.py checks each one equal to array_api_compat's over dtypes, axes and keepdims
# (the column sums by ones @ x equal to within float rounding: BLAS adds in another order; inside
# backends.portable_only() the sums are np.add.reduce's, bit for bit those of array_api_strict).
def _sum(x, /, *, axis=None, dtype=None, keepdims=False):
    if axis == 0 and dtype is None and not keepdims and not _PORTABLE_ONLY[0] and column_sums_by_matvec(x):
        return ones_for(x.shape[0], x.dtype) @ x
    return np.add.reduce(x, axis=axis, dtype=dtype, keepdims=keepdims)


# The sum over the rows of a matrix (a bias gradient: dL/db = sum over the batch of dL/dy) is a
# reduction along axis 0, which NumPy runs as one short inner loop per row: 5-20 us for a
# (400, 16) batch, where the matrix-vector product ones @ x (BLAS) takes under 1 us. With many
# columns BLAS's gemv is the slower one (and threads make it worse), hence the bound.
MATVEC_MAX_COLUMNS = 256
_ONES: dict = {}


def column_sums_by_matvec(x) -> bool:
    """Whether ``sum(x, axis=0)`` is computed as ``ones @ x``: a C-contiguous float32 or float64
    matrix (BLAS's types) with at least 2 and at most MATVEC_MAX_COLUMNS columns (the hand-written
    benchmark step asks the same)."""
    return (x.__class__ is np.ndarray and x.ndim == 2 and 1 < x.shape[1] <= MATVEC_MAX_COLUMNS
            and x.dtype.char in "fd" and x.flags.c_contiguous)


def ones_for(rows: int, dtype):
    """A cached read-only vector of ``rows`` ones in ``dtype`` (the few batch sizes a run uses)."""
    key = (rows, dtype)
    ones = _ONES.get(key)
    if ones is None:
        if len(_ONES) > 64:
            _ONES.clear()
        ones = _ONES[key] = np.ones(rows, dtype=dtype)
        ones.flags.writeable = False
    return ones


def _max(x, /, *, axis=None, keepdims=False):
    return np.maximum.reduce(x, axis=axis, keepdims=keepdims)


def _min(x, /, *, axis=None, keepdims=False):
    return np.minimum.reduce(x, axis=axis, keepdims=keepdims)


def _astype(x, dtype, /, *, copy=True, device=None):
    if device not in (None, "cpu"):
        raise ValueError(f"astype: the numpy backend has only the 'cpu' device, got {device!r}")
    return x.astype(dtype, copy=copy)


FAST_PATHS = {"sum": _sum, "max": _max, "min": _min, "astype": _astype}

# The namespace layers compute with: array_api_compat.numpy, with the fast paths in its place.
numpy_namespace = types.ModuleType("backends.numpy_namespace", "array_api_compat.numpy with bpcore's fast paths")
numpy_namespace.__dict__.update({name: value for name, value in vars(np_xp).items() if not name.startswith("__")})
numpy_namespace.__dict__.update(FAST_PATHS)


def numpy_scatter_add_rows(values, indices, num_rows):
    """out (num_rows, D) with out[indices[k]] += values[k]: the fast path of bpcore.nn.scatter
    (``np.add.at`` adds repeated indices one after another, unbuffered)."""
    out = np.zeros((num_rows, values.shape[1]), dtype=values.dtype)
    np.add.at(out, indices, values)
    return out


class NumpyBackend(Backend):
    name = "numpy"
    kind = "cpu"

    def __init__(self):
        super().__init__(numpy_namespace, "cpu", "numpy")

    def asarray(self, host, dtype=None, copy=False):
        if copy:
            return np.array(host, dtype=dtype, copy=True)
        return np.asarray(host, dtype=dtype)

    def to_numpy(self, array):
        return np.array(array, copy=True)

    def quiet_floating_point(self):
        # NumPy warns on overflow / 0/0 (RuntimeWarning); fit reports the NaN loss itself.
        return np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")

    def owns(self, array):
        # NumPy reductions return scalars (np.float64), which act as 0-d arrays.
        return isinstance(array, (np.ndarray, np.generic))


def make_numpy(device):
    if device not in (None, "cpu"):
        raise ValueError(f"the numpy backend runs on the CPU only, got device {device!r}")
    return NumpyBackend()
