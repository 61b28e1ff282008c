"""The Backend base class every adapter fills in."""
from __future__ import annotations

import abc
import contextlib
import secrets

import numpy as np

from ._fast_paths import fast_path as _fast_path
from ._random import RandomStream, check_seed, random_bits


class BackendUnavailableError(RuntimeError):
    """A known backend cannot be used here (library missing, no device).

    The message says what is missing and the command that fixes it.
    """


def is_host_array(obj) -> bool:
    """True for a host NumPy array (or NumPy scalar), whatever backend is in use."""
    return isinstance(obj, (np.ndarray, np.generic))


def host_array_from(obj, what: str = "input") -> np.ndarray:
    """A host NumPy array from a list, tuple, or a table with ``to_numpy()`` (pandas).

    Raises:
        TypeError: the values are not numbers (ragged lists, strings, objects).
    """
    if hasattr(obj, "to_numpy") and callable(obj.to_numpy):
        obj = obj.to_numpy()
    try:
        array = np.asarray(obj)
    except ValueError as error:                 # ragged nested lists
        raise TypeError(f"{what} cannot be made into an array: {error}") from None
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{what} must hold numbers, got values of dtype {array.dtype}")
    return array


# activate() where there is no device to switch: one shared no-op context (it can be re-entered).
_NO_SWITCH = contextlib.nullcontext()


class Backend(abc.ABC):
    """One array library on one device.

    Attributes:
        name: the backend's registered name ("numpy", "torch", "cupy", ...).
        xp: the Array API namespace layers compute with.
        device: the library's device object (``xp.asarray(..., device=device)``).
        kind: "cpu" or "cuda".
        spec: the canonical string that ``backends.get`` maps to this backend,
            such as "torch:cpu" or "cupy:0".
        trains: False for a backend that only records the forward pass (onnx): layers
            refuse ``backward`` on it.
        sync_free: True where reading an array's values on the host costs no device sync
            (the arrays live in host memory: NumPy, torch on the CPU); see the property.
        autograd: True where arrays may carry an autograd graph (torch tensors with
            ``requires_grad``), which layers refuse; lets the everyday check skip asking others.
    """

    name: str = ""
    kind: str = "cpu"
    trains: bool = True
    autograd: bool = False

    def __init__(self, xp, device, spec: str):
        self.xp = xp
        self.device = device
        self.spec = spec
        # Whether activate() does anything. Where it does not (the CPU backends), layer methods are
        # not wrapped in it at all (bpcore.nn.module._compute_on_device).
        self.switches_device = type(self).activate is not Backend.activate
        self._constants = {}        # (value, dtype) -> 0-d array, see constant()
        self._dtype_kinds = {}      # (dtype, kind) -> bool, see isdtype()

    # -- moving data ------------------------------------------------------
    @abc.abstractmethod
    def asarray(self, host, dtype=None, copy=False):
        """Host NumPy array (or anything NumPy accepts) -> array on this backend.

        The dtype is kept unless ``dtype`` ("float32", "float64", ...) is given.
        With ``copy=True`` the result never shares memory with ``host``.
        """

    @abc.abstractmethod
    def to_numpy(self, array) -> np.ndarray:
        """Array on this backend -> a host NumPy array that owns its memory."""

    @abc.abstractmethod
    def owns(self, array) -> bool:
        """True when ``array`` is an array of this library on this device."""

    @property
    def sync_free(self) -> bool:
        """Whether a value check (``int(xp.max(a))``) costs nothing here: the arrays live in host
        memory, so reading one waits for no queued device work. Losses then check values on every
        call, as PyTorch does on the CPU; on a GPU they avoid the sync. True for kind "cpu"."""
        return self.kind == "cpu"

    def fast_path(self, operation: str):
        """The function registered for ``operation`` on this backend (``backends.register_fast_path``),
        or None (always inside ``backends.portable_only()``): the caller then runs its portable
        Array API reference."""
        return _fast_path(self.name, operation)

    def activate(self):
        """A context manager making this backend's device the current one while arrays are made
        and kernels launched (CuPy with several GPUs); a no-op elsewhere."""
        return _NO_SWITCH

    def quiet_floating_point(self):
        """A context manager that silences the library's floating-point warnings (overflow, invalid
        value) while ``fit`` trains: a diverging run then reports one DivergenceError instead of a
        screen of warnings pointing into the layers. A no-op where the library does not warn."""
        return contextlib.nullcontext()

    def synchronize(self) -> None:  # noqa: B027 (a no-op unless the device runs asynchronously)
        """Wait until queued device work is done (a no-op on the CPU)."""

    def random(self, seed: int | None = None) -> RandomStream:
        """A seeded stream of random numbers made on this device (``_random.py``: the same numbers
        on every backend). ``seed=None`` picks a fresh one (kept in the stream's state)."""
        return RandomStream(self, secrets.randbits(64) if seed is None else check_seed(seed))

    def random_bits(self, seed: int, call: int, shape):
        """Uniform 32-bit words (int64 values in [0, 2**32)) of ``shape`` on this device: draw
        number ``call`` of the counter-based stream ``seed``, the same on every backend."""
        with self.activate():
            return random_bits(self.xp, self.device, seed, call, shape)

    # -- small conveniences ----------------------------------------------
    def constant(self, value: float, dtype):
        """A cached 0-d array holding ``value`` in ``dtype`` on this device (never write into it).

        For ``xp.maximum(x, c)``, ``xp.where(m, x, c)`` on hot paths: array-api-compat turns a
        Python scalar given to them into a tensor with a blocking host-to-device copy on torch
        CUDA, one sync per call; a cached device constant is made once.
        """
        key = (value, dtype)         # dtype objects hash (str(dtype) would cost 3 us per call on NumPy)
        found = self._constants.get(key)
        if found is None:
            with self.activate():
                found = self._constants[key] = self.xp.asarray(float(value), dtype=dtype, device=self.device)
        return found

    def isdtype(self, dtype, kind) -> bool:
        """``xp.isdtype(dtype, kind)``, remembered per (dtype, kind): losses ask it on every call,
        and NumPy's isdtype takes a few microseconds."""
        key = (dtype, kind)
        found = self._dtype_kinds.get(key)
        if found is None:
            found = self._dtype_kinds[key] = bool(self.xp.isdtype(dtype, kind))
        return found

    def dtype(self, name: str):
        """The namespace's dtype object for a name such as "float32"."""
        try:
            return getattr(self.xp, name)
        except AttributeError:
            raise ValueError(f"backend {self.spec!r} has no dtype {name!r}") from None

    def __repr__(self):
        return f"Backend({self.spec!r})"

    def __str__(self):
        return self.spec

    # A backend holds modules, which cannot be copied; copying a model that
    # refers to its backend must share it.
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    # Unpickling finds the backend again by its spec through backends.get, which the registry
    # (built on this module, so not imported here) puts on the class when it is imported.
    _find_by_spec = None

    def __reduce__(self):
        return (Backend._find_by_spec, (self.spec,))
