"""The Neural Flow page: one self-contained HTML file drawn from a FlowRecorder's data.

    page = render_html(recorder.to_dict(), title="Neural Flow")

The page needs no network (inline CSS and JavaScript, system fonts, opens from
``file://``). Its parts are files of their own beside this module, shipped as package data:
``page/flow.html`` (the document, with ``__STYLE__``, ``__SCRIPT__``, ``__TITLE__`` and
``__DATA__`` where the rest goes), ``page/flow.css`` and ``page/flow.js``.
It draws the recorded network on one ``<canvas>``:

* edges: thickness proportional to ``|w|`` (scaled to the largest ``|w|`` of the
  whole run, or of the shown snapshot with the "per snapshot" switch), blue for
  positive and orange for negative weights;
* neurons: filled with their value for the selected probe input (blue positive,
  orange negative, grey zero; scaled per column to its largest ``|value|`` over
  the run);
* Play: the forward pass as blue pulses travelling layer by layer from the
  inputs to the outputs, then the backward pass as red pulses travelling back.
  A forward pulse on the edge i -> j of layer l has intensity
  ``|a_i * W[l][i][j]|`` (the signal that edge adds to neuron j), a backward
  pulse ``|dL/dz_j * W[l][i][j]|`` (the share of the gradient that edge sends
  back to neuron i); each is divided by its largest value over the whole pass
  for the shown snapshot and probe, so intensity I is in [0, 1] and a pass
  with vanishing gradients shows faint early-layer pulses. A pulse is drawn
  with opacity 0.3 + 0.7 I and radius 2 + 4 I pixels. Red rings mark
  ``|dL/dz|`` at each neuron as the backward pass reaches it (width
  proportional to it, scaled to the largest of that snapshot and probe);
* an epoch slider over the snapshots, autoplay through the epochs, a small loss
  curve with a marker at the shown epoch, a probe selector, and tooltips with
  the exact stored values of a neuron (value, dL/dz, bias) or an edge (weight,
  dL/dW);
* layers touching a column wider than 32 neurons draw only their 200 strongest
  edges by ``|w|``, shade the rest as one band, and say so in a note.

For tests and scripts the page exposes ``window.neuralFlow`` (``data``,
``snapshotIndex``, ``probeIndex``, ``playing``, ``phase``, ``setSnapshot(i)``,
``setProbe(i)``, ``play()``, ``stop()``, ``setAutoplay(on)``, ``currentValues()``,
``neuronPosition(c, j)``) and mirrors ``data-epoch``, ``data-snapshot-index``
and ``data-phase`` on ``<body>``.
"""
from __future__ import annotations

import functools
import html
import json
import re
from importlib import resources

__all__ = ["render_html"]


def render_html(data: dict, title: str = "Neural Flow") -> str:
    """The Neural Flow page for ``data`` (the dict of ``FlowRecorder.to_dict()``) as one HTML string.

    Numbers are embedded as given (round them first: the recorder keeps 4
    significant digits). NaN and infinity must already be ``None``.
    """
    if not isinstance(data, dict) or not data.get("snapshots") or not data.get("sizes"):
        raise ValueError("render_html: data must be a dict with 'sizes' and at least one snapshot "
                         "(see FlowRecorder.to_dict)")
    try:
        payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise ValueError("render_html: data holds NaN or infinity; store such numbers as None") from None
    # No "<", ">" or "&" can end the <script> element or open a comment inside it.
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    parts = {"__TITLE__": html.escape(str(title)), "__DATA__": payload}
    return re.sub("__TITLE__|__DATA__", lambda match: parts[match.group(0)], _template())


@functools.lru_cache(maxsize=1)
def _template() -> str:
    """flow.html with flow.css and flow.js put in place (read once, from the installed package)."""
    page = resources.files(__package__).joinpath("page")
    document = page.joinpath("flow.html").read_text(encoding="utf-8")
    style = page.joinpath("flow.css").read_text(encoding="utf-8")
    script = page.joinpath("flow.js").read_text(encoding="utf-8")
    return document.replace("__STYLE__", style, 1).replace("__SCRIPT__", script, 1)
