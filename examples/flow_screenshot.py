"""A screenshot of the Neural Flow page
====================================

A screenshot of a Neural Flow page in headless Chromium, half-way through the backward pass.

.. code-block:: bash

    python examples/flow_screenshot.py out/flow.html --png examples/figures/neural_flow.png [--size 1000x700]

Needs Chromium (Debian: apt-get install chromium) and Playwright for Python (pip install
playwright; no `playwright install`: the system browser is used). This is how the README's
picture of the page is made.
"""
# sphinx_gallery_thumbnail_path = '../examples/figures/neural_flow.png'
from __future__ import annotations

import argparse
import os
import shutil
import sys


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("page", help="the flow.html that examples/neural_flow.py wrote")
    p.add_argument("--png", default="neural_flow.png", help="where the screenshot goes (default: neural_flow.png)")
    p.add_argument("--size", default="1000x700", help="window size WIDTHxHEIGHT (default: 1000x700)")
    args = p.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        p.error(f"--size must be WIDTHxHEIGHT such as 1000x700, got {args.size!r}")
    if not os.path.isfile(args.page):
        p.error(f"no page at {args.page!r}: run examples/neural_flow.py first")
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                    None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("needs Playwright for Python: pip install playwright")
    if chromium is None:
        sys.exit("needs Chromium: apt-get install -y --no-install-recommends chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto("file://" + os.path.abspath(args.page))
        page.wait_for_function("window.neuralFlow !== undefined")
        page.evaluate("window.neuralFlow.play()")
        page.wait_for_function("window.neuralFlow.phase === 'backward'", timeout=30000)
        page.wait_for_timeout(1200)                 # the red pulses half-way back
        os.makedirs(os.path.dirname(os.path.abspath(args.png)), exist_ok=True)
        page.screenshot(path=args.png)
        browser.close()
    print(f"wrote {args.png}")
    return args.png


if __name__ == "__main__":
    main()
