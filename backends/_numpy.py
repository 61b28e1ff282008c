"""NumPy on the CPU, through array-api-compat's standard namespace."""
from __future__ import annotations

import array_api_compat.numpy as np_xp
import numpy as np

from ._base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    kind = "cpu"

    def __init__(self):
        super().__init__(np_xp, "cpu", "numpy")

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
