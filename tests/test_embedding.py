"""Embedding: integer indices in, rows of W out; its backward is a scatter-add (portable or a fast path)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_matches_torch, count_syncs, host, tolerance
from forging import forge

import backends
import bpcore as bp
from bpcore.nn.scatter import OPERATION, portable_scatter_add_rows, scatter_add_rows

V, D = 11, 4


def _indices(rng, shape=(3, 7)):
    x = rng.integers(0, V, size=shape)
    x.flat[:3] = 5                      # a repeated index: its gradient rows must add up
    return x


# -- against PyTorch ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 7), (1, 1), (1, 9), (6, 1), (5,)], ids=str)
def test_matches_torch(backend, rng, shape):
    torch = pytest.importorskip("torch")
    layer = bp.Embedding(V, D, seed=0).astype("float64").to(backend)
    x, grad_out = _indices(rng, shape), rng.standard_normal(shape + (D,))
    out = layer(backend.asarray(x))
    assert layer.backward(backend.asarray(grad_out)) is None        # indices have no gradient
    reference = torch.nn.Embedding(V, D).double()
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(host(backend, layer.W.data)))
    out_t = reference(torch.tensor(x))
    out_t.backward(torch.tensor(grad_out))
    assert_matches_torch(host(backend, out), out_t.detach().numpy(), "output")
    assert_matches_torch(host(backend, layer.W.grad), reference.weight.grad.numpy(), "dL/dW")


def test_weights_are_standard_normal_and_the_same_on_every_backend(backend):
    W = host(backend, bp.Embedding(2000, 50, seed=3).to(backend).W.data)
    np.testing.assert_array_equal(W, host(backends.get("cpu"), bp.Embedding(2000, 50, seed=3).W.data))
    assert abs(W.mean()) < 0.01 and abs(W.std() - 1.0) < 0.01


def test_gradcheck_checks_the_parameters_only(backend, rng):
    model = bp.Sequential(bp.Embedding(V, D, seed=0), bp.Tanh(), bp.Linear(D, 3, seed=1)).to(backend)
    report = bp.gradcheck(model, bp.SoftmaxCrossEntropyLoss(), _indices(rng), rng.integers(0, 3, (3, 7)))
    assert report.passed, str(report)
    assert [row.name for row in report.rows] == ["0.W", "2.W", "2.b"]


def test_gradcheck_still_wants_dL_dx_from_a_float_model(rng):
    class Forgetful(bp.Linear):
        def backward(self, grad_out):
            self.backward_params(grad_out)

    with pytest.raises(TypeError, match="backward returned None for a float input"):
        bp.gradcheck(Forgetful(3, 2, seed=0), bp.MSELoss(), rng.standard_normal((4, 3)), np.zeros((4, 2)))


# -- the scatter-add: fast paths equal the portable reference --------------------------------------
def _scatter_cases(rng):
    yield "repeats", rng.integers(0, V, 40), rng.integers(-8, 8, (40, D)).astype("float64")
    yield "one token", np.array([7]), np.ones((1, D))
    yield "no token", np.zeros(0, dtype="int64"), np.zeros((0, D))
    yield "all one index", np.full(33, 2), rng.integers(-8, 8, (33, D)).astype("float64")
    yield "int32 indices", rng.integers(0, V, 25).astype("int32"), rng.integers(-8, 8, (25, D)).astype("float64")
    yield "uint8 indices", rng.integers(0, V, 25).astype("uint8"), rng.integers(-8, 8, (25, D)).astype("float64")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scatter_add_paths_equal_np_add_at(backend, rng, dtype):
    """Integer-valued rows sum exactly in any order: fast path, portable path and np.add.at agree bit for bit."""
    for case, indices, values in _scatter_cases(rng):
        expected = np.zeros((V, D), dtype=dtype)
        np.add.at(expected, indices, values.astype(dtype))
        with backend.activate():
            args = backend.asarray(values, dtype=dtype), backend.asarray(indices)
            portable = portable_scatter_add_rows(backend.xp, *args, V, backend.device)
            dispatched = scatter_add_rows(backend, *args, V)
        for result in (portable, dispatched):
            assert backend.owns(result) and result.dtype == backend.dtype(dtype), case
            np.testing.assert_array_equal(host(backend, result), expected, err_msg=case)


def test_fast_path_equals_portable_on_random_floats(backend, rng):
    indices, values = rng.integers(0, 300, 2000), rng.standard_normal((2000, 16)).astype("float32")
    with backend.activate():
        args = backend.asarray(values), backend.asarray(indices)
        portable = host(backend, portable_scatter_add_rows(backend.xp, *args, 300, backend.device))
        dispatched = host(backend, scatter_add_rows(backend, *args, 300))
    np.testing.assert_allclose(dispatched, portable, **tolerance("float32", 1000))


def test_every_builtin_backend_but_strict_registers_a_fast_path():
    assert {name for name, operation in backends.fast_paths() if operation == OPERATION} == {"numpy", "torch", "cupy"}


def test_a_registered_fast_path_is_used_and_can_be_removed(rng):
    backend, calls = backends.get("array_api_strict"), []

    def counting(values, indices, num_rows):
        calls.append(num_rows)
        return portable_scatter_add_rows(backend.xp, values, indices, num_rows, backend.device)

    backends.register_fast_path("array_api_strict", OPERATION, counting)
    try:
        with pytest.raises(ValueError, match="already has a fast path"):
            backends.register_fast_path("array_api_strict", OPERATION, counting)
        layer = bp.Embedding(V, D, seed=0).to(backend)
        layer(_indices(rng))
        layer.backward(backend.asarray(np.ones((3, 7, D), dtype="float32")))
        assert calls == [V]
    finally:
        backends.unregister_fast_path("array_api_strict", OPERATION)
    assert backend.fast_path(OPERATION) is None
    with pytest.raises(TypeError, match="must be callable"):
        backends.register_fast_path("numpy", "other", 3)


# -- what the layer accepts -----------------------------------------------------------------------
@pytest.mark.parametrize("x, error, message", [
    (np.zeros((2, 3), dtype="float32"), TypeError, r"integer indices in \[0, 11\), got dtype float32 \(cast them"),
    (np.zeros((2, 3), dtype=bool), TypeError, "integer indices in .* got dtype bool"),
    (np.full((2, 3), 11), ValueError, r"input holds index 11, outside \[0, 11\)"),
    (np.full((2, 3), -1), ValueError, r"input holds index -1, outside \[0, 11\)"),
    (np.int64(3), ValueError, r"expected input of shape \(batch,\), got \(\)"),
])
def test_bad_indices_are_refused_per_call_where_that_is_free(backend, x, error, message):
    layer = bp.Embedding(V, D).to(backend)
    if not backend.sync_free and error is ValueError and x.ndim:
        pytest.skip("out-of-range indices are checked where data enter on a GPU, not per call")
    with pytest.raises(error, match=message):
        layer(x)


def test_on_a_gpu_an_unchecked_index_makes_nan_without_a_sync(rng):
    backend = backends.get("array_api_strict:device1")
    assert not backend.sync_free
    layer = bp.Embedding(V, D, seed=0).to(backend)
    good, bad = backend.asarray(_indices(rng)), backend.asarray(np.array([[1, V + 4]]))
    with count_syncs() as syncs, backend.activate():
        out = layer(good)
        layer.backward(backend.xp.ones_like(out))
    assert syncs.total == 0, syncs
    assert np.isfinite(host(backend, out)).all()
    assert np.isnan(host(backend, layer(bad))).all()


@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
def test_indices_out_of_range_are_refused_where_data_enter(backend, rng, call):
    model = bp.Sequential(bp.Embedding(V, D, seed=0), bp.Linear(D, 3, seed=1)).to(backend)
    X, y = _indices(rng), rng.integers(0, 3, (3, 7))
    X[2, 6] = V
    run = {"fit": lambda: bp.fit(model, bp.SoftmaxCrossEntropyLoss(), bp.optim.SGD(model.parameters()), X, y,
                                 progress=False),
           "evaluate": lambda: bp.evaluate(model, bp.SoftmaxCrossEntropyLoss(), X, y),
           "predict": lambda: bp.predict(model, X)}[call]
    with pytest.raises(ValueError, match=rf"{call} X holds index 11, outside \[0, 11\)"):
        run()


def test_fit_passes_integer_data_unconverted_and_learns(backend, rng):
    X = rng.integers(0, V, (64, 5))
    y = (X + 1) % V                              # the next index: a lookup table to learn
    model = bp.Sequential(bp.Embedding(V, 16, seed=0), bp.Tanh(), bp.Linear(16, V, seed=1)).to(backend)
    loss_fn = bp.SoftmaxCrossEntropyLoss()
    history = bp.fit(model, loss_fn, bp.optim.Adam(model.parameters(), lr=0.05), X, y, epochs=15, batch_size=16,
                     validation_data=(X, y), metrics=["accuracy"], progress=False)
    assert history["val_accuracy"][-1] == 1.0
    assert bp.predict(model, X[:2]).shape == (2, 5, V)
    assert model.summary((5,), print_fn=None).rows[0][2] == (None, 5, 16)


# -- checkpoints and export -------------------------------------------------------------------------
def test_checkpoint_round_trip(backend, rng, tmp_path):
    model = bp.Sequential(bp.Embedding(V, D, seed=0), bp.Linear(D, 3, seed=1)).to(backend)
    X = _indices(rng)
    model.save(tmp_path / "m.bpc")
    loaded = bp.load(tmp_path / "m.bpc", device=backend.spec)
    assert repr(loaded[0]) == "Embedding(11, 4)"
    np.testing.assert_array_equal(bp.predict(loaded, X), bp.predict(model, X))


def test_a_forged_huge_embedding_is_refused_before_allocating(tmp_path):
    small = np.zeros(4, dtype=np.float32)
    header = {"format": "bpcore-checkpoint", "format_version": 1, "bpcore_version": "x", "dtype": "float32",
              "tensors": [{"name": "model/0.W", "dtype": "float32", "shape": [4], "offset": 0, "nbytes": 16}],
              "architecture": {"type": "Sequential", "layers": [
                  {"type": "Embedding", "config": {"num_embeddings": 2 ** 40, "embedding_dim": 1024}}]}}
    path = tmp_path / "huge.bpc"
    path.write_bytes(forge(header, small.tobytes()))
    with pytest.raises(bp.CheckpointError, match=f"would create {2 ** 50} or more numbers"):
        bp.load(path)


def test_onnx_export_takes_int64_indices(rng, tmp_path):
    pytest.importorskip("ndonnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    model = bp.Sequential(bp.Embedding(V, D, seed=0), bp.Tanh(), bp.Linear(D, 3, seed=1))
    report = bp.onnx.export(model, _indices(rng), tmp_path / "e.onnx")
    assert report.dtype == "int64" and report.input_shape == ("batch", 7)
    other = _indices(rng, (5, 7))
    session = onnxruntime.InferenceSession(str(tmp_path / "e.onnx"), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {"input": other})
    np.testing.assert_allclose(result, bp.predict(model, other), **tolerance("float32", 10))


def test_the_scatter_benchmark_runs_a_tiny_round():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "bench_scatter.py")
    spec = importlib.util.spec_from_file_location("bench_scatter", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = module.main(["--vocab", "500", "--dim", "8", "--tokens", "64", "--repeats", "1", "--backends", "numpy"])
    assert lines[-1].startswith("numpy") and "MB" in lines[1]
