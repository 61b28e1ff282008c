"""The package layout is the architecture: one-way floors (import-linter), small modules, page files.

The floors are declared in pyproject.toml ([tool.importlinter]); these tests run the same
`lint-imports` that ci/test.sh runs, and show that it catches an import planted against them.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
needs_linter = pytest.mark.skipif(LINT_IMPORTS is None,
                                  reason="import-linter is not installed (pip install -e '.[test]')")


def _lint(tree: pathlib.Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=120)


def _copy_tree(tmp_path) -> pathlib.Path:
    tree = tmp_path / "tree"
    for name in ("bpcore", "backends"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


@needs_linter
def test_the_floors_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and "0 broken" in result.stdout


@needs_linter
@pytest.mark.parametrize("module, planted", [
    # an import inside a function counts, as the circle the layout removed hid in them
    ("bpcore/nn/linear.py", "\n\ndef _planted():\n    from ..training import fit\n    return fit\n"),
    ("bpcore/checkpoint/api.py", "\nfrom ..training.history import History  # noqa\n"),
    ("backends/_numpy.py", "\nimport bpcore.nn  # noqa\n"),
    # inside bp.distributed too: the circle communicator -> gradients -> communicator that issue 25 found
    ("bpcore/distributed/gradients.py", "\n\ndef _planted():\n    from .communicator import init\n    return init\n"),
])
def test_an_import_that_runs_back_up_is_caught(tmp_path, module, planted):
    tree = _copy_tree(tmp_path)
    with open(tree / module, "a", encoding="utf-8") as stream:
        stream.write(planted)
    result = _lint(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout or "broken" in result.stdout
    assert "1 broken" in result.stdout, result.stdout


def test_the_public_namespace_holds_only_the_api_and_its_subpackages():
    """No stray names such as ``bp.annotations`` (a ``from __future__`` import in __init__.py leaks one)."""
    import types

    import bpcore as bp
    stray = [name for name in dir(bp) if not name.startswith("_") and name not in bp.__all__
             and not isinstance(getattr(bp, name), types.ModuleType)]
    assert stray == []


def test_no_module_is_over_400_lines():
    long = {}
    for folder in ("bpcore", "backends"):
        for path in (ROOT / folder).rglob("*.py"):
            with open(path, encoding="utf-8") as stream:
                count = sum(1 for _ in stream)
            if count > 400:
                long[str(path.relative_to(ROOT))] = count
    assert not long, f"modules over 400 lines (STYLE.md: one room per idea): {long}"


TEST_FILE_LIMIT = 450      # test files stay under ~400 lines, split by subject; this much slack before it fails


def _python_files_over(folder: pathlib.Path, limit: int) -> dict:
    """{path under ``folder``: line count} of its .py files longer than ``limit`` lines."""
    long = {}
    for path in folder.rglob("*.py"):
        with open(path, encoding="utf-8") as stream:
            count = sum(1 for _ in stream)
        if count > limit:
            long[str(path.relative_to(folder))] = count
    return long


def test_no_test_file_is_over_450_lines(tmp_path):
    (tmp_path / "test_long.py").write_text("x = 1\n" * (TEST_FILE_LIMIT + 1))     # the check sees a planted one
    (tmp_path / "test_short.py").write_text("x = 1\n" * TEST_FILE_LIMIT)
    assert _python_files_over(tmp_path, TEST_FILE_LIMIT) == {"test_long.py": TEST_FILE_LIMIT + 1}
    long = _python_files_over(ROOT / "tests", TEST_FILE_LIMIT)
    assert not long, (f"test files over {TEST_FILE_LIMIT} lines: {long}; split them by subject (shared helpers "
                      "in tests/helpers.py or a small helper module beside the tests)")


def test_the_flow_page_parts_are_files_of_their_own():
    from bpcore.viz import flow_page

    page = ROOT / "bpcore" / "viz" / "page"
    for name in ("flow.html", "flow.css", "flow.js"):
        assert (page / name).stat().st_size > 0
    source = pathlib.Path(flow_page.__file__).read_text(encoding="utf-8")
    assert "<!DOCTYPE" not in source and "function (" not in source and "{ margin" not in source  # no page here
    document = flow_page._template()
    assert "__STYLE__" not in document and "__SCRIPT__" not in document
    assert (page / "flow.js").read_text(encoding="utf-8").strip()[:40] in document
