"""The examples run end to end (short runs on every backend, the lesson figures at full length)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

import backends

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["xor", "spiral"])
def test_example_runs_briefly_on_every_backend(backend, name, capsys):
    result = load_example(name).main(["--device", backend.spec, "--epochs", "20", "--seed", "3"])
    assert result["loss"] > 0
    output = capsys.readouterr().out
    assert backend.spec in output and "loss" in output


def test_xor_learns_xor():
    result = load_example("xor").main([])
    assert result["correct"] == 4
    low, high_a, high_b, low_b = result["predictions"]
    assert max(low, low_b) < 0.1 and min(high_a, high_b) > 0.9


def test_spiral_reaches_full_training_accuracy(backend):
    """The lesson's figure: 2-16-8-1 tanh, lr 0.5, 1000 epochs -> training accuracy 1.0."""
    result = load_example("spiral").main(["--device", backend.spec])
    assert result["accuracy"] == 1.0
    assert result["loss"] < 0.02


@pytest.mark.parametrize("name", ["xor", "spiral"])
def test_unusable_device_exits_with_one_line(name):
    reason = backends.status().get("cupy")
    if reason is None:
        pytest.skip("CuPy and a GPU are usable here, so --device cuda works")
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, f"{name}.py"), "--device", "cuda"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "CuPy" in lines[0]


def test_unknown_device_exits_with_one_line():
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, "xor.py"), "--device", "tpu9"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "known names" in result.stderr


def test_bad_epochs_is_refused_by_the_parser():
    with pytest.raises(SystemExit):
        load_example("xor").main(["--epochs", "0"])
