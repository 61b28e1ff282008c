"""Where a transformer looks: one attention layer's weights P for one input, as heat maps."""
from __future__ import annotations

import math

import numpy as np

from ..nn.attention import MultiHeadAttention
from ._plot import _check_model, _figure, _finish, _host


def attention(model, tokens, layer: int = 0, head: int | None = 0, labels=None, path=None):
    """The attention weights of the ``layer``-th MultiHeadAttention of ``model`` for one input.

    Runs ``model`` (in eval mode) on ``tokens`` and draws P (T, T) of the chosen head: row t is how
    much position t took from each position (a causal layer's upper triangle is zero).

    Args:
        model: a Layer holding at least one MultiHeadAttention (``bp.gpt(...)``, a TransformerBlock,
            or the attention layer itself), whose forward takes ``tokens``.
        tokens: one input: tokens (T,) or (1, T) for a GPT, or whatever the model takes, with a batch of 1.
        layer: which attention layer, counted in the order of ``model.modules()`` (0 is the first).
        head: which head; None draws every head side by side.
        labels: a name for each position (characters, digits) for the axes; default 0..T-1.
        path: a PNG to write (folders are created); None only returns the figure.
    Returns:
        The matplotlib Figure; ``fig.weights`` is the host array drawn: (T, T) for one head,
        (H, T, T) for all of them.
    """
    what = "attention"
    _check_model(model, what)
    layers = [inner for inner in model.modules() if isinstance(inner, MultiHeadAttention)]
    if not layers:
        raise ValueError(f"{what}: the model has no MultiHeadAttention layer to show")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(layers):
        raise ValueError(f"{what}: layer must be an index into the model's {len(layers)} attention layers, "
                         f"got {layer!r}")
    chosen = layers[layer]
    heads = chosen.num_heads
    if head is not None and (isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < heads):
        raise ValueError(f"{what}: head must be None or an index into the layer's {heads} heads, got {head!r}")
    x = _host(tokens, f"{what}: tokens")
    if x.dtype.kind in "iu" and x.ndim == 1:
        x = x[None]                                 # one token sequence -> a batch of one
    if x.shape[0] != 1:
        raise ValueError(f"{what}: tokens must be one input (a batch of 1), got shape {tuple(x.shape)}")
    was_training = model.training
    model.eval()
    try:
        model.forward(x if x.dtype.kind in "iu" else x.astype(model.dtype))
        weights = _host(chosen.attention_weights(), f"{what}: weights")[0].astype(np.float64)   # (H, T, T)
    finally:
        model.train(was_training)
        for inner in model.modules():
            inner._saved = None
    T = weights.shape[-1]
    names = [str(i) for i in range(T)] if labels is None else [str(name) for name in labels]
    if len(names) != T:
        raise ValueError(f"{what}: labels must name each of the {T} positions, got {len(names)}")
    shown = range(heads) if head is None else [head]
    side = min(4.0, 0.9 + 0.28 * T)
    fig = _figure(figsize=(side * len(shown) + 0.6, side + 0.4))
    for i, h in enumerate(shown):
        ax = fig.add_subplot(1, len(shown), i + 1)
        image = ax.imshow(weights[h], cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
        step = max(1, math.ceil(T / 24))           # at most ~24 tick labels per axis
        ax.set_xticks(range(0, T, step), names[::step], fontsize=7)
        ax.set_yticks(range(0, T, step), names[::step], fontsize=7)
        ax.set_xlabel("attends to (key)", fontsize=8)
        if i == 0:
            ax.set_ylabel("position (query)", fontsize=8)
        ax.set_title(f"head {h}", fontsize=9)
    fig.colorbar(image, ax=fig.axes, shrink=0.8)
    fig.suptitle(f"attention weights of attention layer {layer}: {chosen!r}", fontsize=9)
    fig.weights = weights if head is None else weights[head]
    return _finish(fig, path)
