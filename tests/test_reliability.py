"""Issue 30's cases, one by one: each hostile or careless input gets a typed error naming what was
wrong (or, where stated, NaN or aligned NaN entries), and a refused call changes nothing.

The classes these cases belong to have property tests in test_reliability_properties.py.
"""
from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest

import backends
import bpcore as bp
from bpcore.training.snapshot import restore, snapshot

DEVICE1 = "array_api_strict:device1"
needs_device1 = pytest.mark.skipif(DEVICE1 not in backends.available(), reason="array_api_strict is not installed")


def moons(n=64):
    return bp.data.moons(n, noise=0.1, seed=0)


def labels_problem(n=64, classes=3):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 2)).astype(np.float32), rng.integers(0, classes, n)


# -- attributes changed after construction ----------------------------------------------------
@pytest.mark.parametrize("make, name, bad", [
    (bp.optim.SGD, "lr", "0.1"), (bp.optim.SGD, "lr", -0.1), (bp.optim.SGD, "lr", math.nan),
    (bp.optim.Adam, "lr", math.inf), (bp.optim.Adam, "betas", (0.9, 1.0)), (bp.optim.Adam, "betas", 0.9),
    (bp.optim.AdamW, "weight_decay", -1e-2), (bp.optim.SGD, "momentum", "0.9"), (bp.optim.RMSprop, "alpha", 1.5),
    (bp.optim.RMSprop, "eps", None),
], ids=lambda v: repr(v) if not callable(v) else v.__name__)
def test_a_hyper_parameter_set_after_construction_gets_the_constructors_check(make, name, bad):
    model = bp.mlp([2, 3, 1], seed=0)
    opt = make(model.parameters(), lr=0.1)
    before = getattr(opt, name)
    with pytest.raises(ValueError, match=name.rstrip("s")) as info:
        setattr(opt, name, bad)
    assert repr(bad)[:5] in str(info.value) or name == "betas"
    assert getattr(opt, name) == before                      # refused: unchanged
    bp.fit(model, bp.MSELoss(), opt, np.ones((4, 2)), np.zeros((4, 1)), progress=False)   # and still trains


def test_nesterov_rules_hold_for_later_assignments_too():
    opt = bp.optim.SGD(bp.mlp([2, 1], seed=0).parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for name, value in (("momentum", 0.0), ("dampening", 0.5)):
        with pytest.raises(ValueError, match="nesterov=True needs momentum > 0 and dampening = 0"):
            setattr(opt, name, value)
    opt.nesterov = False
    opt.momentum = 0.0                                       # fine without nesterov
    with pytest.raises(ValueError, match="nesterov"):
        opt.nesterov = True
    opt.lr = np.float32(0.25)
    assert type(opt.lr) is float and opt.lr == 0.25


@pytest.mark.parametrize("make, switch", [(bp.optim.Adam, "amsgrad"), (bp.optim.RMSprop, "centered"),
                                          (bp.optim.RMSprop, "momentum")])
def test_a_buffer_switched_on_after_the_first_steps_starts_at_zero(make, switch):
    X, y = moons()
    model = bp.mlp([2, 8, 1], seed=0)
    opt = make(model.parameters(), lr=1e-2)
    bp.fit(model, bp.BCEWithLogitsLoss(), opt, X, y, epochs=1, progress=False)
    setattr(opt, switch, 0.9 if switch == "momentum" else True)
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), opt, X, y, epochs=1, progress=False)   # no KeyError
    assert math.isfinite(hist["loss"][-1])


# -- History lists aligned with epochs ----------------------------------------------------------
def test_resuming_with_new_validation_data_keeps_every_list_aligned(tmp_path):
    X, y = moons(128)
    path = tmp_path / "run.bpc"

    def run(epochs, **kwargs):
        model = bp.mlp([2, 8, 1], seed=0)
        opt = bp.optim.SGD(model.parameters(), lr=0.1)
        return bp.fit(model, bp.BCEWithLogitsLoss(), opt, X, y, epochs=epochs, checkpoint=path, resume=path,
                      progress=False, callbacks=[bp.CSVLogger(tmp_path / "log.csv", append=True)], **kwargs)

    run(2)
    hist = run(4, validation_data=(X[:32], y[:32]), metrics=["accuracy"])
    assert hist.epochs == [0, 1, 2, 3]
    for key in ("loss", "lr", "val_loss", "accuracy", "val_accuracy"):
        assert len(hist[key]) == 4, key
    assert np.isnan(hist["val_loss"][:2]).all() and np.isfinite(hist["val_loss"][2:]).all()
    assert np.isfinite(hist["loss"]).all()
    assert all(len(v) == 4 for v in hist.grad_norms.values())
    again = bp.load_checkpoint(path)["history"]              # saved and read back aligned
    np.testing.assert_array_equal(again["val_loss"], hist["val_loss"])
    with open(tmp_path / "log.csv", newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["epoch", "loss", "lr", "accuracy", "val_loss", "val_accuracy"]
    assert [row[4] for row in rows[1:]] == ["nan", "nan", repr(hist["val_loss"][2]), repr(hist["val_loss"][3])]
    bp.viz.curves(hist)                                      # NaN entries plot as gaps


def test_a_checkpoint_with_a_short_list_from_an_older_bpcore_loads_aligned(tmp_path):
    history = bp.History()
    history.epochs, history.history = [0, 1, 2], {"loss": [3.0, 2.0, 1.0], "val_loss": [1.5]}
    state = history.state_dict()
    loaded = bp.History.from_state_dict(state)
    assert loaded["loss"] == [3.0, 2.0, 1.0]
    assert np.isnan(loaded["val_loss"][:2]).all() and loaded["val_loss"][2] == 1.5


def test_save_checkpoint_refuses_what_load_checkpoint_would_refuse(tmp_path):
    model = bp.mlp([2, 3, 1], seed=0)
    path = tmp_path / "m.bpc"
    bp.save_checkpoint(path, model=model)
    before = path.read_bytes()
    history = bp.History()
    history.epochs, history.history = [0], {"loss": [1.0, 2.0]}        # longer than its epochs, by hand
    with pytest.raises(ValueError, match=r"save_checkpoint: not written.*history\['loss'\]"):
        bp.save_checkpoint(path, model=model, history=history)
    model.layers[0].W.data[0, 0] = np.nan
    with pytest.raises(ValueError, match="save_checkpoint: not written.*NaN"):
        bp.save_checkpoint(path, model=model)
    with pytest.raises(ValueError, match="shuffling RNG"):
        bp.save_checkpoint(path, model=bp.mlp([2, 3, 1], seed=0), rng_state={"bit_generator": "os.system"})
    assert path.read_bytes() == before                       # nothing written


# -- labels out of range, values that wrap when cast ---------------------------------------------
@pytest.mark.parametrize("label", [3, -1, 7])
def test_a_direct_loss_call_checks_labels_where_it_costs_no_sync(backend, label):
    logits = backend.asarray(np.zeros((3, 3), dtype=np.float32))
    labels = np.array([0, label, 1])
    loss_fn = bp.SoftmaxCrossEntropyLoss()
    if backend.sync_free:
        rule = r"must be >= 0, got values from -1" if label < 0 else r"must lie in \[0, 2\]"
        with pytest.raises(ValueError, match=rf"labels \(for 3 classes\) {rule}.*label {label} is out of range"):
            loss_fn.forward(logits, labels)
    else:                                    # a GPU: no sync per call, the batch's loss is NaN
        with backend.activate():
            assert math.isnan(float(backend.to_numpy(loss_fn.forward(logits, labels))))
    loss_fn.check_targets = False            # asked for no checks: the old behaviour, a number
    with backend.activate():
        assert math.isfinite(float(backend.to_numpy(loss_fn.forward(logits, labels))))


@needs_device1
def test_labels_out_of_range_give_nan_on_a_device_and_nothing_syncs():
    from helpers import count_syncs

    be = backends.get(DEVICE1)
    assert not be.sync_free and backends.get("array_api_strict").sync_free
    logits = be.asarray(np.zeros((3, 3), dtype=np.float32))
    good, bad = be.asarray(np.array([0, 2, 1])), be.asarray(np.array([0, 3, 1]))
    loss_fn = bp.SoftmaxCrossEntropyLoss()
    with count_syncs() as syncs, be.activate():
        good_loss, bad_loss = loss_fn.forward(logits, good), loss_fn.forward(logits, bad)
    assert syncs.total == 0
    assert float(be.to_numpy(good_loss)) == pytest.approx(math.log(3)) and math.isnan(float(be.to_numpy(bad_loss)))


def test_fit_and_evaluate_check_every_label_where_y_enters():
    X, y = labels_problem()
    y[40] = 5                                                # in the sixth batch of 8, not the first
    model = bp.mlp([2, 4, 3], seed=0)
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"fit: y: .*labels \(for 3 classes\) must lie in \[0, 2\].*label 5"):
        bp.fit(model, bp.SoftmaxCrossEntropyLoss(), bp.optim.SGD(model.parameters()), X, y, batch_size=8,
               progress=False)
    assert all(np.array_equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="evaluate: y: .*label 5"):
        bp.evaluate(model, bp.SoftmaxCrossEntropyLoss(), X, y, batch_size=8)


def test_uint64_labels_beyond_int64_are_named_as_given():
    X, y = labels_problem(8)
    labels = y.astype(np.uint64)
    labels[3] = 2**63
    model = bp.mlp([2, 4, 3], seed=0)
    with pytest.raises(ValueError, match="labels holds 9223372036854775808, beyond the largest int64"):
        bp.SoftmaxCrossEntropyLoss()(np.zeros((8, 3), np.float32), labels)
    with pytest.raises(ValueError, match="9223372036854775808") as info:
        bp.fit(model, bp.SoftmaxCrossEntropyLoss(), bp.optim.SGD(model.parameters()), X, labels, progress=False)
    assert "-9223372036854775808" not in str(info.value)


def test_float64_beyond_float32_is_called_an_overflow_not_nan():
    model = bp.mlp([2, 3, 1], seed=0)
    X = np.ones((4, 2))
    X[2, 1] = -1e39
    for call in (lambda: bp.fit(model, bp.MSELoss(), bp.optim.SGD(model.parameters()), X, np.zeros((4, 1)),
                                progress=False),
                 lambda: bp.evaluate(model, bp.MSELoss(), X, np.zeros((4, 1))),
                 lambda: bp.predict(model, X),
                 lambda: bp.MSELoss()(np.zeros((4, 2), np.float32), X)):
        with pytest.raises(ValueError, match=r"values up to 1e\+39 in magnitude, which overflow float32") as info:
            call()
        assert "NaN" not in str(info.value)
    bp.predict(model.astype("float64"), X)                   # a float64 model holds them


# -- NaN input, device names, messages that named the wrong fault ------------------------------
def test_predict_and_gradcheck_say_the_input_holds_nan():
    model = bp.mlp([2, 3, 1], seed=0)
    X = np.ones((4, 2))
    X[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"predict: X contains NaN .*\(1 NaN of 8\)"):
        bp.predict(model, X)
    with pytest.raises(ValueError, match=r"gradcheck: the input x contains NaN .*backward"):
        bp.gradcheck(model, bp.MSELoss(), X, np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"gradcheck: the target y contains NaN or infinite values \(1 infinite"):
        bp.gradcheck(model, bp.MSELoss(), np.ones((4, 2)), np.array([[0.0], [np.inf], [0.0], [0.0]]))


def test_load_with_a_wrong_device_name_blames_the_name_not_the_file(tmp_path):
    path = tmp_path / "m.bpc"
    bp.mlp([2, 3, 1], seed=0).save(path)
    with pytest.raises(ValueError, match="load: device 'gpu' is not a device name") as info:
        bp.load(path, device="gpu")
    assert "malformed" not in str(info.value) and not isinstance(info.value, bp.CheckpointError)


def test_load_into_a_different_layer_type_says_the_architectures_differ(tmp_path):
    path = tmp_path / "m.bpc"
    bp.Sequential(bp.Linear(2, 3), bp.ReLU(), bp.Linear(3, 1)).save(path)
    other = bp.Sequential(bp.Conv2d(1, 3, 1), bp.ReLU(), bp.Linear(3, 1))
    with pytest.raises(bp.CheckpointError, match=r"layers\[0\], the file has a 'Linear' layer where the model "
                                                 r"has a 'Conv2d': the architectures differ"):
        bp.load_checkpoint(path, model=other)


def test_a_sequential_whose_layers_are_a_string_is_named(tmp_path):
    from bpcore.checkpoint.format import read_file, write_file

    path = tmp_path / "m.bpc"
    bp.Sequential(bp.Linear(2, 3)).save(path)
    arrays, header = read_file(path)
    header["architecture"]["layers"] = "Linear"
    for key in ("format", "format_version", "bpcore_version", "tensors", "payload_bytes", "payload_sha256"):
        header.pop(key)
    write_file(path, arrays, header)
    with pytest.raises(bp.CheckpointError, match="a Sequential has layers 'Linear', not a list"):
        bp.load(path)
    with pytest.raises(TypeError, match="Sequential: item 0 must be a Layer, got str"):
        bp.Sequential("Linear")


# -- fit's batch rules, its probe's warnings ---------------------------------------------------
def test_batchnorm2d_trains_on_a_last_batch_of_one_image():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((5, 1, 4, 4)).astype(np.float32), np.array([0, 1, 0, 1, 0])
    model = bp.Sequential(bp.Conv2d(1, 2, 3), bp.BatchNorm2d(2), bp.Flatten(), bp.Linear(8, 2))
    hist = bp.fit(model, bp.SoftmaxCrossEntropyLoss(), bp.optim.SGD(model.parameters(), lr=0.1), X, y,
                  batch_size=2, progress=False)                 # the last batch: 1 image of 2 x 2 values
    assert math.isfinite(hist["loss"][0])
    one_value = bp.Sequential(bp.Conv2d(1, 2, 4), bp.BatchNorm2d(2), bp.Flatten(), bp.Linear(2, 2))
    with pytest.raises(ValueError, match=r"fit: BatchNorm2d.* needs at least 2 samples per training batch"):
        bp.fit(one_value, bp.SoftmaxCrossEntropyLoss(), bp.optim.SGD(one_value.parameters()), X, y, batch_size=2,
               progress=False)                                  # 1 x 1 images: one value per channel


def test_fits_shape_probe_is_quiet_as_its_steps():
    model = bp.Sequential(bp.Linear(2, 2, seed=0), bp.GELU(), bp.Linear(2, 1, seed=1))
    X = np.full((8, 2), 1e18, dtype=np.float32)              # GELU's x**3 overflows float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # a RuntimeWarning would fail here
        try:
            bp.fit(model, bp.MSELoss(), bp.optim.SGD(model.parameters()), X, np.zeros((8, 1)), progress=False)
        except bp.DivergenceError:
            pass


# -- snapshot and restore, now in training/ ----------------------------------------------------
def test_snapshot_and_restore_put_back_parameters_and_buffers(backend):
    model = bp.Sequential(bp.Linear(3, 4, seed=0), bp.BatchNorm1d(4), bp.Tanh(), bp.Linear(4, 1, seed=1))
    model.to(backend.spec)
    opt = bp.optim.SGD(model.parameters(), lr=0.5)
    before, copies = model.state_dict(), snapshot(model)
    assert set(copies) == set(before)
    X, y = np.random.default_rng(0).standard_normal((16, 3)), np.zeros((16, 1))
    bp.fit(model, bp.MSELoss(), opt, X, y, epochs=2, progress=False)
    assert not np.array_equal(model.state_dict()["1.running_mean"], before["1.running_mean"])
    for _ in range(2):                                       # one snapshot restores more than once
        restore(model, copies)
        for name, value in model.state_dict().items():
            np.testing.assert_array_equal(value, before[name], err_msg=name)
        assert all(backend.owns(p.data) for p in model.parameters())
        bp.fit(model, bp.MSELoss(), opt, X, y, epochs=1, progress=False)   # the optimizer still updates them
    with pytest.raises(KeyError, match="another model"):
        restore(bp.mlp([3, 1], seed=0), copies)
