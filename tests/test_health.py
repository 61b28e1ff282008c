"""Gradient health (bp.diagnose, bp.GradientHealth) on the lessons' nets: the right warnings, no false alarms."""
from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest

import bpcore as bp
from bpcore.training import health

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "examples"))

import deep_nets  # noqa: E402  (the lessons' 20-layer nets, built as the example builds them)


def _digits_like(rng, n=256):
    X = rng.standard_normal((n, deep_nets.WIDTH)).astype(np.float32)
    return X, rng.integers(0, 10, n)


def test_twenty_sigmoid_layers_warn_of_vanishing_gradients(rng):
    X, y = _digits_like(rng)
    report = bp.diagnose(deep_nets.build("sigmoid", 0), bp.SoftmaxCrossEntropyLoss(), X, y)
    assert report["0"].ratio < 1e-6
    vanishing = [w for w in report.warnings if "vanish" in w]
    assert len(vanishing) == 1
    assert vanishing[0].startswith("layer 0.W: gradient ") and "19 sigmoids" in vanishing[0]
    others = len(report.vanishing) - 5                       # the worst, four by name, the rest counted
    assert f"so are 2.W, 4.W, 6.W, 8.W and {others} more)" in vanishing[0] and others > 0
    assert "ReLU with He init, BatchNorm, or residual connections" in vanishing[0]
    assert "gradients vanish through 19 sigmoids" in str(report)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_vanishing_gradient_lessons_net_is_flagged_and_its_cures_are_not(seed, recwarn):
    """One definition of vanishing (below VANISHING_RATIO of the last layer's): the lesson's five-sigmoid
    net is flagged by diagnose and by GradientHealth in fit; ReLU + He, BatchNorm and residual are not."""
    import vanishing_gradients

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((256, 10)).astype(np.float32)
    y = (X @ rng.standard_normal(10) > 0).astype(np.float32)[:, None]
    report = bp.diagnose(vanishing_gradients.build("sigmoid", seed), bp.BCEWithLogitsLoss(), X, y)
    assert report["0"].ratio < health.VANISHING_RATIO and report.vanishing[0] == "0.W"
    flagged = [w for w in report.warnings if "(vanishing: below 0.01" in w]
    assert len(flagged) == 1 and "sigmoids (each passes at most 0.25)" in flagged[0]
    named = set(re.findall(r"\b\d+\.W\b", flagged[0]))
    assert set(report.vanishing) <= named                          # one warning names them all
    for kind in ("relu_he", "batchnorm", "residual"):
        assert bp.diagnose(vanishing_gradients.build(kind, seed), bp.BCEWithLogitsLoss(), X, y).vanishing == []
    hist = _fit(vanishing_gradients.build("sigmoid", seed), X, y, 1, [bp.GradientHealth()], lr=1e-4)
    assert [epoch for epoch, w in hist.health["warnings"] if "vanish" in w] == [1]


@pytest.mark.parametrize("kind", ["relu_he", "relu_he_batchnorm", "residual"])
def test_the_cures_give_no_warning(kind, rng):
    X, y = _digits_like(rng)
    report = bp.diagnose(deep_nets.build(kind, 0), bp.SoftmaxCrossEntropyLoss(), X, y)
    assert report.warnings == []
    assert min(r.ratio for r in report.rows if r.ratio is not None) > health.VANISHING_RATIO


def test_a_first_bias_of_minus_ten_kills_the_relus():
    X, y = bp.data.moons(256, seed=0)
    model = bp.mlp([2, 16, 16, 1], activation="relu", seed=0)
    model[0].b.data = model[0].b.data - 10.0
    report = bp.diagnose(model, bp.BCEWithLogitsLoss(), X, y)
    assert report["1"].dead >= 0.9
    dead = [w for w in report.warnings if "dead" in w]
    assert dead and dead[0].startswith("layer 1 (ReLU): ") and "LeakyReLU" in dead[0]
    assert f"{report['1'].dead:.0%} of units are dead" in dead[0]


def test_ten_times_the_he_std_warns_about_initialization():
    X, y = bp.data.moons(256, seed=0)
    model = bp.mlp([2, 64, 64, 1], activation="relu", seed=0)
    model[2].W.data = model[2].W.data * 10.0
    report = bp.diagnose(model, bp.BCEWithLogitsLoss(), X, y)
    init = [w for w in report.warnings if "weight std" in w]
    assert len(init) == 1 and init[0].startswith("layer 2.W: weight std ")
    assert "the He value for fan_in 64: activations will explode" in init[0]
    assert report["2"].weight_std / report["2"].init_std == pytest.approx(10.0, rel=0.2)


def test_saturated_sigmoids_are_reported():
    X, y = bp.data.moons(256, seed=0)
    model = bp.mlp([2, 16, 1], activation="sigmoid", seed=0)
    model[0].W.data = model[0].W.data * 50.0
    report = bp.diagnose(model, bp.BCEWithLogitsLoss(), X, y)
    assert report["1"].saturated >= health.SATURATED_FRACTION
    assert any(w.startswith("layer 1 (Sigmoid): ") and "saturated" in w for w in report.warnings)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_healthy_moons_net_raises_no_alarm(seed):
    X, y = bp.data.moons(300, seed=seed)
    for activation in ("relu", "tanh"):
        model = bp.mlp([2, 16, 16, 1], activation=activation, seed=seed)
        assert bp.diagnose(model, bp.BCEWithLogitsLoss(), X, y).warnings == []


def _everything(model, loss_fn):
    """Every attribute of every layer and of the loss, arrays as host copies, plus the random streams."""
    state = {}
    for path, layer in model.named_modules():
        for name, value in vars(layer).items():
            if isinstance(value, bp.Parameter):
                state[(path, name, "data")] = layer.device.to_numpy(value.data).copy()
                state[(path, name, "grad")] = layer.device.to_numpy(value.grad).copy()
            elif hasattr(value, "shape") and hasattr(value, "dtype"):
                state[(path, name)] = layer.device.to_numpy(value).copy()
            elif name not in ("layers", "block", "_stream", "forward", "backward"):
                state[(path, name)] = repr(value)
        if isinstance(layer, bp.Dropout):
            state[(path, "random_state")] = repr(layer.random_state())
    state["loss"] = repr(sorted((k, repr(v)) for k, v in vars(loss_fn).items() if not hasattr(v, "shape")))
    return state


def test_diagnose_leaves_the_model_bitwise_unchanged(backend, rng):
    X = rng.standard_normal((64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model = bp.Sequential(bp.Linear(6, 8, seed=0), bp.BatchNorm1d(8), bp.ReLU(), bp.Dropout(0.3, seed=1),
                          bp.Residual(bp.Sequential(bp.Linear(8, 8, seed=2), bp.Tanh())),
                          bp.Linear(8, 3, seed=3)).to(backend)
    loss_fn = bp.SoftmaxCrossEntropyLoss()
    # one training step first, so gradients, caches, running statistics and the mask stream are non-trivial
    opt = bp.optim.SGD(model.parameters(), lr=0.1)
    bp.fit(model, loss_fn, opt, X, y, epochs=1, batch_size=64, progress=False)
    model.eval()
    before = _everything(model, loss_fn)
    report = bp.diagnose(model, loss_fn, X, y, batch_size=32)
    after = _everything(model, loss_fn)
    assert before.keys() == after.keys()
    for key in before:
        if isinstance(before[key], np.ndarray):
            assert before[key].dtype == after[key].dtype and before[key].tobytes() == after[key].tobytes(), key
        else:
            assert before[key] == after[key], key
    assert model.training is False
    assert report.batch_size == 32 and len(report.rows) == 7


def test_diagnose_gives_the_same_numbers_on_every_backend(backend, rng):
    X, y = bp.data.moons(128, seed=0)
    reference = bp.diagnose(bp.mlp([2, 8, 1], seed=0), bp.BCEWithLogitsLoss(), X, y)
    report = bp.diagnose(bp.mlp([2, 8, 1], seed=0).to(backend), bp.BCEWithLogitsLoss(), X, y)
    for mine, ref in zip(report.rows, reference.rows):
        for field in ("act_mean", "act_std", "dead", "grad_out_norm", "grad_norm", "ratio", "weight_std"):
            if getattr(ref, field) is None:
                assert getattr(mine, field) is None
            else:
                assert getattr(mine, field) == pytest.approx(getattr(ref, field), rel=1e-4, abs=1e-6), field


def test_the_table_has_one_line_per_layer():
    X, y = bp.data.moons(64, seed=0)
    text = str(bp.diagnose(bp.mlp([2, 8, 8, 1], seed=0), bp.BCEWithLogitsLoss(), X, y))
    lines = text.splitlines()
    assert lines[0].startswith("gradient health on 64 samples")
    assert [line.split()[:2] for line in lines[3:8]] == [["0", "Linear"], ["1", "ReLU"], ["2", "Linear"],
                                                         ["3", "ReLU"], ["4", "Linear"]]
    assert lines[-1].startswith("no warnings")


def test_bad_input_is_refused_with_a_typed_error():
    X, y = bp.data.moons(32, seed=0)
    model, loss_fn = bp.mlp([2, 4, 1], seed=0), bp.BCEWithLogitsLoss()
    with pytest.raises(TypeError, match="model must be a bpcore Layer"):
        bp.diagnose("net", loss_fn, X, y)
    with pytest.raises(TypeError, match="loss_fn must be a bpcore loss"):
        bp.diagnose(model, None, X, y)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        bp.diagnose(model, loss_fn, X, y, batch_size=0)
    with pytest.raises(ValueError, match="diagnose: X has 32 samples but y has 31"):
        bp.diagnose(model, loss_fn, X, y[:31])
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 2\)"):
        bp.diagnose(model, loss_fn, np.ones((4, 3), np.float32), y[:4])
    with pytest.raises(KeyError, match="no layer '9'"):
        bp.diagnose(model, loss_fn, X, y)["9"]


# -- GradientHealth: the same numbers every epoch of fit ------------------------------------------

def _fit(model, X, y, epochs, callbacks, lr=0.01, loss_fn=None, **kwargs):
    loss_fn = loss_fn or bp.BCEWithLogitsLoss()
    opt = bp.optim.Adam(model.parameters(), lr=lr)
    return bp.fit(model, loss_fn, opt, X, y, epochs=epochs, batch_size=32, callbacks=callbacks, progress=False,
                  **kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_health_records_every_epoch_and_stays_quiet_on_a_healthy_net(seed, recwarn):
    X, y = bp.data.moons(300, seed=seed)
    hist = _fit(bp.mlp([2, 16, 16, 1], seed=seed), X, y, 20, [bp.GradientHealth()])
    assert hist.health["epochs"] == list(range(1, 21))        # numbered as the bar and the warnings: from 1
    assert hist.health["warnings"] == []
    assert not [w for w in recwarn if issubclass(w.category, bp.GradientHealthWarning)]
    assert hist.health["layers"]["1"]["kind"] == "ReLU" and len(hist.health["layers"]["1"]["dead"]) == 20
    assert len(hist.health["layers"]["0"]["ratio"]) == 20 and len(hist.health["total_grad_norm"]) == 20
    # the first probe is diagnose's pass on the model as it was after epoch 1, on the first 256 samples
    hist_every = _fit(bp.mlp([2, 16, 16, 1], seed=seed), X, y, 4, [bp.GradientHealth(every=2)])
    assert hist_every.health["epochs"] == [1, 3]


def test_a_problem_is_warned_once_through_warnings_and_the_progress_bar(monkeypatch):
    import importlib

    fit_module = importlib.import_module("bpcore.training.fit")

    descriptions = []

    class Bar(fit_module._NoProgress):
        def set_description_str(self, text, refresh=True):
            descriptions.append(text)

    monkeypatch.setattr(fit_module, "_progress_bar", lambda *args: Bar())
    X, y = bp.data.moons(200, seed=0)
    model = bp.mlp([2, 16, 16, 1], seed=0)
    model[0].b.data = model[0].b.data - 10.0
    with pytest.warns(bp.GradientHealthWarning) as seen:
        hist = _fit(model, X, y, 5, [bp.GradientHealth()])
    dead = [str(w.message) for w in seen if "dead" in str(w.message)]
    assert dead[0].startswith("epoch 1: layer 1 (ReLU): 100% of units are dead")
    # five epochs, two problems (layer 3 gets only zeros from layer 1, so it is dead too): two warnings
    assert [sentence.split(":")[1] for sentence in dead] == [" layer 1 (ReLU)", " layer 3 (ReLU)"]
    assert [epoch for epoch, _ in hist.health["warnings"]] == [1, 1]      # the epoch the message says
    assert descriptions == ["health: layer 3 (ReLU): 100% of units are dead on this batch"]   # once, the latest


def test_the_initialization_is_judged_before_the_first_step():
    X, y = bp.data.moons(200, seed=0)
    model = bp.mlp([2, 64, 64, 1], seed=0)
    model[2].W.data = model[2].W.data * 10.0
    with pytest.warns(bp.GradientHealthWarning, match=r"^at initialization \(epoch 0\): layer 2.W: weight std .* "
                                                      r"the He value for fan_in 64"):
        hist = _fit(model, X, y, 1, [bp.GradientHealth()], lr=1e-4)
    assert [epoch for epoch, sentence in hist.health["warnings"] if "weight std" in sentence] == [0]


class _GrowFirstLayer(bp.Callback):
    """Multiplies the first weight by 10 after each epoch: the later gradients grow 10x an epoch."""

    def on_epoch_end(self, epoch, logs=None):
        self.model[0].W.data = self.model[0].W.data * 10.0


def test_a_total_gradient_norm_up_100x_in_a_few_epochs_warns_of_exploding_gradients():
    X, y = bp.data.moons(200, seed=0)
    model = bp.mlp([2, 8, 8, 1], activation="identity", seed=0)
    with pytest.warns(bp.GradientHealthWarning) as seen:     # the first layer's share also falls below 1e-2
        hist = _fit(model, X, y, 4, [bp.GradientHealth(), _GrowFirstLayer()], lr=1e-6, loss_fn=bp.MSELoss())
    assert any(re.search(r"total gradient norm grew \d+x in \d epochs?", str(w.message)) for w in seen)
    exploding = [s for _, s in hist.health["warnings"] if "explode" in s]
    assert len(exploding) == 1 and "clip gradients" in exploding[0]


def test_divergence_names_the_layer_whose_gradient_blew_up_first():
    X, y = bp.data.moons(200, seed=0)
    model = bp.mlp([2, 8, 8, 1], activation="identity", seed=0)
    with pytest.warns(bp.GradientHealthWarning):
        with pytest.raises(bp.DivergenceError,
                           match=r"Hint: the gradient of layer 2.W blew up first \((\d|\.)+") as error:
            _fit(model, X, y, 40, [_GrowFirstLayer(), bp.GradientHealth()], lr=1e-6, loss_fn=bp.MSELoss())
    assert "lower the learning rate" in str(error.value)
    # ten epochs of ever smaller first-layer gradients: still one warning per (layer, problem)
    said = [sentence for _, sentence in error.value.history.health["warnings"]]
    assert sum("gradients shrink" in sentence for sentence in said) == 1
    assert len(said) == len({sentence.split(":")[0] + ("explode" in sentence) * "x" for sentence in said})


def test_health_survives_checkpoint_and_resume(tmp_path):
    X, y = bp.data.moons(200, seed=0)
    whole = _fit(bp.mlp([2, 8, 1], seed=0), X, y, 4, [bp.GradientHealth()])
    path = tmp_path / "run.bpc"
    _fit(bp.mlp([2, 8, 1], seed=0), X, y, 2, [bp.GradientHealth()], checkpoint=path)
    resumed = _fit(bp.mlp([2, 8, 1], seed=0), X, y, 4, [bp.GradientHealth()], checkpoint=path, resume=path)
    assert resumed.health == whole.health
    assert bp.load_checkpoint(path)["history"].health == whole.health


def test_gradient_health_adds_no_host_transfer_per_epoch(monkeypatch):
    X, y = bp.data.moons(200, seed=0)
    backend = bp.mlp([2, 8, 1]).device
    calls = []
    original = backend.to_numpy
    monkeypatch.setattr(backend, "to_numpy", lambda array: calls.append(1) or original(array))

    def transfers(epochs, callbacks):
        calls.clear()
        _fit(bp.mlp([2, 8, 8, 1], seed=0), X, y, epochs, callbacks)
        return len(calls)

    extra_2 = transfers(2, [bp.GradientHealth()]) - transfers(2, [])
    extra_6 = transfers(6, [bp.GradientHealth()]) - transfers(6, [])
    assert extra_2 == extra_6 == 3        # the three weights' std read once, before training


def test_gradient_health_checks_its_arguments():
    for name in ("every", "batch_size", "window"):
        with pytest.raises(ValueError, match=f"GradientHealth: {name} must be a positive int"):
            bp.GradientHealth(**{name: 0})


# -- the figure, and the warnings in the Neural Flow page's data -----------------------------------

def test_viz_health_draws_ratios_and_fractions_with_thresholds(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    X, y = _digits_like(rng)
    report = bp.diagnose(deep_nets.build("sigmoid", 0), bp.SoftmaxCrossEntropyLoss(), X, y)
    path = tmp_path / "health.png"
    fig = bp.viz.health(report, path=path)
    assert path.stat().st_size > 0
    ratios, fractions = fig.axes
    weights = [r for r in report.rows if r.weight_std is not None]
    np.testing.assert_allclose([bar.get_height() for bar in ratios.patches], [r.ratio for r in weights])
    assert ratios.get_yscale() == "log"
    assert {line.get_ydata()[0] for line in ratios.get_lines()} == {health.VANISHING_RATIO, health.EXPLODING_RATIO}
    assert len(fractions.patches) == 19 and fractions.get_lines()[0].get_ydata()[0] == health.DEAD_FRACTION
    assert "1 warning" in fig._suptitle.get_text()


def test_viz_health_from_a_history_and_bad_input():
    pytest.importorskip("matplotlib")
    X, y = bp.data.moons(100, seed=0)
    model = bp.mlp([2, 8, 8, 1], seed=0)
    model[0].b.data = model[0].b.data - 10.0
    with pytest.warns(bp.GradientHealthWarning):
        hist = _fit(model, X, y, 2, [bp.GradientHealth()])
    fig = bp.viz.health(hist, epoch=0)
    assert [bar.get_height() for bar in fig.axes[1].patches] == [hist.health["layers"]["1"]["dead"][0],
                                                                 hist.health["layers"]["3"]["dead"][0]]
    with pytest.raises(ValueError, match="epoch must be an int in"):
        bp.viz.health(hist, epoch=5)
    with pytest.raises(ValueError, match="no gradient health; train with callbacks"):
        bp.viz.health(bp.History())
    with pytest.raises(TypeError, match="expected a bp.diagnose report"):
        bp.viz.health(model)


def test_the_flow_recorder_passes_the_health_warnings_to_the_page():
    X, y = bp.data.moons(100, seed=0)
    model = bp.mlp([2, 8, 8, 1], seed=0)
    model[0].b.data = model[0].b.data - 10.0
    recorder = bp.FlowRecorder(X[:4], y[:4], every=1)
    with pytest.warns(bp.GradientHealthWarning):
        hist = _fit(model, X, y, 2, [bp.GradientHealth(), recorder])
    data = recorder.to_dict()
    assert data["health_warnings"] == hist.health["warnings"] and data["health_warnings"]
    assert "100% of units are dead" in recorder.to_html()
