"""Gradient flow (|dL/dW| layer by layer) and weight histograms: vanishing gradients made visible."""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..nn.module import Layer
from ..training import History
from ._plot import _check_model, _figure, _finish

__all__ = ["gradient_flow", "weight_histograms"]


# -- gradient flow -----------------------------------------------------------------------
def _weight_grad_norms(source, epoch, what):
    """[(parameter name, |dL/dW|)] from the input layer to the output layer."""
    if isinstance(source, History):
        names = [name for name in source.grad_norms if name.endswith(".W")]
        if not names:
            raise ValueError(f"{what}: the History holds no weight gradient norms (no '.W' parameter; "
                             f"it has {sorted(source.grad_norms) or 'none'})")
        n = len(source.grad_norms[names[0]])
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not -n <= epoch < n:
            raise ValueError(f"{what}: epoch must be an int in [{-n}, {n}) for a History of {n} "
                             f"epochs, got {epoch!r}")
        return [(name, float(source.grad_norms[name][epoch])) for name in names]
    if isinstance(source, Layer):
        weights = [(name, p) for name, p in source.named_parameters() if name.endswith(".W")]
        if not weights:
            raise ValueError(f"{what}: the model has no weight matrices (no parameter named '*.W')")
        norms = [(name, float(np.linalg.norm(p.backend.to_numpy(p.grad).astype(np.float64))))
                 for name, p in weights]
        if not any(value > 0 for _, value in norms):
            raise ValueError(f"{what}: every weight gradient of the model is zero; run a forward and "
                             f"a backward pass (model.backward(loss_fn.backward())) first")
        return norms
    raise TypeError(f"{what}: expected a bp.History, a bpcore model, or a dict of them, "
                    f"got {type(source).__name__}")


def gradient_flow(source, epoch: int = -1, path=None, title=None):
    """|dL/dW| of each weight matrix as bars on a log scale, layer 1 next to the input.

    Args:
        source: one of

            - a :class:`~bpcore.History`: its ``grad_norms`` of the ".W" parameters
              (measured after the last batch of epoch ``epoch``);
            - a model after a backward pass: the norms of its ".W" parameters' ``.grad``;
            - a dict {label: History or model}: grouped bars, one colour per entry and one
              group per layer, to compare networks (sigmoid vs ReLU, ...).

        epoch: which epoch of a History (-1 = the last, the default, as ``bp.viz.health``;
            0 = the first, where a net that never learns shows it); ignored for models.
        path: where to save a PNG (optional).
        title: the axes title (default says what is shown).
    Returns:
        The Figure; bars with a zero or non-finite norm are left out (a log scale has no 0).
    """
    what = "gradient_flow"
    if isinstance(source, Mapping):
        if not source:
            raise ValueError(f"{what}: the dict of sources is empty")
        series = {str(label): _weight_grad_norms(item, epoch, f"{what}[{label!r}]")
                  for label, item in source.items()}
    else:
        series = {None: _weight_grad_norms(source, epoch, what)}
    depth = max(len(norms) for norms in series.values())
    fig = _figure(figsize=(min(12.0, max(6.0, 1.5 + 0.35 * depth * max(2, len(series)))), 4.5))
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    plotted = []
    for i, (label, norms) in enumerate(series.items()):
        layers = np.arange(1, len(norms) + 1) + (i - (len(series) - 1) / 2) * width
        values = np.array([value for _, value in norms])
        shown = np.isfinite(values) & (values > 0)
        bars = ax.bar(layers[shown], values[shown], width=width * 0.95, label=label, edgecolor="black",
                      linewidth=0.5)
        plotted.extend(values[shown])
        if len(series) == 1:
            ax.bar_label(bars, fmt="%.1e", fontsize=8, padding=2)
    if not plotted:
        raise ValueError(f"{what}: no positive finite gradient norm to draw")
    ax.set_yscale("log")
    low, high = min(plotted), max(plotted)
    ax.set_ylim(low / 3.0, high * (4.0 if len(series) == 1 else 2.0))
    ax.set_xticks(np.arange(1, depth + 1))
    if len(series) == 1:
        names = [name for name, _ in next(iter(series.values()))]
        ax.set_xticklabels([f"{k}\n{name}" for k, name in enumerate(names, start=1)], fontsize=8)
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9)   # beside the bars, not on them
    ax.set_xlabel("layer (1 = next to the input)")
    ax.set_ylabel("$\\|dL/dW\\|$ (log scale)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    if title is None:
        histories = [item for item in (source.values() if isinstance(source, Mapping) else [source])
                     if isinstance(item, History)]
        title = "weight gradient norm per layer"
        if histories:                       # epochs are counted from 1 here, as fit prints them
            total = len(histories[0].history.get("loss", [])) or len(next(iter(histories[0].grad_norms.values())))
            title += f" (epoch {epoch % total + 1} of {total})"
    ax.set_title(title)
    return _finish(fig, path)


# -- weights -------------------------------------------------------------------------------
def weight_histograms(model, path=None):
    """A histogram of the entries of each weight matrix (".W"), one subplot each.

    Args:
        model: a bpcore model; its ".W" parameters, in ``named_parameters`` order.
        path: where to save a PNG (optional).
    Returns:
        The Figure; each subplot is titled with the parameter's name, shape and std.
    """
    what = "weight_histograms"
    _check_model(model, what)
    weights = [(name, p) for name, p in model.named_parameters() if name.endswith(".W")]
    if not weights:
        raise ValueError(f"{what}: the model has no weight matrices (no parameter named '*.W')")
    cols = min(3, len(weights))
    rows = math.ceil(len(weights) / cols)
    fig = _figure(figsize=(3.6 * cols, 2.8 * rows))
    for i, (name, p) in enumerate(weights, start=1):
        values = p.backend.to_numpy(p.data).astype(np.float64).ravel()
        ax = fig.add_subplot(rows, cols, i)
        ax.hist(values, bins=int(np.clip(np.sqrt(values.size), 10, 60)), color="#4c72b0",
                edgecolor="white", linewidth=0.3)
        shape = " x ".join(str(s) for s in p.shape)
        ax.set_title(f"{name}  ({shape})\nstd {values.std():.3g}", fontsize=9)
        ax.set_xlabel("weight", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("weight distributions")
    return _finish(fig, path)
