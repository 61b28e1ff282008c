"""Sphinx configuration of the bpcore docs: PyData theme, autodoc + napoleon, MyST-NB tutorials
executed at build time, and the examples/ scripts as a sphinx-gallery gallery.

    bash ci/docs.sh            (installs the "docs" extra, builds with warnings as errors)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "examples"))          # the examples import their _common.py
sys.path.insert(0, str(DOCS / "_ext"))               # bpcore_sphinx: the gallery's helpers, docstrings

import bpcore  # noqa: E402

project = "bpcore"
author = "the bpcore authors"
copyright = "the bpcore authors, MIT License"
release = version = bpcore.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_nb",
    "sphinx_gallery.gen_gallery",
    "sphinx_design",
    "bpcore_sphinx",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
exclude_patterns = ["_build", "jupyter_execute", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["bpcore.css"]

# -- the theme ---------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"bpcore {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc", "ipynb-download", "sourcelink"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "changelog": []}
html_show_sourcelink = True

# -- API pages from the docstrings (Google style) ---------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "none"              # the docstrings say the types and shapes in words
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True                # "Attributes:" as fields: no second entry beside autodoc's

# -- tutorials: MyST notebooks, executed at every build ------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
nb_execution_mode = os.environ.get("BPCORE_DOCS_EXECUTE", "cache")   # ci/docs.sh: "force"
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_timeout = 180
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_in_temp = True             # a tutorial that saves files leaves nothing in docs/
nb_merge_streams = True

# -- the gallery: examples/*.py run as `python examples/NAME.py --out DIR` would (docs/_ext) -------
NOT_RUN = ("cnn_mnist", "flow_screenshot")     # need the MNIST files / a Flow page and Chromium

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/(?!(%s)\.py)[a-z][a-z_]*\.py$" % "|".join(NOT_RUN),
    "ignore_pattern": r"(^|/)(_[a-z_]*|__init__)\.py$",
    "within_subsection_order": "bpcore_sphinx.GalleryOrder",
    "image_scrapers": ("bpcore_sphinx.scrape_written_files",),
    "reset_argv": "bpcore_sphinx.reset_argv",
    "abort_on_example_error": True,
    "show_memory": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "capture_repr": (),
    "line_numbers": False,
    "min_reported_time": 3600,             # no "total running time" lines: they change every build
    "write_computation_times": False,      # nor a timing page (it loads scripts from CDNs)
    "show_signature": False,
}
