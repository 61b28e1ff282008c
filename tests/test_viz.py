"""bpcore.viz: every plot draws a non-empty figure and a valid PNG for a model on every backend."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="bpcore.viz needs the viz extra (matplotlib)")

import backends
import bpcore as bp
from bpcore import viz

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_drawn(fig, path):
    """The figure has axes with something drawn on them, and ``path`` is a real PNG."""
    assert fig.axes, "the figure has no axes"
    drawn = sum(len(ax.collections) + len(ax.patches) + len(ax.images) + len(ax.lines) for ax in fig.axes)
    assert drawn > 0, "no artist was drawn"
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 4000, f"suspiciously small PNG ({len(data)} bytes)"


def binary_problem(backend):
    """Two moons and a small 2-8-1 net trained a few epochs on ``backend``."""
    X, y = bp.data.moons(80, noise=0.1, seed=0)
    model = bp.mlp([2, 8, 1], activation="tanh", seed=0).to(backend)
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.5), X[:60], y[:60],
                  epochs=4, batch_size=20, metrics=["accuracy"], validation_data=(X[60:], y[60:]),
                  progress=False)
    return model, X, y, hist


def multiclass_problem(backend):
    """Three blobs and a 2-8-3 softmax net trained a few epochs on ``backend``."""
    X, y = bp.data.blobs(90, centers=((-2.0, 0.0), (2.0, 0.0), (0.0, 2.5)), std=0.6, seed=0)
    model = bp.mlp([2, 8, 3], seed=0).to(backend)
    bp.fit(model, bp.SoftmaxCrossEntropyLoss(), bp.optim.Adam(model.parameters(), lr=0.05), X, y,
           epochs=5, batch_size=30, progress=False)
    return model, X, y


# -- each plot on every backend -----------------------------------------------------
def test_decision_boundary_binary(backend, tmp_path):
    model, X, y, _ = binary_problem(backend)
    path = tmp_path / "sub" / "boundary.png"          # parent folders are created
    fig = viz.decision_boundary(model, backend.asarray(X), y, resolution=40, title="moons", path=path)
    assert_drawn(fig, path)
    assert fig.axes[0].get_title() == "moons"
    # labels shaped (n,) work as well as (n, 1)
    assert viz.decision_boundary(model, X, y[:, 0], resolution=20).axes


def test_decision_boundary_names_the_line_and_rings_the_misclassified():
    model, X, y, _ = binary_problem(backends.get("cpu"))
    fig = viz.decision_boundary(model, X, y, resolution=30)
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    wrong = int(((bp.predict(model, X, probabilities=True)[:, 0] > 0.5) != (y[:, 0] > 0.5)).sum())
    assert fig.misclassified == wrong
    assert labels[:2] == ["class 0", "class 1"] and "p = 0.5 (decision boundary)" in labels
    assert (f"misclassified ({wrong})" in labels) == (wrong > 0)


def test_a_figure_shows_itself_in_a_notebook():
    """bpcore draws without pyplot, so no backend shows its figures: they carry their own PNG."""
    png = viz.curves({"loss": [1.0, 0.5, 0.25]})._repr_png_()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_decision_boundary_multiclass(backend, tmp_path):
    model, X, y = multiclass_problem(backend)
    path = tmp_path / "multi.png"
    assert_drawn(viz.decision_boundary(model, X, y, resolution=40, path=path), path)


def test_curves(backend, tmp_path):
    *_, hist = binary_problem(backend)
    path = tmp_path / "curves.png"
    fig = viz.curves(hist, path=path)
    assert_drawn(fig, path)
    loss_ax, accuracy_ax = fig.axes
    assert loss_ax.get_yscale() == "log"
    assert len(loss_ax.lines) == 2 and len(accuracy_ax.lines) == 2      # training and validation
    np.testing.assert_allclose(loss_ax.lines[0].get_xdata(), [1, 2, 3, 4])
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), hist["loss"])


def test_curves_loss_only():
    fig = viz.curves({"loss": [1.0, 0.5, 0.25]})
    assert len(fig.axes) == 1


def test_gradient_flow_from_history(backend, tmp_path):
    *_, hist = binary_problem(backend)
    path = tmp_path / "flow.png"
    fig = viz.gradient_flow(hist, epoch=-1, path=path)
    assert_drawn(fig, path)
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    np.testing.assert_allclose(heights, [hist.grad_norms["0.W"][-1], hist.grad_norms["2.W"][-1]])
    assert fig.axes[0].get_yscale() == "log"


def test_gradient_flow_from_model(backend, tmp_path):
    X, y = bp.data.moons(40, noise=0.1, seed=1)
    model = bp.mlp([2, 6, 6, 1], activation="sigmoid", seed=0).to(backend)
    loss_fn = bp.BCEWithLogitsLoss()
    loss_fn(model(backend.asarray(X)), backend.asarray(y))
    model.backward(loss_fn.backward())
    path = tmp_path / "flow_model.png"
    fig = viz.gradient_flow(model, path=path)
    assert_drawn(fig, path)
    expected = [np.linalg.norm(backend.to_numpy(p.grad)) for name, p in model.named_parameters()
                if name.endswith(".W")]
    np.testing.assert_allclose([bar.get_height() for bar in fig.axes[0].patches], expected, rtol=1e-5)


def test_gradient_flow_compares_histories(backend, tmp_path):
    X, y = bp.data.moons(40, noise=0.1, seed=2)
    histories = {}
    for activation in ("sigmoid", "relu"):
        model = bp.mlp([2, 6, 6, 6, 1], activation=activation, seed=0).to(backend)
        histories[activation] = bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.1),
                                       X, y, epochs=1, batch_size=40, progress=False)
    path = tmp_path / "compare.png"
    fig = viz.gradient_flow(histories, path=path, title="sigmoid vs ReLU")
    assert_drawn(fig, path)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * 4                                  # 4 layers, 2 networks
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["sigmoid", "relu"]


def test_weight_histograms(backend, tmp_path):
    model = bp.mlp([2, 8, 4, 1], seed=0).to(backend)
    path = tmp_path / "weights.png"
    fig = viz.weight_histograms(model, path=path)
    assert_drawn(fig, path)
    assert len(fig.axes) == 3
    std = float(np.std(backend.to_numpy(model.named_parameters()[0][1].data)))
    assert fig.axes[0].get_title().startswith("0.W  (2 x 8)")
    assert f"{std:.3g}" in fig.axes[0].get_title()


def test_confusion_matrix_counts(backend, tmp_path):
    model, X, y = multiclass_problem(backend)
    path = tmp_path / "confusion.png"
    fig = viz.confusion_matrix(model, backend.asarray(X), y, classes=["a", "b", "c"], path=path)
    assert_drawn(fig, path)
    predicted = bp.predict(model, X).argmax(axis=1)
    expected = np.zeros((3, 3), dtype=np.int64)
    for true, guess in zip(y, predicted):
        expected[true, guess] += 1
    np.testing.assert_array_equal(fig.confusion, expected)
    assert fig.confusion.sum() == len(X)


def test_confusion_matrix_binary():
    X, y = bp.data.moons(50, noise=0.1, seed=3)
    model = bp.mlp([2, 4, 1], seed=0)
    fig = viz.confusion_matrix(model, X, y)
    predicted = (bp.predict(model, X, probabilities=True)[:, 0] > 0.5).astype(int)
    expected = np.array([[np.sum((y[:, 0] == t) & (predicted == p)) for p in (0, 1)] for t in (0, 1)])
    np.testing.assert_array_equal(fig.confusion, expected)
    assert fig.confusion.sum() == 50


# -- bad input ---------------------------------------------------------------------------
def test_decision_boundary_needs_two_features():
    model = bp.mlp([3, 4, 1], seed=0)
    X = np.zeros((5, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"X must have shape \(n, 2\).*\(5, 3\)"):
        viz.decision_boundary(model, X, np.zeros(5))
    with pytest.raises(ValueError, match="one label per sample"):
        viz.decision_boundary(bp.mlp([2, 1], seed=0), np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="integer class labels"):
        viz.decision_boundary(bp.mlp([2, 1], seed=0), np.zeros((2, 2)), np.array([0.3, 1.0]))
    with pytest.raises(TypeError, match="bpcore Layer"):
        viz.decision_boundary("model", np.zeros((5, 2)), np.zeros(5))


def test_gradient_flow_rejects_other_objects():
    with pytest.raises(TypeError, match="History, a bpcore model, or a dict"):
        viz.gradient_flow(object())
    with pytest.raises(TypeError, match=r"gradient_flow\['x'\].*list"):
        viz.gradient_flow({"x": [1.0, 2.0]})


def test_gradient_flow_bad_epoch_and_no_backward():
    X, y = bp.data.moons(20, noise=0.1, seed=0)
    model = bp.mlp([2, 4, 1], seed=0)
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.1), X, y,
                  epochs=2, progress=False)
    with pytest.raises(ValueError, match=r"epoch must be an int in \[-2, 2\)"):
        viz.gradient_flow(hist, epoch=2)
    with pytest.raises(ValueError, match="backward pass"):
        viz.gradient_flow(bp.mlp([2, 4, 1], seed=0))


def test_curves_bad_history():
    with pytest.raises(ValueError, match="no 'loss'.*accuracy"):
        viz.curves({"accuracy": [0.5]})
    with pytest.raises(TypeError, match="bp.History"):
        viz.curves([0.5, 0.4])
    with pytest.raises(ValueError, match="'val_loss'.*1 values"):
        viz.curves({"loss": [1.0, 0.5], "val_loss": [1.0]})


def test_confusion_matrix_wrong_class_names():
    model = bp.mlp([2, 3], seed=0)
    with pytest.raises(ValueError, match="all 3 classes, got 1 names"):
        viz.confusion_matrix(model, np.zeros((4, 2), dtype=np.float32), np.zeros(4, dtype=int), classes=["a"])


# -- matplotlib is optional ------------------------------------------------------------------
def test_imports_and_explains_without_matplotlib(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)         # import matplotlib now fails
    spec = importlib.util.spec_from_file_location("_viz_without_matplotlib", viz.figures.__file__)
    fresh = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "_viz_without_matplotlib", fresh)
    fresh.__package__ = "bpcore.viz"
    spec.loader.exec_module(fresh)                               # the module itself imports fine
    with pytest.raises(ImportError, match=r'pip install -e "\.\[viz\]"'):
        fresh.curves({"loss": [1.0]})


def test_gradient_flow_title_counts_epochs_from_one_as_fit_does_and_defaults_to_the_last_as_health():
    X, y = bp.data.moons(32, seed=0)
    model = bp.mlp([2, 4, 1], seed=0)
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.1), X, y, epochs=3,
                  progress=False)
    assert viz.gradient_flow(hist, epoch=0).axes[0].get_title().endswith("(epoch 1 of 3)")
    assert viz.gradient_flow(hist).axes[0].get_title().endswith("(epoch 3 of 3)")
    assert viz.gradient_flow(hist, epoch=-1).axes[0].get_title().endswith("(epoch 3 of 3)")
