"""fit, evaluate, predict: minibatches, history, callbacks, divergence, interrupts, bad input."""
from __future__ import annotations

import os
import signal
import warnings

import numpy as np
import pytest

import bpcore as bp
from helpers import host


def moons_split(n=400, seed=0):
    X, y = bp.data.moons(n, noise=0.15, seed=seed)
    return bp.data.train_test_split(X, y, test_size=0.2, seed=seed)


def quick_fit(spec="numpy", epochs=3, seed=0, **kwargs):
    Xtr, Xte, ytr, yte = moons_split()
    model = bp.mlp([2, 8, 1], activation="relu", seed=0).to(spec)
    opt = bp.optim.Adam(model.parameters(), lr=1e-2)
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), opt, Xtr, ytr, epochs=epochs, batch_size=32, seed=seed,
                  validation_data=(Xte, yte), metrics=["accuracy"], progress=False, **kwargs)
    return model, hist


def test_fit_on_every_backend(backend):
    model, hist = quick_fit(backend.spec, epochs=5)
    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "lr"):
        assert len(hist[key]) == 5, key
    assert hist["loss"][-1] < hist["loss"][0]
    assert set(hist.grad_norms) == {"0.W", "0.b", "2.W", "2.b"}
    assert all(len(v) == 5 and all(x >= 0 for x in v) for v in hist.weight_norms.values())
    assert all(backend.owns(p.data) for p in model.parameters())


def test_same_seed_same_history_and_weights():
    model_a, hist_a = quick_fit(seed=3)
    model_b, hist_b = quick_fit(seed=3)
    _, hist_c = quick_fit(seed=4)
    assert hist_a.history == hist_b.history
    for p, q in zip(model_a.parameters(), model_b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert hist_a["loss"] != hist_c["loss"]


def test_backends_agree_on_the_history(backend):
    _, reference = quick_fit("numpy", epochs=3)
    _, hist = quick_fit(backend.spec, epochs=3)
    np.testing.assert_allclose(hist["loss"], reference["loss"], rtol=1e-4)


def test_last_partial_batch_and_weighted_epoch_loss():
    X = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    y = np.random.default_rng(1).standard_normal((10, 1)).astype(np.float32)
    model = bp.mlp([3, 1], seed=0)
    sizes = []

    class BatchSizes(bp.Callback):
        def on_batch_end(self, batch, logs=None):
            sizes.append(self.model.layers[0].saved("x").shape[0])

    hist = bp.fit(model, bp.MSELoss(), bp.optim.SGD(model.parameters(), lr=0.0), X, y, epochs=1,
                  batch_size=4, callbacks=[BatchSizes()], progress=False)
    assert sizes == [4, 4, 2]
    expected = float(np.mean((X @ model.layers[0].W.data + model.layers[0].b.data - y) ** 2))
    assert hist["loss"][0] == pytest.approx(expected, rel=1e-6)
    assert bp.evaluate(model, bp.MSELoss(), X, y, batch_size=3)["loss"] == pytest.approx(expected, rel=1e-6)


def test_without_shuffle_batches_are_in_order():
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    seen = []

    class FirstRows(bp.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(float(self.model.layers[0].saved("x")[0, 0]))

    model = bp.mlp([2, 1], seed=0)
    bp.fit(model, bp.MSELoss(), bp.optim.SGD(model.parameters(), lr=0.0), X, np.zeros((6, 1)), epochs=1,
           batch_size=2, shuffle=False, callbacks=[FirstRows()], progress=False)
    assert seen == [0.0, 4.0, 8.0]


def test_multiclass_accuracy_matches_numpy():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 50)
    model = bp.mlp([4, 3], seed=0)
    scores = bp.evaluate(model, bp.SoftmaxCrossEntropyLoss(), X, labels, metrics=["accuracy"], batch_size=7)
    logits = bp.predict(model, X)
    assert scores["accuracy"] == pytest.approx(np.mean(logits.argmax(axis=1) == labels))


def test_predict_batches_and_probabilities(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((9, 4)).astype(np.float32)
    model = bp.mlp([4, 5, 3], seed=0).to(backend)
    whole = bp.predict(model, X, batch_size=100)
    np.testing.assert_allclose(bp.predict(model, X, batch_size=2), whole, rtol=1e-6)
    np.testing.assert_allclose(whole, host(backend, model(X)), rtol=1e-6)
    probabilities = bp.predict(model, X, probabilities=True)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    binary = bp.predict(bp.mlp([4, 1], seed=0).to(backend), X, probabilities=True)
    assert binary.shape == (9, 1) and np.all((binary >= 0) & (binary <= 1))


def test_early_stopping_restores_the_best_weights():
    Xtr, Xte, ytr, yte = moons_split()
    model = bp.mlp([2, 16, 1], activation="relu", seed=0)
    states = []

    class Record(bp.Callback):
        def on_epoch_end(self, epoch, logs=None):
            states.append(self.model.state_dict())

    stopper = bp.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    opt = bp.optim.SGD(model.parameters(), lr=2.0, momentum=0.9)        # noisy on purpose
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), opt, Xtr, ytr, epochs=60, batch_size=16,
                  validation_data=(Xte, yte), callbacks=[Record(), stopper], progress=False)
    best = int(np.argmin(hist["val_loss"]))
    assert stopper.best_epoch == best and stopper.best == hist["val_loss"][best]
    assert stopper.stopped_epoch is not None and len(hist.epochs) < 60
    assert len(hist.epochs) - 1 - best == 3
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, states[best][name])
    assert bp.evaluate(model, bp.BCEWithLogitsLoss(), Xte, yte)["loss"] == pytest.approx(hist["val_loss"][best])


def test_early_stopping_names_a_missing_monitor():
    with pytest.raises(ValueError, match="val_loss.*validation_data"):
        model = bp.mlp([2, 1], seed=0)
        bp.fit(model, bp.MSELoss(), bp.optim.SGD(model.parameters(), lr=0.1), np.ones((4, 2)),
               np.ones((4, 1)), epochs=2, callbacks=[bp.EarlyStopping()], progress=False)


def test_divergence_stops_with_a_clear_error_and_finite_parameters(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3)).astype(np.float32) * 10
    y = rng.standard_normal((64, 1)).astype(np.float32) * 10
    model = bp.mlp([3, 16, 1], activation="relu", seed=0).to(backend)
    opt = bp.optim.SGD(model.parameters(), lr=10.0)
    starts = []

    class Record(bp.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            starts.append(self.model.state_dict())

    with np.errstate(all="ignore"), pytest.raises(bp.DivergenceError) as info:
        bp.fit(model, bp.MSELoss(), opt, X, y, epochs=20, batch_size=8, callbacks=[Record()], progress=False)
    message = str(info.value)
    assert "epoch" in message and "batch" in message and "lower the learning rate" in message
    assert "last finite loss" in message
    for name, value in model.state_dict().items():
        assert np.all(np.isfinite(value)), name
        np.testing.assert_array_equal(value, starts[-1][name])
    assert len(info.value.history.epochs) == len(starts) - 1


def test_ctrl_c_stops_after_the_batch_and_returns_the_history():
    X, y = bp.data.moons(200, seed=0)
    model = bp.mlp([2, 8, 1], seed=0)
    batches = []

    class PressCtrlC(bp.Callback):
        def on_batch_end(self, batch, logs=None):
            batches.append((len(self.history.epochs), batch))
            if len(self.history.epochs) == 2 and batch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    handler_before = signal.getsignal(signal.SIGINT)     # SIG_IGN when the run was started in the background
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.1), X, y,
                  epochs=10, batch_size=50, callbacks=[PressCtrlC()], progress=False)
    assert hist.interrupted
    assert len(hist.epochs) == 2 and len(hist["loss"]) == 2
    assert batches[-1] == (2, 1)                     # the batch in flight finished, no later one ran
    assert signal.getsignal(signal.SIGINT) is handler_before          # fit put back the handler it found


def test_scheduler_steps_each_epoch():
    model = bp.mlp([2, 1], seed=0)
    opt = bp.optim.SGD(model.parameters(), lr=1.0)
    hist = bp.fit(model, bp.MSELoss(), opt, np.ones((4, 2)), np.ones((4, 1)), epochs=5,
                  scheduler=bp.optim.StepLR(opt, step_size=2, gamma=0.5), progress=False)
    assert hist["lr"] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_norms_in_the_history_are_the_parameters_norms():
    model, hist = quick_fit(epochs=2)
    for name, p in model.named_parameters():
        assert hist.weight_norms[name][-1] == pytest.approx(float(np.linalg.norm(p.data)), rel=1e-5)


def test_moons_quality_bar():
    """Two moons, 1000 points, noise 0.15, 80/20, mlp([2, 32, 32, 1]), Adam 1e-2, batch 32, 150 epochs."""
    X, y = bp.data.moons(1000, noise=0.15, seed=0)
    Xtr, Xte, ytr, yte = bp.data.train_test_split(X, y, test_size=0.2, seed=0)
    model = bp.mlp([2, 32, 32, 1], activation="relu", seed=0)
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.Adam(model.parameters(), lr=1e-2), Xtr, ytr,
                  epochs=150, batch_size=32, metrics=["accuracy"], progress=False)
    assert bp.evaluate(model, bp.BCEWithLogitsLoss(), Xte, yte, metrics=["accuracy"])["accuracy"] >= 0.96
    losses = hist["loss"]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


def _fit(X=None, y=None, loss_fn=None, **kwargs):
    model = bp.mlp([2, 3], seed=0)
    X = np.ones((4, 2), dtype=np.float32) if X is None else X
    y = np.zeros(4, dtype=np.int64) if y is None else y
    options = dict(epochs=1, batch_size=2, progress=False)
    options.update(kwargs)
    optimizer = options.pop("optimizer", bp.optim.SGD(model.parameters(), lr=0.1))
    return bp.fit(model, loss_fn or bp.SoftmaxCrossEntropyLoss(), optimizer, X, y, **options)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"y": np.zeros(5, dtype=np.int64)}, ValueError, "X has 4 samples but y has 5"),
    ({"X": np.array([[1.0, np.nan]] * 4)}, ValueError, "X contains NaN"),
    ({"y": np.array([0, 1, 3, 1])}, ValueError, "labels"),
    ({"y": np.array([0.0, 1.0, 0.0, 1.0])}, TypeError, "integer"),
    ({"loss_fn": bp.MSELoss(), "y": np.array([[0.0, 1, np.inf]] * 4)}, ValueError, "y contains NaN or infinite"),
    ({"epochs": 0}, ValueError, "epochs"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 2.5}, ValueError, "batch_size"),
    ({"metrics": ["f1"]}, ValueError, "unknown metric 'f1'"),
    ({"metrics": "accuracy"}, TypeError, "list of names"),
    ({"loss_fn": bp.MSELoss(), "y": np.zeros((4, 3)), "metrics": ["accuracy"]}, ValueError, "classification loss"),
    ({"optimizer": "sgd"}, TypeError, "optimizer"),
    ({"callbacks": [print]}, TypeError, "callbacks\\[0\\]"),
    ({"validation_data": np.ones((4, 2))}, TypeError, "validation_data"),
    ({"X": np.ones((0, 2)), "y": np.zeros(0, dtype=np.int64)}, ValueError, "at least one sample"),
    ({"y": [0, 1, 0, "a"]}, TypeError, "y must hold numbers"),
    ({"X": [[1.0, 2.0], [3.0]] * 2}, TypeError, "X cannot be made into an array"),
])
def test_fit_refuses_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        _fit(**kwargs)


def test_fit_refuses_bad_input_before_touching_the_model():
    model = bp.mlp([2, 3], seed=0)
    before = model.state_dict()
    with pytest.raises(ValueError):
        bp.fit(model, bp.SoftmaxCrossEntropyLoss(), bp.optim.SGD(model.parameters(), lr=0.1),
               np.ones((4, 2)), np.array([0, 1, 2, 7]), progress=False)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_fit_accepts_lists_and_tables_as_keras_does():
    class Table:                     # what pandas offers: to_numpy()
        def __init__(self, values):
            self.values = values

        def to_numpy(self):
            return np.asarray(self.values)

    X = [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    model = bp.mlp([2, 1], seed=0)
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.1), Table(X),
                  [1, 1, 0, 0], epochs=2, progress=False)
    assert len(hist["loss"]) == 2
    assert bp.predict(model, X).shape == (4, 1)
    assert set(bp.evaluate(model, bp.BCEWithLogitsLoss(), Table(X), (1, 1, 0, 0))) == {"loss"}


def test_fit_trains_models_that_are_not_sequential():
    X = np.random.default_rng(0).standard_normal((16, 2)).astype(np.float32)
    y = X @ np.array([[1.0], [-2.0]], dtype=np.float32)
    for model in (bp.Linear(2, 1, seed=0), bp.Residual(bp.Linear(2, 2, seed=0))):
        target = y if model.__class__ is bp.Linear else np.concatenate([y, y], axis=1)
        hist = bp.fit(model, bp.MSELoss(), bp.optim.SGD(model.parameters(), lr=0.05), X, target, epochs=20,
                      batch_size=8, progress=False)
        assert hist["loss"][-1] < hist["loss"][0]


def test_predict_on_no_samples_keeps_the_output_width():
    assert bp.predict(bp.mlp([3, 4, 2], seed=0), np.zeros((0, 3), dtype=np.float32)).shape == (0, 2)


def test_divergence_is_one_clear_error_without_floating_point_warnings(backend):
    """fit silences the library's overflow warnings (through the backend) and reports one
    DivergenceError; its history is empty, not a KeyError, when no epoch finished."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3)).astype(np.float32) * 1e3
    y = rng.standard_normal((64, 1)).astype(np.float32) * 1e3
    model = bp.mlp([3, 16, 1], activation="relu", seed=0).to(backend)
    opt = bp.optim.SGD(model.parameters(), lr=1e6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(bp.DivergenceError) as info:
            bp.fit(model, bp.MSELoss(), opt, X, y, epochs=3, batch_size=8, progress=False)
    history = info.value.history
    assert history.epochs == []
    assert history["loss"] == [] and history["val_loss"] == []


def test_a_finished_history_still_names_a_missing_key():
    history = bp.History()
    history._record(1, {"loss": 0.5}, {}, {})
    with pytest.raises(KeyError, match="has no 'val_loss'; it has \\['loss'\\]"):
        history["val_loss"]
