"""array_api_strict: the standard and nothing more, to catch NumPy-only habits."""
from __future__ import annotations

import numpy as np

from ._base import Backend, BackendUnavailableError


class StrictBackend(Backend):
    name = "array_api_strict"
    kind = "cpu"

    def __init__(self, xs):
        super().__init__(xs, xs.Device("CPU_DEVICE"), "array_api_strict")
        self._array_type = type(xs.asarray(0.0))

    def asarray(self, host, dtype=None, copy=False):
        return self.xp.asarray(np.asarray(host, dtype=dtype), copy=True if copy else None)

    def to_numpy(self, array):
        return np.from_dlpack(array).copy()

    def quiet_floating_point(self):
        # array_api_strict computes with NumPy underneath, which warns on overflow and 0/0
        return np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")

    def owns(self, array):
        return isinstance(array, self._array_type)


def make_strict(device):
    if device not in (None, "cpu"):
        raise ValueError(f"the array_api_strict backend runs on the CPU only, got device {device!r}")
    try:
        import array_api_strict as xs
    except ImportError:
        raise BackendUnavailableError(
            'array_api_strict is not installed: pip install "bpcore[test]" '
            '(from a source checkout: pip install -e ".[test]")') from None
    return StrictBackend(xs)
