"""Numerical gradient check: hand-written backward vs central differences.

For every parameter entry theta (and every input entry) the check compares
the analytic dL/dtheta from ``model.backward`` with

    (L(theta + eps) - L(theta - eps)) / (2 eps)

computed in float64 on a copy of the model, so the model itself is never
changed. Tensors larger than ``max_entries`` are checked on that many random
entries plus one directional check: for a random direction v,
(L(theta + eps v) - L(theta - eps v)) / (2 eps) must equal grad . v.

An entry passes when |analytic - numeric| <= atol + rtol * scale, where scale
is the largest gradient magnitude of that tensor. Kinks (ReLU at exactly 0)
are not differentiable; random inputs almost never land within eps of one.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import backends

from ._checks import check_finite
from .losses import Loss
from .nn import init as _init
from .nn.module import Layer


@dataclass
class GradcheckRow:
    """The result for one parameter (or the input)."""

    name: str
    shape: tuple
    checked: str
    max_abs_error: float
    max_rel_error: float
    passed: bool


@dataclass
class GradcheckReport:
    """Per-parameter results; ``print(report)`` shows the PASS/FAIL table."""

    rows: list = field(default_factory=list)
    eps: float = 1e-5
    atol: float = 1e-8
    rtol: float = 1e-5
    backend: str = ""

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    @property
    def max_abs_error(self) -> float:
        return max((row.max_abs_error for row in self.rows), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((row.max_rel_error for row in self.rows), default=0.0)

    def __str__(self):
        lines = [f"Gradient check on {self.backend} (float64 central differences, eps={self.eps:g}, "
                 f"pass if error <= {self.atol:g} + {self.rtol:g} * scale)",
                 f"{'name':<14}{'shape':<14}{'checked':<22}{'max abs error':>15}{'max rel error':>15}  status",
                 "-" * 88]
        for row in self.rows:
            lines.append(f"{row.name:<14}{str(row.shape):<14}{row.checked:<22}{row.max_abs_error:>15.2e}"
                         f"{row.max_rel_error:>15.2e}  {'PASS' if row.passed else 'FAIL'}")
        lines.append(f"overall: {'PASS' if self.passed else 'FAIL'} "
                     f"(max abs error {self.max_abs_error:.2e}, max rel error {self.max_rel_error:.2e})")
        return "\n".join(lines)


def gradcheck(model: Layer, loss_fn, x, y, eps: float = 1e-5, atol: float = 1e-8,
              rtol: float = 1e-5, max_entries: int = 200, seed: int = 0) -> GradcheckReport:
    """Check ``model.backward`` against central differences of ``loss_fn``.

    Args:
        model: any layer or Sequential; a float64 copy is checked, on the model's backend.
        loss_fn: a loss such as ``BCEWithLogitsLoss()``.
        x: input, shape (batch, n_in): host NumPy or an array on the model's backend. For a model
            that takes integer indices (an Embedding first: ``model.input_indices()``), the
            parameters are checked and the input is not (indices have no gradient).
        y: target for ``loss_fn``.
        eps: the central-difference step.
        atol, rtol: the pass bound, |analytic - numeric| <= atol + rtol * scale.
        max_entries: tensors with more entries are sampled (plus a directional check).
        seed: picks the sampled entries and the direction.
    Returns:
        A :class:`GradcheckReport` (``.passed``, ``.max_rel_error``, ``.max_abs_error``).
    """
    if not isinstance(model, Layer):
        raise TypeError(f"gradcheck: model must be a bpcore Layer, got {type(model).__name__}")
    if not isinstance(loss_fn, Loss):
        raise TypeError(f"gradcheck: loss_fn must be a bpcore loss such as MSELoss(), got {loss_fn!r}")
    for name, value in (("eps", eps), ("atol", atol), ("rtol", rtol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ValueError(f"gradcheck: {name} must be a finite number >= 0, got {value!r}")
    if eps == 0:
        raise ValueError("gradcheck: eps must be > 0")
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
        raise ValueError(f"gradcheck: max_entries must be a positive int, got {max_entries!r}")

    try:
        model = copy.deepcopy(model).astype("float64")      # the check runs on a float64 copy
    except TypeError as error:
        raise TypeError(f"gradcheck: making the float64 copy it checks: {error}") from None
    loss_fn = copy.deepcopy(loss_fn)
    backend = model.device
    bounds = _Bounds(eps, atol, rtol, max_entries)
    with backend.activate():            # every copy and perturbation on the model's GPU ("cuda:1")
        return _gradcheck(model, loss_fn, backend, x, y, bounds, seed)


@dataclass
class _Bounds:
    """How gradcheck differentiates and what it accepts (the arguments of the same names)."""

    eps: float
    atol: float
    rtol: float
    max_entries: int


_NON_FINITE_HINT = ("the loss at and around it is NaN, so every row would FAIL as if the backward were wrong; "
                    "check with finite data")


def _gradcheck(model, loss_fn, backend, x, y, bounds, seed):
    checked_x = model.check_input(_as_float64(backend, x), what="gradcheck input x")
    if backend.xp.isdtype(checked_x.dtype, "real floating"):
        check_finite(backend.xp, checked_x, "gradcheck: the input x", _NON_FINITE_HINT)
    inputs = [backend.asarray(backend.to_numpy(checked_x), copy=True)]   # perturbed in place below
    y = _as_float64(backend, y)
    if backends.is_host_array(y) and y.dtype.kind == "f":
        check_finite(backend.xp, backend.asarray(y), "gradcheck: the target y", _NON_FINITE_HINT)
    elif backend.owns(y) and backend.xp.isdtype(y.dtype, "real floating"):
        check_finite(backend.xp, y, "gradcheck: the target y", _NON_FINITE_HINT)

    # Layers that draw random numbers (Dropout in training) must draw the same ones at every
    # evaluation, or the differences would measure the noise: each starts from one saved state.
    random_layers = [layer for layer in model.modules() if hasattr(layer, "set_random_state")]
    for layer in random_layers:
        if getattr(layer, "seed", 0) is None:
            layer.seed = seed
        layer.set_random_state(layer.random_state())
    start_states = [layer.random_state() for layer in random_layers]

    def forward(x):
        for layer, state in zip(random_layers, start_states):
            layer.set_random_state(state)
        return model.forward(x)

    def loss_at() -> float:
        return float(loss_fn.forward(forward(inputs[0]), y))

    model.zero_grad()
    loss_fn.forward(forward(inputs[0]), y)
    grad_x = model.backward(loss_fn.backward())

    host_rng = _init.host_rng(seed)
    report = GradcheckReport(eps=bounds.eps, atol=bounds.atol, rtol=bounds.rtol, backend=backend.spec)
    targets = [(name, p, p.grad) for name, p in model.named_parameters()]
    if model.input_indices() is None:       # integer indices (an Embedding first) have no gradient
        if grad_x is None:
            raise TypeError(f"gradcheck: {model._name()}.backward returned None for a float input; it must "
                            f"return dL/dx (only a layer whose input_indices() is not None returns None)")
        targets.append(("input", None, grad_x))
    for name, parameter, analytic in targets:
        holder = _Holder(parameter, inputs)
        report.rows.append(_check_tensor(name, holder, backend.to_numpy(analytic), loss_at, backend,
                                         bounds, host_rng))
    return report


class _Holder:
    """Reads and replaces the array being perturbed: a parameter's data or the input."""

    def __init__(self, parameter, inputs):
        self.parameter, self.inputs = parameter, inputs

    def get(self):
        return self.parameter.data if self.parameter is not None else self.inputs[0]

    def set(self, array):
        if self.parameter is not None:
            self.parameter.data = array
        else:
            self.inputs[0] = array


def _as_float64(backend, value):
    if backends.is_host_array(value):
        return value.astype("float64") if value.dtype.kind == "f" else value
    if backend.owns(value) and backend.xp.isdtype(value.dtype, "real floating"):
        return backend.xp.astype(value, backend.dtype("float64"))
    return value


def _check_tensor(name, holder, analytic, loss_at, backend, bounds, host_rng):
    eps, atol, rtol, max_entries = bounds.eps, bounds.atol, bounds.rtol, bounds.max_entries
    array = holder.get()
    shape = tuple(array.shape)
    size = math.prod(shape)
    if size <= max_entries:
        flat_ids = range(size)
        checked = f"all {size}"
    else:
        flat_ids = sorted(host_rng.choice(size, size=max_entries, replace=False).tolist())
        checked = f"{max_entries} of {size} + dir."
    scale = float(abs(analytic).max()) if size else 0.0
    numeric_values, analytic_values = [], []
    for flat in flat_ids:
        index = _unravel(flat, shape)
        original = float(array[index])
        array[index] = original + eps
        loss_plus = loss_at()
        array[index] = original - eps
        loss_minus = loss_at()
        array[index] = original
        numeric_values.append((loss_plus - loss_minus) / (2 * eps))
        analytic_values.append(float(analytic[index]))
    errors = [abs(a - n) for a, n in zip(analytic_values, numeric_values)]
    scale = max([scale] + [abs(n) for n in numeric_values])
    max_abs = max(errors, default=0.0)
    passed = max_abs <= atol + rtol * scale
    if size > max_entries:
        # Directional check: the whole tensor moves along a random unit direction v.
        direction = host_rng.standard_normal(shape)
        direction /= math.sqrt(float((direction * direction).sum()))
        step = backend.asarray(direction * eps, dtype="float64")
        holder.set(array + step)
        loss_plus = loss_at()
        holder.set(array - step)
        loss_minus = loss_at()
        holder.set(array)
        numeric = (loss_plus - loss_minus) / (2 * eps)
        expected = float((analytic * direction).sum())
        dir_error = abs(numeric - expected)
        max_abs = max(max_abs, dir_error)
        passed = passed and dir_error <= atol + rtol * max(scale, abs(expected))
    # relative to the tensor's gradient scale; atol keeps an all-but-zero gradient
    # (a bias before BatchNorm) from turning rounding noise into a relative error of 1
    denominator = scale + atol
    max_rel = max_abs / denominator if denominator > 0 else (0.0 if max_abs == 0 else math.inf)
    return GradcheckRow(name, shape, checked, max_abs, max_rel, passed)


def _unravel(flat: int, shape: tuple) -> tuple:
    index = []
    for dim in reversed(shape):
        flat, rem = divmod(flat, dim)
        index.append(rem)
    return tuple(reversed(index))
