"""bp.viz.health: a diagnose report (or a GradientHealth history) as two bar charts, thresholds drawn."""
from __future__ import annotations

import math
import textwrap

import numpy as np

from ..training import History
from ..training.health import (DEAD_FRACTION, EXPLODING_RATIO, SATURATED_FRACTION, VANISHING_RATIO,
                               HealthReport, is_exploding, is_vanishing)
from ._plot import _figure, _finish

__all__ = ["health"]


def _series(source, epoch, what):
    """(weights [(name, ratio)], activations [(label, fraction, "dead"|"saturated")], warnings, when).

    ``when`` is None for a report, else (the probed epoch's number, from 1; the number of probes).
    A History's warnings are those said up to that epoch, each with its epoch in front.
    """
    if isinstance(source, HealthReport):
        ratios = [(r.param, r.ratio) for r in source.rows if r.ratio is not None and r.weight_std is not None]
        fractions = [(f"{r.layer} {r.kind}", r.dead if r.dead is not None else r.saturated,
                      "dead" if r.dead is not None else "saturated")
                     for r in source.rows if r.dead is not None or r.saturated is not None]
        return ratios, fractions, list(source.warnings), None
    if isinstance(source, History):
        recorded = source.health
        if not recorded.get("epochs"):
            raise ValueError(f"{what}: the History holds no gradient health; train with "
                             f"callbacks=[bp.GradientHealth()]")
        n = len(recorded["epochs"])
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not -n <= epoch < n:
            raise ValueError(f"{what}: epoch must be an int in [{-n}, {n}) for {n} probed epochs, got {epoch!r}")
        ratios, fractions = [], []
        for layer, entry in recorded["layers"].items():
            if "weight_std" in entry and "ratio" in entry:
                ratios.append((f"{layer}.W", entry["ratio"][epoch]))
            for kind in ("dead", "saturated"):
                if kind in entry:
                    fractions.append((f"{layer} {entry['kind']}", entry[kind][epoch], kind))
        probed = recorded["epochs"][epoch]        # epochs are numbered from 1 (0: the initialization)
        said = [f"epoch {e}: {s}" for e, s in recorded["warnings"] if e <= probed]
        return ratios, fractions, said, (probed, n)
    raise TypeError(f"{what}: expected a bp.diagnose report or a bp.History trained with GradientHealth, "
                    f"got {type(source).__name__}")


def health(source, epoch: int = -1, path=None, title=None):
    """Per-layer bars: each weight's gradient ratio to the last layer's (log scale, the vanishing
    and exploding thresholds drawn), and each ReLU's dead / sigmoid-tanh's saturated fraction
    (the warning threshold drawn). The warnings are written under the axes, wrapped to the width.

    Args:
        source: a report from ``bp.diagnose`` or a History from fit with ``bp.GradientHealth``.
        epoch: which probed epoch of a History (-1: the last, as ``bp.viz.gradient_flow``);
            ignored for a report. The warnings shown are those raised up to that epoch.
        path: where to save a PNG (optional); title: the figure's title.
    Returns:
        The Figure (two axes); bars with a zero or non-finite ratio are left out (log scale).
        A bar is red where :func:`~bpcore.training.health.is_vanishing` (below
        ``VANISHING_RATIO``) or exploding, as ``bp.diagnose`` warns.
    """
    ratios, fractions, warnings, when = _series(source, epoch, "viz.health")
    width = max(7.0, 0.45 * max(len(ratios), len(fractions)) + 3)
    wrapped = [textwrap.fill(w, width=int(width * 17), subsequent_indent="    ") for w in warnings]
    lines = sum(w.count("\n") + 1 for w in wrapped)
    fig = _figure(figsize=(width, 6.0 + 0.16 * lines))
    top, bottom = fig.subplots(2, 1)
    values = np.array([v if v is not None else math.nan for _, v in ratios], dtype=float)
    shown = np.isfinite(values) & (values > 0)
    x = np.arange(len(ratios))
    colors = ["tab:red" if is_vanishing(v) or is_exploding(v) else "tab:blue" for v in values[shown]]
    top.bar(x[shown], values[shown], color=colors, edgecolor="black", linewidth=0.5)
    top.set_yscale("log")
    low = min([VANISHING_RATIO / 10] + list(values[shown] / 2))     # both thresholds always in view
    high = max([EXPLODING_RATIO * 10] + list(values[shown] * 2))
    top.set_ylim(low, high)
    for level, label in ((VANISHING_RATIO, "vanishing"), (EXPLODING_RATIO, "exploding")):
        top.axhline(level, color="tab:red", linestyle="--", linewidth=1)
        # in the right margin, outside the bars: a label on the axes would sit on the last bars
        top.annotate(f"{label}\n({level:g})", xy=(1.0, level), xycoords=("axes fraction", "data"),
                     xytext=(4, 0), textcoords="offset points", color="tab:red", va="center", ha="left",
                     fontsize=8)
    if not shown.any():
        top.text(0.5, 0.5, "no ratio to draw: every weight's gradient is zero or not finite", ha="center",
                 va="center", transform=top.transAxes, fontsize=9, color="0.3")
    top.set_xticks(x, [name for name, _ in ratios], rotation=60, fontsize=7)
    top.set_ylabel("|dL/dW| / last layer's")
    top.set_xlim(-0.6, max(len(ratios), 1) - 0.4)
    top.set_title("gradient ratio per weight (log scale; red: vanishing or exploding)", fontsize=10)
    fx = np.arange(len(fractions))
    fvalues = [v if v is not None else 0.0 for _, v, _ in fractions]
    bars = bottom.bar(fx, fvalues, color=["tab:gray" if kind == "dead" else "tab:orange" for *_, kind in fractions],
                      edgecolor="black", linewidth=0.5)
    if fractions:       # a 0% bar has no height: its number says it was measured
        bottom.bar_label(bars, labels=[f"{v:.0%}" for v in fvalues], fontsize=7, padding=2)
    else:
        bottom.text(0.5, 0.5, "no ReLU, sigmoid or tanh layer", ha="center", va="center",
                    transform=bottom.transAxes, fontsize=9, color="0.3")
    bottom.axhline(DEAD_FRACTION, color="tab:red", linestyle="--", linewidth=1)
    if SATURATED_FRACTION != DEAD_FRACTION:
        bottom.axhline(SATURATED_FRACTION, color="tab:red", linestyle=":", linewidth=1)
    bottom.set_ylim(0, 1.12)
    bottom.set_xlim(-0.6, max(len(fractions), 1) - 0.4)
    bottom.set_xticks(fx, [label for label, *_ in fractions], rotation=60, fontsize=7)
    bottom.set_ylabel("fraction of units")
    bottom.set_title("dead ReLU units (gray), saturated sigmoid/tanh units (orange); warning at "
                     f"{DEAD_FRACTION:.0%}", fontsize=10)
    count = f"{len(warnings)} warning{'' if len(warnings) == 1 else 's'}"
    if when is None:
        default = f"gradient health: {count}"
    else:
        probed, n = when
        default = (f"gradient health at epoch {probed} ({n} probed epochs): "
                   f"{count} up to epoch {probed}")
    fig.suptitle(title or default)
    if wrapped:
        fig.supxlabel("\n".join(wrapped), fontsize=7, ha="left", x=0.01, multialignment="left")
    return _finish(fig, path)
