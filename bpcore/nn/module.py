"""The layer contract: Layer (Parameter is in parameter.py, containers in containers.py).

Every layer computes ``forward(x)``, keeps in a cache exactly what its
backward pass reads, and ``backward(grad_out)`` returns ``grad_in`` while
adding (+=) into each of its Parameters' ``.grad``. A layer knows its backend
(device and Array API namespace) and its float dtype; ``to()`` and
``astype()`` change both for a layer and everything inside it.
"""
from __future__ import annotations

import functools
import math

import backends

from .._checks import check_int
from .parameter import (  # noqa: F401  (re-exported: the contract's names)
    FLOAT_DTYPES, Parameter, checked_host_cast, dtype_name,
)
from .checks import LayerChecks
from .state import check_state, load_state, write_state

# Layer types a checkpoint may rebuild, by class name: every public layer class of bpcore joins
# when it is defined (Layer.__init_subclass__), user layers through register_layer. The checkpoint
# code reads this registry, so it never imports the layer modules by name.
_LAYER_TYPES: dict[str, type] = {}

# How Layer.save writes a file. The file format lives in bpcore.checkpoint, a floor above this
# one, which puts its writer here when it is imported (``import bpcore`` always imports it).
_MODEL_WRITER = [None]





def register_layer(cls: type) -> type:
    """Let checkpoints rebuild a user-defined layer (its ``config()`` must give its constructor's arguments).

    Usable as a class decorator; returns ``cls``.
    """
    if not isinstance(cls, type) or not issubclass(cls, Layer):
        raise TypeError(f"register_layer expects a Layer subclass, got {cls!r}")
    _LAYER_TYPES[cls.__name__] = cls
    return cls


def layer_types() -> dict[str, type]:
    """{class name: class} of every layer type a checkpoint can rebuild."""
    return dict(_LAYER_TYPES)


def _on_device(method):
    """``method`` run with the layer's device current (``Backend.activate``)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        backend = self._backend
        if not backend.switches_device:                     # this instance is on a CPU backend
            return method(self, *args, **kwargs)
        with backend.activate():
            return method(self, *args, **kwargs)
    run._on_device = True
    return run


_DEVICE_METHODS = ("forward", "backward", "backward_params")


def _compute_on_device(cls: type) -> None:
    """Make every forward/backward of ``cls`` (and of its bases) run inside its backend's activate().

    CuPy makes arrays and launches kernels on the *current* GPU, so a layer on "cuda:1" called on
    its own (not inside a Sequential, which enters the device itself) must enter its device. The
    wrapping is done for a class the first time one of its layers goes to a backend that switches
    devices (``Layer.to``, or joining a container there): on the CPU backends, where activate() is
    a no-op, the layers' methods are called directly, which is a tenth of a small net's step.
    """
    for klass in cls.__mro__:
        if klass is Layer or not (isinstance(klass, type) and issubclass(klass, Layer)):
            continue
        for name in _DEVICE_METHODS:
            method = klass.__dict__.get(name)
            if method is not None and not getattr(method, "_on_device", False):
                setattr(klass, name, _on_device(method))


class Layer(LayerChecks):
    """Base class: subclasses define ``forward`` and ``backward``.

    Parameters are attributes holding :class:`Parameter` objects, child layers
    are attributes holding :class:`Layer` objects; both are found in the
    order they were assigned, as in PyTorch. ``_buffer_names`` lists array
    attributes that are state but not trained (running statistics).
    """

    _buffer_names: tuple[str, ...] = ()
    _min_training_batch = 1          # samples a training-mode batch needs (BatchNorm1d: 2)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("bpcore.") and not cls.__name__.startswith("_"):
            _LAYER_TYPES[cls.__name__] = cls

    def __init__(self):
        self.training = True
        self._backend = backends.get("cpu")
        self._dtype = "float32"
        self._path = ""          # position inside the parent model, for error messages

    # -- the contract ------------------------------------------------------
    def forward(self, x):
        """Compute the output for input ``x`` and cache what backward needs."""
        raise TypeError(f"{type(self).__name__} does not define forward()")

    def backward(self, grad_out):
        """Given dL/d(output), add into parameter grads and return dL/d(input)."""
        raise TypeError(f"{type(self).__name__} does not define backward()")

    def backward_params(self, grad_out):
        """Add the parameter gradients of ``backward(grad_out)`` without returning dL/dx.

        Training never needs the gradient with respect to the data, so the first
        layer of a model may skip computing it (``Linear`` skips a matmul).
        """
        self.backward(grad_out)

    def __call__(self, x):
        return self.forward(x)

    def config(self) -> dict:
        """The constructor's arguments as plain data, so a checkpoint can rebuild the layer."""
        return {}

    def summary(self, input_shape=None, print_fn=print):
        """Print one line per layer with its output shape and parameter count; see ``bp.summary``."""
        from .summary import summary        # same floor; summary.py needs the containers built on Layer
        return summary(self, input_shape, print_fn)
    @classmethod
    def _saved_numbers_needed(cls, config: dict) -> int:
        """How many numbers a checkpoint must hold for a layer built from ``config``
        (n_in * n_out for a Linear, n for a BatchNorm1d): checked before the layer is built,
        so a file cannot make the loader allocate memory that its bytes do not back."""
        sizes = [config[key] for key in ("n_in", "n_out", "n", "num_features") if key in config]
        if not sizes or not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
            return 0                     # no sizes, or sizes the constructor refuses
        return math.prod(sizes)

    def save(self, path) -> None:
        """Save the architecture, parameters and buffers to ``path`` (see ``bp.load``); atomic."""
        _MODEL_WRITER[0](self, path)

    # -- helpers for subclasses ------------------------------------------
    @property
    def xp(self):
        """The Array API namespace of this layer's backend."""
        return self._backend.xp

    def _label(self) -> str:
        """How error messages call this layer (containers use a short label, not their repr)."""
        return repr(self)

    def _name(self) -> str:
        where = f" (layer '{self._path}')" if self._path else ""
        return f"{self._label()}{where}"

    def _make_parameter(self, host_array) -> Parameter:
        """A Parameter on this layer's backend and dtype from a host array."""
        return Parameter(self._backend.asarray(host_array, dtype=self._dtype, copy=True), self._backend)

    # -- walking the model ----------------------------------------------
    def _own_parameters(self):
        """(name, Parameter) pairs held directly by this layer, in assignment order."""
        return [(name, value) for name, value in vars(self).items() if isinstance(value, Parameter)]

    def children(self):
        """(name, layer) pairs of the layers directly inside this one."""
        return [(name, value) for name, value in vars(self).items() if isinstance(value, Layer)]

    def modules(self):
        """This layer and every layer inside it, parents first."""
        found = [self]
        for _, child in self.children():
            found.extend(child.modules())
        return found

    def named_parameters(self, prefix: str = ""):
        """[(dotted name, Parameter)] in a fixed order: own parameters, then children's."""
        named = [(prefix + name, p) for name, p in self._own_parameters()]
        for name, child in self.children():
            named.extend(child.named_parameters(prefix + name + "."))
        return named

    def parameters(self):
        """The Parameters of this layer and its children, in ``named_parameters`` order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = ""):
        """[(dotted name, array)] of non-trained state such as running statistics."""
        named = [(prefix + name, getattr(self, name)) for name in self._buffer_names]
        for name, child in self.children():
            named.extend(child.named_buffers(prefix + name + "."))
        return named

    def _adopt_children(self):
        """Take the device and dtype of the layers inside (they must agree); name their places."""
        inner = self.modules()[1:]
        if len({id(layer) for layer in inner}) != len(inner):
            raise ValueError(f"{type(self).__name__}: the same layer object appears twice; each layer caches "
                             f"its own input for backward, so a reused layer would get wrong gradients. "
                             f"Make a second layer (copy.deepcopy(layer) for the same weights)")
        placed = {(sub._backend.spec, sub._dtype) for sub in self.modules()[1:]
                  if sub._own_parameters() or sub._buffer_names}
        if len(placed) > 1:
            raise ValueError(f"{type(self).__name__}: layers live on different devices or dtypes "
                             f"{sorted(placed)}; build them alike or call .to()/.astype() on each first")
        spec, dtype = next(iter(placed)) if placed else ("cpu", "float32")
        backend = backends.get(spec)
        for layer in self.modules():
            layer._backend, layer._dtype = backend, dtype
            if backend.switches_device:
                _compute_on_device(type(layer))
        self._set_paths()

    def _set_paths(self, path: str = ""):
        self._path = path
        for name, child in self.children():
            child._set_paths(f"{path}.{name}" if path else name)

    # -- modes, devices, dtypes -------------------------------------------
    def train(self, mode: bool = True):
        """Training mode (Dropout drops, BatchNorm uses batch statistics). Returns self."""
        for layer in self.modules():
            layer.training = bool(mode)
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

        Returns self. Gradients move too; the values are copied exactly.
        """
        target = backends.get(device)
        for layer in self.modules():
            if target.switches_device:
                _compute_on_device(type(layer))
            source = layer._backend
            if source is target:
                continue
            for _, p in layer._own_parameters():
                p.data = target.asarray(source.to_numpy(p.data))
                if p._grad is not None:
                    p._grad = target.asarray(source.to_numpy(p._grad))
                p.backend = target
            for name in layer._buffer_names:
                setattr(layer, name, target.asarray(source.to_numpy(getattr(layer, name))))
            layer._backend = target
            layer._clear_cache()
        return self

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
            xp, new = layer.xp, layer._backend.dtype(dtype)
            with layer._backend.activate():
                layer._cast(xp, new)
            layer._dtype = dtype
            layer._clear_cache()
        return self

    def _cast(self, xp, new):
        """astype for this layer's own parameters, gradients and floating buffers."""
        for _, p in self._own_parameters():
            p.data = xp.astype(p.data, new)
            if p._grad is not None:
                p._grad = xp.astype(p._grad, new)
        for name in self._buffer_names:
            buffer = getattr(self, name)
            if xp.isdtype(buffer.dtype, "real floating"):
                setattr(self, name, xp.astype(buffer, new))

    def _clear_cache(self):
        """Forget what forward cached: it lives on the old device or in the old dtype."""
        for name, value in list(vars(self).items()):
            if name.startswith("_") and hasattr(value, "shape") and hasattr(value, "dtype"):
                setattr(self, name, None)

    @property
    def device(self) -> backends.Backend:
        """The backend this layer's arrays live on."""
        return self._backend

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

    def _check_state(self, state_dict) -> dict:
        """{(layer path, attribute): host array as it will be stored}, after every check of
        :meth:`load_state_dict`; changes nothing (checkpoints check a whole file first)."""
        return check_state(self, state_dict)

    def _write_state(self, checked: dict) -> None:
        """Store values checked by :meth:`_check_state` (on each layer's device)."""
        write_state(self, checked)

    def _snapshot(self) -> dict:
        """Device copies of every parameter and buffer (no host transfer), for :meth:`_restore`."""
        copies = {}
        with self._backend.activate():         # CuPy copies onto the current GPU
            for path, layer in self._layers_by_path().items():
                for name, p in layer._own_parameters():
                    copies[(path, name)] = layer.xp.asarray(p.data, copy=True)
                for name in layer._buffer_names:
                    copies[(path, name)] = layer.xp.asarray(getattr(layer, name), copy=True)
        return copies

    def _restore(self, snapshot: dict) -> None:
        """Put back values taken by :meth:`_snapshot` (same device and dtype)."""
        layers = self._layers_by_path()
        with self._backend.activate():
            for (path, name), value in snapshot.items():
                target = getattr(layers[path], name)
                if isinstance(target, Parameter):
                    target.data = layers[path].xp.asarray(value, copy=True)
                else:
                    setattr(layers[path], name, layers[path].xp.asarray(value, copy=True))

    def _layers_by_path(self):
        """{dotted path: layer} for this layer ("") and every layer inside it."""
        found = {"": self}
        for name, child in self.children():
            for path, layer in child._layers_by_path().items():
                found[f"{name}.{path}" if path else name] = layer
        return found

    def __repr__(self):
        return f"{type(self).__name__}()"
