"""FlowRecorder: snapshots of a network during ``fit``, for the Neural Flow page.

    rec = bp.FlowRecorder(X_probe, y_probe, every=5)
    bp.fit(model, loss_fn, opt, X, y, epochs=300, callbacks=[rec])
    rec.save_html("flow.html")               # or bp.viz.neural_flow(rec, "flow.html")

At the start of training, every ``every`` epochs and at the end, the recorder
stores as host NumPy: each Linear layer's weights and biases, the value of
every neuron for a few probe inputs (forward), the gradient of the loss with
respect to every Linear layer's output and weights for those probes
(backward), and the epoch's loss and accuracy. One device-to-host copy per
snapshot, none per batch.

The network is drawn in columns: the inputs, then one column per Linear layer,
whose neurons show the output of the layers that follow it (its activation,
BatchNorm, Dropout) up to the next Linear. Models must be a Sequential of such
layers (Residual blocks cannot be drawn as columns).

Memory is bounded: at most ``max_snapshots`` snapshots are kept (default 200).
When one more would exceed it, every other stored snapshot is dropped (the
first and the newest are kept) and ``every`` doubles, so a long run keeps an
evenly spaced record. A 2-16-8-1 net with 4 probes takes about 5 kB per snapshot.
"""
from __future__ import annotations

import html
import math
import os

import numpy as np

import backends

from .._checks import check_int, output_path
from ..nn.containers import Residual, Sequential
from ..nn.linear import Linear
from ..losses import BCEWithLogitsLoss, SoftmaxCrossEntropyLoss
from ..nn.module import Layer
from ..training.callbacks import Callback
from .flow_page import render_html

_SIGNIFICANT = 4        # digits kept in the page's numbers: plenty for a picture, 1/3 of the size


class FlowRecorder(Callback):
    """Record weights, activations and gradients of probe inputs during ``fit``.

    Args:
        X_probe: a few inputs to follow through the network, (P, n_in); P of 1 to 16 is typical.
        y_probe: their targets for the loss (shape as the loss takes them). Without them the
            backward pass shows the gradient of the sum of the outputs instead of the loss.
        every: record every ``every`` epochs (plus the start and the end).
        max_snapshots: the memory cap (see the module docstring).
    Attributes:
        snapshots: list of dicts (host data), see :meth:`to_dict`.
    """

    def __init__(self, X_probe, y_probe=None, every: int = 5, max_snapshots: int = 200):
        every = check_int("FlowRecorder", "every", every)
        max_snapshots = check_int("FlowRecorder", "max_snapshots", max_snapshots, minimum=2)
        try:
            probes = _host(X_probe, "X_probe")
        except TypeError as error:
            raise TypeError(f"FlowRecorder: X_probe must be an array of inputs: {error}") from None
        if probes.ndim != 2 or len(probes) == 0:
            raise ValueError(f"FlowRecorder: X_probe must be (probes, features) with at least one probe, "
                             f"got shape {probes.shape}")
        self.X_probe = probes
        self.y_probe = None
        if y_probe is not None:
            self.y_probe = _host(y_probe, "y_probe")
            if len(self.y_probe) != len(probes):
                raise ValueError(f"FlowRecorder: {len(probes)} probes but {len(self.y_probe)} targets")
        self.every = every
        self.max_snapshots = max_snapshots
        self.thinned = False
        self.snapshots: list[dict] = []
        self._columns = None

    # -- the callback ----------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._columns = _columns(self.model)
        if self.X_probe.shape[1] != self._columns[0][0].n_in:
            raise ValueError(f"FlowRecorder: probes have {self.X_probe.shape[1]} features, the model takes "
                             f"{self._columns[0][0].n_in}")
        if not self.snapshots:
            self.record(epoch=self.history.epochs[-1] + 1 if self.history.epochs else 0)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self.record(epoch + 1, logs)

    def on_train_end(self, logs=None):
        completed = self.history.epochs[-1] + 1 if self.history.epochs else 0
        if self.snapshots[-1]["epoch"] != completed:
            self.record(completed, {key: values[-1] for key, values in self.history.history.items()})

    # -- recording ---------------------------------------------------------------------
    def record(self, epoch: int, logs=None) -> None:
        """Take one snapshot of the model now (``epoch`` = epochs completed)."""
        model = self.model
        if self._columns is None:
            self._columns = _columns(model)
        backend = model.device
        xp = model.xp
        saved_grads = [p._grad for p in model.parameters()]
        was_training = model.training
        model.eval()
        try:
            with backend.activate():               # outside fit too: compute on the model's GPU
                arrays = self._snapshot_arrays(model, xp)
                # one device-to-host copy per snapshot: every array flattened into one buffer
                sizes = [math.prod(a.shape) for a in arrays]
                flat = backend.to_numpy(xp.concat([xp.reshape(a, (-1,)) for a in arrays]))
        finally:
            model.train(was_training)
            for p, g in zip(model.parameters(), saved_grads):
                p._grad = g
        ends = np.cumsum(sizes)
        host = [flat[end - size:end].reshape(tuple(a.shape)) for a, size, end in zip(arrays, sizes, ends)]
        n = len(self._columns)
        values, grads = host[:n + 1], host[n + 1:2 * n + 1]
        weights, biases, weight_grads = host[2 * n + 1:3 * n + 1], host[3 * n + 1:4 * n + 1], host[4 * n + 1:]
        probes = range(len(self.X_probe))
        logs = logs or {}
        snapshot = {
            "epoch": int(epoch),
            "loss": _number(logs.get("loss")),
            "accuracy": _number(logs.get("accuracy")),
            "W": [_rounded(w) for w in weights],
            "b": [_rounded(b) for b in biases],
            "act": [[_rounded(v[i]) for v in values] for i in probes],
            "grad": [[_rounded(g[i]) for g in grads] for i in probes],
            "dW": [_rounded(g) for g in weight_grads],
        }
        if len(self.snapshots) >= self.max_snapshots:
            self._thin()
        self.snapshots.append(snapshot)

    def _snapshot_arrays(self, model, xp):
        """[probe values per column, dL/dz per column, W, b, dW per Linear], on the device."""
        x = model.check_input(self.X_probe, what="FlowRecorder probes")
        column_values = [x]
        outputs = x
        for linear, followers in self._columns:
            outputs = linear.forward(outputs)
            for layer in followers:
                outputs = layer.forward(outputs)
            column_values.append(outputs)
        grad = self._output_gradient(outputs)
        for p in model.parameters():
            p.zero_grad()
        column_grads = []
        for linear, followers in reversed(self._columns):
            for layer in reversed(followers):
                grad = layer.backward(grad)
            column_grads.append(grad)                       # dL/dz at this Linear's output
            grad = linear.backward(grad)
        column_grads.reverse()
        biases = [lin.b.data if lin.b is not None
                  else xp.zeros(lin.n_out, dtype=lin.W.data.dtype, device=lin.W.data.device)
                  for lin, _ in self._columns]
        return (column_values + column_grads + [lin.W.data for lin, _ in self._columns] + biases
                + [lin.W.grad for lin, _ in self._columns])

    def _output_gradient(self, outputs):
        """dL/d(output) for the probes: from the fit's loss when targets were given."""
        xp = self.model.xp
        if self.y_probe is None or self.loss_fn is None:
            return xp.ones_like(outputs)
        self.loss_fn.forward(outputs, self.y_probe)
        return self.loss_fn.backward()

    def _thin(self):
        """Halve the record: keep the first snapshot and every other one after it."""
        first, rest = self.snapshots[0], self.snapshots[1:]
        self.snapshots = [first] + rest[1::2]
        self.every *= 2
        self.thinned = True

    # -- output ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The data the page draws (plain lists and numbers, JSON-able)."""
        if not self.snapshots:
            raise RuntimeError("FlowRecorder: nothing recorded yet; pass it to bp.fit(callbacks=[...])")
        names = ["input"] + [" + ".join([repr(lin)] + [type(f).__name__ for f in followers])
                             for lin, followers in self._columns]
        sizes = [self._columns[0][0].n_in] + [lin.n_out for lin, _ in self._columns]
        labels = None if self.y_probe is None else [str(_rounded(t)) for t in self.y_probe]
        return {"title": "Neural Flow", "sizes": sizes, "column_names": names,
                "output_activation": _output_activation(self.loss_fn),
                "probes": [_rounded(x) for x in self.X_probe], "probe_labels": labels,
                "every": self.every, "thinned": self.thinned, "max_snapshots": self.max_snapshots,
                "snapshots": self.snapshots,
                # [[epoch, sentence]] from a bp.GradientHealth in the same fit (drawn by the page: issue 19)
                "health_warnings": list(getattr(self.history, "health", {}).get("warnings", []))}

    def to_html(self, title: str = "Neural Flow") -> str:
        """The self-contained Neural Flow page as one HTML string."""
        data = self.to_dict()
        data["title"] = title
        return render_html(data, title=title)

    def _repr_html_(self) -> str:
        """In a notebook (Jupyter, VS Code, Colab) the recorder shows its page inline. The page runs
        in an iframe of its own (``srcdoc``), so its script and style cannot touch the notebook's."""
        if not self.snapshots:
            return "<p>FlowRecorder: nothing recorded yet; pass it to bp.fit(callbacks=[...])</p>"
        return InlinePage(self.to_html())._repr_html_()

    def save_html(self, path, title: str = "Neural Flow") -> str:
        """Write the self-contained Neural Flow page to ``path`` (atomically); returns the path."""
        page = self.to_html(title)
        path = output_path("save_html", path)          # the folder is created, as for every writer
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(page)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
        return path


def _host(values, what):
    """Probes or targets as a host array: from any backend, a host array, a list or a table."""
    if hasattr(values, "shape"):
        return backends.to_host(values)
    return backends.host_array_from(values, f"FlowRecorder: {what}")


def _columns(model: Layer):
    """[(Linear, [the layers after it up to the next Linear])] for a drawable model."""
    layers = model.layers if isinstance(model, Sequential) else [model]
    columns = []
    for position, layer in enumerate(layers):
        if isinstance(layer, (Residual, Sequential)):
            raise TypeError(f"FlowRecorder draws a Sequential of Linear layers and the layers after them; "
                            f"layer {position} is a {type(layer).__name__}")
        if isinstance(layer, Linear):
            columns.append((layer, []))
        elif not columns:
            raise TypeError(f"FlowRecorder: the model must start with a Linear layer, layer {position} is "
                            f"{type(layer).__name__}")
        else:
            columns[-1][1].append(layer)
    if not columns:
        raise TypeError("FlowRecorder: the model has no Linear layer to draw")
    return columns


def _output_activation(loss_fn):
    """What turns the model's output into a probability, for the page to show beside the logit."""
    if isinstance(loss_fn, BCEWithLogitsLoss):
        return "sigmoid"
    if isinstance(loss_fn, SoftmaxCrossEntropyLoss):
        return "softmax"
    return None


def _round(value: float):
    """4 significant digits; None for NaN or infinity (JSON has no such numbers)."""
    return float(f"{value:.{_SIGNIFICANT}g}") if math.isfinite(value) else None


def _number(value):
    return None if value is None else _round(float(value))


def _rounded(array):
    """Nested lists of rounded floats (JSON-able, about a third of the full size)."""
    if array.ndim == 0:
        return _round(float(array))
    if array.ndim == 1:
        return [_round(v) for v in array.tolist()]
    return [_rounded(row) for row in array]


class InlinePage:
    """A Neural Flow page that a notebook displays inline; ``.html`` is the page itself."""

    def __init__(self, page: str):
        self.html = page

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" title="Neural Flow" '
                f'style="width:100%;height:780px;border:0" sandbox="allow-scripts"></iframe>')


def neural_flow(recorder, path=None, title: str = "Neural Flow"):
    """The animated Neural Flow page of a :class:`bpcore.FlowRecorder`.

    With ``path``: the same as ``recorder.save_html(path, title)``, one self-contained HTML file
    (no network, no matplotlib needed) showing the recorded forward values and gradients; returns
    the path. Without it: returns an :class:`InlinePage`, which a notebook displays inline.
    """
    if not isinstance(recorder, FlowRecorder):
        raise TypeError(f"neural_flow expects a bp.FlowRecorder, got {type(recorder).__name__}")
    if path is None:
        return InlinePage(recorder.to_html(title))
    return recorder.save_html(path, title=title)
