"""Pictures of the lessons: decision boundaries, training curves, confusion matrices.

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

from collections.abc import Mapping

import numpy as np

from ..training import History, predict
from ._plot import _check_model, _class_colors, _figure, _finish, _host, _labels

__all__ = ["confusion_matrix", "curves", "decision_boundary"]


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
        The Figure. Binary: a filled contour of p(class 1) with the p = 0.5 line drawn (and named
        in the legend and on the colour bar); multi-class: the argmax region of each class. The
        points are coloured by their true class with a black edge, one marker per class; each
        point the model gets wrong is ringed (``fig.misclassified`` counts them).
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
    probs = np.asarray(predict(model, grid, probabilities=True), dtype=np.float64)
    probs = probs.reshape(grid.shape[0], -1)
    n_out = probs.shape[1]
    n_classes = max(2 if n_out == 1 else n_out, int(labels.max()) + 1)
    colors = _class_colors(n_classes)

    fig = _figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot()
    extra = []                                      # legend entries beside the classes
    if n_out == 1:
        p = probs[:, 0].reshape(gx.shape)
        filled = ax.contourf(gx, gy, p, levels=np.linspace(0.0, 1.0, 11), cmap="RdBu_r", alpha=0.55,
                             vmin=0.0, vmax=1.0)
        bar = fig.colorbar(filled, ax=ax, label="p(class 1)")
        if p.min() < 0.5 < p.max():
            ax.contour(gx, gy, p, levels=[0.5], colors="k", linewidths=1.5)
            bar.ax.axhline(0.5, color="k", linewidth=1.5)
            from matplotlib.lines import Line2D

            extra.append(Line2D([], [], color="k", linewidth=1.5, label="p = 0.5 (decision boundary)"))
        colors = ["#2166ac", "#b2182b"] + colors[2:]
        predicted = (np.asarray(predict(model, X, probabilities=True)).reshape(-1) > 0.5).astype(np.int64)
    else:
        from matplotlib.colors import ListedColormap

        region = np.argmax(probs, axis=1).reshape(gx.shape)
        ax.contourf(gx, gy, region, levels=np.arange(n_out + 1) - 0.5,
                    cmap=ListedColormap(colors[:n_out]), alpha=0.3)
        ax.contour(gx, gy, region, levels=np.arange(n_out - 1) + 0.5, colors="k", linewidths=0.8)
        predicted = np.argmax(np.asarray(predict(model, X, probabilities=True)).reshape(X.shape[0], -1), axis=1)
    # points: the class colour with a black edge (a correct point would vanish into a region of its
    # own colour otherwise), one marker per class, and a ring around each misclassified point
    markers = "os^Dv<>p*hX"
    for k in np.unique(labels):
        mine = labels == k
        ax.scatter(X[mine, 0], X[mine, 1], s=22, color=colors[k], marker=markers[k % len(markers)],
                   edgecolors="black", linewidths=0.6, label=f"class {k}", zorder=3)
    wrong = predicted != labels
    if wrong.any():
        ax.scatter(X[wrong, 0], X[wrong, 1], s=110, facecolors="none", edgecolors="black", linewidths=1.4,
                   label=f"misclassified ({int(wrong.sum())})", zorder=4)
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(title if title is not None else "decision boundary")
    handles, _ = ax.get_legend_handles_labels()
    handles += extra            # under the axes: on them, the legend would hide points
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8,
               frameon=False)
    fig.misclassified = int(wrong.sum())
    return _finish(fig, path)


# -- training curves -------------------------------------------------------------------
def _history_dict(history, what):
    """(per-epoch lists by key, epoch numbers from 1) from a History or a dict of lists."""
    if isinstance(history, History):
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
        history: the :class:`~bpcore.History` from ``bp.fit`` (or a dict of per-epoch
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
    probs = np.asarray(predict(model, X, probabilities=True))
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
