"""GradientHealth: diagnose's numbers every epoch of fit, in ``hist.health``, and a warning once per problem.

Each probed epoch the callback runs :func:`~bpcore.training.health.diagnose`'s pass on a copy of
the model (the first ``batch_size`` training samples) and hands fit its 0-d device arrays; fit
moves them to the host in the one transfer it makes per epoch anyway, so the callback adds no
per-batch work and no extra sync. The numbers land in ``hist.health`` (plain data, saved in
checkpoints and restored by ``resume``), the warnings go through Python's ``warnings`` and the
progress bar's description, each problem (layer and kind) once per history.
"""
from __future__ import annotations

import copy
import math
import warnings

from .._checks import check_int
from .callbacks import Callback
from .health import _init_warnings, _measure, _rows, _warnings, weight_rows

EXPLODING_GROWTH = 100.0     # total gradient norm up more than this factor ...
_FIELDS = ("act_mean", "act_std", "dead", "saturated", "grad_out_norm", "grad_norm", "ratio", "weight_std")
# the kinds of problem, in the order a sentence is matched ("weight std ... will explode" is init)
_PROBLEMS = {"weight std": "init", "dead": "dead", "saturated": "saturated", "vanish": "vanishing",
             "shrink": "vanishing", "explode": "exploding"}


class GradientHealthWarning(UserWarning):
    """A gradient health problem seen during fit (vanishing, exploding, dead, saturated, init)."""


class GradientHealth(Callback):
    """Per-epoch gradient health in ``hist.health`` and one warning per problem.

    Args:
        every: probe every ``every`` epochs (1: each epoch).
        batch_size: samples of the training data the probe uses (the first ones).
        window: epochs over which a total gradient norm growth above 100x counts as exploding.
    ``hist.health`` holds {"epochs": [...], "total_grad_norm": [...], "layers": {path: {"kind": ...,
    field: [one value per probed epoch]}}, "warnings": [[epoch, sentence], ...]}; fields are
    those of :class:`~bpcore.training.health.LayerHealth` (None where not finite). Epochs are
    numbered as fit's progress bar and the printed warnings number them: the number of epochs
    completed when the probe ran, so 1 is the end of the first epoch and 0 the initialization
    (judged before the first step).
    """

    def __init__(self, every: int = 1, batch_size: int = 256, window: int = 3):
        self.every = check_int("GradientHealth", "every", every)
        self.batch_size = check_int("GradientHealth", "batch_size", batch_size)
        self.window = check_int("GradientHealth", "window", window)
        self._layout = None

    def on_train_begin(self, logs=None):
        health = self.history.health
        for key, empty in (("epochs", []), ("total_grad_norm", []), ("layers", {}), ("warnings", [])):
            health.setdefault(key, empty)
        self._layout = None
        if not health["epochs"]:           # the weight scale is about initialization: judged before any step
            self._epoch = self.history.epochs[-1] + 1 if self.history.epochs else 0     # epochs completed
            self._say(_init_warnings(weight_rows(self.model)))

    # fit's hooks: the device values join the epoch's one transfer; the host values come back here.
    def _epoch_device_values(self, X, y, epoch):
        if epoch % self.every:
            self._layout = None
            return []
        n = min(self.batch_size, X.shape[0])
        probe, probe_loss = copy.deepcopy(self.model), copy.deepcopy(self.loss_fn)
        values, self._layout = _measure(probe, probe_loss, X[:n, ...], y[:n, ...])
        self._epoch = epoch + 1                 # fit's index 0 is "epoch 1" on the bar: epochs completed
        return values

    def _epoch_host_values(self, values):
        if self._layout is None:
            return
        rows = _rows(self._layout, [float(v) for v in values])
        health = self.history.health
        health["epochs"].append(self._epoch)
        total = math.sqrt(sum(r.grad_norm ** 2 for r in rows if r.weight_std is not None))
        health["total_grad_norm"].append(_plain(total))
        for r in rows:
            entry = health["layers"].setdefault(r.layer, {"kind": r.kind})
            for field in _FIELDS:
                if getattr(r, field) is not None or field in entry:
                    entry.setdefault(field, []).append(_plain(getattr(r, field)))
        found = [w for w in _warnings(rows) if w not in _init_warnings(rows)]    # init: in on_train_begin
        found.extend(self._exploding(rows))
        self._say(found)

    def _exploding(self, rows):
        totals = self.history.health["total_grad_norm"]
        earlier = [t for t in totals[-1 - self.window:-1] if t is not None and t > 0]
        if not earlier or totals[-1] is None or totals[-1] <= EXPLODING_GROWTH * min(earlier):
            return []
        growth = totals[-1] / min(earlier)
        weighted = [r for r in rows if r.weight_std is not None and r.grad_norm is not None]
        largest = max(weighted, key=lambda r: r.grad_norm).param if weighted else "?"
        return [f"layer {largest}: total gradient norm grew {growth:.0f}x in {len(earlier)} "
                f"epoch{'' if len(earlier) == 1 else 's'} "
                f"(to {totals[-1]:.3g}; this weight's is the largest): gradients explode; lower the learning rate "
                f"(now {self.optimizer.lr:g}) or clip gradients (bp.optim.clip_grad_norm_)"]

    def _say(self, sentences):
        said = {_problem(sentence) for _, sentence in self.history.health["warnings"]}
        for sentence in sentences:
            if _problem(sentence) in said:
                continue
            said.add(_problem(sentence))
            self.history.health["warnings"].append([self._epoch, sentence])
            when = f"epoch {self._epoch}" if self._epoch else "at initialization (epoch 0)"
            warnings.warn(f"{when}: {sentence}", GradientHealthWarning, stacklevel=2)
            self._progress_note = f"health: {sentence.split(';')[0]}"


def _problem(sentence):
    """(layer, kind of problem): what "once per problem" counts."""
    kind = next((kind for word, kind in _PROBLEMS.items() if word in sentence), sentence)
    return sentence.split(":")[0], kind


def _plain(value):
    return value if value is None or math.isfinite(value) else None


def blew_up_first(history, current=None) -> str:
    """A sentence naming the weight whose gradient blew up first, from fit's per-epoch gradient norms.

    Each weight's norms over the recorded epochs (and ``current``, {name: norm} of the epoch that
    diverged, where finite) are compared with its first value: the weight that first passed 10x
    is named, else the one that grew most if it more than doubled; "" when nothing grew.
    """
    epochs = list(history.epochs)
    names = [name for name in history.grad_norms if name.endswith("W")] or list(history.grad_norms)
    found = []                                   # (epoch index it passed 10x, -growth, name, growth, epoch)
    for name in names:
        series = list(history.grad_norms[name])
        labels = epochs[:len(series)]
        value = (current or {}).get(name)
        if value is not None and math.isfinite(value):
            series.append(value)
            labels.append(labels[-1] + 1 if labels else 0)
        if not series or not series[0] > 0:
            continue
        growth = [v / series[0] if math.isfinite(v) else 0.0 for v in series]     # NaN/Inf: not a number to name
        peak = max(range(len(growth)), key=growth.__getitem__)
        passed = next((i for i, g in enumerate(growth) if g > 10.0), len(growth))
        found.append((passed, -growth[peak], name, growth[peak], labels[peak], labels[0]))
    if not found:
        return ""
    passed, _, name, growth, at, first = min(found)
    if growth <= 2.0:
        return ""
    return (f"the gradient of layer {name} blew up first ({growth:.3g}x its epoch {first + 1} norm "
            f"by epoch {at + 1})")
