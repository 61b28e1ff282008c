"""Containers: Sequential (layers one after another), Residual (y = x + block(x)), LayerList, and mlp.

A container's backward runs its children's backward in the reverse order of
their forward, which is the chain rule written as a loop.
"""
from __future__ import annotations

import operator

from .._checks import check_int
from . import init as _init
from .activations import ACTIVATIONS
from .linear import Linear
from .module import Layer


def _check_runs(container, layers, runs):
    """Refuse a backward whose layers last ran forward elsewhere (a layer shared by two models):
    each layer keeps one forward's values, so the other model's forward replaced them and the
    gradients would be wrong without any error. ``runs`` is what each layer kept at the
    container's own forward (``save_for_backward`` replaces it at every forward)."""
    for layer, kept in zip(layers, runs):
        if layer._saved is kept:
            continue
        if layer._saved is None:               # moved or cast since: nothing to backprop through
            raise layer._no_forward()
        raise RuntimeError(f"{container._name()}: {layer._label()} last ran forward inside another model, so "
                           f"what it kept is that model's input and this backward would give wrong "
                           f"gradients. A layer shared by two models must not be; give each model its "
                           f"own (copy.deepcopy(layer) for the same weights)")


def _moved_alone(container, layer, place):
    """The error for a child that lives on another device or dtype than its container: moved or cast by
    itself, or by another model that holds the same layer object (a shared layer moves with every model
    holding it)."""
    return ValueError(f"{container._name()}: its layer '{place}' ({layer._label()}) now lives on "
                      f"{layer._backend.spec} ({layer._dtype}), but this model lives on {container._backend.spec} "
                      f"({container._dtype}). It was moved or cast on its own, or by another model that holds the "
                      f"same layer object. Move and cast whole models (model.to(...), model.astype(...)), and give "
                      f"each model its own layers (copy.deepcopy(layer) for the same weights)")


def _check_placed(container, children) -> None:
    """Refuse to run ``container`` when one of its ``children`` ((name, layer) pairs: the layers directly
    inside it, named by the caller so that no attribute scan runs per call) was moved or cast alone."""
    for place, layer in children:
        if layer._backend is not container._backend or layer._dtype != container._dtype:
            raise _moved_alone(container, layer, place)


def _as_index(index, message: str) -> int:
    """``index`` as a Python int (NumPy integers too, as a list takes them); TypeError otherwise."""
    if isinstance(index, bool):
        raise TypeError(f"{message}, got bool")
    try:
        return operator.index(index)
    except TypeError:
        raise TypeError(f"{message}, got {type(index).__name__}") from None


class Sequential(Layer):
    """Layers applied one after another; backward runs them in reverse.

    ``Sequential(Linear(2, 16), Tanh(), Linear(16, 1))``; the layers are in
    ``model.layers`` and their parameters are named "0.W", "0.b", "2.W", ...
    Each layer checks its own input, so the first layer decides what the model accepts
    (floats for a Linear, integer indices for an Embedding).
    """

    _summary_lists_layers = True      # summary() shows one line per layer

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} must be a Layer, got {type(layer).__name__}")
        self.layers = list(layers)

    def children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def input_indices(self):
        """The first layer's: V when the model takes integer indices below V (an Embedding first)."""
        return self.layers[0].input_indices() if self.layers else None

    def forward(self, x):
        """Run every layer in order: the first layer's input -> the last layer's output."""
        if not self.layers:                      # the identity
            x = self.check_input(x)
            self.save_for_backward(runs=())
            return x
        _check_placed(self, enumerate(self.layers))
        for layer in self.layers:
            x = layer.forward(x)
        self.save_for_backward(runs=[layer._saved for layer in self.layers])
        return x

    def backward(self, grad_out, input_grad: bool = True):
        """Backprop grad_out = dL/d(output) through every layer, last first.

        Returns dL/dx, shape of the input; with ``input_grad=False`` the first
        layer only adds its parameter gradients and None is returned, which is
        all a training step needs.
        """
        _check_runs(self, self.layers, self.saved("runs"))
        if not self.layers:
            return self.check_grad_out(grad_out)
        grad, returned_by = grad_out, None           # returned_by: the layer whose backward gave `grad`
        try:
            for layer in reversed(self.layers[1:]):
                grad = layer.backward(grad)
                returned_by = layer
            if input_grad:
                return self.layers[0].backward(grad)
            self.layers[0].backward_params(grad)
            return None
        except (TypeError, ValueError) as error:
            if returned_by is None or "grad_out" not in str(error):
                raise
            # the layer that refused grad_out is not the one at fault: say where grad_out came from
            raise type(error)(f"{error}. That grad_out is what the backward of {returned_by._name()} returned: a "
                              f"backward returns dL/d(its input), an array shaped like its input") from None

    def backward_params(self, grad_out):
        self.backward(grad_out, input_grad=False)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        inner = "".join(f"\n  ({i}): " + repr(layer).replace("\n", "\n  ") for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)" if inner else "Sequential()"

    def _label(self) -> str:
        count = len(self.layers)
        return f"Sequential of {count} layer{'' if count == 1 else 's'}"


class Residual(Layer):
    """y = x + block(x): a skip connection around ``block``.

    Backward: dL/dx = grad_out + block.backward(grad_out), so the gradient reaches
    earlier layers through the identity path even when the block's own gradient
    vanishes. The block must keep the shape (for example Linear(n, n)).
    Its parameters are named "block.0.W", ... inside the residual.
    """

    def __init__(self, block: Layer):
        super().__init__()
        if not isinstance(block, Layer):
            raise TypeError(f"Residual: block must be a Layer, got {type(block).__name__}")
        self.block = block

    def forward(self, x):
        """x: (batch, ..., n) -> x + block(x), the same shape."""
        x = self.check_input(x)
        _check_placed(self, (("block", self.block),))
        out = self.block.forward(x)
        if tuple(out.shape) != tuple(x.shape):
            raise ValueError(f"{self._name()}: the block maps shape {tuple(x.shape)} to {tuple(out.shape)}, "
                             f"but y = x + block(x) needs the shape kept (a width-preserving block such as "
                             f"Linear(n, n))")
        self.save_for_backward(shape=tuple(x.shape), block_run=self.block._saved)
        return x + out

    def backward(self, grad_out):
        """dL/dx = grad_out (identity path) + the block's dL/dx."""
        shape, block_run = self.saved("shape", "block_run")
        self.check_grad_out(grad_out, shape)
        _check_runs(self, [self.block], [block_run])
        return grad_out + self.block.backward(grad_out)

    def __repr__(self):
        inner = repr(self.block).replace("\n", "\n  ")
        return f"Residual(\n  {inner}\n)"

    def _label(self) -> str:
        return "Residual"


class LayerList(Layer):
    """Layers held in a list, as ``torch.nn.ModuleList``: index (read and assign), ``len``, iteration,
    ``append``, ``extend``, ``insert``.

    Inside a layer (``self.blocks = bp.LayerList([...])``) its layers are found by
    ``parameters()``, ``to()``, ``state_dict()`` and checkpoints, named "blocks.0.W", ....
    It does not run them: the holding layer's forward calls each, and its backward calls
    their backward in reverse order.
    """

    def __init__(self, layers=()):
        super().__init__()
        if isinstance(layers, Layer) or not hasattr(layers, "__iter__"):
            raise TypeError(f"LayerList expects an iterable of layers, got {type(layers).__name__}")
        self._layers = []
        for layer in layers:
            self.append(layer)

    def append(self, layer: Layer) -> "LayerList":
        """Add ``layer`` at the end; returns self."""
        return self.insert(len(self._layers), layer)

    def insert(self, index: int, layer: Layer) -> "LayerList":
        """Put ``layer`` before position ``index`` (as ``list.insert``); returns self."""
        index = _as_index(index, "LayerList.insert: index must be an int")
        if not isinstance(layer, Layer):
            count = len(self._layers)
            position = min(max(index + count if index < 0 else index, 0), count)      # where list.insert puts it
            raise TypeError(f"LayerList: item {position} must be a Layer, got {type(layer).__name__}")
        before = list(self._layers)
        self._layers.insert(index, layer)
        self._adopted(before)
        return self

    def _adopted(self, before) -> None:
        """Take the layers' device (all must agree) and name their places; on a refusal, put the
        list back as it was (``before``) and raise."""
        try:
            self._adopt_children()
        except ValueError:
            self._layers[:] = before
            raise

    def extend(self, layers) -> "LayerList":
        """Add every layer of ``layers`` at the end; returns self."""
        for layer in layers:
            self.append(layer)
        return self

    def children(self):
        return [(str(i), layer) for i, layer in enumerate(self._layers)]

    def forward(self, x):
        raise TypeError("LayerList holds layers but does not run them: call each in your layer's forward "
                        "(for block in self.blocks: x = block(x)), or use bp.Sequential")

    def backward(self, grad_out):
        raise TypeError("LayerList holds layers but does not run them: call each one's backward in your layer's "
                        "backward, last first (for block in reversed(self.blocks): grad = block.backward(grad))")

    def __getitem__(self, index):
        if isinstance(index, slice):
            return LayerList(self._layers[index])
        return self._layers[self._position(index)]

    def __setitem__(self, index, layer: Layer):
        """Replace the layer at ``index`` (an int) with ``layer``."""
        position = self._position(index)
        if not isinstance(layer, Layer):
            raise TypeError(f"LayerList: item {position} must be a Layer, got {type(layer).__name__}")
        before = list(self._layers)
        self._layers[position] = layer
        self._adopted(before)

    def _position(self, index) -> int:
        """``index`` as a position in [0, len): an int in [-len, len), else an error naming LayerList."""
        index = _as_index(index, "LayerList indices must be ints (or, to read, slices)")
        count = len(self._layers)
        if not -count <= index < count:
            raise IndexError(f"LayerList index {index} out of range for {count} layer{'' if count == 1 else 's'}")
        return index % count

    def __len__(self):
        return len(self._layers)

    def __iter__(self):
        return iter(self._layers)

    def __reversed__(self):
        return reversed(self._layers)


# The lessons' initial scales: N(0, 2/n_in) for ReLU-like, N(0, 1/n_in) for tanh and sigmoid.
_INIT_FOR = {"relu": "he", "leaky_relu": "he", "gelu": "he",
             "sigmoid": "lecun", "tanh": "lecun", "identity": "lecun"}


def mlp(sizes, activation: str = "relu", seed=None, init: str | None = None) -> Sequential:
    """A multi-layer perceptron: Linear, activation, ..., Linear (the last layer has no activation).

    Args:
        sizes: widths from input to output, e.g. [2, 16, 8, 1].
        activation: one of "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "identity".
        seed: int, None or NumPy Generator; one seed gives the same network on every backend.
        init: weight init for every Linear; by default "he" (N(0, 2/n_in)) for ReLU-like
            activations and "lecun" (N(0, 1/n_in)) for tanh, sigmoid and identity.
    Returns:
        A float32 :class:`Sequential` on the CPU; use ``.to(device)`` and ``.astype()``.
    """
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or len(sizes) < 2:
        raise ValueError(f"mlp: sizes must list at least an input and an output width, got {sizes!r}")
    for i, size in enumerate(sizes):
        check_int("mlp", f"sizes[{i}]", size)
    if activation not in ACTIVATIONS:
        raise ValueError(f"mlp: unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    rng = _init.host_rng(seed, "mlp")
    scheme = init if init is not None else _INIT_FOR[activation]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out, init=scheme, seed=rng))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return Sequential(*layers)
