"""Gradient health: is this net able to learn, and if not, why? (diagnose, GradientHealth).

The three failures of hand-built backprop the lessons are about, measured from what the
layers already compute:

- vanishing gradients: each sigmoid passes back at most 0.25 of the signal (its slope
  peaks at 0.25), so after k sigmoids the first layers' gradient is ~0.25^k of the last's;
- dead ReLUs: a unit whose input is negative for every sample has slope 0 everywhere and
  never learns again;
- bad initialization: weights far from the He (sqrt(2/fan_in), for ReLU) or Xavier
  (sqrt(1/fan_in), for sigmoid/tanh) scale make activations explode or vanish layer by layer.

``diagnose`` runs one forward and backward pass on a *copy* of the model (a deep copy:
parameters, gradients, buffers, caches, mode and random streams of the model stay
bitwise as they were) and brings every number to the host in one transfer.
"""
from __future__ import annotations

import copy
import math

from ..nn.parameter import own_parameters
from .inputs import _check_common, _prepare

# Thresholds of the warnings (module constants, so a learner can read and change them).
# "Vanishing" has one definition in bpcore, used by diagnose, GradientHealth, bp.viz.health and
# examples/vanishing_gradients.py: a weight whose gradient is below 1% of the last layer's
# (is_vanishing). Why 1%: one learning rate moves that layer 100x slower than the last; and each
# sigmoid passes back at most 0.25, so the activations alone bound a plain sigmoid net's first
# layer by 0.25^k after k sigmoids: 0.0625 (2), 0.0156 (3), 0.0039 (4). From four sigmoids on the
# bound is below the line, where the lessons' nets sit (5 and 19 sigmoids), while ReLU + He,
# BatchNorm and residual nets stay above it (docs/guide/gradient_health.md gives the numbers).
VANISHING_RATIO = 1e-2      # a weight's gradient below this fraction of the last layer's
EXPLODING_RATIO = 1e4       # ... or above this multiple of it
DEAD_FRACTION = 0.5         # ReLU units zero for the whole batch
SATURATED_FRACTION = 0.5    # sigmoid/tanh entries whose slope is below 1% of its maximum
INIT_FACTOR = 3.0           # weight std this many times above (or below 1/x) the He/Xavier value
SATURATION_SLOPE = 0.01     # "saturated": derivative below 1% of the maximum (0.25 sigmoid, 1 tanh)

_RELU_LIKE = ("ReLU", "LeakyReLU", "GELU")


def is_vanishing(ratio) -> bool:
    """bpcore's one definition of a vanishing gradient: ``ratio`` = |dL/dW| / |dL/dW| of the last
    weight layer, below :data:`VANISHING_RATIO` (1e-2). None or NaN (no gradient to compare) is not."""
    return ratio is not None and math.isfinite(ratio) and ratio < VANISHING_RATIO


def is_exploding(ratio) -> bool:
    """A weight's gradient above :data:`EXPLODING_RATIO` times the last weight layer's."""
    return ratio is not None and math.isfinite(ratio) and ratio > EXPLODING_RATIO
_SQUASHING = ("Sigmoid", "Tanh")
_ACTIVATIONS = _RELU_LIKE + _SQUASHING + ("Softmax", "Identity")


class LayerHealth:
    """One row of a :class:`HealthReport`: one leaf layer (a layer with no layers inside).

    Attributes (None where it does not apply to the layer):
        layer: dotted path ("0", "2.block.0"); kind: the class name ("Linear", "ReLU").
        act_mean, act_std: mean and std of the layer's output over the batch.
        dead: fraction of ReLU units that are zero for every sample of the batch.
        saturated: fraction of sigmoid/tanh outputs whose slope is below 1% of its maximum.
        grad_out_norm: |dL/d(output)| of the layer.
        param: the weight the gradient columns are about ("0.W"); grad_norm: |dL/dW|;
        ratio: grad_norm / the last layer's grad_norm.
        weight_std, init_std, init_name, fan_in: std of W against the He or Xavier std for fan_in.
    """

    _FIELDS = ("layer", "kind", "act_mean", "act_std", "dead", "saturated", "grad_out_norm", "param",
               "grad_norm", "ratio", "weight_std", "init_std", "init_name", "fan_in")

    def __init__(self, **values):
        for name in self._FIELDS:
            setattr(self, name, values.get(name))
        self.in_residual = values.get("in_residual", False)

    def __repr__(self):
        return f"LayerHealth({self.layer!r}, {self.kind})"


class HealthReport:
    """What :func:`diagnose` found: ``rows`` (one :class:`LayerHealth` per layer), ``loss``,
    ``warnings`` (plain sentences naming the layer, the number and a cure), ``vanishing`` (the
    weights whose gradient is below :data:`VANISHING_RATIO` of the last layer's, e.g. ["0.W"]);
    ``print`` gives a table."""

    def __init__(self, rows, loss, batch_size):
        self.rows, self.loss, self.batch_size = rows, loss, batch_size
        self.warnings = _warnings(rows)

    @property
    def vanishing(self) -> list:
        """Names of the weights (not the last) whose gradient ratio :func:`is_vanishing`, input side first."""
        return [r.param for r in _weighted(self.rows)[:-1] if is_vanishing(r.ratio)]

    def __getitem__(self, layer):
        for row in self.rows:
            if row.layer == layer:
                return row
        raise KeyError(f"HealthReport has no layer {layer!r}; it has {[row.layer for row in self.rows]}")

    def __str__(self):
        head = (f"{'layer':<12}{'kind':<10}{'act mean':>10}{'act std':>10}{'dead':>7}{'satur.':>8}"
                f"{'|dL/dout|':>11}{'|dL/dW|':>11}{'/last':>10}{'W std':>9}{'init std':>14}")
        lines = [f"gradient health on {self.batch_size} samples (loss {self.loss:.4g})", head, "-" * len(head)]
        for r in self.rows:
            init = f"{r.init_std:.3g} {r.init_name}" if r.init_std is not None else ""
            lines.append(f"{r.layer:<12}{r.kind[:9]:<10}{r.act_mean:>10.3g}{r.act_std:>10.3g}{_pct(r.dead):>7}"
                         f"{_pct(r.saturated):>8}{r.grad_out_norm:>11.2e}{_num(r.grad_norm, '.2e'):>11}"
                         f"{_num(r.ratio, '.1e'):>10}{_num(r.weight_std, '.3g'):>9}{init:>14}")
        lines.append("warnings:" if self.warnings else "no warnings: gradients reach every layer, "
                     "no dead or saturated units, weights at the He/Xavier scale")
        lines.extend(f"  - {w}" for w in self.warnings)
        return "\n".join(lines)

    def __repr__(self):
        return f"HealthReport({len(self.rows)} layers, {len(self.warnings)} warnings)"


def _pct(value):
    return "" if value is None else f"{value:.0%}"


def _num(value, spec):
    return "" if value is None else format(value, spec)


def diagnose(model, loss_fn, X, y, batch_size: int = 256) -> HealthReport:
    """One forward and backward pass on the first ``batch_size`` samples: a report, not a step.

    Args:
        model: a bpcore Layer; loss_fn: a bpcore loss; X: (n, features), y: targets for loss_fn
            (host NumPy or on the model's device); batch_size: samples used (at most n).
    Returns:
        A :class:`HealthReport`. The pass runs in training mode (BatchNorm uses batch
        statistics, as in fit) on a deep copy, so ``model`` and ``loss_fn`` are left bitwise
        unchanged: parameters, gradients, buffers, caches, mode and random streams.
    Raises:
        TypeError: model or loss_fn is not a bpcore one, X or y is not an array.
        ValueError: batch_size is not a positive int, X and y disagree, or hold NaN/Inf.
    """
    _check_common(model, loss_fn, batch_size)
    probe, probe_loss = copy.deepcopy(model), copy.deepcopy(loss_fn)
    X, y = _prepare(probe, probe_loss, X, y, "diagnose")     # on the copy: its forward fills caches
    n = min(batch_size, X.shape[0])
    values, layout = _measure(probe, probe_loss, X[:n, ...], y[:n, ...])
    xp = probe.xp
    with probe.device.activate():                          # stack on the model's device (cuda:N)
        host = probe.device.to_numpy(xp.stack(values)).astype("float64").tolist()
    return HealthReport(_rows(layout, host), host[0], n)


def _leaves(model):
    """[(path, layer, inside a Residual)] of the layers with no layers inside, in forward order."""
    found = []

    def walk(layer, path, in_residual):
        children = layer.children()
        if not children:
            found.append((path or type(layer).__name__, layer, in_residual))
        for name, child in children:
            walk(child, f"{path}.{name}" if path else name, in_residual or type(layer).__name__ == "Residual")

    walk(model, "", False)
    return found


def _weight(layer):
    """(name, Parameter) the gradient columns describe: W if the layer has one, else its first."""
    own = own_parameters(layer)
    for name, p in own:
        if name == "W":
            return name, p
    return own[0] if own else (None, None)


def _measure(probe, loss_fn, x_batch, y_batch):
    """Forward and backward through ``probe`` (a copy: its layers' methods are wrapped to record).

    Returns (values, layout): 0-d device arrays, the loss first, and per leaf layer the names of
    its values in order; nothing is moved to the host here (callers stack and transfer once).
    """
    xp = probe.xp
    leaves = _leaves(probe)
    outputs, grad_outs = {}, {}
    for path, layer, _ in leaves:
        layer.forward = _recording(layer.forward, outputs, path)
        layer.backward = _recording(layer.backward, grad_outs, path, record_argument=True)
        layer.backward_params = _recording(layer.backward_params, grad_outs, path, record_argument=True)
    probe.train()
    probe.zero_grad()
    with probe.device.activate(), probe.device.quiet_floating_point():
        loss = loss_fn.forward(probe.forward(x_batch), y_batch)
        probe.backward_params(loss_fn.backward())      # dL/dX of the data is not needed (one matmul less)
        dtype = probe.device.dtype(probe.dtype)       # not x_batch's: integer indices for an Embedding
        values, layout = [xp.astype(loss, dtype)], []
        for path, layer, in_residual in leaves:
            out = outputs[path]
            flat = xp.reshape(out, (out.shape[0], -1))
            entry = {"layer": path, "kind": type(layer).__name__, "in_residual": in_residual, "names": []}

            def add(name, value, entry=entry):
                entry["names"].append(name)
                values.append(xp.astype(value, dtype))

            add("act_mean", xp.mean(flat))
            add("act_std", xp.std(flat))
            if entry["kind"] == "ReLU":          # dead: zero for every sample of the batch
                alive = xp.astype(xp.any(flat > 0, axis=0), flat.dtype)
                add("dead", 1.0 - xp.mean(alive))
            elif entry["kind"] in _SQUASHING:     # slope y(1-y) <= 0.25 (sigmoid), 1 - y^2 <= 1 (tanh)
                slope = flat * (1.0 - flat) / 0.25 if entry["kind"] == "Sigmoid" else 1.0 - flat * flat
                add("saturated", xp.mean(xp.astype(slope < SATURATION_SLOPE, flat.dtype)))
            grad = xp.reshape(grad_outs.get(path, xp.zeros_like(out)), (-1,))
            add("grad_out_sq", grad @ grad)
            name, weight = _weight(layer)
            if weight is not None:
                entry["param"] = f"{path}.{name}"
                g = xp.reshape(weight.grad, (-1,))
                add("grad_sq", g @ g)
                if weight.data.ndim == 2:         # W: (fan_in, fan_out)
                    entry["fan_in"] = int(weight.data.shape[0])
                    add("weight_std", xp.std(weight.data))
            layout.append(entry)
    return values, layout


def _recording(method, store, path, record_argument=False):
    def recorded(value):
        result = method(value)
        store[path] = value if record_argument else result
        return result
    return recorded


def _rows(layout, host):
    """LayerHealth rows from the layout and the host numbers (loss first)."""
    position, rows = 1, []
    for entry in layout:
        got = dict(zip(entry["names"], host[position:position + len(entry["names"])]))
        position += len(entry["names"])
        rows.append(LayerHealth(layer=entry["layer"], kind=entry["kind"], in_residual=entry["in_residual"],
                                act_mean=got["act_mean"], act_std=got["act_std"], dead=got.get("dead"),
                                saturated=got.get("saturated"), grad_out_norm=math.sqrt(got["grad_out_sq"]),
                                param=entry.get("param"),
                                grad_norm=math.sqrt(got["grad_sq"]) if "grad_sq" in got else None,
                                weight_std=got.get("weight_std"), fan_in=entry.get("fan_in")))
    weighted = [r for r in rows if r.weight_std is not None]
    last = weighted[-1].grad_norm if weighted else None
    for row in rows:
        if row.grad_norm is not None and last:
            row.ratio = row.grad_norm / last
    _set_init_reference(rows)
    return rows


def weight_rows(model):
    """Rows holding only the weight std and its He/Xavier reference (host copies of the weights):
    what GradientHealth judges the initialization by, before the first step."""
    rows = []
    for path, layer, in_residual in _leaves(model):
        name, weight = _weight(layer)
        row = LayerHealth(layer=path, kind=type(layer).__name__, in_residual=in_residual)
        if weight is not None and weight.data.ndim == 2:
            row.param, row.fan_in = f"{path}.{name}", int(weight.data.shape[0])
            row.weight_std = float(layer.device.to_numpy(weight.data).astype("float64").std())
        rows.append(row)
    return _set_init_reference(rows)


def _set_init_reference(rows):
    for i, row in enumerate(rows):
        if row.fan_in is not None:
            follows = _next_activation(rows[i + 1:])
            he = follows in _RELU_LIKE
            row.init_name = "He" if he else "Xavier"
            row.init_std = math.sqrt((2.0 if he else 1.0) / row.fan_in)
    return rows


def _next_activation(rows_after):
    """The kind of the first activation after a weight layer, or None if another weight comes first."""
    for row in rows_after:
        if row.kind in _ACTIVATIONS:
            return row.kind
        if row.weight_std is not None:
            return None
    return None


def _weighted(rows) -> list:
    """The rows of weight layers that have a gradient ratio, input side first."""
    return [r for r in rows if r.ratio is not None and r.weight_std is not None]


def _warnings(rows) -> list:
    """Plain sentences: the layer, the number, and a cure from the lessons."""
    said = []
    weighted = [(i, r) for i, r in enumerate(rows) if r.ratio is not None and r.weight_std is not None]
    finite = [(i, r) for i, r in weighted[:-1] if math.isfinite(r.ratio)]
    if finite:
        i, worst = min(finite, key=lambda item: item[1].ratio)
        if is_vanishing(worst.ratio):
            others = [r.param for _, r in finite if is_vanishing(r.ratio) and r is not worst]
            listed = ", ".join(others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
            also = f"; so are {listed}" if others else ""
            said.append(f"layer {worst.param}: gradient {worst.ratio:.1e} of the last layer's (vanishing: "
                        f"below {VANISHING_RATIO:g}{also}): {_vanish_cause(rows[i + 1:])}")
        i, worst = max(finite, key=lambda item: item[1].ratio)
        if is_exploding(worst.ratio):
            said.append(f"layer {worst.param}: gradient {worst.ratio:.1e} times the last layer's: gradients "
                        f"explode on the way back; use He (ReLU) or Xavier (sigmoid/tanh) init for the "
                        f"fan_in, BatchNorm, or clip gradients (bp.optim.clip_grad_norm_)")
    for r in rows:
        if r.dead is not None and r.dead >= DEAD_FRACTION:
            said.append(f"layer {r.layer} (ReLU): {r.dead:.0%} of units are dead on this batch; "
                        f"lower the learning rate, use LeakyReLU, or He init")
        if r.saturated is not None and r.saturated >= SATURATED_FRACTION:
            said.append(f"layer {r.layer} ({r.kind}): {r.saturated:.0%} of units are saturated (slope below 1% "
                        f"of its maximum); scale the inputs, use Xavier init or BatchNorm, or ReLU")
    said.extend(_init_warnings(rows))
    return said


def _init_warnings(rows) -> list:
    said = []
    for r in rows:
        if r.init_std is None or not math.isfinite(r.weight_std):
            continue
        factor = r.weight_std / r.init_std
        if factor > INIT_FACTOR:
            effect = "activations will explode" if r.init_name == "He" else "units will saturate"
            said.append(f"layer {r.param}: weight std {r.weight_std:.2g}, {factor:.0f}x the {r.init_name} value "
                        f"for fan_in {r.fan_in}: {effect}; initialize with std {r.init_std:.2g} "
                        f"({'sqrt(2/fan_in)' if r.init_name == 'He' else 'sqrt(1/fan_in)'})")
        elif factor < 1.0 / INIT_FACTOR and not r.in_residual:    # small residual branches are a cure (Fixup)
            said.append(f"layer {r.param}: weight std {r.weight_std:.2g}, {factor:.2g}x the {r.init_name} value "
                        f"for fan_in {r.fan_in}: activations and gradients will vanish; initialize with std "
                        f"{r.init_std:.2g} ({'sqrt(2/fan_in)' if r.init_name == 'He' else 'sqrt(1/fan_in)'})")
    return said


def _vanish_cause(rows_after) -> str:
    kinds = [r.kind for r in rows_after]
    sigmoids, tanhs = kinds.count("Sigmoid"), kinds.count("Tanh")
    cure = "use ReLU with He init, BatchNorm, or residual connections"
    if sigmoids and not tanhs:
        return f"gradients vanish through {sigmoids} sigmoids (each passes at most 0.25); {cure}"
    if sigmoids + tanhs:
        return (f"gradients vanish through {sigmoids + tanhs} sigmoid/tanh layers (each passes at most "
                f"0.25 or 1, less when saturated); {cure}")
    depth = sum(1 for r in rows_after if r.weight_std is not None)
    return (f"gradients shrink through {depth} weight layers; check the weight scale (He init for ReLU, "
            f"Xavier for sigmoid/tanh), or use BatchNorm or residual connections")
