"""The README and the docs say what works: their commands exist, their code blocks run as written.

The docs site itself (tutorials executed, examples run, warnings as errors) is built by
``bash ci/docs.sh``, which CI runs after the tests; these are the fast checks of the same text.
"""
from __future__ import annotations

import importlib.util
import pathlib
import re
import shlex

import numpy as np
import pytest

import bpcore as bp

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_is_a_front_door_with_the_two_commands_first():
    lines = README.splitlines()
    assert len(lines) <= 250
    first = "\n".join(lines[:40])
    demo = ('python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[viz]" && '
            'python examples/spiral.py')
    assert demo in first and "\nbash ci/test.sh\n" in first
    assert (ROOT / "examples" / "spiral.py").is_file() and (ROOT / "ci" / "test.sh").is_file()
    extras = re.findall(r'pip install -e "\.\[([a-z0-9,]+)\]"', README)
    declared = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for extra in {name for group in extras for name in group.split(",")}:
        assert re.search(rf"^{extra} = \[", declared, flags=re.M), extra
    assert "## Write your own layer" in README


def test_every_relative_link_of_the_readme_exists():
    links = re.findall(r"\]\(([^)#]+)\)", README)
    local = [link for link in links if "://" not in link]
    assert local
    missing = [link for link in local if not (ROOT / link).exists()]
    assert missing == []


def test_the_commands_the_readme_names_exist():
    for block in code_blocks(README, "bash"):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            for command in filter(None, (part.strip() for part in line.split("&&"))):
                words = shlex.split(command)
                if words[0] == "bash":
                    assert (ROOT / words[1]).is_file(), command
                if words[0] == "python" and words[1].endswith(".py"):
                    assert (ROOT / words[1]).is_file(), command


def test_the_readme_tour_runs_as_written(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    tour, fit = [block for block in code_blocks(README, "python") if "bp.data.spiral" in block or
                 "bp.fit(model" in block][:2]
    monkeypatch.chdir(tmp_path)
    names = {}
    exec(compile(tour, "README tour", "exec"), names)
    said = capsys.readouterr().out
    assert "overall: PASS" in said and "gradient health on 256 samples" in said
    assert (tmp_path / "out" / "tour_boundary.png").stat().st_size > 5000
    exec(compile(fit, "README fit", "exec"), names)
    assert (tmp_path / "out" / "tour_curves.png").stat().st_size > 5000
    assert names["hist"]["accuracy"][-1] > 0.95


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("ndonnx", "onnx", "onnxruntime")),
                    reason='the ONNX snippets need the onnx extra: pip install -e ".[onnx]"')
def test_the_onnx_snippets_fit_together(tmp_path, monkeypatch, capsys):
    """The export names the graph's input and output; the run snippet must feed and ask for those names."""
    text = (ROOT / "docs" / "guide" / "onnx.md").read_text(encoding="utf-8")
    export, run = [block for block in code_blocks(text, "python") if "onnx" in block][:2]
    monkeypatch.chdir(tmp_path)
    names = {}
    exec(compile(export, "onnx.md export", "exec"), names)
    exec(compile(run, "onnx.md run", "exec"), names)
    expected = bp.predict(names["model"], names["points"])
    np.testing.assert_allclose(names["logits"], expected, rtol=1e-4, atol=1e-4)


def test_every_tutorial_is_an_executed_notebook_with_a_device_first():
    folder = ROOT / "docs" / "tutorials"
    listed = re.findall(r"^([a-z_]+)$", (folder / "index.md").read_text(encoding="utf-8"), flags=re.M)
    pages = sorted(path.stem for path in folder.glob("*.md") if path.stem != "index")
    assert sorted(listed) == pages and "own_layer" in pages
    for name in pages:
        text = (folder / f"{name}.md").read_text(encoding="utf-8")
        assert text.startswith("---\nfile_format: mystnb\n"), name
        first_cell = code_blocks(text, r"\{code-cell\} ipython3")[0]
        assert first_cell.startswith('DEVICE = "cpu"\n'), name
