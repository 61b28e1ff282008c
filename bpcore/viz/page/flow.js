(function () {
"use strict";
var D = JSON.parse(document.getElementById("flow-data").textContent);
var SN = D.snapshots, SIZES = D.sizes, L = SIZES.length - 1, NP = (D.probes || []).length || 1;
var NAMES = D.column_names || SIZES.map(function (n, c) { return c ? "layer " + c : "input"; });
var MAX_EDGES = 200, WIDE = 32;
var FWD_MS = 900, GAP_MS = 300, BWD_MS = 900, FADE_MS = 700, EPOCH_MS = 220, STAGGER = 0.3;
var POS = [86, 156, 255], NEG = [255, 146, 60], NEUTRAL = [38, 46, 64], DIM = [27, 33, 48];
// Forward pulses are green, so they stand out on the blue (positive) and orange (negative) edges.
var FWD_GLOW = [60, 225, 115], FWD_CORE = [215, 255, 225], BWD_GLOW = [255, 38, 70], BWD_CORE = [255, 205, 210];
// What turns the output into a probability: "sigmoid" (BCEWithLogitsLoss), "softmax" (cross-entropy), or none.
var OUT_ACT = D.output_activation || null;

function $(id) { return document.getElementById(id); }
var canvas = $("net"), ctx = canvas.getContext("2d"), tip = $("tip"), stage = $("stage");
var st = { snap: SN.length - 1, probe: 0, playing: false, phase: "idle", start: 0, fadeStart: -1,
           auto: false, autoLast: 0, hover: null, perSnap: false, gradRun: false, speed: 1 };
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
function shortP(p) {                     // a probability: 0.002, 0.731, 1.000; 3e-5 when tiny
  if (p === null) return "n/a";
  return p > 0 && p < 0.001 ? p.toExponential(0) : p.toFixed(3);
}
// The outputs as probabilities (the loss's link function), or null when the output is not a logit.
function probabilities(out) {
  if (!OUT_ACT || !out) return null;
  var z = out.map(num);
  if (z.some(function (v) { return v === null; })) return z.map(function () { return null; });
  if (OUT_ACT === "sigmoid") return z.map(function (v) { return 1 / (1 + Math.exp(-v)); });
  var top = Math.max.apply(null, z), e = z.map(function (v) { return Math.exp(v - top); }), sum = 0;
  e.forEach(function (v) { sum += v; });
  return e.map(function (v) { return v / sum; });
}
function outLabel(v, p) { return "out = " + short(v) + (p === undefined ? "" : " \u00b7 p = " + shortP(p)); }
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
  return (passCache[key] = { f: f || 1, b: b || 1, g: g || 1, gmax: g });
}
// The same, but the largest over every snapshot of the run (the "one scale for all epochs" switch):
// late in training the gradients are tiny, and only a common scale shows how much they shrank.
var runCache = {};
function runScale(p) {
  if (runCache[p]) return runCache[p];
  var b = 0, g = 0;
  for (var k = 0; k < SN.length; k++) { var s = passScale(k, p); if (s.b > b) b = s.b; if (s.gmax > g) g = s.gmax; }
  return (runCache[p] = { b: b || 1, g: g || 1, gmax: g });
}
function gradScale() {                   // the scale the backward pulses and rings use now
  var here = passScale(st.snap, st.probe), run = runScale(st.probe);
  return st.gradRun ? { b: run.b, g: run.g, shown: run.gmax, scope: "whole run" }
                    : { b: here.b, g: here.g, shown: here.gmax, scope: "this epoch" };
}

// ---- layout ----------------------------------------------------------------------------
function layout() {
  var rect = canvas.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
  var w = Math.max(300, rect.width), h = Math.max(240, rect.height);
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  var top = 66, bottom = 46, avail = h - top - bottom;
  var spacing = function (n) { return Math.min(96, avail / Math.max(n, 1)); };
  var radius = function (n) { return clamp(spacing(n) * 0.4, 1.4, 17); };
  // The right margin holds the output labels ("out = -6.17 \u00b7 p = 0.002"): measured, so none is cut.
  ctx.font = "12px system-ui, sans-serif";
  var labelW = SIZES[L] <= 16 ? ctx.measureText(outLabel(-6.17, OUT_ACT ? 0.002 : undefined)).width : 0;
  var left = clamp(w * 0.07, 50, 90), right = Math.max(clamp(w * 0.12, 70, 130), labelW + radius(SIZES[L]) + 22);
  var span = w - left - right;
  var cols = SIZES.map(function (n, c) {
    var x = L === 0 ? w / 2 : left + c * span / L, sp = spacing(n);
    var y0 = top + (avail - sp * (n - 1)) / 2, ys = [];
    for (var j = 0; j < n; j++) ys.push(y0 + j * sp);
    return { x: x, ys: ys, r: radius(n) };
  });
  geo = { w: w, h: h, cols: cols, spacing: L ? span / L : w,
          labelRight: cols[L].x + cols[L].r + 12 + labelW };
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
  var tl = st.playing ? timeline(now) : null, sel = edgesOf(st.snap), sc = passScale(st.snap, p), gs = gradScale();
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
    var glow = fwd ? FWD_GLOW : BWD_GLOW, core = fwd ? FWD_CORE : BWD_CORE, scale = fwd ? sc.f : gs.b;
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
        var gt = clamp(mag(grad[c - 1][j]) / gs.g, 0, 1);
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
      var probs = probabilities(vals);
      ctx.textAlign = "left";
      for (j = 0; j < col.ys.length; j++) {
        ctx.fillText(outLabel(vals[j], probs ? probs[j] : undefined), col.x + R + 12, col.ys[j]);
      }
    }
  }
  // the phase caption, and the scale of the gradients (their size is relative to it)
  ctx.textAlign = "left"; ctx.textBaseline = "alphabetic"; ctx.font = "600 13px system-ui, sans-serif";
  var room = geo.w - 28;
  if (tl) {
    ctx.fillStyle = tl.phase === "forward" ? "#7ee89a" : "#ff6a80";
    ctx.fillText(fitText(tl.phase === "forward" ? "\u25b6 forward pass: values flow to the output"
                                                : "\u25c0 backward pass: gradients flow back", room), 14, geo.h - 28);
  } else {
    ctx.fillStyle = "#7f8aa0"; ctx.font = "12.5px system-ui, sans-serif";
    ctx.fillText(fitText("Press \u25b6 Play (or space) to send probe " + (p + 1) + " forward and its gradients back.",
                         room), 14, geo.h - 28);
  }
  ctx.fillStyle = "#8e9ab0"; ctx.font = "12px system-ui, sans-serif";
  ctx.fillText(fitText(scaleText(gs), room), 14, geo.h - 10);
}
function scaleText(gs) {
  return "gradient scale: largest |dL/dz| = " + short(gs.shown) + " (" + gs.scope +
    "); red pulses and rings are sized relative to it";
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
  var probs = probabilities(out);
  if (probs) rows.push(["probability", vecText(probs.map(shortP), 4)]);
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
  (D.health_warnings || []).forEach(function (w) {         // [epoch, sentence]: what bp.GradientHealth saw
    var said = Array.isArray(w) ? "epoch " + w[0] + ": " + w[1] : String(w);
    html.push("<div class=\"health\">&#9888; gradient health, " + esc(said) + "</div>");
  });
  if (D.thinned) html.push("<div class=\"info\">The record was thinned to stay within " + esc(D.max_snapshots) +
    " snapshots: one every " + esc(D.every) + " epochs now.</div>");
  $("notes").innerHTML = html.join("");
}

// The loss curve (SVG), with a marker at the shown epoch.
var LW = 290, LH = 130, LP = { l: 40, r: 8, t: 18, b: 22 }, lossX = null, lossY = null;
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
    var axis = lossAxis(lo, hi), f = axis.f, a = f(axis.lo), b = f(axis.hi);
    lossY = function (v) { return LP.t + (1 - (f(v) - a) / (b - a)) * (LH - LP.t - LP.b); };
    axis.ticks.forEach(function (v) {
      var y = lossY(v).toFixed(1);
      svg("line", { x1: LP.l, x2: LW - LP.r, y1: y, y2: y, stroke: "#27324b", "stroke-width": 1 }, root);
      text(LP.l - 4, Number(y) + 3.5, short(v), "end");
    });
    text(LP.l, 11, axis.log ? "training loss (log scale)" : "training loss", "start");
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
// The loss axis: linear from 0 (a flat 0.69-0.70 curve then looks flat), or log in decades when
// the loss falls by more than 30x. Ticks at round numbers, labelled on the axis.
function lossAxis(lo, hi) {
  if (lo > 0 && hi / lo > 30) {
    var d0 = Math.floor(Math.log10(lo)), d1 = Math.ceil(Math.log10(hi)), every = d1 - d0 > 5 ? 2 : 1, ticks = [];
    for (var d = d0; d <= d1; d += every) ticks.push(Math.pow(10, d));
    return { log: true, lo: Math.pow(10, d0), hi: Math.pow(10, d1), ticks: ticks, f: Math.log };
  }
  var top = hi > 0 ? hi : 1, step = Math.pow(10, Math.floor(Math.log10(top / 4)));
  [1, 2, 2.5, 5, 10].some(function (m) { if (top / (m * step) <= 4) { step *= m; return true; } return false; });
  var n = Math.ceil(top / step - 1e-9), lin = [];
  for (var k = 0; k <= n; k++) lin.push(Number((k * step).toPrecision(6)));
  return { log: false, lo: 0, hi: n * step, ticks: lin, f: function (v) { return v; } };
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
    var probs = h.c === L ? probabilities(s.act[p][L]) : null;
    return "<b>" + esc(NAMES[h.c]) + " \u00b7 neuron " + h.j + "</b><br>value = " + esc(fmt(s.act[p][h.c][h.j])) +
      probe + (probs ? "<br>p = " + esc(shortP(probs[h.j])) + " <span class=\"m\">(" + OUT_ACT + " of the value)</span>" : "") +
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
  $("gradRun").addEventListener("change", function () { st.gradRun = $("gradRun").checked; request(); });
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
  shownEdges: function (l) { return edgesOf(st.snap)[l - 1].edges.length; },
  outputProbabilities: function () { return probabilities(SN[st.snap].act[st.probe][L]); },
  gradientScale: function () { var g = gradScale(); return { value: g.shown, scope: g.scope, text: scaleText(g) }; },
  setGradientScaleWholeRun: function (on) { $("gradRun").checked = !!on; st.gradRun = !!on; request(); },
  lossTicks: function () { return Array.prototype.map.call($("loss").querySelectorAll("text"),
                                                          function (t) { return t.textContent; }); },
  layoutReport: function () { if (!geo) layout(); return { width: geo.w, height: geo.h, labelRight: geo.labelRight }; }
};
init();
})();
