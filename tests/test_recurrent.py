"""RNN, LSTM and GRU: equal to torch.nn in float64 (forward, dL/dx, every parameter gradient, the final
and initial states), gradcheck on every backend, T = 1, N = 1, T = 200, state carried between calls,
no sync on the simulated device, checkpoints and ONNX export."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from helpers import assert_matches_torch, count_syncs, host, tolerance
from checkpoint_helpers import refused_load_peak
from forging import forge

import backends
import bpcore as bp

C, H = 4, 6

# name -> (factory, torch class name, torch keyword arguments)
LAYERS = {
    "RNN": (lambda **kw: bp.RNN(C, H, **kw), "RNN", {}),
    "RNN-relu": (lambda **kw: bp.RNN(C, H, nonlinearity="relu", **kw), "RNN", {"nonlinearity": "relu"}),
    "LSTM": (lambda **kw: bp.LSTM(C, H, **kw), "LSTM", {}),
    "GRU": (lambda **kw: bp.GRU(C, H, **kw), "GRU", {}),
}
PARAMETERS = (("W_ih", "weight_ih_l0"), ("W_hh", "weight_hh_l0"), ("b_ih", "bias_ih_l0"), ("b_hh", "bias_hh_l0"))


def _torch_twin(torch, name, layer, backend):
    """torch.nn.<RNN|LSTM|GRU> holding ``layer``'s weights (weight_ih_l0 = W_ih.T, bias_ih_l0 = b_ih)."""
    _, kind, kwargs = LAYERS[name]
    twin = getattr(torch.nn, kind)(C, H, batch_first=True, **kwargs).double()
    with torch.no_grad():
        for ours, theirs in PARAMETERS:
            value = host(backend, getattr(layer, ours).data)
            getattr(twin, theirs).copy_(torch.tensor(value.T if ours.startswith("W") else value))
    return twin


def _state(rng, name, batch):
    h = rng.standard_normal((batch, H))
    return (h, rng.standard_normal((batch, H))) if name == "LSTM" else h


def _on(backend, state):
    return tuple(backend.asarray(s) for s in state) if isinstance(state, tuple) else backend.asarray(state)


def _compare_with_torch(backend, rng, name, batch, steps, state=None):
    torch = pytest.importorskip("torch")
    layer = LAYERS[name][0](seed=1).astype("float64").to(backend)
    x, grad_out = rng.standard_normal((batch, steps, C)), rng.standard_normal((batch, steps, H))
    out = layer(backend.asarray(x), None if state is None else _on(backend, state))
    grad_in = layer.backward(backend.asarray(grad_out))
    twin = _torch_twin(torch, name, layer, backend)
    x_t = torch.tensor(x, requires_grad=True)
    if state is None:
        out_t, final_t = twin(x_t)
        start_t = None
    else:
        start_t = tuple(torch.tensor(s[None], requires_grad=True) for s in state) if name == "LSTM" \
            else torch.tensor(state[None], requires_grad=True)
        out_t, final_t = twin(x_t, start_t)
    out_t.backward(torch.tensor(grad_out))
    assert_matches_torch(host(backend, out), out_t.detach().numpy(), f"{name} output")
    assert_matches_torch(host(backend, grad_in), x_t.grad.numpy(), f"{name} dL/dx")
    for ours, theirs in PARAMETERS:
        expected = getattr(twin, theirs).grad.numpy()
        assert_matches_torch(host(backend, getattr(layer, ours).grad), expected.T if ours.startswith("W") else expected,
                             f"{name} dL/d{ours}")
    finals = layer.final_state if name == "LSTM" else (layer.final_state,)
    finals_t = final_t if name == "LSTM" else (final_t,)
    for ours, theirs in zip(finals, finals_t):
        assert_matches_torch(host(backend, ours), theirs.detach().numpy()[0], f"{name} final state")
    if start_t is not None:
        grads = layer.grad_state if name == "LSTM" else (layer.grad_state,)
        starts = start_t if name == "LSTM" else (start_t,)
        for ours, theirs in zip(grads, starts):
            assert_matches_torch(host(backend, ours), theirs.grad.numpy()[0], f"{name} dL/d(initial state)")


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("batch, steps", [(3, 5), (1, 1), (1, 7), (4, 1)], ids=["3x5", "N1T1", "N1", "T1"])
def test_matches_torch(backend, rng, name, batch, steps):
    _compare_with_torch(backend, rng, name, batch, steps)


@pytest.mark.parametrize("name", list(LAYERS))
def test_matches_torch_over_200_steps(rng, name):
    """A long sequence: no recursion (a loop), the gradient carried back through all 200 steps."""
    _compare_with_torch(backends.get("cpu"), rng, name, 2, 200)


@pytest.mark.parametrize("name", list(LAYERS))
def test_matches_torch_from_a_given_state(backend, rng, name):
    _compare_with_torch(backend, rng, name, 3, 4, state=_state(rng, name, 3))


@pytest.mark.parametrize("name", list(LAYERS))
def test_gradcheck(backend, rng, name):
    model = bp.Sequential(LAYERS[name][0](seed=0), bp.Linear(H, 2, seed=1)).to(backend)
    report = bp.gradcheck(model, bp.MSELoss(), rng.standard_normal((2, 3, C)), rng.standard_normal((2, 3, 2)))
    assert report.passed, str(report)
    assert [row.name for row in report.rows] == ["0.W_ih", "0.W_hh", "0.b_ih", "0.b_hh", "1.W", "1.b", "input"]


def test_gradcheck_embedding_lstm_linear(backend, rng):
    model = bp.Sequential(bp.Embedding(7, C, seed=0), bp.LSTM(C, H, seed=1), bp.Linear(H, 7, seed=2)).to(backend)
    report = bp.gradcheck(model, bp.SoftmaxCrossEntropyLoss(), rng.integers(0, 7, (2, 5)), rng.integers(0, 7, (2, 5)))
    assert report.passed, str(report)


@pytest.mark.parametrize("name", list(LAYERS))
def test_one_step_at_a_time_equals_the_whole_sequence(backend, rng, name):
    """Sampling: feeding the steps one by one, each from the last call's final_state, gives the same states."""
    layer = LAYERS[name][0](seed=2).to(backend)
    x = backend.asarray(rng.standard_normal((2, 6, C)).astype("float32"))
    whole = host(backend, layer(x))
    state, pieces = None, []
    for t in range(6):
        pieces.append(host(backend, layer(x[:, t:t + 1, :], state)))
        state = layer.final_state
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, **tolerance("float32", 10))


@pytest.mark.parametrize("name", list(LAYERS))
def test_memory_grows_linearly_in_time(name):
    """What forward keeps for backward: double the steps, (about) double the memory."""
    layer = LAYERS[name][0](seed=0)
    # longer than both cuts, so both are slices the layer copies (a whole array would be kept uncopied)
    x = np.random.default_rng(0).standard_normal((8, 800, C)).astype("float32")

    def kept(steps):
        layer._saved = None
        tracemalloc.start()
        try:
            layer(x[:, :steps])
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    assert 1.7 < kept(400) / kept(200) < 2.3


def test_no_sync_on_the_simulated_device(rng):
    backend = backends.get("array_api_strict:device1")
    for name in LAYERS:
        layer = LAYERS[name][0](seed=0).to(backend)
        x = backend.asarray(rng.standard_normal((2, 5, C)).astype("float32"))
        with count_syncs() as syncs, backend.activate():
            out = layer(x)
            layer.backward(backend.xp.ones_like(out))
        assert syncs.total == 0, (name, syncs)


def test_weights_are_drawn_as_torch_does(backend):
    layer = bp.LSTM(30, 100, seed=0).to(backend)
    bound = 1 / np.sqrt(100)
    for ours, _ in PARAMETERS:
        values = host(backend, getattr(layer, ours).data)
        assert values.min() >= -bound and values.max() <= bound and values.std() > 0.9 * bound / np.sqrt(3)
    assert layer.W_ih.shape == (30, 400) and layer.W_hh.shape == (100, 400) and layer.b_ih.shape == (400,)
    assert bp.GRU(3, 5).W_hh.shape == (5, 15) and bp.RNN(3, 5).W_hh.shape == (5, 5)
    np.testing.assert_array_equal(host(backend, layer.W_hh.data), bp.LSTM(30, 100, seed=0).W_hh.data)


@pytest.mark.parametrize("make, x, error, message", [
    (lambda: bp.LSTM(C, H), np.zeros((2, 3, C + 1)), ValueError, r"expected input of shape \(batch, time, 4\)"),
    (lambda: bp.GRU(C, H), np.zeros((2, C)), ValueError, r"expected a 3-D input of shape \(batch, time, 4\)"),
    (lambda: bp.RNN(C, H), np.zeros((2, 0, C)), ValueError, "the sequence is empty"),
])
def test_bad_input_is_named(make, x, error, message):
    with pytest.raises(error, match=message):
        make()(x.astype("float32"))


def test_bad_state_and_arguments_are_named():
    x = np.zeros((2, 3, C), dtype="float32")
    with pytest.raises(ValueError, match=r"initial state h of shape \(2, 6\), got \(3, 6\)"):
        bp.GRU(C, H)(x, np.zeros((3, H), dtype="float32"))
    with pytest.raises(TypeError, match=r"state must be a pair \(h, c\)"):
        bp.LSTM(C, H)(x, np.zeros((2, H), dtype="float32"))
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        bp.RNN(C, H, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        bp.LSTM(C, 0)
    with pytest.raises(RuntimeError, match="before forward"):
        bp.LSTM(C, H).backward(np.zeros((2, 3, H), dtype="float32"))
    layer = bp.LSTM(C, H)
    layer(x)
    with pytest.raises(ValueError, match=r"grad_out of shape \(2, 3, 6\)"):
        layer.backward(layer.backend.asarray(np.zeros((2, 3, H + 1), dtype="float32")))


@pytest.mark.parametrize("name", list(LAYERS))
def test_checkpoint_round_trip(backend, rng, name, tmp_path):
    model = bp.Sequential(LAYERS[name][0](seed=0), bp.Linear(H, 2, seed=1)).to(backend)
    model.save(tmp_path / "m.bpc")
    loaded = bp.load(tmp_path / "m.bpc", device=backend.spec)
    assert repr(loaded[0]) == repr(model[0])
    x = rng.standard_normal((2, 5, C)).astype("float32")
    np.testing.assert_array_equal(bp.predict(loaded, x), bp.predict(model, x))


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_a_forged_huge_hidden_size_is_refused_before_allocating(tmp_path, kind):
    small = np.zeros(4, dtype=np.float32)
    header = {"format": "bpcore-checkpoint", "format_version": 1, "bpcore_version": "x", "dtype": "float32",
              "tensors": [{"name": "model/0.b_ih", "dtype": "float32", "shape": [4], "offset": 0, "nbytes": 16}],
              "architecture": {"type": "Sequential", "layers": [
                  {"type": kind, "config": {"input_size": 4, "hidden_size": 2 ** 30}}]}}
    path = tmp_path / "huge.bpc"
    path.write_bytes(forge(header, small.tobytes()))
    assert refused_load_peak(path, f"{kind} .* would create .* or more numbers")[1] < 50_000_000


@pytest.mark.parametrize("name", list(LAYERS))
def test_onnx_export_unrolls_the_steps(rng, name, tmp_path):
    pytest.importorskip("ndonnx")
    model = bp.Sequential(bp.Embedding(9, C, seed=0), LAYERS[name][0](seed=1), bp.Linear(H, 9, seed=2))
    report = bp.onnx.export(model, rng.integers(0, 9, (3, 5)), tmp_path / "r.onnx")
    assert report.input_shape == ("batch", 5) and report.output_shape == ("batch", 5, 9)


def _bench_lstm():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "bench_lstm.py")
    spec = importlib.util.spec_from_file_location("bench_lstm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = ["--batch", "2", "--length", "3", "--inputs", "4", "--hidden", "5", "--rounds", "1", "--steps", "1",
        "--threads", "1"]


def test_the_recurrent_benchmark_runs_a_tiny_round():
    lines = _bench_lstm().main(TINY)
    rows = [line for line in lines if line.startswith(("LSTM", "GRU", "RNN"))]
    assert len(rows) == 3
    if "torch is not installed" not in lines[-1]:
        assert all(row.count(" / ") == 4 for row in rows)    # min / median of two contenders, wall and CPU ratios
    assert lines[0].startswith("threads:") and "limited to 1" in lines[0]


def test_the_recurrent_benchmark_profile_says_what_dominates():
    lines = _bench_lstm().main(TINY + ["--profile", "LSTM"])
    assert any("matrix products" in line and "% of bpcore's step" in line for line in lines)
    assert any("_back_steps" in line for line in lines)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN-relu"])
def test_the_recurrent_benchmark_times_the_same_step_on_both_sides(name):
    """A fair ratio needs the same work: two steps of each from the same weights give the same weights."""
    torch = pytest.importorskip("torch")
    bench = _bench_lstm()
    X, Y = bench.make_data(3, 4, C, H)
    layer = LAYERS[name][0](seed=0)
    ours, theirs = bench.bpcore_step(layer, X, Y), bench.torch_step(torch, layer, X, Y, "cpu")
    for _ in range(2):
        ours()
        theirs()
    for mine, torch_name in PARAMETERS:
        expected = getattr(theirs.reference, torch_name).detach().numpy()
        np.testing.assert_allclose(getattr(layer, mine).data, expected.T if mine.startswith("W") else expected,
                                   rtol=1e-5, atol=1e-6)
