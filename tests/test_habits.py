"""PyTorch and Keras habits that work in bpcore too, with the same results (issue: first contact)."""
from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

import backends
import bpcore as bp


def test_linear_takes_pytorchs_argument_names():
    a = bp.Linear(in_features=2, out_features=3, seed=0)
    b = bp.Linear(2, 3, seed=0)
    assert a.W.shape == (2, 3) and a.config() == b.config()
    assert np.array_equal(backends.to_host(a.W.data), backends.to_host(b.W.data))
    with pytest.raises(TypeError, match="not both"):
        bp.Linear(2, 3, in_features=2)
    with pytest.raises(TypeError, match="missing the width n_out"):
        bp.Linear(2)


def test_sgd_lr_defaults_to_pytorchs():
    assert bp.optim.SGD(bp.Linear(2, 1).parameters()).lr == 1e-3


def test_to_accepts_a_torch_device_and_cpu_cuda_methods():
    torch = pytest.importorskip("torch")
    model = bp.mlp([2, 3, 1], seed=0)
    moved = model.to(torch.device("cpu"))
    assert moved is model and model.device.spec == "torch:cpu"
    assert model.cpu().device.spec == "torch:cpu"                 # cpu() keeps the library
    assert bp.mlp([2, 1]).cpu().device.spec == "numpy"
    if "torch:cuda" not in backends.available():
        with pytest.raises(backends.BackendUnavailableError):
            model.cuda()


def test_cuda_without_a_gpu_says_why():
    if "cupy" in backends.available():
        pytest.skip("a GPU is here")
    with pytest.raises(backends.BackendUnavailableError, match="(?i)cupy"):
        bp.mlp([2, 1]).cuda()


def test_unknown_device_object_is_refused_clearly():
    with pytest.raises(TypeError, match="torch.device"):
        bp.mlp([2, 1]).to(object())


def _fit(callbacks, epochs=30):
    X, y = bp.data.moons(64, seed=0)
    model = bp.mlp([2, 4, 1], seed=0)
    return bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=1e-4), X, y, epochs=epochs,
                  batch_size=64, validation_data=(X, y), metrics=["accuracy"], callbacks=callbacks, progress=False)


def test_early_stopping_says_when_and_why(capsys):
    stopper = bp.EarlyStopping(monitor="val_accuracy", patience=2, min_delta=0.5)
    _fit([stopper])
    said = capsys.readouterr().out
    assert stopper.stopped_epoch is not None
    assert f"epoch {stopper.stopped_epoch + 1}: early stopping (best val_accuracy" in said
    assert f"at epoch {stopper.best_epoch + 1})" in said
    quiet = bp.EarlyStopping(monitor="val_accuracy", patience=2, min_delta=0.5, verbose=False)
    _fit([quiet])
    assert "early stopping" not in capsys.readouterr().out


def test_the_early_stopping_notice_gets_its_own_line_without_a_terminal():
    """A log file or CI: the bar's line has no end until it closes; the notice must not be glued to it."""
    script = ("import bpcore as bp\n"
              "X, y = bp.data.moons(64, seed=0)\n"
              "model = bp.mlp([2, 4, 1], seed=0)\n"
              "bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=1e-4), X, y, epochs=30,\n"
              "       validation_data=(X, y), metrics=['accuracy'],\n"
              "       callbacks=[bp.EarlyStopping(monitor='val_accuracy', patience=2, min_delta=0.5)])\n")
    result = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    notice = [line for line in lines if "early stopping" in line]
    assert len(notice) == 1 and notice[0].startswith("epoch 3: early stopping"), result.stdout
    assert "epoch/s" in result.stdout and lines.index(notice[0]) == len(lines) - 1   # after the bar's last line


def test_csv_logger_writes_one_flushed_row_per_epoch(tmp_path):
    path = tmp_path / "log.csv"

    class ReadWhileTraining(bp.Callback):
        rows_seen = []

        def on_epoch_end(self, epoch, logs=None):
            with open(path, newline="") as stream:
                self.rows_seen.append(len(list(csv.reader(stream))))

    hist = _fit([bp.CSVLogger(path), ReadWhileTraining()], epochs=4)
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3, 4]
    assert [float(r[1]) for r in rows[1:]] == hist["loss"]
    assert ReadWhileTraining.rows_seen == [2, 3, 4, 5]           # flushed as each epoch ends
    _fit([bp.CSVLogger(path, append=True)], epochs=2)
    with open(path, newline="") as stream:
        assert len(list(csv.reader(stream))) == 7                  # no second header


def test_csv_logger_checks_its_arguments(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):        # refused before the first epoch
        _fit([bp.CSVLogger(tmp_path)], epochs=1)
    with pytest.raises(ValueError, match="separator"):
        bp.CSVLogger(tmp_path / "log.csv", separator=";;")


@pytest.mark.parametrize("spec", ["cuda", "cuda:1", "cupy:1"])
def test_the_cupy_message_names_the_spec_needs_install_and_meanwhile(spec, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)      # CuPy not installed (CI installs it for test_gpu_api)
    with pytest.raises(backends.BackendUnavailableError) as info:
        backends.get(spec)
    message = str(info.value)
    assert message.startswith(f"{spec!r} cannot be used here")
    assert "NVIDIA GPU" in message and "driver" in message
    assert 'pip install "bpcore[cuda12]"' in message and 'pip install -e ".[cuda12]"' in message
    assert "--device cpu" in message and "torch" in message
