"""Where a layer lives: its backend (device and Array API namespace) and float dtype.

``DeviceMethods`` is a base of :class:`bpcore.nn.Layer`: ``to()``, ``cpu()``, ``cuda()`` and
``astype()`` move or cast every parameter and buffer of a layer and the layers inside it (walked
with ``named_modules()``), and drop what forward kept for backward; ``backend``, ``device``,
``xp`` and ``dtype`` say where a layer is.
"""
from __future__ import annotations

import numbers
import types

import numpy as np

import backends

from .._checks import Setting, check_int
from .parameter import FLOAT_DTYPES, own_parameters as _own_parameters


# -- entering a layer's device -----------------------------------------------------------------
# CuPy makes arrays and launches kernels on the *current* GPU, so a layer on "cuda:1" called on its
# own (``layer.forward(x)``, ``layer.backward(g)``) must make its device current first. A layer
# placed on a backend whose activate() switches something gets three bound methods in its own
# __dict__, shadowing the class's forward/backward/backward_params with versions that enter the
# device and then call the class's method. Classes never change; layers on the CPU backends get
# nothing (no wrapper, no extra call: a wrapper around every call showed on the spiral step).
# The shadows are dropped when the layer moves to a backend that switches nothing, and never
# copied (``__getstate__``): a copy gets its own, bound to itself.
def _forward_on_device(self, *args, **kwargs):
    with self._backend.activate():
        return type(self).forward(self, *args, **kwargs)


def _backward_on_device(self, *args, **kwargs):
    with self._backend.activate():
        return type(self).backward(self, *args, **kwargs)


def _backward_params_on_device(self, *args, **kwargs):
    with self._backend.activate():
        return type(self).backward_params(self, *args, **kwargs)


_ON_DEVICE = {"forward": _forward_on_device, "backward": _backward_on_device,
              "backward_params": _backward_params_on_device}


class DeviceMethods:
    """Moving and casting a layer and the layers inside it (see the module docstring)."""

    def _adopt_children(self):
        """Take the device and dtype of the layers inside (they must agree); name their places.
        Containers call it when they are built."""
        inner = self.modules()[1:]
        if len({id(layer) for layer in inner}) != len(inner):
            raise ValueError(f"{type(self).__name__}: the same layer object appears twice; each layer caches "
                             f"its own input for backward, so a reused layer would get wrong gradients. "
                             f"Make a second layer (copy.deepcopy(layer) for the same weights)")
        placed = {(sub._backend.spec, sub._dtype) for sub in inner if _holds_state(sub)}
        if len(placed) > 1:
            raise ValueError(f"{type(self).__name__}: layers live on different devices or dtypes "
                             f"{sorted(placed)}; build them alike or call .to()/.astype() on each first")
        own = (self._backend.spec, self._dtype)
        if placed and _holds_state(self) and placed != {own}:           # weights of its own, elsewhere
            raise ValueError(f"{type(self).__name__}: its own weights live on {own} but its layers on "
                             f"{sorted(placed)}; build everything on the default device, then move the whole "
                             f"model with .to()/.astype()")
        spec, dtype = next(iter(placed)) if placed else own
        backend = backends.get(spec)
        for layer in self.modules():                # refuse before anything is placed: all or nothing
            _refuse_strays(layer, "__init__", backend, dtype)
        for path, layer in self.named_modules():
            layer._place(backend, dtype)
            layer._path = path

    def to(self, device):
        """Move every parameter and buffer to ``device`` ("cpu", "cuda", "torch", ..., a Backend,
        or a library's device object such as ``torch.device("cpu")``).

        Returns self. Gradients move too; the values are copied exactly. What forward kept for
        backward is dropped (it lives on the old device), unless the device stays the same.
        """
        target = backends.get(device)
        for layer in self.modules():                # refuse before anything moves: all or nothing
            _refuse_strays(layer, "to", target, layer._dtype)
        for path, layer in self.named_modules():
            layer._path = path
            source = layer._backend
            if source is target:
                continue
            for _, p in _own_parameters(layer):
                p.data = target.asarray(source.to_numpy(p.data))
                if p._grad is not None:
                    p._grad = target.asarray(source.to_numpy(p._grad))
                p.backend = target
            for name in layer._buffer_names + layer._constant_names:
                setattr(layer, name, target.asarray(source.to_numpy(getattr(layer, name))))
            layer._place(target)
            layer._saved = None
        return self

    def _place(self, backend: backends.Backend, dtype: str | None = None) -> None:
        """Put this layer on ``backend`` and, when given, its float ``dtype`` (the caller moves or
        casts its arrays). Keeps the namespace's dtype object at hand for the per-call checks, and on
        a backend whose activate() switches devices, makes forward/backward/backward_params enter it."""
        self._backend = backend
        if dtype is not None:
            self._dtype = dtype
        self._array_dtype = backend.dtype(self._dtype)      # looked up here, not in every check
        own = self.__dict__
        for name, on_device in _ON_DEVICE.items():
            shadow = own.get(name)
            ours = getattr(shadow, "__func__", None) is on_device
            if backend.switches_device and shadow is None:
                own[name] = types.MethodType(on_device, self)
            elif ours and not backend.switches_device:
                del own[name]

    def __getstate__(self):
        """What copy, deepcopy and pickle keep: everything but the device-entering methods, which
        are bound to this very layer (``__setstate__`` makes the copy its own)."""
        return {name: value for name, value in self.__dict__.items()
                if not (name in _ON_DEVICE and getattr(value, "__func__", None) is _ON_DEVICE[name])}

    def __setstate__(self, state):
        self.__dict__.update(state)
        for name in [key for key in state if isinstance(getattr(type(self), key, None), Setting)]:
            self.__dict__[Setting.slot_of(name)] = self.__dict__.pop(name)   # pickled before it was a Setting
        if "_backend" in state:
            self._place(self._backend)

    def cpu(self):
        """Move to the CPU, as PyTorch's ``model.cpu()``: "torch:cpu" from the torch backend, else "cpu"."""
        return self.to("torch:cpu" if self._backend.name == "torch" else "cpu")

    def cuda(self, device: int | None = None):
        """Move to a CUDA GPU, as PyTorch's ``model.cuda()``: torch's CUDA from the torch backend,
        else CuPy ("cuda" or "cuda:N"). Raises BackendUnavailableError (saying why) without a GPU."""
        suffix = "" if device is None else f":{check_int('cuda', 'device', device, minimum=0)}"
        return self.to(("torch:cuda" if self._backend.name == "torch" else "cuda") + suffix)

    def astype(self, dtype: str):
        """Cast every parameter, gradient and floating buffer to "float32" or "float64". Returns self."""
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"dtype must be one of {FLOAT_DTYPES}, got {dtype!r}")
        for layer in self.modules():                # refuse before anything is cast: all or nothing
            _refuse_strays(layer, "astype", layer._backend, dtype)
        for layer in self.modules():
            backend = layer._backend
            xp, new = backend.xp, backend.dtype(dtype)
            with backend.activate():
                for _, p in _own_parameters(layer):
                    p.data = xp.astype(p.data, new)
                    if p._grad is not None:
                        p._grad = xp.astype(p._grad, new)
                for name in layer._buffer_names + layer._constant_names:
                    buffer = getattr(layer, name)
                    if xp.isdtype(buffer.dtype, "real floating"):
                        setattr(layer, name, xp.astype(buffer, new))
            layer._place(backend, dtype)
            layer._saved = None
        return self

    @property
    def backend(self) -> backends.Backend:
        """The backend this layer's arrays live on: ``.xp`` (the namespace), ``.device`` (the
        library's device object), ``.asarray``/``.to_numpy`` to move data."""
        return self._backend

    @property
    def device(self) -> backends.Backend:
        """The same :class:`backends.Backend` as :attr:`backend` (the name PyTorch users reach for)."""
        return self._backend

    @property
    def xp(self):
        """The Array API namespace of this layer's backend."""
        return self._backend.xp

    @property
    def dtype(self) -> str:
        """The float dtype name of this layer's parameters: "float32" or "float64"."""
        return self._dtype


def _holds_state(layer) -> bool:
    """Whether ``layer`` itself (not its children) holds parameters or buffers."""
    return bool(_own_parameters(layer) or layer._buffer_names or layer._constant_names)


def _refuse_strays(layer, method: str, backend, dtype: str) -> None:
    """Raise TypeError when putting ``layer`` on ``backend`` in float ``dtype`` (``to()``, ``astype()``, or
    a container taking its layers' place in ``__init__``: ``method``) would leave an array attribute
    behind: an array of its backend that is neither a Parameter nor a buffer keeps its old device (any
    array, on a move) or dtype (a floating one of another dtype, on a cast), and fails, or mixes devices,
    at the next call. Parameters, buffers, NumPy scalars and what ``save_for_backward`` kept (dropped on
    purpose) are not strays."""
    source = layer._backend
    moving = source is not backend
    if not moving and layer._dtype == dtype:
        return
    new = source.dtype(dtype)
    buffers = set(layer._buffer_names + layer._constant_names)
    for name, value in vars(layer).items():
        if (name in buffers or name == "_saved" or isinstance(value, (numbers.Number, np.generic))
                or not hasattr(value, "shape") or not source.owns(value)):
            continue
        if not moving and not (source.xp.isdtype(value.dtype, "real floating") and value.dtype != new):
            continue
        where = "device" if moving else "dtype"
        raise TypeError(f"{layer._name()}.{method}(): attribute {name!r} is an array that is neither a Parameter "
                        f"nor a buffer, so it would keep its old {where}. Make it a buffer in __init__ "
                        f"(self.register_buffer({name.lstrip('_')!r}, host_array, persistent=False)), or keep it "
                        f"with save_for_backward if only backward reads it")
