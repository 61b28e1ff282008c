"""array_api_strict: the standard and nothing more, to catch NumPy-only habits.

``array_api_strict:device1`` puts every array on a simulated second device and behaves as CuPy
does on a second GPU, so the device mistakes that would only show on ``cuda:1`` fail on the CPU:

- array_api_strict refuses to combine arrays of two devices, and to turn a device1 array into
  NumPy implicitly (``np.asarray``), as CuPy refuses for any GPU array;
- CuPy makes new arrays (``zeros``, ``zeros_like``, ``asarray(copy=True)``, ``astype``) on the
  *current* device, not on the device of their input; here, the same functions called without
  ``device=`` outside ``backend.activate()`` make them on the default CPU device;
- CuPy launches every kernel on the current device; here, any other namespace function given a
  device1 array outside ``backend.activate()`` raises (CuPy raises, or with peer access writes
  the result on GPU 0);
- operators are kernels too on CuPy (``a + b``, ``a @ b``, ``-a``, ``a < b``, ``a += b``,
  ``a[i] = v``, ``a[index_array]``): here each one given a device1 array outside
  ``backend.activate()`` raises the same way. Views (``a.T``, ``a[1:3]``) and reads to the host
  (``float(a)``) launch nothing, on CuPy as here, and are let through.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from ._base import Backend, BackendUnavailableError

# The devices array_api_strict simulates ("CPU_DEVICE" is its default one).
_DEVICES = {None: "CPU_DEVICE", "cpu": "CPU_DEVICE", "device1": "device1", "device2": "device2"}
# The namespace functions that make a new array, on the current device unless device= is given.
_MAKERS = frozenset({"arange", "asarray", "astype", "empty", "empty_like", "eye", "from_dlpack", "full",
                     "full_like", "linspace", "ones", "ones_like", "zeros", "zeros_like"})


# The array methods that launch a kernel on CuPy: every operator, reflected and in place.
_OPERATORS = ("__abs__", "__neg__", "__pos__", "__invert__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__",
              "__ge__", "__setitem__",
              *(f"__{side}{op}__" for op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
                                             "and", "or", "xor", "lshift", "rshift") for side in ("", "r", "i")))
_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%", "pow": "**",
            "matmul": "@", "and": "&", "or": "|", "xor": "^", "lshift": "<<", "rshift": ">>", "eq": "==",
            "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "abs": "abs()", "neg": "unary -",
            "pos": "unary +", "invert": "~", "setitem": "a[...] = v", "getitem": "a[index_array]"}
# The simulated devices whose operators are watched ("device1", "device2"), and, per thread, how
# deep each is entered: CuPy's current device belongs to the thread, not to one backend object.
_WATCHED: set = set()
_CURRENT = threading.local()


def _entered(device_name: str) -> bool:
    return getattr(_CURRENT, device_name, 0) > 0


def _refuse_outside(device, what: str):
    return RuntimeError(f"{what} was given an array on {device} outside backend.activate(): on CuPy this "
                        f"kernel would run on the current GPU, not the array's (wrap the code in "
                        f"`with backend.activate():`)")


def _check_operands(name: str, operands) -> None:
    for value in operands:
        device = getattr(value, "_device", None)
        device_name = getattr(device, "_device", None)
        if device_name in _WATCHED and not _entered(device_name):
            op = name.strip("_")
            symbol = _SYMBOLS.get(op) or _SYMBOLS.get(op[1:], op) + ("=" if op[0] == "i" else "")
            raise _refuse_outside(device, f"the operator {symbol} ({name})")


def _watch_operators(array_type) -> None:
    """Wrap array_api_strict's operators once (every array passes one dict look-up per operator;
    only arrays on a watched device outside activate() are refused)."""
    if getattr(array_type, "_bpcore_watched", False):
        return
    for name in _OPERATORS:
        method = getattr(array_type, name)

        def watched(self, *args, _name=name, _method=method):
            _check_operands(_name, (self, *args))
            return _method(self, *args)
        watched.__name__ = name
        setattr(array_type, name, watched)
    getitem = array_type.__getitem__

    def indexed(self, key):
        # basic indexing is a view (no kernel); indexing with an array is a gather kernel
        keys = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, array_type) for k in keys):
            _check_operands("__getitem__", (self, *keys))
        return getitem(self, key)
    array_type.__getitem__ = indexed
    array_type._bpcore_watched = True


class StrictBackend(Backend):
    name = "array_api_strict"
    kind = "cpu"

    def __init__(self, xs, device_name: str = "CPU_DEVICE"):
        spec = "array_api_strict" if device_name == "CPU_DEVICE" else f"array_api_strict:{device_name}"
        device = xs.Device(device_name)
        xp = xs if device_name == "CPU_DEVICE" else _CurrentDeviceNamespace(xs, device)
        super().__init__(xp, device, spec)
        self._array_type = type(xs.asarray(0.0))

    def asarray(self, host, dtype=None, copy=False):
        return self.xp.asarray(np.asarray(host, dtype=dtype), device=self.device, copy=True if copy else None)

    def to_numpy(self, array):
        # np.from_dlpack reads any simulated device (np.asarray refuses all but CPU_DEVICE, as CuPy does)
        return np.from_dlpack(array).copy()

    @property
    def sync_free(self) -> bool:
        # the simulated second device stands in for a GPU: reading its values counts as a sync
        return not isinstance(self.xp, _CurrentDeviceNamespace)

    def activate(self):
        if isinstance(self.xp, _CurrentDeviceNamespace):
            return self.xp.current(self.device)
        return contextlib.nullcontext()

    def quiet_floating_point(self):
        # array_api_strict computes with NumPy underneath, which warns on overflow and 0/0
        return np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")

    def owns(self, array):
        return isinstance(array, self._array_type) and array.device == self.device


class _CurrentDeviceNamespace:
    """array_api_strict with CuPy's idea of a current device (see the module docstring)."""

    def __init__(self, xs, device):
        self._xs, self._device, self._default = xs, device, xs.Device("CPU_DEVICE")
        self._array_type = type(xs.asarray(0.0))
        self._name = device._device
        _watch_operators(self._array_type)
        _WATCHED.add(self._name)

    def _active(self) -> bool:
        return _entered(self._name)

    @contextlib.contextmanager
    def current(self, device):
        """Make ``device`` current while the block runs, as ``with cupy.cuda.Device(n):``."""
        setattr(_CURRENT, self._name, getattr(_CURRENT, self._name, 0) + 1)
        try:
            yield device
        finally:
            setattr(_CURRENT, self._name, getattr(_CURRENT, self._name) - 1)

    def __getattr__(self, name):
        value = getattr(self._xs, name)
        if not callable(value) or isinstance(value, type) or name.startswith("__"):
            return value
        wrapped = self._maker(name, value) if name in _MAKERS else self._kernel(name, value)
        setattr(self, name, wrapped)          # found once, then a plain attribute
        return wrapped

    def _maker(self, name, function):
        def make(*args, **kwargs):
            if kwargs.get("device") is None:
                kwargs["device"] = self._device if self._active() else self._default
            return function(*args, **kwargs)
        make.__name__ = name
        return make

    def _kernel(self, name, function):
        def launch(*args, **kwargs):
            if not self._active():
                for value in (*args, *kwargs.values()):
                    values = value if isinstance(value, (list, tuple)) else (value,)
                    if any(isinstance(v, self._array_type) and v.device == self._device for v in values):
                        raise _refuse_outside(self._device, f"xp.{name}")
            return function(*args, **kwargs)
        launch.__name__ = name
        return launch

    def __repr__(self):
        return f"<array_api_strict namespace, current device simulated for {self._device}>"


def strict_spec_of(array):
    """"array_api_strict:device2" for an array on a simulated device (None for other arrays)."""
    if type(array).__module__.partition(".")[0] != "array_api_strict" or not hasattr(array, "device"):
        return None
    import array_api_strict as xs

    for device, name in _DEVICES.items():
        if device != "cpu" and array.device == xs.Device(name):
            return "array_api_strict" if device is None else f"array_api_strict:{device}"
    return None


def make_strict(device):
    if device not in _DEVICES:
        raise ValueError(f"the array_api_strict backend runs on the CPU or a simulated device "
                         f"('array_api_strict:device1'), got device {device!r}")
    try:
        import array_api_strict as xs
    except ImportError:
        raise BackendUnavailableError(
            'array_api_strict is not installed: pip install "bpcore[test]" '
            '(from a source checkout: pip install -e ".[test]")') from None
    return StrictBackend(xs, _DEVICES[device])
