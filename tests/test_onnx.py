"""ONNX export: the onnx backend (ndonnx) and bp.onnx.export, checked by onnx.checker and onnxruntime.

Each test skips with the reason when ndonnx, onnx or onnxruntime is missing
(pip install -e ".[onnx]"; ci/test.sh installs them).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import backends
import bpcore as bp

ONNX_REASON = backends.status().get("onnx")
needs_ndonnx = pytest.mark.skipif(ONNX_REASON is not None, reason=str(ONNX_REASON))


# ------------------------------------------------------------------------ the backend
def test_onnx_is_listed_but_is_not_a_training_backend():
    assert "onnx" in backends.known()
    assert "onnx" not in backends.available(trains=True)
    assert ("onnx" in backends.available()) == (ONNX_REASON is None)
    assert "onnx" not in backends.status(trains=True) and "onnx" in backends.status(trains=False)


@needs_ndonnx
def test_parameters_become_constants_with_the_same_values():
    model = bp.mlp([3, 5, 2], seed=0)
    expected = model.state_dict()
    model.to("onnx")
    be = backends.get("onnx")
    for name, p in model.named_parameters():
        assert be.owns(p.data)
        np.testing.assert_array_equal(be.to_numpy(p.data), expected[name])


@needs_ndonnx
def test_backward_on_the_onnx_backend_says_export_is_inference_only():
    import ndonnx as ndx

    model = bp.mlp([3, 4, 2], seed=0).to("onnx").eval()
    out = model(ndx.argument(shape=("batch", 3), dtype=ndx.float32))
    assert backends.get("onnx").owns(out)
    with pytest.raises(backends.InferenceOnlyError, match="inference-only"):
        model.backward(np.ones((2, 2), dtype="float32"))
    fresh = bp.Tanh().to("onnx")
    with pytest.raises(backends.InferenceOnlyError, match="inference-only"):
        fresh.backward(np.ones((2, 2), dtype="float32"))      # before any forward too


@needs_ndonnx
def test_training_mode_dropout_and_traced_values_are_refused_clearly():
    import ndonnx as ndx

    be = backends.get("onnx")
    x = ndx.argument(shape=("batch", 3), dtype=ndx.float32)
    with pytest.raises(backends.InferenceOnlyError, match="eval"):
        bp.Dropout(0.5, seed=0).to("onnx").train()(x)
    with pytest.raises(ValueError, match="onnxruntime"):
        be.to_numpy(x * 2.0)
    with pytest.raises(ValueError, match="no devices"):
        backends.get("onnx:cuda")


# ------------------------------------------------------------------------ whole models export
needs_export = pytest.mark.skipif(
    ONNX_REASON is not None or importlib.util.find_spec("onnxruntime") is None
    or importlib.util.find_spec("onnx") is None,
    reason=str(ONNX_REASON or 'onnx or onnxruntime is not installed: pip install -e ".[onnx]"'))


class ReadmeLinear(bp.Layer):
    """The README's custom layer: a user layer written on the Array API exports unchanged."""

    def __init__(self, n_in, n_out, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.W = self.parameter(rng.standard_normal((n_in, n_out)) / np.sqrt(n_in))
        self.b = self.parameter(rng.standard_normal(n_out))

    def forward(self, x):
        x = self.check_input(x)
        self.save_for_backward(x=x)
        return x @ self.W.data + self.b.data

    def backward(self, grad_out):
        self.W.accumulate_grad(self.saved("x").T @ grad_out)
        self.b.accumulate_grad(self.xp.sum(grad_out, axis=0))
        return grad_out @ self.W.data.T


# Whole models; every layer configuration on its own is a case in tests/layer_cases.py, exported by
# test_exports_to_onnx in tests/test_layer_cases.py.
MODELS = {
    "Sequential": lambda: bp.Sequential(bp.Linear(4, 8, seed=2), bp.BatchNorm1d(8), bp.GELU(), bp.Dropout(0.2),
                                        bp.Linear(8, 3, seed=3), bp.Softmax()),
    "readme-custom-layer": lambda: ReadmeLinear(4, 3),
    **{f"mlp-{name}": (lambda name=name: bp.mlp([4, 16, 8, 3], activation=name, seed=5)) for name in bp.ACTIVATIONS},
}


def _inputs(rng, batch, dtype):
    """Inputs that reach the activations' extremes: Sigmoid and Softmax must not overflow at |x| = 200."""
    x = rng.standard_normal((batch, 4)) * 3.0
    x[0, :2] = (200.0, -200.0)
    return x.astype(dtype)


@needs_export
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_exports_and_onnxruntime_matches_numpy(name, dtype, rng, tmp_path):
    import onnx
    import onnxruntime

    model = MODELS[name]().astype(dtype)
    path = tmp_path / "model.onnx"
    report = bp.onnx.export(model, _inputs(rng, 4, dtype), path)
    assert report.path == str(path) and report.dtype == dtype and report.nodes >= 1 and report.opset >= 13
    assert report.size == path.stat().st_size
    assert report.input_shape == ("batch", 4)
    assert report.output_shape == ("batch", *model.eval()(_inputs(rng, 2, dtype)).shape[1:])
    assert report.max_difference <= bp.onnx.TOLERANCE[dtype]
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask      # readable as any new file, not mkstemp's 0o600

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected_model = model.eval()
    for batch in (1, 257):                        # one dynamic export, several batch sizes
        x = _inputs(rng, batch, dtype)
        (got,) = session.run(["output"], {"input": x})
        expected = expected_model(x)
        assert got.dtype == np.dtype(dtype) and got.shape == expected.shape
        assert np.all(np.isfinite(got)), f"{name}: onnxruntime gave non-finite values"
        np.testing.assert_allclose(got, expected, rtol=bp.onnx.TOLERANCE[dtype], atol=bp.onnx.TOLERANCE[dtype],
                                   err_msg=f"{name} {dtype} batch {batch}")


@needs_export
def test_the_users_model_is_left_untouched(rng, tmp_path):
    spec = "torch" if "torch" in backends.available() else "array_api_strict"
    model = bp.Sequential(bp.Linear(4, 6, seed=0), bp.BatchNorm1d(6), bp.Dropout(0.5, seed=1), bp.Linear(6, 2, seed=2))
    model.to(spec).train()
    x = _inputs(rng, 8, "float32")
    model(x)                                     # a training forward: caches and running statistics set
    before, cache = model.state_dict(), model[0].saved("x")
    report = bp.onnx.export(model, x, tmp_path / "m.onnx")
    assert model.training and all(layer.training for layer in model.modules())
    assert model.device is backends.get(spec) and model[0].saved("x") is cache
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    expected = model.eval()(x)                   # the export is the model in eval mode
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", x), backends.get(spec).to_numpy(expected),
                               rtol=1e-4, atol=1e-4)
    assert report.max_difference <= bp.onnx.TOLERANCE["float32"]


def _run(path, x, names=("input", "output")):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([names[1]], {names[0]: x})[0]


@needs_export
def test_names_and_a_fixed_batch(rng, tmp_path):
    model = bp.mlp([4, 5, 2], seed=0)
    x = _inputs(rng, 3, "float32")
    report = bp.onnx.export(model, x, tmp_path / "f.onnx", input_names=("features",), output_names=("logits",),
                            dynamic_batch=False)
    assert report.input_shape == (3, 4) and report.output_shape == (3, 2)
    np.testing.assert_allclose(_run(tmp_path / "f.onnx", x, ("features", "logits")), model(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="(?i)dimension|shape"):      # onnxruntime holds the batch to 3
        _run(tmp_path / "f.onnx", x[:1], ("features", "logits"))
    assert "3 -> " not in str(report) and "opset" in str(report)
    assert "float32 features (3, 4) -> logits (3, 2)" in str(report)         # the names given, not "input"


@needs_export
def test_the_file_runs_in_a_fresh_process_with_only_onnxruntime_and_numpy(rng, tmp_path):
    model = bp.mlp([4, 8, 3], activation="gelu", seed=0)
    x = _inputs(rng, 5, "float32")
    bp.onnx.export(model, x, tmp_path / "model.onnx")
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent("""
        import importlib.abc, sys
        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in ("bpcore", "backends", "ndonnx", "spox"):
                    raise ImportError(f"{name} must not be needed to run the file")
        sys.meta_path.insert(0, Refuse())
        import numpy as np, onnxruntime as ort
        session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
        out = session.run(None, {"input": np.load("x.npy")})[0]
        np.save("out.npy", out)
        loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("bpcore", "backends", "ndonnx", "spox"))
        print("loaded:", loaded)
    """)
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model(x), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------ what cannot export, and bad input
class NumpyTanh(bp.Layer):
    """A layer that calls NumPy itself: runs on the numpy backend only."""

    def forward(self, x):
        return np.tanh(x)


class DisagreesOnOnnx(bp.Layer):
    """A planted bug: a forward that computes something else when it is traced."""

    def forward(self, x):
        x = self.check_input(x)
        return x + 1.0 if self.device.name == "onnx" else x


@needs_export
def test_a_numpy_only_layer_is_named_with_the_function(rng, tmp_path):
    model = bp.Sequential(bp.Linear(4, 4, seed=0), NumpyTanh())
    with pytest.raises(bp.onnx.ExportError, match=r"NumpyTanh\(\) \(layer '1'\).*np\.tanh.*self\.xp\.tanh"):
        bp.onnx.export(model, _inputs(rng, 2, "float32"), tmp_path / "n.onnx")
    assert list(tmp_path.iterdir()) == []


@needs_export
def test_a_disagreement_with_onnxruntime_names_the_largest_difference(rng, tmp_path):
    model = bp.Sequential(bp.Linear(4, 3, seed=0), DisagreesOnOnnx())
    with pytest.raises(bp.onnx.ExportError, match=r"differs from the model's by up to 1 at index \(0, 0\)"):
        bp.onnx.export(model, _inputs(rng, 2, "float32"), tmp_path / "d.onnx")
    assert list(tmp_path.iterdir()) == []


@needs_export
@pytest.mark.parametrize("case", ["wrong width", "no layers", "missing folder", "folder is a file", "path is a folder",
                                  "list example", "string example", "scalar example", "not a model", "two names",
                                  "same names", "dynamic_batch"])
def test_bad_input_is_refused_with_a_typed_error_and_nothing_written(case, rng, tmp_path):
    x = _inputs(rng, 2, "float32")
    model, example, path, kwargs = bp.mlp([4, 3], seed=0), x, tmp_path / "m.onnx", {}
    (tmp_path / "file").write_text("not a folder")
    error, match = {
        "wrong width": (ValueError, r"Linear\(4, 3\).*\(batch, 4\), got \(2, 5\)"),
        "no layers": (ValueError, "no layers"),
        "missing folder": (FileNotFoundError, "does not exist"),
        "folder is a file": (NotADirectoryError, "not a folder"),
        "path is a folder": (IsADirectoryError, "is a folder"),
        "list example": (TypeError, "example must be an input array.*got list"),
        "string example": (TypeError, "example must be an input array.*got str"),
        "scalar example": (ValueError, "at least one sample"),
        "not a model": (TypeError, "must be a bpcore Layer"),
        "two names": (TypeError, "input_names must be a tuple of one name"),
        "same names": (ValueError, "different names"),
        "dynamic_batch": (TypeError, "dynamic_batch"),
    }[case]
    if case == "wrong width":
        example = rng.standard_normal((2, 5)).astype("float32")
    elif case == "no layers":
        model = bp.Sequential()
    elif case == "missing folder":
        path = tmp_path / "nowhere" / "m.onnx"
    elif case == "folder is a file":
        path = tmp_path / "file" / "m.onnx"
    elif case == "path is a folder":
        path = tmp_path
    elif case == "list example":
        example = x.tolist()
    elif case == "string example":
        example = "x"
    elif case == "scalar example":
        example = np.float32(1.0)
    elif case == "not a model":
        model = lambda v: v  # noqa: E731
    elif case == "two names":
        kwargs = {"input_names": ("a", "b")}
    elif case == "same names":
        kwargs = {"input_names": ("x",), "output_names": ("x",)}
    else:
        kwargs = {"dynamic_batch": "yes"}
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(error, match=match):
        bp.onnx.export(model, example, path, **kwargs)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before        # nothing half-written


@needs_export
def test_a_failed_write_leaves_no_temporary_file(rng, tmp_path, monkeypatch):
    import bpcore.checkpoint.format as file_format

    def crash(*args):
        raise OSError("disk full (planted)")

    monkeypatch.setattr(file_format.os, "replace", crash)
    with pytest.raises(OSError, match="planted"):
        bp.onnx.export(bp.mlp([4, 3], seed=0), _inputs(rng, 2, "float32"), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:onnxruntime is not installed")     # ndonnx says so when first imported
@pytest.mark.parametrize("missing", ["ndonnx", "onnx", "onnxruntime"])
def test_without_the_extra_the_error_gives_the_install_command(missing, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, missing, None)          # as if not installed
    with pytest.raises(backends.BackendUnavailableError, match=rf'{missing} is missing.*pip install "bpcore\[onnx\]"'):
        bp.onnx.export(bp.mlp([4, 3], seed=0), np.zeros((2, 4), "float32"), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ the example
@needs_export
def test_the_example_trains_exports_and_runs_the_file_without_bpcore(backend, tmp_path, capsys):
    example = _load_example("export_onnx")
    result = example.main(["--device", backend.spec, "--epochs", "3", "--out", str(tmp_path)])
    output = capsys.readouterr().out
    assert result["bpcore_loaded"] is False and result["difference"] <= 1e-4
    assert result["report"].output_shape == ("batch", 1) and (tmp_path / "spiral.onnx").stat().st_size > 500
    assert "bpcore logit   onnxruntime logit" in output and f"wrote {tmp_path / 'spiral.onnx'}" in output


def _load_example(name):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(root, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CNNS = {
    "conv-pool-flatten": lambda: bp.Sequential(
        bp.Conv2d(1, 4, 3, padding=1, seed=0), bp.BatchNorm2d(4), bp.ReLU(), bp.MaxPool2d(2),
        bp.Conv2d(4, 6, (2, 3), stride=(1, 2), dilation=(1, 1), seed=1), bp.Tanh(), bp.AvgPool2d(2, padding=1),
        bp.Flatten(), bp.Linear(6 * 2 * 1, 3, seed=2)),
    "global-average": lambda: bp.Sequential(
        bp.Conv2d(1, 5, 3, stride=2, padding=2, dilation=2, seed=3), bp.ReLU(), bp.AdaptiveAvgPool2d(1),
        bp.Flatten(), bp.Linear(5, 2, seed=4)),
}


@needs_export
@pytest.mark.parametrize("name", sorted(CNNS))
def test_convolutional_nets_export_with_a_symbolic_batch(name, rng, tmp_path):
    import onnxruntime

    model = CNNS[name]().astype("float64")
    example = rng.standard_normal((3, 1, 8, 8))
    report = bp.onnx.export(model, example, tmp_path / "cnn.onnx")
    assert report.input_shape == ("batch", 1, 8, 8) and report.max_difference <= bp.onnx.TOLERANCE["float64"]
    session = onnxruntime.InferenceSession(str(tmp_path / "cnn.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 17):
        x = rng.standard_normal((batch, 1, 8, 8))
        (got,) = session.run(["output"], {"input": x})
        np.testing.assert_allclose(got, model.eval()(x), rtol=1e-10, atol=1e-10)
