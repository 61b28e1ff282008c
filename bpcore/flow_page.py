"""The Neural Flow page: one self-contained HTML file drawn from a FlowRecorder's data.

    page = render_html(recorder.to_dict(), title="Neural Flow")

The page needs no network (inline CSS and JavaScript, system fonts, opens from
``file://``). It draws the recorded network on one ``<canvas>``:

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

import html
import json
import re

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
    return re.sub("__TITLE__|__DATA__", lambda match: parts[match.group(0)], _TEMPLATE)


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
:root { --bg:#0c111d; --panel:#141b2b; --line:#27324b; --text:#dce3ef; --muted:#8e9ab0;
        --pos:#569cff; --neg:#ff923c; --fwd:#3c96ff; --bwd:#ff3050; }
* { box-sizing:border-box; }
html, body { margin:0; background:var(--bg); color:var(--text);
  font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
header { padding:14px 22px 2px; display:flex; align-items:baseline; gap:14px; flex-wrap:wrap; }
h1 { font-size:21px; margin:0; font-weight:650; letter-spacing:.2px; }
.sub { color:var(--muted); font-size:13px; }
main { display:flex; gap:16px; padding:10px 22px 18px; align-items:flex-start; }
#left { flex:1; min-width:0; }
#stage { position:relative; height:clamp(400px, calc(100vh - 150px), 760px); border:1px solid var(--line);
  border-radius:12px; overflow:hidden; background:radial-gradient(ellipse at 50% 40%, #141d31 0%, #0c111d 75%); }
#net { display:block; width:100%; height:100%; cursor:crosshair; }
#notes { margin-top:8px; font-size:13px; color:#f3c98b; }
#notes div { margin:2px 0; }
#notes .info { color:var(--muted); }
aside { width:318px; flex:none; display:flex; flex-direction:column; gap:12px; }
.card { background:var(--panel); border:1px solid var(--line); border-radius:12px; padding:12px 14px; }
.card h2 { font-size:12px; text-transform:uppercase; letter-spacing:.8px; color:var(--muted); margin:0 0 8px;
  font-weight:600; }
.row { display:flex; align-items:center; gap:8px; margin:6px 0; flex-wrap:wrap; }
button { font:inherit; color:var(--text); background:#223050; border:1px solid #36476e; border-radius:8px;
  padding:6px 12px; cursor:pointer; }
button:hover { background:#2b3c63; }
button.primary { background:#1d5fd6; border-color:#3a7bf0; font-weight:600; }
button.primary:hover { background:#2a6cea; }
button.on { background:#7a2a3a; border-color:#b54a5f; }
select { font:inherit; color:var(--text); background:#1b2438; border:1px solid #36476e; border-radius:6px;
  padding:4px 6px; max-width:100%; }
input[type=range] { width:100%; accent-color:#4c8dff; }
label { color:var(--muted); font-size:13px; }
#epochLabel { font-variant-numeric:tabular-nums; }
.big { font-size:17px; font-weight:600; font-variant-numeric:tabular-nums; }
.kv { display:grid; grid-template-columns:auto 1fr; gap:2px 10px; font-size:13px; font-variant-numeric:tabular-nums; }
.kv span:nth-child(odd) { color:var(--muted); }
.mono { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:12px; }
#loss { display:block; width:100%; height:auto; cursor:pointer; }
.legend { display:flex; flex-wrap:wrap; gap:4px 18px; margin-top:8px; }
.legend div { display:flex; align-items:center; gap:7px; font-size:12.5px; color:#c5cede; }
.sw { flex:none; width:26px; height:12px; display:inline-block; position:relative; }
.sw.line::after { content:""; position:absolute; left:0; right:0; top:50%; height:4px; margin-top:-2px;
  border-radius:2px; background:currentColor; }
.sw.dot::after { content:""; position:absolute; left:7px; top:0; width:12px; height:12px; border-radius:50%;
  background:radial-gradient(circle, #fff 0 25%, currentColor 45%, transparent 72%); }
.sw.ring::after { content:""; position:absolute; left:6px; top:-1px; width:10px; height:10px; border-radius:50%;
  border:2px solid var(--bwd); }
.sw.grad { border-radius:6px; background:linear-gradient(90deg, var(--neg), #262e40, var(--pos)); }
#tip { position:absolute; display:none; pointer-events:none; z-index:5; background:rgba(7,11,20,.95);
  border:1px solid #3d4b6d; border-radius:8px; padding:7px 9px; white-space:nowrap;
  box-shadow:0 6px 20px rgba(0,0,0,.45);
  font:12px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
#tip b { font-family:system-ui, sans-serif; font-size:12.5px; }
#tip .m { color:var(--muted); }
@media (max-width: 920px) { main { flex-direction:column; } aside { width:auto; } }
</style>
</head>
<body data-epoch="" data-snapshot-index="" data-phase="idle">
<header><h1 id="title">__TITLE__</h1><span class="sub" id="subtitle"></span></header>
<main>
  <div id="left">
    <div id="stage"><canvas id="net" aria-label="network diagram"></canvas><div id="tip" role="tooltip"></div></div>
    <div id="notes"></div>
    <div class="legend">
      <div><span class="sw line" style="color:var(--pos)"></span>weight &gt; 0</div>
      <div><span class="sw line" style="color:var(--neg)"></span>weight &lt; 0 &nbsp;(thickness &prop; |w|)</div>
      <div><span class="sw grad"></span>neuron value &minus; 0 +</div>
      <div><span class="sw dot" style="color:var(--fwd)"></span>forward pulse &prop; |a&middot;w|</div>
      <div><span class="sw dot" style="color:var(--bwd)"></span>backward pulse &prop; |w&middot;dL/dz|</div>
      <div><span class="sw ring"></span>|dL/dz| at a neuron</div>
      <div class="sub">hover for exact values &middot; space plays</div>
    </div>
  </div>
  <aside>
    <div class="card">
      <h2>Pass</h2>
      <div class="row"><button id="play" class="primary" title="forward pass in blue, then backward pass in red (space)"
        >&#9654; Play forward + backward</button></div>
      <div class="row"><label for="probe">probe</label><select id="probe"></select></div>
      <div class="row"><label for="speed">speed</label>
        <select id="speed"><option value="0.5">0.5&times;</option><option value="1" selected>1&times;</option>
          <option value="2">2&times;</option><option value="4">4&times;</option></select>
        <label><input type="checkbox" id="perSnap"> scale edges per snapshot</label></div>
    </div>
    <div class="card">
      <h2>Training</h2>
      <div class="row"><span class="big" id="epochLabel"></span><span class="sub" id="snapLabel"></span></div>
      <input type="range" id="slider" min="0" max="0" step="1" value="0" aria-label="snapshot">
      <div class="row"><button id="auto" title="step through the snapshots">&#9654; Play epochs</button></div>
      <svg id="loss" viewBox="0 0 290 140" role="img" aria-label="loss curve"></svg>
      <div class="kv" id="readout"></div>
    </div>
  </aside>
</main>
<script type="application/json" id="flow-data">__DATA__</script>
<script>
(function () {
"use strict";
var D = JSON.parse(document.getElementById("flow-data").textContent);
var SN = D.snapshots, SIZES = D.sizes, L = SIZES.length - 1, NP = (D.probes || []).length || 1;
var NAMES = D.column_names || SIZES.map(function (n, c) { return c ? "layer " + c : "input"; });
var MAX_EDGES = 200, WIDE = 32;
var FWD_MS = 900, GAP_MS = 300, BWD_MS = 900, FADE_MS = 700, EPOCH_MS = 220, STAGGER = 0.3;
var POS = [86, 156, 255], NEG = [255, 146, 60], NEUTRAL = [38, 46, 64], DIM = [27, 33, 48];
var FWD_GLOW = [50, 140, 255], FWD_CORE = [205, 232, 255], BWD_GLOW = [255, 38, 70], BWD_CORE = [255, 205, 210];

function $(id) { return document.getElementById(id); }
var canvas = $("net"), ctx = canvas.getContext("2d"), tip = $("tip"), stage = $("stage");
var st = { snap: SN.length - 1, probe: 0, playing: false, phase: "idle", start: 0, fadeStart: -1,
           auto: false, autoLast: 0, hover: null, perSnap: false, speed: 1 };
var geo = null, raf = 0;

// ---- numbers ---------------------------------------------------------------------------
function num(v) { return (typeof v === "number" && isFinite(v)) ? v : null; }
function mag(v) { v = num(v); return v === null ? 0 : Math.abs(v); }
function fmt(v) { return v === null || v === undefined ? "n/a" : String(v); }
function short(v) {
  v = num(v); if (v === null) return "n/a";
  var a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1000 || a < 0.01) return v.toExponential(0).replace("e+", "e");
  return a >= 10 ? v.toFixed(0) : v.toFixed(2);
}
function esc(s) { return String(s).replace(/[&<>"']/g, function (c) {
  return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]; }); }
function clamp(x, a, b) { return x < a ? a : x > b ? b : x; }
function smooth(a, b, x) { var t = clamp((x - a) / (b - a), 0, 1); return t * t * (3 - 2 * t); }
function ease(t) { return 0.5 - 0.5 * Math.cos(Math.PI * t); }
function mix(a, b, t) { return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]; }
function rgba(c, a) { return "rgba(" + (c[0] | 0) + "," + (c[1] | 0) + "," + (c[2] | 0) + "," + a.toFixed(3) + ")"; }
function maxAbs(rows) { var m = 0; for (var i = 0; i < rows.length; i++) { var r = rows[i];
  if (Array.isArray(r)) { var x = maxAbs(r); if (x > m) m = x; } else { x = mag(r); if (x > m) m = x; } } return m; }

// Whole-run scales: the largest |w| and, per column, the largest |value|.
var RUN_MAXW = 0, ACT_SCALE = SIZES.map(function () { return 0; });
SN.forEach(function (s) {
  var m = maxAbs(s.W); if (m > RUN_MAXW) RUN_MAXW = m;
  s.act.forEach(function (cols) {
    cols.forEach(function (col, c) { var x = maxAbs(col); if (x > ACT_SCALE[c]) ACT_SCALE[c] = x; });
  });
});
ACT_SCALE = ACT_SCALE.map(function (x) { return x > 0 ? x : 1; });

// The edges drawn for a snapshot: all of them, or the 200 strongest where a column is wide.
var edgeCache = {};
function edgesOf(k) {
  if (edgeCache[k]) return edgeCache[k];
  var out = [], s = SN[k];
  for (var l = 1; l <= L; l++) {
    var W = s.W[l - 1], n0 = SIZES[l - 1], n1 = SIZES[l], all = [], sum = 0;
    for (var i = 0; i < n0; i++) for (var j = 0; j < n1; j++) {
      var w = W[i][j], a = mag(w); sum += a; all.push([i, j, w, a]);
    }
    all.sort(function (p, q) { return p[3] - q[3]; });            // the strongest drawn last, on top
    var wide = (n0 > WIDE || n1 > WIDE) && all.length > MAX_EDGES;
    var shown = wide ? all.slice(all.length - MAX_EDGES) : all, shownSum = 0;
    shown.forEach(function (e) { shownSum += e[3]; });
    out.push({ edges: shown, total: all.length, hidden: all.length - shown.length,
               hiddenShare: sum > 0 ? (sum - shownSum) / sum : 0 });
  }
  var keys = Object.keys(edgeCache); if (keys.length > 64) delete edgeCache[keys[0]];
  return (edgeCache[k] = out);
}

// Largest forward signal |a_i w_ij|, backward share |g_j w_ij| and gradient |g| for a snapshot and probe.
var passCache = {};
function passScale(k, p) {
  var key = k + ":" + p; if (passCache[key]) return passCache[key];
  var s = SN[k], act = s.act[p], grad = s.grad[p], f = 0, b = 0, g = 0;
  for (var l = 1; l <= L; l++) {
    var W = s.W[l - 1], a = act[l - 1], gr = grad[l - 1];
    for (var i = 0; i < SIZES[l - 1]; i++) for (var j = 0; j < SIZES[l]; j++) {
      var w = mag(W[i][j]), x = mag(a[i]) * w, y = mag(gr[j]) * w;
      if (x > f) f = x; if (y > b) b = y;
    }
    var m = maxAbs(gr); if (m > g) g = m;
  }
  return (passCache[key] = { f: f || 1, b: b || 1, g: g || 1 });
}

// ---- layout ----------------------------------------------------------------------------
function layout() {
  var rect = canvas.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
  var w = Math.max(300, rect.width), h = Math.max(240, rect.height);
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  var left = clamp(w * 0.07, 50, 90), right = clamp(w * 0.12, 70, 130), top = 66, bottom = 30;
  var avail = h - top - bottom, span = w - left - right;
  var cols = SIZES.map(function (n, c) {
    var x = L === 0 ? w / 2 : left + c * span / L;
    var sp = Math.min(96, avail / Math.max(n, 1));
    var r = clamp(sp * 0.4, 1.4, 17);
    var y0 = top + (avail - sp * (n - 1)) / 2, ys = [];
    for (var j = 0; j < n; j++) ys.push(y0 + j * sp);
    return { x: x, ys: ys, r: r };
  });
  geo = { w: w, h: h, cols: cols, spacing: L ? span / L : w };
}

// ---- the timeline of one pass ------------------------------------------------------------
function timeline(now) {
  var t = (now - st.start) * st.speed, fEnd = L * FWD_MS, bStart = fEnd + GAP_MS, bEnd = bStart + L * BWD_MS;
  if (t < 0) t = 0;
  if (t < fEnd) return { phase: "forward", l: Math.floor(t / FWD_MS) + 1, u: (t % FWD_MS) / FWD_MS };
  if (t < bStart) return { phase: "backward", l: L + 1, u: (t - fEnd) / GAP_MS };
  if (t < bEnd) {
    var k = Math.floor((t - bStart) / BWD_MS);
    return { phase: "backward", l: L - k, u: ((t - bStart) % BWD_MS) / BWD_MS };
  }
  return null;
}
function reveal(c, tl) {                 // how much of column c's value is shown (forward pass)
  if (!tl || tl.phase !== "forward" || c === 0) return 1;
  return c < tl.l ? 1 : c === tl.l ? smooth(0.85, 1, tl.u) : 0;
}
function ringShown(c, tl, now) {           // how much of column c's gradient ring is shown
  if (c === 0) return 0;
  if (!tl) return st.fadeStart >= 0 ? 1 - clamp((now - st.fadeStart) / FADE_MS, 0, 1) : 0;
  if (tl.phase !== "backward") return 0;
  if (tl.l === L + 1) return c === L ? smooth(0, 0.6, tl.u) : 0;
  return c >= tl.l ? 1 : c === tl.l - 1 ? smooth(0.85, 1, tl.u) : 0;
}

// ---- drawing ---------------------------------------------------------------------------
function circle(x, y, r) { ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); }
function fitText(text, width) {
  if (ctx.measureText(text).width <= width) return text;
  while (text.length > 1 && ctx.measureText(text + "\u2026").width > width) text = text.slice(0, -1);
  return text + "\u2026";
}

function draw(now) {
  if (!geo) layout();
  var s = SN[st.snap], p = st.probe, act = s.act[p], grad = s.grad[p];
  var tl = st.playing ? timeline(now) : null, sel = edgesOf(st.snap), sc = passScale(st.snap, p);
  var wmax = st.perSnap ? maxAbs(s.W) || 1 : RUN_MAXW || 1, hv = st.hover;
  ctx.clearRect(0, 0, geo.w, geo.h);

  // column titles
  ctx.textAlign = "center"; ctx.textBaseline = "alphabetic";
  for (var c = 0; c <= L; c++) {
    var col = geo.cols[c], width = Math.max(60, geo.spacing - 10);
    var parts = String(NAMES[c]).split(" + ");
    ctx.font = "600 13px system-ui, sans-serif"; ctx.fillStyle = "#dce3ef";
    ctx.fillText(fitText(parts[0], width), col.x, 22);
    ctx.font = "12px system-ui, sans-serif"; ctx.fillStyle = "#8e9ab0";
    var second = (parts.length > 1 ? "+ " + parts.slice(1).join(" + ") + " \u00b7 " : "") +
                 SIZES[c] + (SIZES[c] === 1 ? " neuron" : " neurons");
    ctx.fillText(fitText(second, width), col.x, 39);
  }

  // edges
  ctx.lineCap = "round";
  for (var l = 1; l <= L; l++) {
    var A = geo.cols[l - 1], B = geo.cols[l], E = sel[l - 1];
    if (E.hidden > 0) {                                 // the edges not drawn, as one band
      ctx.fillStyle = rgba([150, 165, 195], 0.04 + 0.14 * E.hiddenShare);
      ctx.beginPath(); ctx.moveTo(A.x, A.ys[0]); ctx.lineTo(B.x, B.ys[0]);
      ctx.lineTo(B.x, B.ys[B.ys.length - 1]); ctx.lineTo(A.x, A.ys[A.ys.length - 1]); ctx.closePath(); ctx.fill();
    }
    var thick = E.edges.length > 120 ? 3.5 : 6;
    for (var e = 0; e < E.edges.length; e++) {
      var ed = E.edges[e], i = ed[0], j = ed[1], w = num(ed[2]), t = clamp(ed[3] / wmax, 0, 1);
      var alpha = 0.14 + 0.6 * t, lit = false;
      if (hv) {
        lit = (hv.kind === "neuron" && ((hv.c === l && hv.j === j) || (hv.c === l - 1 && hv.j === i))) ||
              (hv.kind === "edge" && hv.l === l && hv.i === i && hv.j === j);
        alpha = lit ? Math.min(1, alpha + 0.35) : alpha * 0.35;
      }
      ctx.strokeStyle = w === null ? "rgba(150,150,150,.4)" : rgba(w >= 0 ? POS : NEG, alpha);
      ctx.lineWidth = 0.45 + thick * t + (lit ? 1 : 0);
      ctx.beginPath(); ctx.moveTo(A.x, A.ys[i]); ctx.lineTo(B.x, B.ys[j]); ctx.stroke();
    }
  }

  // pulses
  if (tl && tl.l >= 1 && tl.l <= L) {
    var fwd = tl.phase === "forward", lp = tl.l, A2 = geo.cols[lp - 1], B2 = geo.cols[lp], E2 = sel[lp - 1].edges;
    var src = fwd ? act[lp - 1] : null, g = fwd ? null : grad[lp - 1];
    var glow = fwd ? FWD_GLOW : BWD_GLOW, core = fwd ? FWD_CORE : BWD_CORE, scale = fwd ? sc.f : sc.b;
    ctx.globalCompositeOperation = "lighter";
    for (var q = 0; q < E2.length; q++) {
      var eq = E2[q], I = clamp(eq[3] * mag(fwd ? src[eq[0]] : g[eq[1]]) / scale, 0, 1);
      var lag = ((eq[0] * 7919 + eq[1] * 104729) % 97) / 97 * STAGGER;   // pulses of a layer leave a little apart
      var v0 = clamp((tl.u - lag) / (1 - STAGGER), 0, 1), u = ease(v0);
      var fade = smooth(0, 0.1, v0) * (1 - smooth(0.9, 1, v0));
      if (fade <= 0) continue;
      var x0 = fwd ? A2.x : B2.x, y0 = fwd ? A2.ys[eq[0]] : B2.ys[eq[1]];
      var x1 = fwd ? B2.x : A2.x, y1 = fwd ? B2.ys[eq[1]] : A2.ys[eq[0]];
      var x = x0 + (x1 - x0) * u, y = y0 + (y1 - y0) * u, tail = Math.max(0, u - 0.09);
      var r = 2 + 4 * I, a = (0.3 + 0.7 * I) * fade;
      ctx.strokeStyle = rgba(glow, a * 0.55); ctx.lineWidth = r * 0.9;
      ctx.beginPath(); ctx.moveTo(x0 + (x1 - x0) * tail, y0 + (y1 - y0) * tail); ctx.lineTo(x, y); ctx.stroke();
      ctx.fillStyle = rgba(glow, a * 0.32); circle(x, y, r * 2.3); ctx.fill();
      ctx.fillStyle = rgba(core, a); circle(x, y, r); ctx.fill();
    }
    ctx.globalCompositeOperation = "source-over";
  }

  // neurons, gradient rings, labels
  for (c = 0; c <= L; c++) {
    col = geo.cols[c];
    var vals = act[c], rv = reveal(c, tl), ring = ringShown(c, tl, now), R = col.r;
    for (j = 0; j < col.ys.length; j++) {
      var v = num(vals[j]), tv = v === null ? 0 : clamp(Math.abs(v) / ACT_SCALE[c], 0, 1);
      var fill = mix(DIM, mix(NEUTRAL, v !== null && v < 0 ? NEG : POS, tv), rv);
      var y = col.ys[j], hot = hv && hv.kind === "neuron" && hv.c === c && hv.j === j;
      if (ring > 0) {
        var gt = clamp(mag(grad[c - 1][j]) / sc.g, 0, 1);
        ctx.strokeStyle = rgba(BWD_GLOW, (0.25 + 0.75 * gt) * ring); ctx.lineWidth = 1 + 4 * gt;
        circle(col.x, y, R + 2.5 + 2.5 * gt); ctx.stroke();
      }
      ctx.fillStyle = rgba(fill, 1); circle(col.x, y, R); ctx.fill();
      if (R >= 3 || hot) {
        ctx.strokeStyle = hot ? "#ffffff" : "rgba(205,215,235,.55)"; ctx.lineWidth = hot ? 2 : 1;
        circle(col.x, y, Math.max(R, 3)); ctx.stroke();
      }
      if (R >= 10 && rv > 0.5) {
        var label = short(v).replace(/^(-?)0\./, "$1."), size = Math.min(10.5, R * 0.75);
        ctx.font = "600 " + size + "px system-ui, sans-serif";
        var tw = ctx.measureText(label).width;
        if (tw > 2 * R - 5) {
          size *= (2 * R - 5) / tw; ctx.font = "600 " + size.toFixed(1) + "px system-ui, sans-serif";
        }
        if (size >= 6.5) {
          var light = fill[0] * 0.3 + fill[1] * 0.59 + fill[2] * 0.11 > 140;
          ctx.fillStyle = light ? "#0b1020" : "#eef2f8";
          ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.fillText(label, col.x, y + 0.5);
        }
      }
    }
    ctx.textBaseline = "middle"; ctx.font = "12px system-ui, sans-serif"; ctx.fillStyle = "#aab5c8";
    if (c === 0 && SIZES[0] <= 16 && col.r >= 5) {
      ctx.textAlign = "right";
      for (j = 0; j < col.ys.length; j++) ctx.fillText("x" + (j + 1), col.x - R - 8, col.ys[j]);
    }
    if (c === L && L > 0 && SIZES[L] <= 16 && col.r >= 5 && rv > 0.5) {
      ctx.textAlign = "left";
      for (j = 0; j < col.ys.length; j++) ctx.fillText("out = " + short(vals[j]), col.x + R + 8, col.ys[j]);
    }
  }
  // the phase caption
  ctx.textAlign = "left"; ctx.textBaseline = "alphabetic"; ctx.font = "600 13px system-ui, sans-serif";
  if (tl) {
    ctx.fillStyle = tl.phase === "forward" ? "#6fb2ff" : "#ff6a80";
    ctx.fillText(tl.phase === "forward" ? "\u25b6 forward pass: values flow to the output"
                                        : "\u25c0 backward pass: gradients flow back", 14, geo.h - 10);
  } else {
    ctx.fillStyle = "#7f8aa0"; ctx.font = "12.5px system-ui, sans-serif";
    ctx.fillText("Press \u25b6 Play (or space) to send probe " + (p + 1) + " forward and its gradients back.",
                 14, geo.h - 10);
  }
}

// ---- frame loop (runs only while something moves) ---------------------------------------------
function request() { if (!raf) raf = requestAnimationFrame(frame); }
function frame(now) {
  raf = 0;
  if (st.auto && now - st.autoLast >= EPOCH_MS / st.speed) {
    st.autoLast = now;
    if (st.snap >= SN.length - 1) setAutoplay(false); else setSnapshot(st.snap + 1, true);
  }
  if (st.playing) {
    var tl = timeline(now);
    if (!tl) { st.playing = false; st.fadeStart = now; setPhase("idle"); updatePlayButton(); }
    else setPhase(tl.phase);
  }
  draw(now);
  if (st.hover) showTip();
  var fading = st.fadeStart >= 0 && now - st.fadeStart < FADE_MS;
  if (!fading) st.fadeStart = -1;
  if (st.playing || st.auto || fading) request();
}

// ---- state changes -----------------------------------------------------------------------
function setPhase(ph) { if (st.phase !== ph) { st.phase = ph; document.body.setAttribute("data-phase", ph); } }
function play() {
  st.playing = true; st.start = performance.now(); st.fadeStart = -1;
  setPhase("forward"); updatePlayButton(); request();
}
function stop() { st.playing = false; st.fadeStart = -1; setPhase("idle"); updatePlayButton(); request(); }
function updatePlayButton() {
  $("play").innerHTML = st.playing ? "&#9632; Stop" : "&#9654; Play forward + backward";
  $("play").classList.toggle("on", st.playing);
}
function setAutoplay(on) {
  st.auto = !!on;
  if (st.auto) { if (st.snap >= SN.length - 1) setSnapshot(0); st.autoLast = performance.now(); request(); }
  $("auto").innerHTML = st.auto ? "&#10074;&#10074; Pause epochs" : "&#9654; Play epochs";
  $("auto").classList.toggle("on", st.auto);
}
function setSnapshot(i, fromAuto) {
  i = clamp(Math.round(Number(i)) || 0, 0, SN.length - 1);
  if (!fromAuto && st.auto) setAutoplay(false);
  st.snap = i;
  var s = SN[i];
  $("slider").value = String(i);
  $("epochLabel").textContent = "epoch " + s.epoch;
  $("snapLabel").textContent = "snapshot " + (i + 1) + " of " + SN.length;
  document.body.setAttribute("data-epoch", String(s.epoch));
  document.body.setAttribute("data-snapshot-index", String(i));
  updateReadout(); updateNotes(); updateLossMarker(); request();
}
function setProbe(i) {
  st.probe = clamp(Math.round(Number(i)) || 0, 0, NP - 1);
  $("probe").value = String(st.probe);
  document.body.setAttribute("data-probe-index", String(st.probe));
  updateReadout(); request();
}

// ---- side panel ------------------------------------------------------------------------------
function vecText(v, max) {
  var parts = v.slice(0, max).map(fmt);
  return "(" + parts.join(", ") + (v.length > max ? ", \u2026 " + v.length + " values" : "") + ")";
}
function updateReadout() {
  var s = SN[st.snap], p = st.probe, out = s.act[p][L], rows = [];
  rows.push(["loss", fmt(s.loss)]);
  if (s.accuracy !== null && s.accuracy !== undefined) rows.push(["accuracy", fmt(s.accuracy)]);
  rows.push(["input", vecText(D.probes[p] || [], 4)]);
  if (D.probe_labels) rows.push(["target", fmt(D.probe_labels[p])]);
  rows.push(["output", vecText(out, 4)]);
  $("readout").innerHTML = rows.map(function (r) {
    return "<span>" + esc(r[0]) + "</span><span class=\"mono\">" + esc(r[1]) + "</span>";
  }).join("");
}
function updateNotes() {
  var sel = edgesOf(st.snap), html = [];
  sel.forEach(function (E, k) {
    if (E.hidden > 0) html.push("<div>&#9888; " + esc(NAMES[k + 1]) + ": showing the " + E.edges.length +
      " strongest of " + E.total + " edges (by |w|); the other " + E.hidden + " (" + Math.round(100 * E.hiddenShare) +
      "% of \u03a3|w|) are shaded as one band.</div>");
  });
  if (D.thinned) html.push("<div class=\"info\">The record was thinned to stay within " + esc(D.max_snapshots) +
    " snapshots: one every " + esc(D.every) + " epochs now.</div>");
  $("notes").innerHTML = html.join("");
}

// The loss curve (SVG), with a marker at the shown epoch.
var LW = 290, LH = 140, LP = { l: 40, r: 8, t: 18, b: 22 }, lossX = null, lossY = null;
function svg(tag, attrs, parent) {
  var el = document.createElementNS($("loss").namespaceURI, tag);
  for (var k in attrs) el.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(el);
  return el;
}
function buildLoss() {
  var root = $("loss"), pts = [];
  SN.forEach(function (s) { if (num(s.loss) !== null) pts.push([s.epoch, s.loss]); });
  var e0 = SN[0].epoch, e1 = SN[SN.length - 1].epoch; if (e1 === e0) e1 = e0 + 1;
  lossX = function (e) { return LP.l + (e - e0) / (e1 - e0) * (LW - LP.l - LP.r); };
  svg("rect", { x: LP.l, y: LP.t, width: LW - LP.l - LP.r, height: LH - LP.t - LP.b,
                fill: "#0f1524", stroke: "#27324b" }, root);
  var text = function (x, y, s, anchor) {
    var t = svg("text", { x: x, y: y, fill: "#8e9ab0", "font-size": 10, "text-anchor": anchor || "middle" }, root);
    t.textContent = s;
  };
  text(LP.l, LH - 6, String(e0), "start"); text(LW - LP.r, LH - 6, String(SN[SN.length - 1].epoch), "end");
  text((LP.l + LW - LP.r) / 2, LH - 6, "epoch");
  if (!pts.length) { text((LP.l + LW) / 2, LH / 2, "no loss recorded"); lossY = null; }
  else {
    var ys = pts.map(function (q) { return q[1]; }), lo = Math.min.apply(null, ys), hi = Math.max.apply(null, ys);
    var log = lo > 0 && hi / lo > 30;
    var f = log ? Math.log : function (v) { return v; }, a = f(lo), b = f(hi); if (b === a) { a -= 0.5; b += 0.5; }
    lossY = function (v) { return LP.t + (1 - (f(v) - a) / (b - a)) * (LH - LP.t - LP.b); };
    text(LP.l - 4, LP.t + 8, short(hi), "end"); text(LP.l - 4, LH - LP.b, short(lo), "end");
    text(LP.l, 11, log ? "training loss (log scale)" : "training loss", "start");
    var points = pts.map(function (q) { return lossX(q[0]).toFixed(1) + "," + lossY(q[1]).toFixed(1); }).join(" ");
    svg("polyline", { points: points,
                      fill: "none", stroke: "#e6a23c", "stroke-width": 1.8, "stroke-linejoin": "round" }, root);
  }
  svg("line", { id: "lossLine", y1: LP.t, y2: LH - LP.b, stroke: "#dce3ef", "stroke-width": 1,
                "stroke-dasharray": "3 3" }, root);
  svg("circle", { id: "lossDot", r: 4, fill: "#fff", stroke: "#e6a23c", "stroke-width": 2 }, root);
  root.addEventListener("click", function (ev) {
    var box = root.getBoundingClientRect(), x = (ev.clientX - box.left) * LW / box.width, best = 0, bd = Infinity;
    SN.forEach(function (s, k) { var d = Math.abs(lossX(s.epoch) - x); if (d < bd) { bd = d; best = k; } });
    setSnapshot(best);
  });
}
function updateLossMarker() {
  var s = SN[st.snap], x = lossX(s.epoch).toFixed(1), line = $("lossLine"), dot = $("lossDot");
  line.setAttribute("x1", x); line.setAttribute("x2", x);
  var ok = lossY && num(s.loss) !== null;
  dot.style.display = ok ? "" : "none";
  if (ok) { dot.setAttribute("cx", x); dot.setAttribute("cy", lossY(s.loss).toFixed(1)); }
}

// ---- hover ---------------------------------------------------------------------------------
var mouse = { x: 0, y: 0 };
function segDist(px, py, ax, ay, bx, by) {
  var dx = bx - ax, dy = by - ay, t = clamp(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy || 1), 0, 1);
  return Math.hypot(px - ax - t * dx, py - ay - t * dy);
}
function hit(x, y) {
  var best = null, bd = Infinity;
  for (var c = 0; c <= L; c++) {
    var col = geo.cols[c];
    if (Math.abs(x - col.x) > col.r + 6) continue;
    for (var j = 0; j < col.ys.length; j++) {
      var d = Math.hypot(x - col.x, y - col.ys[j]);
      if (d <= Math.max(col.r + 3, 6) && d < bd) { bd = d; best = { kind: "neuron", c: c, j: j }; }
    }
  }
  if (best) return best;
  var sel = edgesOf(st.snap);
  for (var l = 1; l <= L; l++) {
    var A = geo.cols[l - 1], B = geo.cols[l];
    if (x < A.x || x > B.x) continue;
    var E = sel[l - 1].edges;
    for (var e = E.length - 1; e >= 0; e--) {
      var d2 = segDist(x, y, A.x, A.ys[E[e][0]], B.x, B.ys[E[e][1]]);
      if (d2 < 4 && d2 < bd) { bd = d2; best = { kind: "edge", l: l, i: E[e][0], j: E[e][1] }; }
    }
  }
  return best;
}
function tipHTML(h) {
  var s = SN[st.snap], p = st.probe, probe = " <span class=\"m\">(probe " + (p + 1) + ")</span>";
  if (h.kind === "neuron") {
    if (h.c === 0) return "<b>input x" + (h.j + 1) + "</b><br>value = " + esc(fmt(s.act[p][0][h.j])) + probe;
    return "<b>" + esc(NAMES[h.c]) + " \u00b7 neuron " + h.j + "</b><br>value = " + esc(fmt(s.act[p][h.c][h.j])) +
      probe +
      "<br>dL/dz = " + esc(fmt(s.grad[p][h.c - 1][h.j])) + probe + "<br>bias = " + esc(fmt(s.b[h.c - 1][h.j])) +
      "<br><span class=\"m\">epoch " + s.epoch + "</span>";
  }
  var from = h.l === 1 ? "x" + (h.i + 1) : "neuron " + h.i + " of column " + (h.l - 1);
  return "<b>weight W[" + (h.l - 1) + "][" + h.i + "][" + h.j + "]</b><br>" + esc(from) + " \u2192 neuron " + h.j +
    " of column " + h.l +
    "<br>w = " + esc(fmt(s.W[h.l - 1][h.i][h.j])) + "<br>dL/dW = " + esc(fmt(s.dW[h.l - 1][h.i][h.j])) +
    "<br><span class=\"m\">epoch " + s.epoch + "</span>";
}
function showTip() {
  if (!st.hover) { tip.style.display = "none"; return; }
  tip.innerHTML = tipHTML(st.hover); tip.style.display = "block";
  var w = tip.offsetWidth, h = tip.offsetHeight, x = mouse.x + 16, y = mouse.y + 14;
  if (x + w > geo.w - 4) x = mouse.x - w - 16;
  if (y + h > geo.h - 4) y = geo.h - h - 4;
  tip.style.left = Math.max(4, x) + "px"; tip.style.top = Math.max(4, y) + "px";
}
function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }
canvas.addEventListener("mousemove", function (ev) {
  var box = canvas.getBoundingClientRect();
  mouse.x = ev.clientX - box.left; mouse.y = ev.clientY - box.top;
  var h = hit(mouse.x, mouse.y);
  if (!same(h, st.hover)) { st.hover = h; request(); }
  showTip();
});
canvas.addEventListener("mouseleave", function () { st.hover = null; showTip(); request(); });

// ---- wiring ----------------------------------------------------------------------------------
function init() {
  $("subtitle").textContent = SIZES.join(" \u2013 ") + " network \u00b7 " + SN.length + " snapshots, epochs " +
    SN[0].epoch + "\u2013" + SN[SN.length - 1].epoch + " \u00b7 " + NP + (NP === 1 ? " probe" : " probes");
  var sel = $("probe");
  for (var p = 0; p < NP; p++) {
    var o = document.createElement("option"), x = (D.probes && D.probes[p]) || [];
    o.value = String(p);
    o.textContent = (p + 1) + ": x = " + vecText(x, 3) + (D.probe_labels ? " \u2192 " + fmt(D.probe_labels[p]) : "");
    sel.appendChild(o);
  }
  sel.addEventListener("change", function () { setProbe(sel.value); });
  var slider = $("slider");
  slider.max = String(SN.length - 1);
  slider.addEventListener("input", function () { setSnapshot(slider.value); });
  slider.addEventListener("change", function () { setSnapshot(slider.value); });
  $("play").addEventListener("click", function () { if (st.playing) stop(); else play(); });
  $("auto").addEventListener("click", function () { setAutoplay(!st.auto); });
  $("speed").addEventListener("change", function () {
    var now = performance.now(), old = st.speed; st.speed = Number($("speed").value) || 1;
    st.start = now - (now - st.start) * old / st.speed;
  });
  $("perSnap").addEventListener("change", function () { st.perSnap = $("perSnap").checked; request(); });
  document.addEventListener("keydown", function (ev) {
    var tag = (ev.target && ev.target.tagName) || "";
    if (ev.key === " " && !/INPUT|SELECT|BUTTON|TEXTAREA/.test(tag)) {
      ev.preventDefault();
      if (st.playing) stop(); else play();
    }
  });
  if (typeof ResizeObserver === "function") new ResizeObserver(function () { layout(); request(); }).observe(stage);
  else window.addEventListener("resize", function () { layout(); request(); });
  buildLoss();
  layout();
  setProbe(0);
  setSnapshot(st.snap);
}

window.neuralFlow = {
  data: D,
  get snapshotIndex() { return st.snap; },
  get probeIndex() { return st.probe; },
  get playing() { return st.playing; },
  get phase() { return st.phase; },
  get autoplay() { return st.auto; },
  setSnapshot: function (i) { setSnapshot(i); },
  setProbe: setProbe,
  play: play,
  stop: stop,
  setAutoplay: setAutoplay,
  currentValues: function () {
    var s = SN[st.snap];
    return { epoch: s.epoch, loss: s.loss, W: s.W, b: s.b, act: s.act[st.probe], grad: s.grad[st.probe] };
  },
  neuronPosition: function (c, j) { if (!geo) layout(); return { x: geo.cols[c].x, y: geo.cols[c].ys[j] }; },
  shownEdges: function (l) { return edgesOf(st.snap)[l - 1].edges.length; }
};
init();
})();
</script>
</body>
</html>
"""
