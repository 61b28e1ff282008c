"""Pictures of the lessons: decision boundaries, training curves, gradient flow, weights.

Every function draws one ``matplotlib.figure.Figure`` with the object-oriented API
(no pyplot, no global state, no display: a saved figure is rendered with Agg),
returns it, and writes a PNG when given ``path``. matplotlib is the optional
"viz" extra: this module imports without it, and each function raises an
ImportError naming the extra when it is missing.

Plotting happens on the host, so this module works on host NumPy arrays: model
outputs come from ``bp.predict`` (already host NumPy) and device arrays are
brought over with ``backends.to_host``.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np

import backends

from .module import Layer

__all__ = ["confusion_matrix", "curves", "decision_boundary", "gradient_flow", "weight_histograms"]

_DPI = 100


# -- helpers -----------------------------------------------------------------------
def _require_matplotlib():
    """The matplotlib package, or an ImportError naming the extra that installs it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError('bpcore.viz needs matplotlib: pip install -e ".[viz]" '
                          '(or pip install matplotlib)') from None
    return matplotlib


def _figure(**kwargs):
    """A new matplotlib Figure (constrained layout), or an ImportError naming the extra."""
    _require_matplotlib()
    from matplotlib.figure import Figure

    kwargs.setdefault("layout", "constrained")
    return Figure(**kwargs)


def _finish(fig, path):
    """Save ``fig`` to ``path`` (PNG unless the name says otherwise), creating folders; return fig."""
    if path is not None:
        path = os.fspath(path)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        fmt = None if os.path.splitext(path)[1] else "png"
        fig.savefig(path, dpi=_DPI, bbox_inches="tight", format=fmt)
    return fig


def _train():
    """bpcore.train (History, and predict re-exported), imported late (it imports much of the package)."""
    from . import train

    return train


def _host(array, what):
    """Any backend's array, a host array, or a list -> a host NumPy array."""
    if isinstance(array, (list, tuple)):
        return backends.host_array_from(array, what)
    try:
        return backends.to_host(array)
    except TypeError:
        raise TypeError(f"{what} must be an array (host NumPy or a backend's), "
                        f"got {type(array).__name__}") from None


def _labels(y, n, what):
    """Integer class labels (n,) from labels (n,) or (n, 1), or one-hot rows (n, k)."""
    y = _host(y, f"{what}: y")
    if y.ndim == 0 or y.shape[0] != n:
        got = "a scalar" if y.ndim == 0 else f"{y.shape[0]} rows"
        raise ValueError(f"{what}: y must have one label per sample ({n}), got {got}")
    if y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, axis=1)
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
        raise ValueError(f"{what}: y must be labels of shape (n,) or (n, 1), got {tuple(y.shape)}")
    y = y.reshape(-1)
    if y.dtype.kind not in "iub" and not (np.all(np.isfinite(y)) and np.array_equal(y, np.rint(y))):
        raise ValueError(f"{what}: y must hold integer class labels (0, 1, ...), got non-integer values")
    labels = y.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"{what}: class labels must be >= 0, got {labels.min()}")
    return labels


def _check_model(model, what):
    if not isinstance(model, Layer):
        raise TypeError(f"{what}: model must be a bpcore Layer, got {type(model).__name__}")


def _class_colors(k):
    """k distinguishable colours (tab10, tab20, then a continuous map)."""
    _require_matplotlib()
    from matplotlib import colormaps

    if k <= 10:
        return [colormaps["tab10"](i) for i in range(k)]
    if k <= 20:
        return [colormaps["tab20"](i) for i in range(k)]
    return [colormaps["viridis"](i / (k - 1)) for i in range(k)]


# -- decision boundary ---------------------------------------------------------------
def decision_boundary(model, X, y, resolution: int = 200, title=None, path=None):
    """The model's decision regions over the plane, with the data points on top.

    Args:
        model: a bpcore model taking 2 input features; one output column (binary, logits)
            or k columns (k-class, logits).
        X: the points, shape (n, 2): host NumPy or any backend's array.
        y: their class labels, shape (n,) or (n, 1) (or one-hot (n, k)).
        resolution: grid points per axis; the grid spans the data plus a 10% margin.
        title: the axes title (default: "decision boundary").
        path: where to save a PNG (optional).
    Returns:
        The Figure. Binary: a filled contour of p(class 1) with the p = 0.5 line drawn;
        multi-class: the argmax region of each class. The points are coloured by class.
    """
    what = "decision_boundary"
    _check_model(model, what)
    X = _host(X, f"{what}: X")
    if X.ndim != 2 or X.shape[1] != 2 or X.shape[0] == 0:
        raise ValueError(f"{what}: X must have shape (n, 2) with n >= 1 (two features to draw "
                         f"in the plane), got {tuple(X.shape)}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{what}: X contains NaN or infinite values")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"{what}: resolution must be an int >= 2, got {resolution!r}")
    labels = _labels(y, X.shape[0], what)

    low, high = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
    span = np.where(high > low, high - low, 1.0)
    low, high = low - 0.1 * span, high + 0.1 * span
    xs, ys = np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    probs = np.asarray(_train().predict(model, grid, probabilities=True), dtype=np.float64)
    probs = probs.reshape(grid.shape[0], -1)
    n_out = probs.shape[1]
    n_classes = max(2 if n_out == 1 else n_out, int(labels.max()) + 1)
    colors = _class_colors(n_classes)

    fig = _figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot()
    if n_out == 1:
        p = probs[:, 0].reshape(gx.shape)
        filled = ax.contourf(gx, gy, p, levels=np.linspace(0.0, 1.0, 11), cmap="RdBu_r", alpha=0.75,
                             vmin=0.0, vmax=1.0)
        if p.min() < 0.5 < p.max():
            ax.contour(gx, gy, p, levels=[0.5], colors="k", linewidths=1.5)
        fig.colorbar(filled, ax=ax, label="p(class 1)")
        colors = ["#2166ac", "#b2182b"] + colors[2:]
    else:
        from matplotlib.colors import ListedColormap

        region = np.argmax(probs, axis=1).reshape(gx.shape)
        ax.contourf(gx, gy, region, levels=np.arange(n_out + 1) - 0.5,
                    cmap=ListedColormap(colors[:n_out]), alpha=0.3)
        ax.contour(gx, gy, region, levels=np.arange(n_out - 1) + 0.5, colors="k", linewidths=0.8)
    for k in np.unique(labels):
        mine = labels == k
        ax.scatter(X[mine, 0], X[mine, 1], s=18, color=colors[k], edgecolors="white", linewidths=0.6,
                   label=f"class {k}", zorder=3)
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(title if title is not None else "decision boundary")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.85, markerscale=1.5)
    return _finish(fig, path)


# -- training curves -------------------------------------------------------------------
def _history_dict(history, what):
    """(per-epoch lists by key, epoch numbers from 1) from a History or a dict of lists."""
    train = _train()
    if isinstance(history, train.History):
        logs = history.history
        epochs = [e + 1 for e in history.epochs] if history.epochs else None
    elif isinstance(history, Mapping):
        logs, epochs = history, None
    else:
        raise TypeError(f"{what}: history must be a bp.History (from bp.fit) or a dict of per-epoch "
                        f"lists, got {type(history).__name__}")
    if "loss" not in logs:
        raise ValueError(f"{what}: the history has no 'loss' (keys: {sorted(logs) or 'none'}); "
                         f"pass the History that bp.fit returned")
    n = len(logs["loss"])
    if n == 0:
        raise ValueError(f"{what}: the history holds no epochs")
    for key in ("val_loss", "accuracy", "val_accuracy"):
        if key in logs and len(logs[key]) != n:
            raise ValueError(f"{what}: history[{key!r}] has {len(logs[key])} values but 'loss' has {n}")
    if epochs is None or len(epochs) != n:
        epochs = list(range(1, n + 1))
    return logs, epochs


def curves(history, path=None):
    """Loss and accuracy per epoch, training and validation, side by side.

    Args:
        history: the :class:`~bpcore.train.History` from ``bp.fit`` (or a dict of per-epoch
            lists): "loss" is required; "val_loss", "accuracy", "val_accuracy" are drawn
            when present.
        path: where to save a PNG (optional).
    Returns:
        The Figure: the loss on a log scale (left; linear if a loss is <= 0) and, when the
        history has accuracies, the accuracy (right); x is the epoch number from 1.
    """
    logs, epochs = _history_dict(history, "curves")
    has_accuracy = "accuracy" in logs or "val_accuracy" in logs
    fig = _figure(figsize=(11.0 if has_accuracy else 6.0, 4.0))
    panels = [("loss", "loss")] + ([("accuracy", "accuracy")] if has_accuracy else [])
    marker = "o" if len(epochs) <= 30 else None
    for i, (key, label) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        values = []
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            if name in logs:
                series = np.asarray(logs[name], dtype=np.float64)
                values.append(series)
                ax.plot(epochs, series, style, marker=marker, markersize=3,
                        label="validation" if name.startswith("val_") else "training")
        if key == "loss":
            every = np.concatenate(values)
            if np.all(every[np.isfinite(every)] > 0):
                ax.set_yscale("log")
                label = "loss (log scale)"
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(key)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    return _finish(fig, path)


# -- gradient flow -----------------------------------------------------------------------
def _weight_grad_norms(source, epoch, what):
    """[(parameter name, |dL/dW|)] from the input layer to the output layer."""
    train = _train()
    if isinstance(source, train.History):
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


def gradient_flow(source, epoch: int = 0, path=None, title=None):
    """|dL/dW| of each weight matrix as bars on a log scale, layer 1 next to the input.

    Args:
        source: one of
            - a :class:`~bpcore.train.History`: its ``grad_norms`` of the ".W" parameters
              (measured after the last batch of epoch ``epoch``);
            - a model after a backward pass: the norms of its ".W" parameters' ``.grad``;
            - a dict {label: History or model}: grouped bars, one colour per entry and one
              group per layer, to compare networks (sigmoid vs ReLU, ...).
        epoch: which epoch of a History (0 = the first; -1 = the last); ignored for models.
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
        kinds = {type(item).__name__ for item in (source.values() if isinstance(source, Mapping) else [source])}
        title = ("weight gradient norm per layer" + (f" (epoch {epoch})" if "History" in kinds else ""))
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


# -- confusion matrix ------------------------------------------------------------------------
def confusion_matrix(model, X, y, classes=None, path=None):
    """Counts of (true class, predicted class) as an annotated heat map.

    Args:
        model: a bpcore classifier: k output columns (prediction = argmax), or one column
            (binary logits: prediction = p > 0.5).
        X: inputs the model takes, (n, features); host NumPy or on the model's device.
        y: true labels, shape (n,) or (n, 1) (or one-hot (n, k)).
        classes: names for the classes (default 0, 1, ...), as many as there are classes.
        path: where to save a PNG (optional).
    Returns:
        The Figure, rows = true class, columns = predicted; the matrix itself is
        ``fig.confusion``, an int64 NumPy array (k, k) summing to n.
    """
    what = "confusion_matrix"
    _check_model(model, what)
    probs = np.asarray(_train().predict(model, X, probabilities=True))
    n = probs.shape[0]
    labels = _labels(y, n, what)
    probs = probs.reshape(n, -1)
    predicted = (probs[:, 0] > 0.5).astype(np.int64) if probs.shape[1] == 1 else np.argmax(probs, axis=1)
    k = max(2 if probs.shape[1] == 1 else probs.shape[1], int(labels.max(initial=0)) + 1)
    if classes is None:
        classes = [str(c) for c in range(k)]
    else:
        classes = [str(c) for c in classes]
        if len(classes) != k:
            raise ValueError(f"{what}: classes must name all {k} classes, got {len(classes)} names")
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)

    size = max(4.5, 0.55 * k + 2.5)
    fig = _figure(figsize=(size + 0.8, size))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="count")
    top = matrix.max() if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=9 if k <= 12 else 7,
                color="white" if count > top / 2 else "black")
    ax.set_xticks(range(k), classes)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(matrix) / n if n else float("nan")
    ax.set_title(f"confusion matrix: accuracy {accuracy:.3f} (n = {n})")
    fig.confusion = matrix
    return _finish(fig, path)


def neural_flow(recorder, path, title: str = "Neural Flow") -> str:
    """Write the animated Neural Flow page of a :class:`bpcore.FlowRecorder` to ``path``.

    The same as ``recorder.save_html(path, title)``: one self-contained HTML file (no
    network, no matplotlib needed) showing the recorded forward values and gradients.
    Returns the path.
    """
    from .flow import FlowRecorder

    if not isinstance(recorder, FlowRecorder):
        raise TypeError(f"neural_flow expects a bp.FlowRecorder, got {type(recorder).__name__}")
    return recorder.save_html(path, title=title)
