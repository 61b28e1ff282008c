"""What bpcore's docs build adds to Sphinx: the gallery's command lines and image scraper, plain-text
docstrings read as reStructuredText without surprises, and the tutorials as .ipynb downloads.

conf.py names the gallery functions by their qualified names ("bpcore_sphinx.reset_argv", ...), so
that the configuration stays plain data that Sphinx can cache.
"""
from __future__ import annotations

import ast
import re
import shutil
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]

# -- the gallery: examples/*.py run as `python examples/NAME.py --out DIR` would -----------------
GALLERY_ORDER = ["chain_rule", "xor", "spiral", "moons", "blobs", "digits", "gradient_check",
                 "vanishing_gradients", "deep_nets", "cnn_digits", "char_rnn", "tiny_gpt", "neural_flow", "export_onnx",
                 "distributed", "cnn_mnist", "flow_screenshot"]
_OUT = Path(tempfile.mkdtemp(prefix="bpcore-gallery-"))


def _out_folder(src_file) -> Path:
    return _OUT / Path(src_file).stem


def reset_argv(gallery_conf, script_vars):
    """The command line of an example in the gallery: --out DIR for those that draw.

    sphinx-gallery runs an example with ``__doc__`` set to "" and no ``__file__``; the examples
    read both (their --help is the docstring's title; they find _common.py beside themselves),
    so they are put back here as ``python examples/NAME.py`` would have them.
    """
    src = Path(script_vars["src_file"])
    text = src.read_text(encoding="utf-8")
    names = script_vars.get("example_globals")
    if names is not None:
        names["__doc__"] = ast.get_docstring(ast.parse(text), clean=False)
        names["__file__"] = str(src)
    if "draws=True" not in text:
        return []
    folder = _out_folder(src)
    folder.mkdir(parents=True, exist_ok=True)
    return ["--out", str(folder)]


def scrape_written_files(block, block_vars, gallery_conf):
    """The PNGs an example wrote into its --out folder (bpcore draws with matplotlib's object API,
    not pyplot, so there is no open figure to scrape), and the Neural Flow page as a download."""
    from sphinx_gallery.scrapers import figure_rst

    folder = _out_folder(block_vars["src_file"])
    if not folder.is_dir():
        return ""
    pngs = sorted(folder.glob("*.png"), key=lambda p: (p.stat().st_mtime, p.name))
    images = []
    for png, target in zip(pngs, block_vars["image_path_iterator"]):
        shutil.copyfile(png, target)
        images.append(target)
    rst = figure_rst(images, gallery_conf["src_dir"]) if images else ""
    page = folder / "flow.html"
    if page.exists():
        target = DOCS / "auto_examples" / "images" / "neural_flow_page.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(page, target)
        rst += ("\n\nThe page this run wrote, one self-contained file to open in a browser: "
                ":download:`neural_flow_page.html </auto_examples/images/neural_flow_page.html>`.\n")
    shutil.rmtree(folder)           # each example's files are shown once
    return rst


class GalleryOrder:
    """sphinx-gallery's sort key: the lessons' order, not the alphabet's."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        stem = Path(filename).stem
        return (GALLERY_ORDER.index(stem) if stem in GALLERY_ORDER else len(GALLERY_ORDER), stem)

    def __repr__(self):
        return "GalleryOrder()"


# -- docstrings: plain text with |norms| and a * b, read as reStructuredText --------------------
_PROTECTED = re.compile(r"(``.*?``|:[a-z:]+:`[^`]*`|`[^`]*`_?)")


def _escape(text: str) -> str:
    """``|x|`` is a substitution, ``*`` starts emphasis and ``word_`` is a link in reST; bpcore's
    docstrings mean them as the math and names they are (|dL/dW|, dL/dx * W, "val_"). Escape them
    outside inline literals and roles."""
    parts = _PROTECTED.split(text)
    for i in range(0, len(parts), 2):           # the even parts are outside the protected spans
        parts[i] = re.sub(r"(?<!\\)\|", r"\\|", parts[i])
        parts[i] = re.sub(r"(?<!\\)\*", r"\\*", parts[i])
        parts[i] = re.sub(r"(\w)_(?=\s|$|[.,;:!?)\]'\"\\])", r"\1\\_", parts[i])    # "val_" is not a link
    return "".join(parts)


def escape_docstring(app, what, name, obj, options, lines):
    """autodoc-process-docstring: escape | and * in prose lines; literal blocks, doctests, field
    markers and bullet lists are left as they are."""
    literal_indent = None
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if literal_indent is not None:
            if not stripped or indent > literal_indent:
                continue
            literal_indent = None
        if stripped.startswith((">>>", "... ", ".. ")) or not stripped:
            continue
        bullet = re.match(r"[*\-+] ", stripped)
        head, body = (line[:indent + 2], line[indent + 2:]) if bullet else (line[:indent], stripped)
        lines[i] = head + _escape(body)
        if stripped.endswith("::"):
            literal_indent = indent


# -- the tutorials as .ipynb downloads -----------------------------------------------------------
def copy_notebooks(app, exception):
    """Put each executed tutorial beside its page as NAME.ipynb (the page's sidebar links to it)."""
    if exception is not None or app.builder.format != "html":
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / "tutorials"
    target = Path(app.outdir) / "tutorials"
    for notebook in sorted(executed.glob("*.ipynb")):
        shutil.copyfile(notebook, target / notebook.name)


def setup(app):
    app.connect("autodoc-process-docstring", escape_docstring, priority=600)   # after napoleon (500)
    app.connect("build-finished", copy_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
