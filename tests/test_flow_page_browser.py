"""bpcore.flow_page in a real browser: the Neural Flow page opened offline in headless Chromium,
played, scrubbed and hovered, and what a learner reads off it (the page as text: test_flow_page.py).

The data are synthetic (tests/flow_page_data.py: a small tanh net trained by plain gradient
descent in NumPy), so these tests do not depend on the recorder. They drive the system's
headless Chromium with Playwright for Python and skip, with the reason, when either is
missing. To run them:

    apt-get install -y --no-install-recommends chromium      # Debian's package
    pip install playwright                                    # no `playwright install`: the system Chromium is used
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile

import numpy as np
import pytest
from flow_page_data import make_data

from bpcore.viz.flow_page import render_html

# -- the page in headless Chromium -------------------------------------------------------------
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_chromium():
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (/usr/bin/chromium, chromium, chromium-browser, google-chrome); "
                    "install it with `apt-get install -y --no-install-recommends chromium`")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the Python package playwright is not installed (`pip install playwright`; "
                    "no `playwright install` needed, the system Chromium is used)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Opened:
    """A page opened from disk, with its console problems and every request it made."""

    def __init__(self, browser, data, tmp_path, name="flow.html", viewport=(1280, 800)):
        path = tmp_path / name
        path.write_text(render_html(data), encoding="utf-8")
        self.url = path.as_uri()
        self.data = data
        self.problems, self.requests, self.blocked = [], [], []
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                           device_scale_factor=1)
        self.page = page = self.context.new_page()
        page.on("console", lambda msg: msg.type in ("error", "warning")
                and self.problems.append(f"console {msg.type}: {msg.text}"))
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("request", lambda request: self.requests.append(request.url))
        page.route("**/*", self._route)
        page.goto(self.url, wait_until="load")
        page.wait_for_function("window.neuralFlow !== undefined")

    def _route(self, route):
        url = route.request.url
        if url == self.url or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def evaluate(self, expression, arg=None):
        return self.page.evaluate(expression, arg)

    def outside_requests(self):
        return self.blocked + [u for u in self.requests if u != self.url and not u.startswith(("data:", "blob:"))]

    def close(self):
        self.context.close()


@pytest.fixture
def opened(browser, tmp_path):
    pages = []

    def open_page(data, name="flow.html", viewport=(1280, 800)):
        page = Opened(browser, data, tmp_path, name, viewport)
        pages.append(page)
        return page

    yield open_page
    for page in pages:
        page.close()


def test_page_opens_offline_without_errors(opened):
    page = opened(make_data())
    body = page.page.locator("body")
    last = len(page.data["snapshots"]) - 1                  # the page opens on the end of training
    assert body.get_attribute("data-snapshot-index") == str(last)
    assert body.get_attribute("data-epoch") == str(page.data["snapshots"][last]["epoch"])
    assert body.get_attribute("data-phase") == "idle"
    assert page.evaluate("window.neuralFlow.data") == page.data
    page.evaluate("window.neuralFlow.setProbe(1)")
    page.evaluate("window.neuralFlow.setSnapshot(0)")
    page.page.mouse.move(300, 300)
    page.page.wait_for_timeout(100)
    assert page.problems == []
    assert page.outside_requests() == []


def test_play_runs_forward_then_backward_and_moves(opened):
    page = opened(make_data())
    page.evaluate("""() => { window.__phases = [];
        new MutationObserver(() => window.__phases.push(document.body.dataset.phase))
            .observe(document.body, {attributes: true, attributeFilter: ["data-phase"]}); }""")
    canvas = page.page.locator("#net")
    page.page.select_option("#speed", "2")
    page.page.click("#play")
    assert page.evaluate("window.neuralFlow.playing") is True
    page.page.wait_for_timeout(250)
    first = canvas.screenshot()
    page.page.wait_for_timeout(300)
    second = canvas.screenshot()
    assert first != second, "the picture did not change while playing"
    page.page.wait_for_function("window.neuralFlow.phase === 'backward'", timeout=6000)
    page.page.wait_for_timeout(250)
    page.page.screenshot(path=os.path.join(tempfile.gettempdir(), "neural_flow.png"))
    page.page.wait_for_function("window.neuralFlow.phase === 'idle'", timeout=6000)
    assert page.evaluate("window.__phases") == ["forward", "backward", "idle"]
    assert page.evaluate("window.neuralFlow.playing") is False
    assert page.problems == [] and page.outside_requests() == []


def test_slider_shows_the_chosen_snapshot(opened):
    data = make_data(snapshots=4)
    page = opened(data)
    set_slider = """(k) => { const s = document.getElementById("slider"); s.value = String(k);
                              s.dispatchEvent(new Event("input", {bubbles: true}));
                              s.dispatchEvent(new Event("change", {bubbles: true})); }"""
    for k in (0, 2, 1):
        for probe in range(len(data["probes"])):
            page.evaluate("(p) => window.neuralFlow.setProbe(p)", probe)
            page.evaluate(set_slider, k)
            snap = data["snapshots"][k]
            expected = {"epoch": snap["epoch"], "loss": snap["loss"], "W": snap["W"], "b": snap["b"],
                        "act": snap["act"][probe], "grad": snap["grad"][probe]}
            assert page.evaluate("window.neuralFlow.currentValues()") == expected
            assert page.evaluate("window.neuralFlow.snapshotIndex") == k
            assert page.evaluate("window.neuralFlow.probeIndex") == probe
            body = page.page.locator("body")
            assert body.get_attribute("data-epoch") == str(snap["epoch"])
            assert body.get_attribute("data-snapshot-index") == str(k)
            assert page.page.locator("#epochLabel").inner_text() == f"epoch {snap['epoch']}"
    page.evaluate("window.neuralFlow.setSnapshot(3)")
    assert page.page.locator("body").get_attribute("data-epoch") == str(data["snapshots"][3]["epoch"])
    # autoplay through the epochs walks the slider forward
    page.evaluate("window.neuralFlow.setSnapshot(0); window.neuralFlow.setAutoplay(true)")
    page.page.wait_for_function("window.neuralFlow.snapshotIndex >= 2", timeout=5000)
    page.evaluate("window.neuralFlow.setAutoplay(false)")
    assert page.problems == []


def tip_number(text, name):
    """The number after ``name = `` in a tooltip's text."""
    match = re.search(re.escape(name) + r" = (\S+)", text)
    assert match, f"no {name!r} in the tooltip {text!r}"
    return float(match.group(1))


def test_hover_shows_exact_values(opened):
    data = make_data()
    page = opened(data)
    page.evaluate("window.neuralFlow.setSnapshot(1); window.neuralFlow.setProbe(1)")
    snap = data["snapshots"][1]
    box = page.page.locator("#net").bounding_box()
    tip = page.page.locator("#tip")
    for column, j in ((1, 2), (2, 0), (0, 1)):
        pos = page.evaluate("([c, j]) => window.neuralFlow.neuronPosition(c, j)", [column, j])
        page.page.mouse.move(box["x"] + pos["x"], box["y"] + pos["y"])
        tip.wait_for(state="visible", timeout=2000)
        text = tip.inner_text()
        assert tip_number(text, "value") == snap["act"][1][column][j]
        if column:
            assert tip_number(text, "dL/dz") == snap["grad"][1][column - 1][j]
            assert tip_number(text, "bias") == snap["b"][column - 1][j]
    # an edge: a point a third of the way along the edge from input 0 to hidden neuron 0
    a = page.evaluate("window.neuralFlow.neuronPosition(0, 0)")
    b = page.evaluate("window.neuralFlow.neuronPosition(1, 0)")
    page.page.mouse.move(box["x"] + (2 * a["x"] + b["x"]) / 3, box["y"] + (2 * a["y"] + b["y"]) / 3)
    page.page.wait_for_function("document.getElementById('tip').textContent.includes('weight W[')", timeout=2000)
    text = tip.inner_text()
    layer, i, j = map(int, re.search(r"W\[(\d+)\]\[(\d+)\]\[(\d+)\]", text).groups())
    assert tip_number(text, "w") == snap["W"][layer][i][j]
    assert tip_number(text, "dL/dW") == snap["dW"][layer][i][j]
    page.page.mouse.move(box["x"] + 2, box["y"] + 2)
    tip.wait_for(state="hidden", timeout=2000)
    assert page.problems == []


def test_wide_layer_draws_the_strongest_edges_and_says_so(opened):
    data = make_data(sizes=(2, 40, 8, 1), snapshots=2, probes=2)
    page = opened(data, "wide.html")
    note = page.page.locator("#notes")
    assert note.is_visible()
    assert "showing the 200 strongest of 320 edges" in note.inner_text()
    assert page.evaluate("window.neuralFlow.shownEdges(1)") == 80      # 2 x 40: all drawn
    assert page.evaluate("window.neuralFlow.shownEdges(2)") == 200
    assert page.evaluate("window.neuralFlow.shownEdges(3)") == 8
    page.page.select_option("#speed", "4")
    page.evaluate("window.neuralFlow.play()")
    assert page.evaluate("window.neuralFlow.phase") == "forward"
    page.page.wait_for_function("window.neuralFlow.phase === 'backward'", timeout=6000)
    page.evaluate("window.neuralFlow.stop()")
    assert page.evaluate("window.neuralFlow.phase") == "idle"
    assert page.problems == [] and page.outside_requests() == []


# -- what a learner reads off the page (issue 19) -------------------------------------------------
def test_the_output_logit_shows_its_probability(opened):
    data = make_data()
    data["output_activation"] = "sigmoid"
    page = opened(data)
    logit = data["snapshots"][-1]["act"][0][-1][0]
    probability = page.evaluate("window.neuralFlow.outputProbabilities()")[0]
    assert probability == pytest.approx(1 / (1 + np.exp(-logit)), rel=1e-12)
    assert "probability" in page.page.locator("#readout").inner_text()
    plain = opened(make_data(), name="plain.html")
    assert plain.evaluate("window.neuralFlow.outputProbabilities()") is None
    assert "probability" not in plain.page.locator("#readout").inner_text()


def test_softmax_outputs_become_probabilities_that_sum_to_one(opened):
    data = make_data(sizes=(2, 3, 3))
    data["output_activation"] = "softmax"
    page = opened(data)
    logits = np.array(data["snapshots"][-1]["act"][0][-1])
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(page.evaluate("window.neuralFlow.outputProbabilities()"), expected, rtol=1e-12)


def _rgb(text):
    text = text.strip().lstrip("#")
    return np.array([int(text[i:i + 2], 16) for i in (0, 2, 4)], dtype=float)


def test_forward_pulses_stand_out_from_the_blue_edges(opened):
    page = opened(make_data())
    style = "name => getComputedStyle(document.documentElement).getPropertyValue(name)"
    forward, positive, backward = (_rgb(page.evaluate(style, name)) for name in ("--fwd", "--pos", "--bwd"))
    assert np.linalg.norm(forward - positive) > 150 and np.linalg.norm(forward - backward) > 150


def test_the_gradient_scale_is_shown_per_epoch_or_for_the_whole_run(opened):
    data = make_data(snapshots=4)
    page = opened(data)
    largest = [max(abs(v) for column in s["grad"][0] for v in column) for s in data["snapshots"]]
    shown = page.evaluate("window.neuralFlow.gradientScale()")
    assert shown["scope"] == "this epoch" and shown["value"] == pytest.approx(largest[-1])
    assert "largest |dL/dz|" in shown["text"]
    page.evaluate("window.neuralFlow.setGradientScaleWholeRun(true)")
    shown = page.evaluate("window.neuralFlow.gradientScale()")
    assert shown["scope"] == "whole run" and shown["value"] == pytest.approx(max(largest))


def test_a_flat_loss_looks_flat(opened):
    data = make_data(snapshots=4)
    for k, snapshot in enumerate(data["snapshots"]):
        snapshot["loss"] = 0.70 - 0.003 * k                  # 0.70 .. 0.691: a net that does not learn
    page = opened(data)
    ticks = page.evaluate("window.neuralFlow.lossTicks()")
    assert "0" in ticks and ticks.count("training loss") == 1     # a y axis from 0, one label
    assert "training loss (log scale)" not in ticks


def test_at_1000_by_700_no_label_is_cut(opened):
    page = opened(make_data(sizes=(2, 4, 1)) | {"output_activation": "sigmoid"}, viewport=(1000, 700))
    report = page.evaluate("window.neuralFlow.layoutReport()")
    assert report["labelRight"] <= report["width"] - 2
    overflow = page.evaluate("document.documentElement.scrollHeight")
    assert overflow <= 700, f"the page needs {overflow} px at a 700 px high window"


def test_the_readme_screenshot_script_writes_a_png(browser, tmp_path):
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                          "flow_screenshot.py")
    page = tmp_path / "flow.html"
    page.write_text(render_html(make_data()), encoding="utf-8")
    png = tmp_path / "shot.png"
    # its own process: Playwright's sync API cannot nest inside the browser fixture's
    result = subprocess.run([sys.executable, script, str(page), "--png", str(png), "--size", "800x600"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with open(png, "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"


def test_gradient_health_warnings_are_shown_under_the_network(opened):
    data = make_data()
    data["health_warnings"] = [[3, "layer 0.W: gradient 9.0e-13 of the last layer's: gradients vanish"]]
    page = opened(data)
    notes = page.page.locator("#notes").inner_text()
    assert "gradient health, epoch 3: layer 0.W: gradient 9.0e-13" in notes
    assert "gradient health" not in opened(make_data(), name="quiet.html").page.locator("#notes").inner_text()
