"""summary(model, input_shape): one line per layer with its output shape and parameter count.

As Keras' ``model.summary()`` and torchinfo print it: the shapes come from running the model on a
small batch of zeros (in eval mode, so no running statistics change), which is what makes a
CNN's shapes visible before training.
"""
from __future__ import annotations

import math

from .._checks import check_int


class ModelSummary:
    """The table :func:`summary` prints.

    Attributes:
        rows: [(name, layer description, output shape with None for the batch, parameter count)].
        total_params: parameters of the whole model. input_shape: one sample's shape.
        text: the table as a string.

    ``str()`` is the table, except once :func:`summary` has printed it: then it is "", so that
    ``print(model.summary())`` (a torchinfo habit) shows the table once, as ``model.summary()``
    (Keras's) does. ``.text`` always holds the table.
    """

    def __init__(self, rows, total_params, input_shape):
        self.rows, self.total_params, self.input_shape = rows, total_params, input_shape
        self.printed = False

    def __str__(self):
        return "" if self.printed else self.text

    @property
    def text(self) -> str:
        def shape_text(shape):
            return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"
        table = [("Layer", "Output shape", "Param #")]
        table += [(f"{name}  {what}".strip(), shape_text(shape), f"{count:,}")
                  for name, what, shape, count in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(3)]
        lines = [f"{a:<{widths[0]}}   {b:<{widths[1]}}   {c:>{widths[2]}}" for a, b, c in table]
        rule = "=" * len(lines[0])
        return "\n".join([f"Input shape: {shape_text((None,) + self.input_shape)}", rule, lines[0], rule,
                          *lines[1:], rule, f"Total params: {self.total_params:,}"])

    def __repr__(self):
        return f"ModelSummary(layers={len(self.rows)}, total_params={self.total_params:,})"


def _count(layer) -> int:
    return sum(math.prod(p.shape) for p in layer.parameters())


def _leaves(model, prefix=""):
    """(dotted name, layer) in forward order: a Sequential's layers (recursively), else the layer itself."""
    if getattr(model, "_summary_lists_layers", False):       # a Sequential: its layers run one after another
        found = []
        for name, child in model.children():
            found.extend(_leaves(child, f"{prefix}{name}."))
        return found
    return [(prefix.rstrip("."), model)]


def _default_input_shape(model):
    first = _leaves(model)[0][1] if _leaves(model) else None
    # a Linear's n_in, a BatchNorm1d's features, a GPT's context_length (its longest token sequence)
    n_in = (getattr(first, "n_in", None) or getattr(first, "num_features", None)
            or getattr(first, "context_length", None))
    if n_in is None or hasattr(first, "in_channels"):
        raise ValueError(f"summary: pass input_shape, the shape of one sample without the batch dimension "
                         f"(e.g. (1, 8, 8) for 8x8 grey images); the first layer {first!r} does not fix it")
    return (n_in,)


def summary(model, input_shape=None, print_fn=print) -> ModelSummary:
    """Print (with ``print_fn``; None prints nothing) and return the per-layer table of ``model``.

    Args:
        model: a bpcore Layer (a Sequential gets one line per layer).
        input_shape: one sample's shape without the batch dimension, e.g. (1, 8, 8); optional
            when the first layer is a Linear (its n_in), a BatchNorm1d or bp.gpt's TokenPositionEmbedding
            (its context_length).
    Returns:
        A :class:`ModelSummary` (``.text`` is the table; so is its ``str`` when nothing printed it,
        and "" when it was printed here, so that ``print(model.summary())`` prints it once).
    """
    if not callable(getattr(model, "named_modules", None)):     # not a bpcore Layer
        raise TypeError(f"summary expects a bpcore Layer, got {type(model).__name__}")
    if input_shape is None:
        input_shape = _default_input_shape(model)
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    if not isinstance(input_shape, (tuple, list)):
        raise TypeError(f"summary: input_shape must be a tuple of ints such as (1, 8, 8), got {input_shape!r}")
    input_shape = tuple(check_int("summary", f"input_shape[{i}]", d) for i, d in enumerate(input_shape))
    backend, leaves = model.device, _leaves(model)
    dtype = backend.dtype(model.dtype if model.input_indices() is None else "int64")   # indices: zeros
    x = backend.xp.zeros((2,) + input_shape, dtype=dtype, device=backend.device)
    was_training, rows = model.training, []
    model.eval()
    try:
        with backend.activate():
            for name, layer in leaves:
                try:
                    x = layer.forward(x)
                except ValueError as error:
                    raise ValueError(f"summary: layer {name or type(layer).__name__} refused the shape "
                                     f"{(None,) + tuple(x.shape[1:])} (input_shape is one sample's shape "
                                     f"without the batch dimension): {error}") from None
                # a layer holding layers (a TransformerBlock) by its short label, not its children's reprs
                what = layer._label() if layer.children() else repr(layer)
                rows.append((name, what, (None,) + tuple(x.shape[1:]), _count(layer)))
    finally:
        model.train(was_training)
        for layer in model.modules():
            layer._saved = None          # what the zeros left for backward is no use to anyone
    table = ModelSummary(rows, _count(model), input_shape)
    if print_fn is not None:
        print_fn(table.text)
        table.printed = True
    return table
