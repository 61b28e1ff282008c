"""FlowRecorder: what it stores equals the model at those epochs, on every backend, within its memory cap."""
from __future__ import annotations

import html
import json

import numpy as np
import pytest

import bpcore as bp


def rounded(values):
    return np.asarray(values, dtype=np.float64)


def assert_close_4_digits(recorded, actual, what):
    np.testing.assert_allclose(rounded(recorded), actual, rtol=1e-3, atol=1e-12, err_msg=what)


def train_with_recorder(spec="numpy", epochs=12, every=3, max_snapshots=200, y_probe=True, extra=()):
    X, y = bp.data.spiral(120, seed=0)
    model = bp.mlp([2, 5, 3, 1], activation="tanh", seed=0).to(spec)
    rec = bp.FlowRecorder(X[:3], y[:3] if y_probe else None, every=every, max_snapshots=max_snapshots)
    states = {}

    class RecordStates(bp.Callback):
        def on_train_begin(self, logs=None):
            states[0] = self.model.state_dict()

        def on_epoch_end(self, epoch, logs=None):
            states[epoch + 1] = self.model.state_dict()

    hist = bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.5), X, y,
                  epochs=epochs, batch_size=40, metrics=["accuracy"], callbacks=[RecordStates(), rec, *extra],
                  progress=False)
    return model, rec, states, hist, (X, y)


def test_snapshots_hold_the_weights_of_their_epoch(backend):
    model, rec, states, hist, _ = train_with_recorder(backend.spec)
    epochs = [s["epoch"] for s in rec.snapshots]
    assert epochs == [0, 3, 6, 9, 12]
    for snapshot in rec.snapshots:
        state = states[snapshot["epoch"]]
        for layer, (w_name, b_name) in enumerate([("0.W", "0.b"), ("2.W", "2.b"), ("4.W", "4.b")]):
            assert_close_4_digits(snapshot["W"][layer], state[w_name], f"epoch {snapshot['epoch']} {w_name}")
            assert_close_4_digits(snapshot["b"][layer], state[b_name], f"epoch {snapshot['epoch']} {b_name}")
        if snapshot["epoch"]:
            assert snapshot["loss"] == pytest.approx(hist["loss"][snapshot["epoch"] - 1], rel=1e-3)
            assert snapshot["accuracy"] == pytest.approx(hist["accuracy"][snapshot["epoch"] - 1], rel=1e-3)


def test_activations_and_gradients_equal_the_models_backward(backend):
    model, rec, _, _, (X, y) = train_with_recorder(backend.spec)
    last = rec.snapshots[-1]
    probes, targets = X[:3], y[:3]
    # forward by hand through the columns: Linear + Tanh, Linear + Tanh, Linear
    values = [probes.astype(np.float64)]
    layers = model.layers
    h1 = np.tanh(values[0] @ backend.to_numpy(layers[0].W.data) + backend.to_numpy(layers[0].b.data))
    h2 = np.tanh(h1 @ backend.to_numpy(layers[2].W.data) + backend.to_numpy(layers[2].b.data))
    out = h2 @ backend.to_numpy(layers[4].W.data) + backend.to_numpy(layers[4].b.data)
    for probe in range(3):
        for column, expected in enumerate([values[0], h1, h2, out]):
            assert_close_4_digits(last["act"][probe][column], expected[probe], f"act {probe} {column}")
    # backward through the model itself, for the probes, with the fit's loss
    model.eval()
    model.zero_grad()
    loss_fn = bp.BCEWithLogitsLoss()
    loss_fn.forward(model(probes), targets)
    grad_out = loss_fn.backward()
    model.backward(grad_out)
    dz3 = backend.to_numpy(grad_out)
    dz2 = (dz3 @ backend.to_numpy(layers[4].W.data).T) * (1 - h2 ** 2)
    dz1 = (dz2 @ backend.to_numpy(layers[2].W.data).T) * (1 - h1 ** 2)
    for probe in range(3):
        for column, expected in enumerate([dz1, dz2, dz3]):
            assert_close_4_digits(last["grad"][probe][column], expected[probe], f"grad {probe} {column}")
    for layer, name in enumerate(["0.W", "2.W", "4.W"]):
        assert_close_4_digits(last["dW"][layer], backend.to_numpy(dict(model.named_parameters())[name].grad),
                              f"dW {name}")


def test_recording_does_not_change_training():
    _, _, _, with_recorder, _ = train_with_recorder()
    X, y = bp.data.spiral(120, seed=0)
    model = bp.mlp([2, 5, 3, 1], activation="tanh", seed=0)
    plain = bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.5), X, y, epochs=12,
                   batch_size=40, metrics=["accuracy"], progress=False)
    assert with_recorder.history == plain.history


def test_memory_cap_thins_evenly():
    _, rec, _, _, _ = train_with_recorder(epochs=40, every=1, max_snapshots=6)
    epochs = [s["epoch"] for s in rec.snapshots]
    assert len(epochs) <= 6
    assert epochs[0] == 0 and epochs[-1] == 40
    assert rec.thinned and rec.every > 1
    assert epochs == sorted(set(epochs))


def test_without_targets_the_backward_is_of_the_output_sum():
    _, rec, _, _, _ = train_with_recorder(y_probe=False, epochs=3, every=3)
    assert all(g == 1.0 for probe in rec.snapshots[-1]["grad"] for g in probe[-1])
    assert rec.to_dict()["probe_labels"] is None


def test_to_dict_is_json_and_small():
    _, rec, _, _, _ = train_with_recorder(epochs=30, every=1)
    data = rec.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert data["sizes"] == [2, 5, 3, 1]
    assert data["column_names"][1] == "Linear(2, 5) + Tanh"
    assert len(text) < 200_000


@pytest.mark.parametrize("model, match", [
    (bp.Sequential(bp.Linear(2, 2), bp.Residual(bp.Linear(2, 2)), bp.Linear(2, 1)), "Residual"),
    (bp.Sequential(bp.Tanh(), bp.Linear(2, 1)), "start with a Linear"),
])
def test_models_that_cannot_be_drawn_are_refused(model, match):
    X = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(TypeError, match=match):
        bp.fit(model, bp.MSELoss(), bp.optim.SGD(model.parameters(), lr=0.1), X, np.zeros((4, 1)),
               callbacks=[bp.FlowRecorder(X[:2])], progress=False)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"X_probe": np.zeros(3)}, ValueError, "probes, features"),
    ({"X_probe": np.zeros((2, 2)), "every": 0}, ValueError, "every"),
    ({"X_probe": np.zeros((2, 2)), "max_snapshots": 1}, ValueError, "max_snapshots"),
    ({"X_probe": np.zeros((2, 2)), "y_probe": np.zeros(3)}, ValueError, "2 probes but 3 targets"),
    ({"X_probe": [["a", "b"]]}, TypeError, "X_probe"),
])
def test_bad_recorder_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        bp.FlowRecorder(**kwargs)


def test_probe_width_must_fit_the_model():
    model = bp.mlp([3, 1], seed=0)
    X = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="probes have 2 features"):
        bp.fit(model, bp.MSELoss(), bp.optim.SGD(model.parameters(), lr=0.1), X, np.zeros((4, 1)),
               callbacks=[bp.FlowRecorder(np.zeros((1, 2)))], progress=False)


def test_nothing_recorded_is_a_clear_error():
    with pytest.raises(RuntimeError, match="nothing recorded"):
        bp.FlowRecorder(np.zeros((1, 2))).to_dict()


def test_the_page_knows_how_the_output_becomes_a_probability():
    X = np.array([[0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    y = np.array([[0.0], [1.0]], dtype=np.float32)
    for loss_fn, expected in ((bp.BCEWithLogitsLoss(), "sigmoid"), (bp.MSELoss(), None)):
        model = bp.mlp([2, 3, 1], activation="tanh", seed=0)
        rec = bp.FlowRecorder(X, y, every=1)
        bp.fit(model, loss_fn, bp.optim.SGD(model.parameters(), lr=0.1), X, y, epochs=2, progress=False,
               callbacks=[rec])
        assert rec.to_dict()["output_activation"] == expected


def test_a_notebook_shows_the_recorder_inline():
    X = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    y = np.array([[1.0], [1.0]], dtype=np.float32)
    model = bp.mlp([2, 3, 1], activation="tanh", seed=0)
    rec = bp.FlowRecorder(X, y, every=1)
    assert "nothing recorded yet" in rec._repr_html_()
    bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.1), X, y, epochs=2,
           progress=False, callbacks=[rec])
    shown = rec._repr_html_()
    assert shown.startswith("<iframe srcdoc=") and 'sandbox="allow-scripts"' in shown
    assert "<script" not in shown                  # the page is escaped into the attribute, not run here
    page = bp.viz.neural_flow(rec, title="my run")
    assert "my run" in page.html and page._repr_html_().startswith("<iframe")
    assert html.unescape(shown.split('srcdoc="', 1)[1].split('" title=', 1)[0]) == rec.to_html()
