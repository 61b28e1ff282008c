"""CuPy on a CUDA GPU, through array-api-compat's standard namespace."""
from __future__ import annotations

from ._base import Backend, BackendUnavailableError

# What a user meets when "cuda" is asked for and cannot run: what it needs, how to install it
# (an installed bpcore or a source checkout), and what works meanwhile.
_NEEDS = "CuPy needs an NVIDIA GPU with its CUDA driver"
_INSTALL = ('install CuPy for your CUDA version: pip install "bpcore[cuda12]" (or [cuda13]); '
            'from a source checkout: pip install -e ".[cuda12]" (or ".[cuda13]")')
_MEANWHILE = "meanwhile use --device cpu (NumPy) or --device torch"


class CupyBackend(Backend):
    name = "cupy"
    kind = "cuda"

    def __init__(self, cupy, index):
        import array_api_compat.cupy as cupy_xp

        self.cupy = cupy
        super().__init__(cupy_xp, cupy.cuda.Device(index), f"cupy:{index}")

    def asarray(self, host, dtype=None, copy=False):
        # Host -> device copies, but with unified/host-mapped memory cupy.asarray may alias a host
        # buffer (and returns a CuPy array itself): copy=True asks for a copy explicitly.
        with self.device:
            if copy:
                return self.cupy.array(host, dtype=dtype, copy=True)
            return self.cupy.asarray(host, dtype=dtype)

    def to_numpy(self, array):
        return self.cupy.asnumpy(array)

    def owns(self, array):
        return isinstance(array, self.cupy.ndarray) and array.device.id == self.device.id

    def synchronize(self):
        self.device.synchronize()

    def activate(self):
        # CuPy allocates and launches on the *current* device; entering ours makes cuda:N work
        return self.device


def cupy_scatter_add_rows(values, indices, num_rows):
    """out (num_rows, D) with out[indices[k]] += values[k]: the fast path of bpcore.nn.scatter
    (``cupyx.scatter_add``, atomic adds on the GPU of ``values``)."""
    import cupy
    import cupyx

    with values.device:
        out = cupy.zeros((num_rows, values.shape[1]), dtype=values.dtype)
        cupyx.scatter_add(out, indices, values)
    return out


def cupy_spec_of(array):
    """"cupy:N" for a CuPy array on GPU N (without importing CuPy for other arrays)."""
    if type(array).__module__.partition(".")[0] != "cupy" or not hasattr(array, "device"):
        return None
    return f"cupy:{array.device.id}"


def make_cupy(device):
    text = device or "0"
    if not text.isdigit():
        raise ValueError(f"a CuPy device is a GPU index such as 'cuda:0' or 'cupy:1', got {device!r}")
    index = int(text)
    try:
        import cupy
    except ImportError:
        raise BackendUnavailableError(f"CuPy is not installed. {_NEEDS}; {_INSTALL}; {_MEANWHILE}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError, or a driver that fails to load
        raise BackendUnavailableError(
            f"CuPy is installed but no CUDA GPU is usable here ({error}). {_NEEDS}; {_MEANWHILE}") from None
    if count == 0:
        raise BackendUnavailableError(f"CuPy is installed but this machine has no CUDA GPU. {_NEEDS}; {_MEANWHILE}")
    if index >= count:
        raise BackendUnavailableError(f"GPU {index} does not exist: this machine has {count} GPU(s)")
    return CupyBackend(cupy, index)
