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


TRAINING_EXAMPLES = ["xor", "spiral", "moons", "blobs", "digits", "deep_nets", "cnn_digits"]
DRAWING_EXAMPLES = {"spiral": ["spiral_boundary.png", "spiral_curves.png"], "moons": ["moons_boundary.png"],
                    "blobs": ["blobs_boundary.png", "blobs_curves.png"],
                    "digits": ["digits_confusion.png", "digits_curves.png"],
                    "vanishing_gradients": ["vanishing_gradients.png"],
                    "deep_nets": ["deep_nets_gradients.png"],
                    "cnn_digits": ["cnn_digits_confusion.png", "cnn_digits_filters.png", "cnn_digits_feature_maps.png"]}


def run_args(name, backend, tmp_path, epochs="2"):
    args = ["--device", backend.spec, "--seed", "3"]
    if name in TRAINING_EXAMPLES:
        args += ["--epochs", epochs]
    if name in DRAWING_EXAMPLES:
        args += ["--out", str(tmp_path)]
    return args


@pytest.mark.parametrize("name", TRAINING_EXAMPLES + ["gradient_check", "chain_rule", "vanishing_gradients"])
def test_example_runs_briefly_on_every_backend(backend, name, tmp_path, capsys):
    if name in ("digits", "deep_nets", "cnn_digits"):
        pytest.importorskip("sklearn", reason="the digits need scikit-learn (pip install -e '.[data]')")
    result = load_example(name).main(run_args(name, backend, tmp_path))
    assert result
    output = capsys.readouterr().out
    assert output.strip()
    for png in DRAWING_EXAMPLES.get(name, []):
        if importlib.util.find_spec("matplotlib") is not None:
            assert (tmp_path / png).stat().st_size > 5000, png
            assert f"wrote {tmp_path / png}" in output


def test_lesson_figures_at_full_length(tmp_path):
    """spiral 1.0 (training), blobs >= 0.95, moons >= 0.95 (test), with the lessons' settings."""
    out = ["--out", str(tmp_path)]
    assert load_example("spiral").main(out)["accuracy"] == 1.0
    assert load_example("blobs").main(out)["accuracy"] >= 0.95
    assert load_example("moons").main(out)["accuracy"] >= 0.95


def test_cnn_digits_reaches_its_readme_accuracy(tmp_path):
    """The README's CNN claim: test accuracy >= 0.98 on the 8x8 digits with the default settings."""
    pytest.importorskip("sklearn", reason="the digits need scikit-learn (pip install -e '.[data]')")
    assert load_example("cnn_digits").main(["--out", str(tmp_path)])["accuracy"] >= 0.98


def test_neural_flow_example_writes_a_light_self_contained_page(tmp_path, backend):
    result = load_example("neural_flow").main(["--dataset", "xor", "--epochs", "60", "--out", str(tmp_path),
                                               "--device", backend.spec])
    page = (tmp_path / "flow.html").read_text(encoding="utf-8")
    assert result["snapshots"] >= 2
    assert "https://" not in page and "http://" not in page
    assert len(page) < 2_000_000


def test_gradient_check_example_passes_then_catches_the_bug():
    result = load_example("gradient_check").main([])
    assert result["correct"].passed
    assert not result["planted"].passed
    assert {row.name for row in result["planted"].rows if not row.passed} == {"0.W", "0.b", "input"}


def test_chain_rule_numbers_agree():
    result = load_example("chain_rule").main([])
    assert result["dy_dx"] == 30.0 and result["dy_dx_numeric"] == pytest.approx(30.0, rel=1e-8)
    for by_hand, backprop, numeric in zip(result["by_hand"], result["backprop"], result["numeric"]):
        assert backprop == pytest.approx(by_hand, rel=1e-12)
        assert numeric == pytest.approx(by_hand, rel=1e-6)


def test_vanishing_gradients_decay_in_the_sigmoid_net(tmp_path):
    result = load_example("vanishing_gradients").main(["--out", str(tmp_path)])
    sigmoid = result["norms"]["sigmoid"]
    assert sigmoid[0] < sigmoid[-1] / 50                   # orders of magnitude across 6 layers
    relu = result["norms"]["relu_he"]
    assert relu[0] / relu[-1] > 10 * sigmoid[0] / sigmoid[-1]
    # the lesson and the diagnostics agree: the sigmoid net vanishes (for both), the cures do not
    assert result["vanishing"]["sigmoid"][0] == "0.W"
    assert result["diagnoses"]["sigmoid"].vanishing == result["vanishing"]["sigmoid"]
    assert any("vanishing" in w for w in result["diagnoses"]["sigmoid"].warnings)
    for cure in ("relu_he", "batchnorm", "residual"):
        assert result["vanishing"][cure] == [] == result["diagnoses"][cure].vanishing


def test_xor_learns_xor():
    result = load_example("xor").main([])
    assert result["correct"] == 4
    low, high_a, high_b, low_b = result["predictions"]
    assert max(low, low_b) < 0.1 and min(high_a, high_b) > 0.9


def test_spiral_reaches_full_training_accuracy(backend, tmp_path):
    """The lesson's figure: 2-16-8-1 tanh, lr 0.5, 1000 epochs -> training accuracy 1.0."""
    result = load_example("spiral").main(["--device", backend.spec, "--out", str(tmp_path)])
    assert result["accuracy"] == 1.0
    assert result["loss"] < 0.02


def test_char_rnn_runs_briefly_on_every_backend(backend, capsys):
    result = load_example("char_rnn").main(["--device", backend.spec, "--epochs", "1", "--chars", "3000",
                                            "--context", "16", "--hidden", "16", "--sample", "30"])
    output = capsys.readouterr().out
    assert "val_loss" in output and "unigram entropy" in output and "sample (temperature 0.8)" in output
    assert len(result["sample"]) == 4 + 30 and result["history"]["val_loss"]


def test_char_rnn_learns_well_below_the_unigram_entropy():
    """The example's claim, at a tenth of its default run: context makes the validation loss far lower."""
    result = load_example("char_rnn").main(["--chars", "100000", "--epochs", "5", "--sample", "0"])
    assert result["val_loss"] < 0.7 * result["unigram_entropy"]


def test_char_rnn_reads_a_text_file(tmp_path, capsys):
    path = tmp_path / "words.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 80, encoding="utf-8")
    result = load_example("char_rnn").main(["--text", str(path), "--epochs", "1", "--context", "16",
                                            "--hidden", "8", "--sample", "10"])
    assert set(result["sample"]) <= set("the quick brown fox jumps over the lazy dog.")
    with pytest.raises(SystemExit) as stop:
        load_example("char_rnn").main(["--text", str(tmp_path / "missing.txt")])
    assert stop.value.code == 2 and "missing.txt" in capsys.readouterr().err


def test_tiny_gpt_runs_briefly_on_every_backend(backend, tmp_path, capsys):
    result = load_example("tiny_gpt").main(["--device", backend.spec, "--epochs", "1", "--sums", "256",
                                            "--embed", "16", "--heads", "2", "--layers", "1", "--out", str(tmp_path)])
    output = capsys.readouterr().out
    assert "held-out exact match" in output and " + " in output and 0.0 <= result["accuracy"] <= 1.0
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "tiny_gpt_attention.png").stat().st_size > 5000


def test_tiny_gpt_adds_as_its_docs_claim(tmp_path):
    """The README's and docs' claim: the default run answers >= 99% of the held-out sums exactly."""
    result = load_example("tiny_gpt").main(["--out", str(tmp_path)])
    assert result["accuracy"] >= 0.99


def test_tiny_gpt_writes_like_a_text_file(tmp_path, capsys):
    path = tmp_path / "words.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 80, encoding="utf-8")
    result = load_example("tiny_gpt").main(["--text", str(path), "--epochs", "2", "--context", "16", "--embed",
                                            "16", "--heads", "2", "--layers", "1", "--sample", "20",
                                            "--out", str(tmp_path)])
    assert len(result["sample"]) == 20 and set(result["sample"]) <= set("the quick brown fox jumps over the lazy dog.")
    assert "validation loss" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        load_example("tiny_gpt").main(["--text", str(tmp_path / "missing.txt")])
    assert stop.value.code == 2 and "missing.txt" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["xor", "spiral", "char_rnn", "tiny_gpt"])
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


def test_command_line_errors_name_the_problem_not_an_internal(tmp_path):
    """--epochs abc names what is wanted; --out into an unwritable place is refused before training."""
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, "xor.py"), "--epochs", "abc"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "must be a positive integer, got 'abc'" in result.stderr
    assert "_positive_int" not in result.stderr and "invalid" not in result.stderr
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, "spiral.py"), "--out", str(blocked / "figs")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "cannot write into folder" in result.stderr
    assert "Traceback" not in result.stderr and "epoch" not in result.stdout       # nothing was trained


def test_neural_flow_xor_default_shows_a_trained_net(tmp_path):
    """The README suggests --dataset xor: its default length must end with a net that learned."""
    result = load_example("neural_flow").main(["--dataset", "xor", "--out", str(tmp_path)])
    assert result["loss"] < 0.05
