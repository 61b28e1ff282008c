"""bpcore.flow_page: the self-contained Neural Flow page, checked as text (one document, nothing
loaded from outside, the data block escaped and equal to the data, bad data refused, a realistic
page small). The page in a real browser: test_flow_page_browser.py.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from flow_page_data import _sig, make_data

from bpcore.viz.flow_page import render_html


def embedded_json(page: str) -> str:
    match = re.search(r'<script type="application/json" id="flow-data">(.*?)</script>', page, re.S)
    assert match, "no embedded data block"
    return match.group(1)


# -- the page as text ----------------------------------------------------------------------
def test_page_is_one_self_contained_document():
    data = make_data()
    page = render_html(data, title="XOR <flow>")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<html") == 1 and page.count("</html>") == 1
    for banned in ("http://", "https://", "//cdn", "<link", "@import", "@font-face", "url("):
        assert banned not in page, f"the page references {banned!r}"
    assert not re.search(r"<script[^>]*\bsrc\s*=", page), "the page loads a script"
    assert "<title>XOR &lt;flow&gt;</title>" in page
    assert json.loads(embedded_json(page)) == data


def test_script_end_inside_data_is_escaped():
    data = make_data()
    data["column_names"][1] = "evil </script><script>alert(1)</script> <!-- & -->"
    data["probe_labels"] = ["</SCRIPT>", "a&b"]
    page = render_html(data, title="</script>")
    block = embedded_json(page)
    assert "</" not in block and "<!--" not in block
    assert json.loads(block) == data
    assert page.count("</script>") == 2            # the data block and the code, nothing else


def test_bad_data_is_refused():
    with pytest.raises(ValueError, match="snapshot"):
        render_html({"sizes": [2, 1], "snapshots": []})
    data = make_data()
    data["snapshots"][1]["loss"] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        render_html(data)


def test_realistic_page_stays_small():
    """A 2-16-8-1 net, 61 snapshots (300 epochs every 5), 4 probes, 4 significant digits: well under 2 MB."""
    rng = np.random.default_rng(1)
    sizes = [2, 16, 8, 1]
    shapes = list(zip(sizes[:-1], sizes[1:]))
    snaps = [{"epoch": 5 * k, "loss": _sig(rng.random()), "accuracy": _sig(rng.random()),
              "W": [_sig(rng.normal(size=s)) for s in shapes], "b": [_sig(rng.normal(size=s[1])) for s in shapes],
              "act": [[_sig(rng.normal(size=n)) for n in sizes] for _ in range(4)],
              "grad": [[_sig(rng.normal(size=n) * 1e-3) for n in sizes[1:]] for _ in range(4)],
              "dW": [_sig(rng.normal(size=s) * 1e-3) for s in shapes]} for k in range(61)]
    data = make_data(sizes, snapshots=1, probes=4)
    data["snapshots"] = snaps
    page = render_html(data)
    assert len(page.encode()) < 2_000_000, f"page is {len(page.encode())} bytes"
    assert json.loads(embedded_json(page)) == data
