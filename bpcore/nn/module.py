"""The layer contract: Layer (Parameter is in parameter.py, the layer kit in kit.py, moving and casting
in devices.py, LayerList in containers.py).

Every layer computes ``forward(x)``, keeps with ``save_for_backward`` exactly what its backward
pass reads, and ``backward(grad_out)`` returns ``grad_in`` while adding (+=) into each of its
Parameters' ``.grad``. A layer knows its backend (device and Array API namespace) and its float
dtype; ``to()`` and ``astype()`` change both for a layer and everything inside it.
"""
from __future__ import annotations

import functools
import inspect

import backends

from .._checks import ArgumentTypeError
from . import budget
from .devices import DeviceMethods
from .kit import KitMethods
from .parameter import FLOAT_DTYPES, Parameter, dtype_name  # noqa: F401  (re-exported: the contract's names)
from .parameter import own_parameters as _own_parameters
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


class Layer(KitMethods, DeviceMethods):
    """Base class of every layer: subclasses define ``forward`` and ``backward``.

    Parameters are attributes holding :class:`Parameter` objects (made with ``self.parameter``);
    child layers are attributes holding layers (or a :class:`LayerList` of them); both are found
    in the order they were assigned, as in PyTorch. The layer kit (``check_input``,
    ``save_for_backward``, ``saved``, ``check_grad_out``, ``register_buffer``) is in kit.py;
    moving and casting (``to``, ``astype``, ``cpu``, ``cuda``, ``backend``, ``dtype``) in devices.py.
    """

    _buffer_names: tuple[str, ...] = ()      # persistent buffers: saved in state_dict()
    _constant_names: tuple[str, ...] = ()    # buffers that move with the layer but are not saved
    _min_training_batch = 1          # samples a training-mode batch needs (BatchNorm1d: 2)
    stop_training = False            # a callback sets model.stop_training = True to end fit (Keras's name)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:               # once, when the class is defined
            cls.__init__ = _naming_memory_errors(cls.__dict__["__init__"])
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
        if not isinstance(prefix, str):
            raise ArgumentTypeError(f"{type(self).__name__}: prefix must be a str, got {type(prefix).__name__}")
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
        for path, layer in self.named_modules(_dotted(prefix)):
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
                for path, layer in self.named_modules(_dotted(prefix)) for name in layer._buffer_names]

    # -- modes -------------------------------------------------------------
    def train(self, mode: bool = True):
        """Training mode (Dropout drops, BatchNorm uses batch statistics). Returns self."""
        if not isinstance(mode, bool):
            raise ArgumentTypeError(f"{type(self).__name__}.train: mode must be True or False, got {mode!r}")
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
        """``Scale(n=4)`` from ``config()``; a layer holding layers lists them, one per line, as PyTorch.
        A layer without a ``config()`` shows its parameters' shapes instead: ``Scale(s: (4,))``."""
        config = self.config()
        arguments = ", ".join(f"{key}={value!r}" for key, value in config.items()) if config else \
            ", ".join(f"{name}: {p.shape}" for name, p in _own_parameters(self))
        children = self.children()
        if not children:
            return f"{type(self).__name__}({arguments})"
        inner = "".join(f"\n  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in children)
        return f"{type(self).__name__}({arguments}{inner}\n)"

def _naming_memory_errors(init):
    """``init`` (a layer class's __init__), with a MemoryError raised while building the layer named by
    the layer and its arguments: ``Linear(n_in=1099511627776, n_out=2): a weight of shape ...``. Once
    the layer is built, a layer that holds layers takes their device and dtype (``_adopt_children``)."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if "_building" in self.__dict__:            # a base class's __init__ (super().__init__): the
            return init(self, *args, **kwargs)      # outermost call names the layer with its own arguments
        self.__dict__["_building"] = True
        try:
            init(self, *args, **kwargs)
            if "_backend" not in self.__dict__:
                raise TypeError(f"{type(self).__name__}.__init__ must call super().__init__() first: it gives "
                                f"the layer its device, dtype and mode")
            if self.children():            # a layer made of layers takes their device and dtype, as
                self._adopt_children()     # Sequential does, and refuses one layer object held twice
        except MemoryError as error:
            try:
                bound = signature.bind(self, *args, **kwargs).arguments
                arguments = ", ".join(f"{name}={value!r}" for name, value in list(bound.items())[1:])
            except TypeError:
                arguments = "..."
            raise MemoryError(f"{type(self).__name__}({arguments}): {error}") from None
        finally:
            self.__dict__.pop("_building", None)
    return __init__


def _dotted(prefix) -> str:
    """A name prefix without its trailing dot ("encoder." -> "encoder"); a str is required."""
    if not isinstance(prefix, str):
        raise ArgumentTypeError(f"prefix must be a str, got {type(prefix).__name__}")
    return prefix.rstrip(".")


def _holds_layers(values) -> bool:
    items = values.values() if isinstance(values, dict) else values
    return any(isinstance(item, Layer) for item in items)
