"""CuPy on a CUDA GPU, through array-api-compat's standard namespace."""
from __future__ import annotations

import copy
import math

import numpy as np

from ._base import Backend, BackendUnavailableError, RandomStream

# What a user meets when "cuda" is asked for and cannot run: what it needs, how to install it
# (an installed bpcore or a source checkout), and what works meanwhile.
_NEEDS = "CuPy needs an NVIDIA GPU with its CUDA driver"
_INSTALL = ('install CuPy for your CUDA version: pip install "bpcore[cuda12]" (or [cuda13]); '
            'from a source checkout: pip install -e ".[cuda12]" (or ".[cuda13]")')
_MEANWHILE = "meanwhile use --device cpu (NumPy) or --device torch"


class CupyRandom(RandomStream):
    """Random numbers drawn on the GPU by a seeded cupy RandomState, resumable and copyable.

    cupy.random.RandomState exports no state (and since CuPy 14 it holds a lock that
    ``copy.deepcopy`` cannot copy). Its stream is a pure function of the seed and of the draws
    made since, so the position is kept as exactly that: the seed plus the list of draws (kind,
    number of values, dtype), run-length coded (a Dropout layer draws the same mask size batch
    after batch: two runs per epoch). A resumed or copied stream makes a fresh generator from
    the seed and repeats those draws, which puts it at the very same position.
    """

    _MAX_VALUES_PER_DRAW = 2 ** 28          # a saved state may not make the replay allocate more
    _MAX_REPLAYED_DRAWS = 10_000_000        # nor take longer than this many kernel launches

    def __init__(self, backend, seed):
        super().__init__(backend, seed)
        # without a seed, pick one now: the position is only reproducible from a known seed
        self._seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2 ** 63)
        self._draws: list[list] = []          # [kind, values, dtype, times]
        self._state = self._generator()

    def _generator(self, seed=None):
        with self.backend.device:
            return self.backend.cupy.random.RandomState(self._seed if seed is None else seed)

    def _note(self, kind, shape, dtype):
        entry = [kind, math.prod(shape), str(np.dtype(dtype))]
        if self._draws and self._draws[-1][:3] == entry:
            self._draws[-1][3] += 1
        else:
            self._draws.append(entry + [1])

    def get_state(self):
        return {"kind": "cupy", "seed": self._seed, "draws": [list(run) for run in self._draws]}

    def set_state(self, state) -> None:
        if state is None:
            return
        draws = self._checked(state)
        generator = self._generator(state["seed"])
        self._replay(generator, draws)
        self._seed, self._draws, self._state = state["seed"], draws, generator

    def _checked(self, state) -> list:
        """The draws of a state from :meth:`get_state`, checked before anything is drawn."""
        if not isinstance(state, dict) or state.get("kind") != "cupy" or not isinstance(state.get("draws"), list) \
                or not isinstance(state.get("seed"), int) or isinstance(state.get("seed"), bool):
            raise ValueError(f"not a state of a CuPy random stream: {str(state)[:80]}")
        draws, total = [], 0
        for run in state["draws"]:
            if not (isinstance(run, list) and len(run) == 4 and run[0] in ("uniform", "normal")
                    and run[2] in ("float32", "float64")
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in (run[1], run[3]))
                    and 0 <= run[1] <= self._MAX_VALUES_PER_DRAW and run[3] >= 1):
                raise ValueError(f"not a draw of a CuPy random stream: {str(run)[:80]}")
            total += run[3]
            draws.append(list(run))
        if total > self._MAX_REPLAYED_DRAWS:
            raise ValueError(f"a CuPy random stream state of {total} draws is more than the "
                             f"{self._MAX_REPLAYED_DRAWS} a resume replays")
        return draws

    def _replay(self, generator, draws):
        with self.backend.device:
            for kind, values, dtype, times in draws:
                draw = generator.random_sample if kind == "uniform" else generator.standard_normal
                for _ in range(times):
                    draw(size=(values,), dtype=dtype)        # the same calls: the same position

    def __deepcopy__(self, memo):
        # a fresh generator at the same position (the lock of CuPy 14's RandomState cannot be copied,
        # and on CuPy 13 a copy would share, then outlive, the original's curand handle)
        twin = type(self).__new__(type(self))
        twin.backend, twin._host = self.backend, copy.deepcopy(self._host, memo)
        twin._seed, twin._draws = self._seed, [list(run) for run in self._draws]
        twin._state = twin._generator()
        twin._replay(twin._state, twin._draws)
        return twin

    def _uniform(self, shape, dtype):
        self._note("uniform", shape, dtype)
        with self.backend.device:
            return self._state.random_sample(size=shape, dtype=dtype)

    def _normal(self, shape, dtype):
        self._note("normal", shape, dtype)
        with self.backend.device:
            return self._state.standard_normal(size=shape, dtype=dtype)


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

    def random(self, seed=None):
        return CupyRandom(self, seed)


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
