"""What every figure shares: matplotlib on demand, a Figure, saving it, host arrays, labels, colours.

matplotlib is the optional "viz" extra: nothing here imports it until a figure is drawn,
and each entry point raises an ImportError naming the extra when it is missing.
"""
from __future__ import annotations

import functools
import io
import os

import numpy as np

import backends

from .._checks import output_path
from ..nn.module import Layer

_DPI = 100


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
    kwargs.setdefault("layout", "constrained")
    return _notebook_figure_class()(**kwargs)


@functools.cache
def _notebook_figure_class():
    """matplotlib's Figure, plus the PNG a notebook asks for: bpcore draws without pyplot (no
    global state, no display), so no backend registers a way to show its figures; with
    ``_repr_png_`` a figure returned by ``bp.viz.curves(hist)`` shows itself in Jupyter as it is
    saved (same dpi, tight box)."""
    from matplotlib.figure import Figure

    class NotebookFigure(Figure):
        def _repr_png_(self):
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
            return buffer.getvalue()

    return NotebookFigure


def _finish(fig, path):
    """Save ``fig`` to ``path`` (PNG unless the name says otherwise), creating folders; return fig."""
    if path is not None:
        path = output_path("figure", path)             # the folder is created, as for every writer
        fmt = None if os.path.splitext(path)[1] else "png"
        fig.savefig(path, dpi=_DPI, bbox_inches="tight", format=fmt)
    return fig


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
