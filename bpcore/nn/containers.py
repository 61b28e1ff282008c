"""Containers: Sequential (layers one after another), Residual (y = x + block(x)), and mlp.

A container's backward runs its children's backward in the reverse order of
their forward, which is the chain rule written as a loop.
"""
from __future__ import annotations

from .._checks import check_int
from . import init as _init
from .activations import ACTIVATIONS
from .linear import Linear
from .module import Layer


def _check_runs(container, layers):
    """Refuse a backward whose layers last ran forward inside another model (a layer shared by
    two models): each layer caches one input, so the other model's forward replaced it and
    the gradients would be wrong without any error."""
    runner = id(container)
    for layer in layers:
        if getattr(layer, "_run_by", runner) != runner:
            raise RuntimeError(f"{container._name()}: {layer._label()} last ran forward inside another model, so "
                               f"its cache holds that model's input and this backward would give wrong "
                               f"gradients. A layer shared by two models must not be; give each model its "
                               f"own (copy.deepcopy(layer) for the same weights)")


class Sequential(Layer):
    """Layers applied one after another; backward runs them in reverse.

    ``Sequential(Linear(2, 16), Tanh(), Linear(16, 1))``; the layers are in
    ``model.layers`` and their parameters are named "0.W", "0.b", "2.W", ...
    """

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} must be a Layer, got {type(layer).__name__}")
        self.layers = list(layers)
        self._adopt_children()

    def children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def forward(self, x):
        """Run every layer in order. x: (batch, n_in) -> (batch, n_out)."""
        with self._backend.activate():
            x = self._accept_input(x)
            runner = id(self)
            for layer in self.layers:
                layer._run_by = runner         # whose forward filled its cache (see _check_runs)
                x = layer.forward(x)
        return x

    def backward(self, grad_out, input_grad: bool = True):
        """Backprop grad_out = dL/d(output) through every layer, last first.

        Returns dL/dx, shape (batch, n_in); with ``input_grad=False`` the first
        layer only adds its parameter gradients and None is returned, which is
        all a training step needs.
        """
        _check_runs(self, self.layers)
        with self._backend.activate():
            grad = grad_out
            for layer in reversed(self.layers[1:]):
                grad = layer.backward(grad)
            if not self.layers:
                return grad
            if input_grad:
                return self.layers[0].backward(grad)
            self.layers[0].backward_params(grad)
        return None

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
        self._adopt_children()
        self._shape = None

    def forward(self, x):
        """x: (batch, n) -> x + block(x): (batch, n)."""
        x = self._accept_input(x)
        self.block._run_by = id(self)
        out = self.block.forward(x)
        if tuple(out.shape) != tuple(x.shape):
            raise ValueError(f"{self._name()}: the block maps shape {tuple(x.shape)} to {tuple(out.shape)}, "
                             f"but y = x + block(x) needs the shape kept (a width-preserving block such as "
                             f"Linear(n, n))")
        self._shape = tuple(x.shape)
        return x + out

    def backward(self, grad_out):
        """dL/dx = grad_out (identity path) + the block's dL/dx."""
        if self._shape is None:
            raise self._no_forward()
        self._check_grad_out(grad_out, self._shape)
        _check_runs(self, [self.block])
        return grad_out + self.block.backward(grad_out)

    def __repr__(self):
        inner = repr(self.block).replace("\n", "\n  ")
        return f"Residual(\n  {inner}\n)"

    def _label(self) -> str:
        return "Residual"


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
    rng = _init.host_rng(seed)
    scheme = init if init is not None else _INIT_FOR[activation]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out, init=scheme, seed=rng))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return Sequential(*layers)
