"""The layer contract: Layer (Parameter is in parameter.py, the layer kit in kit.py, LayerList in containers.py).

Every layer computes ``forward(x)``, keeps with ``save_for_backward`` exactly what its backward
pass reads, and ``backward(grad_out)`` returns ``grad_in`` while adding (+=) into each of its
Parameters' ``.grad``. A layer knows its backend (device and Array API namespace) and its float
dtype; ``to()`` and ``astype()`` change both for a layer and everything inside it.
"""
from __future__ import annotations

import types

import backends

from .._checks import check_int
from . import budget
from .kit import KitMethods
from .parameter import FLOAT_DTYPES, Parameter, dtype_name  # noqa: F401  (re-exported: the contract's names)
from .state import load_state
from .summary import summary

# Layer types a checkpoint may rebuild, by class name: every public layer class of bpcore joins
# when it is defined (Layer.__init_subclass__), user layers through register_layer. The checkpoint
# code reads this registry, so it never imports the layer modules by name.
_LAYER_TYPES: dict[str, type] = {}

# How Layer.save writes a file. The file format lives in bpcore.checkpoint, a floor above this
# one, which puts its writer here when it is imported (``import bpcore`` always imports it).
_MODEL_WRITER = [None]


def register_layer(cls: type) -> type:
    """Let checkpoints rebuild a layer class of your own: ``cls(**layer.config())`` must rebuild it
    (``save`` checks that before it writes). Usable as a class decorator; returns ``cls``."""
    if not isinstance(cls, type) or not issubclass(cls, Layer):
        raise TypeError(f"register_layer expects a Layer subclass, got {cls!r}")
    _LAYER_TYPES[cls.__name__] = cls
    return cls


def layer_types() -> dict[str, type]:
    """{class name: class} of every layer type a checkpoint can rebuild."""
    return dict(_LAYER_TYPES)


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


class Layer(KitMethods):
    """Base class of every layer: subclasses define ``forward`` and ``backward``.

    Parameters are attributes holding :class:`Parameter` objects (made with ``self.parameter``);
    child layers are attributes holding layers (or a :class:`LayerList` of them); both are found
    in the order they were assigned, as in PyTorch. The layer kit (``check_input``,
    ``save_for_backward``, ``saved``, ``check_grad_out``, ``register_buffer``) is in kit.py.
    """

    _buffer_names: tuple[str, ...] = ()      # persistent buffers: saved in state_dict()
    _constant_names: tuple[str, ...] = ()    # buffers that move with the layer but are not saved
    _min_training_batch = 1          # samples a training-mode batch needs (BatchNorm1d: 2)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("bpcore.") and not cls.__name__.startswith("_"):
            _LAYER_TYPES[cls.__name__] = cls

    def __init__(self):
        budget.count_layer(type(self).__name__)
        self.training = True
        self._place(backends.get("cpu"), "float32")
        self._path = ""          # position inside the parent model, for error messages

    # -- the contract ------------------------------------------------------
    def forward(self, x):
        """Compute the output for input ``x`` and keep what backward needs (``save_for_backward``)."""
        raise TypeError(f"{type(self).__name__} does not define forward(x)")

    def backward(self, grad_out):
        """Given dL/d(output), add into the parameters' gradients and return dL/d(input)."""
        children = [name for name, _ in self.children()]
        if children:
            raise TypeError(f"{type(self).__name__} holds layers ({', '.join(children)}) but does not define "
                            f"backward(grad_out): a container's backward calls its children's backward in the "
                            f"reverse order of its forward, e.g. grad = self.second.backward(grad_out); "
                            f"return self.first.backward(grad)")
        raise TypeError(f"{type(self).__name__} does not define backward(grad_out)")

    def backward_params(self, grad_out):
        """Add the parameter gradients of ``backward(grad_out)`` without returning dL/dx.

        Training never needs the gradient with respect to the data, so the first
        layer of a model may skip computing it (``Linear`` skips a matmul).
        """
        self.backward(grad_out)

    def __call__(self, x, *args, **kwargs):
        """``layer(x)`` is ``layer.forward(x)``; extra arguments go to forward too (an LSTM's state)."""
        return self.forward(x, *args, **kwargs)

    def config(self) -> dict:
        """The constructor's arguments as plain data, so a checkpoint can rebuild the layer."""
        return {}

    # -- walking the model ----------------------------------------------
    def children(self):
        """(name, layer) pairs of the layers directly inside this one, in assignment order."""
        found = []
        for name, value in vars(self).items():
            if isinstance(value, Layer):
                found.append((name, value))
            elif isinstance(value, (list, tuple, dict)) and value and _holds_layers(value):
                raise TypeError(f"{type(self).__name__}.{name} is a plain {type(value).__name__} of layers, which "
                                f"parameters(), to(), state_dict() and checkpoints do not look into; hold them "
                                f"in a bp.LayerList([...]) instead")
        return found

    def named_modules(self, prefix: str = ""):
        """[(dotted path, layer)] for this layer ("") and every layer inside it, parents first."""
        found = [(prefix, self)]
        for name, child in self.children():
            found.extend(child.named_modules(f"{prefix}.{name}" if prefix else name))
        return found

    def modules(self):
        """This layer and every layer inside it, parents first."""
        return [layer for _, layer in self.named_modules()]

    def named_parameters(self, prefix: str = ""):
        """[(dotted name, Parameter)] in a fixed order: a layer's own, then its children's."""
        named, seen = [], set()
        for path, layer in self.named_modules(prefix.rstrip(".")):
            for name, p in _own_parameters(layer):
                if id(p) not in seen:            # one Parameter held twice (tied weights) is listed once
                    seen.add(id(p))
                    named.append((f"{path}.{name}" if path else name, p))
        return named

    def parameters(self):
        """The Parameters of this layer and its children, in ``named_parameters`` order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = ""):
        """[(dotted name, array)] of persistent non-trained state such as running statistics."""
        return [(f"{path}.{name}" if path else name, getattr(layer, name))
                for path, layer in self.named_modules(prefix.rstrip(".")) for name in layer._buffer_names]

    def _adopt_children(self):
        """Take the device and dtype of the layers inside (they must agree); name their places.
        Containers call it when they are built."""
        inner = self.modules()[1:]
        if len({id(layer) for layer in inner}) != len(inner):
            raise ValueError(f"{type(self).__name__}: the same layer object appears twice; each layer caches "
                             f"its own input for backward, so a reused layer would get wrong gradients. "
                             f"Make a second layer (copy.deepcopy(layer) for the same weights)")
        placed = {(sub._backend.spec, sub._dtype) for sub in inner if _own_parameters(sub) or sub._buffer_names}
        if len(placed) > 1:
            raise ValueError(f"{type(self).__name__}: layers live on different devices or dtypes "
                             f"{sorted(placed)}; build them alike or call .to()/.astype() on each first")
        spec, dtype = next(iter(placed)) if placed else (self._backend.spec, self._dtype)
        backend = backends.get(spec)
        for path, layer in self.named_modules():
            layer._place(backend, dtype)
            layer._path = path

    # -- modes, devices, dtypes -------------------------------------------
    def train(self, mode: bool = True):
        """Training mode (Dropout drops, BatchNorm uses batch statistics). Returns self."""
        for path, layer in self.named_modules():
            layer.training = bool(mode)
            layer._path = path
        return self

    def eval(self):
        """Evaluation mode; the same as ``train(False)``. Returns self."""
        return self.train(False)

    def zero_grad(self):
        """Set every parameter's gradient to zero."""
        for p in self.parameters():
            p.zero_grad()

    def to(self, device):
        """Move every parameter and buffer to ``device`` ("cpu", "cuda", "torch", ..., a Backend,
        or a library's device object such as ``torch.device("cpu")``).

        Returns self. Gradients move too; the values are copied exactly. What forward kept for
        backward is dropped (it lives on the old device), unless the device stays the same.
        """
        target = backends.get(device)
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

    # -- state -------------------------------------------------------------
    def state_dict(self):
        """{name: host NumPy copy} of every parameter and buffer ("0.W", "1.running_mean")."""
        state = {name: p.backend.to_numpy(p.data) for name, p in self.named_parameters()}
        for name, buffer in self.named_buffers():
            state[name] = backends.to_host(buffer).copy()
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy values from ``state_dict`` (as made by :meth:`state_dict`) into this model.

        Values are cast to the model's dtype and moved to its device. Nothing
        is changed unless every name is present, none is unexpected, every
        shape matches and every value fits the model's dtype. ``strict=False``
        (as PyTorch) loads the names both have and leaves the others.

        Returns:
            ``IncompatibleKeys(missing_keys, unexpected_keys)``, as PyTorch (empty lists when strict).
        Raises:
            TypeError: ``state_dict`` is not a mapping, or a value is not an array.
            KeyError: names are missing or unexpected (all of them are listed); strict only.
            ValueError: a shape differs, or a value is not finite real numbers, or is
                beyond the range of the model's dtype (float64 1e300 into float32).
        """
        return load_state(self, state_dict, strict)          # bpcore/nn/state.py: check all, then write

    def summary(self, input_shape=None, print_fn=print):
        """Print one line per layer with its output shape and parameter count; see ``bp.summary``."""
        return summary(self, input_shape, print_fn)

    def save(self, path) -> None:
        """Save the architecture, parameters and buffers to ``path`` (see ``bp.load``); atomic."""
        _MODEL_WRITER[0](self, path)

    # -- how messages name a layer -----------------------------------------
    def _label(self) -> str:
        """How error messages call this layer: its repr, or its class name when it holds layers."""
        return type(self).__name__ if self.children() else repr(self)

    def _name(self) -> str:
        where = f" (layer '{self._path}')" if self._path else ""
        return f"{self._label()}{where}"

    def __repr__(self):
        """``Scale(n=4)`` from ``config()``; a layer holding layers lists them, one per line, as PyTorch."""
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.config().items())
        children = self.children()
        if not children:
            return f"{type(self).__name__}({arguments})"
        inner = "".join(f"\n  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in children)
        return f"{type(self).__name__}({arguments}{inner}\n)"

    # -- fit's last-good copy (device to device, no host transfer) ------------
    def _snapshot(self) -> dict:
        """Device copies of every parameter and buffer (no host transfer), for :meth:`_restore`."""
        copies = {}
        with self._backend.activate():         # CuPy copies onto the current GPU
            for path, layer in self.named_modules():
                for name, p in _own_parameters(layer):
                    copies[(path, name)] = layer.xp.asarray(p.data, copy=True)
                for name in layer._buffer_names:
                    copies[(path, name)] = layer.xp.asarray(getattr(layer, name), copy=True)
        return copies

    def _restore(self, snapshot: dict) -> None:
        """Put back values taken by :meth:`_snapshot` (same device and dtype)."""
        layers = dict(self.named_modules())
        with self._backend.activate():
            for (path, name), value in snapshot.items():
                target = getattr(layers[path], name)
                if isinstance(target, Parameter):
                    target.data = layers[path].xp.asarray(value, copy=True)
                else:
                    setattr(layers[path], name, layers[path].xp.asarray(value, copy=True))


def _own_parameters(layer):
    """(name, Parameter) pairs held directly by ``layer``, in assignment order."""
    return [(name, value) for name, value in vars(layer).items() if isinstance(value, Parameter)]


def _holds_layers(values) -> bool:
    items = values.values() if isinstance(values, dict) else values
    return any(isinstance(item, Layer) for item in items)
