"""The model API: parameters and names, devices and dtypes, modes, state dicts, SGD."""
from __future__ import annotations

import numpy as np
import pytest

import bpcore as bp
from helpers import host


def test_named_parameters_follow_torch_order():
    model = bp.mlp([2, 16, 8, 1], activation="tanh", seed=0)
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.W", "0.b", "2.W", "2.b", "4.W", "4.b"]
    assert [p.shape for p in model.parameters()] == [(2, 16), (16,), (16, 8), (8,), (8, 1), (1,)]
    assert len(model.layers) == 5 and isinstance(model.layers[1], bp.Tanh)


def test_mlp_init_scales_follow_the_lessons():
    wide = 400
    relu_net = bp.mlp([wide, wide, 1], activation="relu", seed=0)
    tanh_net = bp.mlp([wide, wide, 1], activation="tanh", seed=0)
    assert relu_net.layers[0].W.data.std() == pytest.approx(np.sqrt(2 / wide), rel=0.02)
    assert tanh_net.layers[0].W.data.std() == pytest.approx(np.sqrt(1 / wide), rel=0.02)
    assert not np.any(relu_net.layers[0].b.data)


@pytest.mark.parametrize("init, std", [
    ("he", np.sqrt(2 / 300)), ("he_uniform", np.sqrt(2 / 300)), ("lecun", np.sqrt(1 / 300)),
    ("xavier", np.sqrt(2 / 500)), ("xavier_uniform", np.sqrt(2 / 500)), ("zeros", 0.0),
])
def test_linear_init_schemes(init, std):
    layer = bp.Linear(300, 200, init=init, seed=1)
    assert layer.W.data.std() == pytest.approx(std, rel=0.02, abs=1e-12)


def test_default_is_float32_and_seed_is_reproducible():
    a, b, c = (bp.mlp([3, 5, 2], seed=s) for s in (7, 7, 8))
    assert all(p.data.dtype == np.float32 for p in a.parameters())
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)
    assert not np.array_equal(a.layers[0].W.data, c.layers[0].W.data)


def test_same_seed_same_network_on_every_backend(backend):
    moved = bp.mlp([3, 5, 2], seed=7).to(backend)
    reference = bp.mlp([3, 5, 2], seed=7)
    assert moved.device is backend
    for (name, p), (_, q) in zip(moved.named_parameters(), reference.named_parameters()):
        assert backend.owns(p.data), name
        np.testing.assert_array_equal(host(backend, p.data), q.data)


def test_to_round_trip_is_exact(backend):
    model = bp.mlp([3, 4, 1], seed=0)
    before = model.state_dict()
    model.to(backend).to("cpu")
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_host_numpy_input_gives_the_same_result(backend, rng):
    model = bp.mlp([3, 4, 2], seed=0).to(backend)
    x = rng.standard_normal((5, 3)).astype("float32")
    from_host = host(backend, model(x))
    from_device = host(backend, model(backend.asarray(x)))
    np.testing.assert_array_equal(from_host, from_device)
    assert from_host.dtype == np.float32


def test_float64_host_input_is_cast_to_the_model_dtype(backend, rng):
    model = bp.mlp([3, 2], seed=0).to(backend)
    out = model(rng.standard_normal((4, 3)))
    assert host(backend, out).dtype == np.float32


def test_astype_float64(backend, rng):
    model = bp.mlp([3, 4, 1], seed=0).to(backend).astype("float64")
    assert model.dtype == "float64"
    out = model(rng.standard_normal((2, 3)))
    assert host(backend, out).dtype == np.float64
    model.backward(backend.asarray(np.ones((2, 1))))
    assert all(host(backend, p.grad).dtype == np.float64 for p in model.parameters())
    assert model.astype("float32") is model
    assert host(backend, model.layers[0].W.grad).dtype == np.float32


def test_backward_accumulates_and_zero_grad_resets(backend, rng):
    model = bp.mlp([3, 4, 1], seed=0).to(backend).astype("float64")
    x = rng.standard_normal((5, 3))
    grad_out = backend.asarray(rng.standard_normal((5, 1)))
    model(x)
    model.backward(grad_out)
    once = [host(backend, p.grad).copy() for p in model.parameters()]
    model.backward(grad_out)
    for first, p in zip(once, model.parameters()):
        np.testing.assert_allclose(host(backend, p.grad), 2 * first, rtol=1e-12)
    model.zero_grad()
    for p in model.parameters():
        grad = host(backend, p.grad)
        assert grad.shape == p.shape and not np.any(grad)


def test_train_and_eval_set_every_layer():
    model = bp.mlp([2, 3, 1], seed=0)
    assert model.eval() is model
    assert all(not layer.training for layer in model.modules())
    model.train()
    assert all(layer.training for layer in model.modules())


def test_state_dict_round_trip(backend):
    source = bp.mlp([3, 4, 1], seed=1).to(backend)
    target = bp.mlp([3, 4, 1], seed=2).to(backend)
    state = source.state_dict()
    assert set(state) == {"0.W", "0.b", "2.W", "2.b"}
    assert all(isinstance(v, np.ndarray) for v in state.values())
    target.load_state_dict(state)
    for p, q in zip(source.parameters(), target.parameters()):
        np.testing.assert_array_equal(host(backend, p.data), host(backend, q.data))
        assert backend.owns(q.data)


def test_state_dict_is_a_copy():
    model = bp.mlp([2, 2], seed=0)
    state = model.state_dict()
    state["0.W"][:] = 5.0
    assert not np.all(model.layers[0].W.data == 5.0)


def test_load_state_dict_casts_to_the_model_dtype():
    model = bp.mlp([2, 2], seed=0).astype("float64")
    state = {k: v.astype(np.float32) for k, v in bp.mlp([2, 2], seed=1).state_dict().items()}
    model.load_state_dict(state)
    assert model.layers[0].W.data.dtype == np.float64


@pytest.mark.parametrize("change, error, match", [
    (lambda s: s.pop("0.b"), KeyError, "missing \\['0.b'\\]"),
    (lambda s: s.update(extra=np.zeros(1)), KeyError, "unexpected \\['extra'\\]"),
    (lambda s: s.update({"0.W": np.zeros((3, 3))}), ValueError, "shape \\(3, 3\\)"),
    (lambda s: s.update({"0.W": "weights"}), TypeError, "must be an array"),
    (lambda s: s.update({"0.W": np.array([["a", "b"]] * 2)}), ValueError, "non-numeric"),
])
def test_bad_state_dict_is_refused_and_changes_nothing(change, error, match):
    model = bp.mlp([2, 2, 1], seed=0)
    before = model.state_dict()
    state = bp.mlp([2, 2, 1], seed=5).state_dict()
    change(state)
    with pytest.raises(error, match=match):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_load_state_dict_strict_false_loads_what_matches_and_names_the_rest(backend):
    """PyTorch's habit: strict=False loads the common names and returns (missing_keys, unexpected_keys)."""
    model = bp.mlp([3, 4, 1], seed=0).to(backend)
    before = model.state_dict()
    state = bp.mlp([3, 4, 1], seed=1).state_dict()
    assert model.load_state_dict(dict(state)) == ([], [])                  # strict: nothing left over
    model.load_state_dict(before)
    partial = {"0.W": state["0.W"], "0.b": state["0.b"], "head.W": np.zeros((4, 1), np.float32)}
    result = model.load_state_dict(partial, strict=False)
    assert result.missing_keys == ["2.W", "2.b"] and result.unexpected_keys == ["head.W"]
    after = model.state_dict()
    np.testing.assert_array_equal(after["0.W"], state["0.W"])
    np.testing.assert_array_equal(after["2.W"], before["2.W"])               # left as it was
    with pytest.raises(KeyError, match="strict=False loads the names that match"):
        model.load_state_dict(partial)
    with pytest.raises(ValueError, match="shape"):                           # shapes are checked either way
        model.load_state_dict({"0.W": np.zeros((5, 5), np.float32)}, strict=False)
    np.testing.assert_array_equal(model.state_dict()["0.W"], state["0.W"])
    with pytest.raises(TypeError, match="strict must be True or False"):
        model.load_state_dict(state, strict="no")


def test_sgd_step_is_plain_gradient_descent(backend, rng):
    model = bp.mlp([3, 2], seed=0).to(backend).astype("float64")
    before = [host(backend, p.data).copy() for p in model.parameters()]
    model(rng.standard_normal((4, 3)))
    model.backward(backend.asarray(rng.standard_normal((4, 2))))
    grads = [host(backend, p.grad).copy() for p in model.parameters()]
    opt = bp.optim.SGD(model.parameters(), lr=0.1)
    opt.step()
    for old, grad, p in zip(before, grads, model.parameters()):
        np.testing.assert_allclose(host(backend, p.data), old - 0.1 * grad, rtol=1e-12)
    opt.zero_grad()
    assert not any(np.any(host(backend, p.grad)) for p in model.parameters())


def test_sgd_momentum_and_weight_decay_by_hand():
    p_model = bp.Linear(1, 1, seed=0, bias=False).astype("float64")
    p = p_model.W
    p.data[...] = 1.0
    opt = bp.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5)
    p.grad = np.array([[2.0]])
    opt.step()                           # g = 2 + 0.5 * 1 = 2.5; buf = 2.5; theta = 1 - 0.25
    assert p.data[0, 0] == pytest.approx(0.75)
    p.grad = np.array([[2.0]])
    opt.step()                           # g = 2 + 0.375 = 2.375; buf = 0.9 * 2.5 + 2.375 = 4.625
    assert p.data[0, 0] == pytest.approx(0.75 - 0.4625)


def test_sgd_state_follows_the_model_to_another_backend(backend):
    model = bp.mlp([2, 1], seed=0)
    opt = bp.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(np.ones((1, 2)))
    model.backward(np.ones((1, 1), dtype=np.float32))
    opt.step()
    model.to(backend)
    model(np.ones((1, 2)))
    model.backward(backend.asarray(np.ones((1, 1), dtype=np.float32)))
    opt.step()
    for p in model.parameters():
        assert backend.owns(opt.state[id(p)]["momentum_buffer"])


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": -0.1}, "lr"), ({"lr": float("nan")}, "lr"), ({"lr": 0.1, "momentum": -1}, "momentum"),
    ({"lr": 0.1, "nesterov": True}, "nesterov"), ({"lr": 0.1, "weight_decay": -1e-4}, "weight_decay"),
])
def test_sgd_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bp.optim.SGD(bp.mlp([2, 1]).parameters(), **kwargs)


def test_sgd_refuses_bad_params():
    with pytest.raises(ValueError, match="empty"):
        bp.optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Parameter"):
        bp.optim.SGD(bp.Linear(2, 1).W, lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        bp.optim.SGD([np.zeros(2)], lr=0.1)


def test_version():
    assert isinstance(bp.__version__, str) and bp.__version__.count(".") == 2


def test_a_layer_used_twice_is_refused():
    shared = bp.Linear(2, 2, seed=0)
    with pytest.raises(ValueError, match="appears twice"):
        bp.Sequential(shared, bp.Tanh(), shared)


def test_accumulate_grad_keeps_a_copy(backend):
    layer = bp.Linear(2, 2, seed=0).to(backend)
    grad = backend.asarray(np.ones((2, 2), dtype=np.float32))
    layer.W.accumulate_grad(grad)
    layer.W.accumulate_grad(grad)
    np.testing.assert_array_equal(host(backend, grad), np.ones((2, 2)))     # the caller's array is untouched
    np.testing.assert_array_equal(host(backend, layer.W.grad), 2 * np.ones((2, 2)))


def test_numpy_integer_sizes_are_accepted():
    sizes = np.array([4, 3, 2])
    model = bp.mlp([sizes[0], sizes[1], sizes[2]], seed=0)
    assert model.layers[0].W.shape == (4, 3)
    assert isinstance(model.layers[0].n_in, int)


def test_moving_between_forward_and_backward_asks_for_a_new_forward(backend):
    model = bp.mlp([2, 3, 1], seed=0)
    model(np.ones((2, 2), dtype=np.float32))
    model.to(backend)
    grad_out = backend.asarray(np.ones((2, 1), dtype=np.float32))
    if backend.spec == "numpy":                  # not moved: the cache is still valid
        assert model.backward(grad_out).shape == (2, 2)
        return
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(grad_out)
    model.astype("float64")
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(grad_out)


def test_non_finite_state_dict_is_refused():
    model = bp.mlp([2, 1], seed=0)
    state = model.state_dict()
    state["0.W"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.load_state_dict(state)


def test_gradcheck_holds_dropout_masks_fixed(backend, rng):
    model = bp.Sequential(bp.Linear(3, 6, seed=0), bp.Dropout(0.4), bp.Linear(6, 1, seed=1)).to(backend)
    report = bp.gradcheck(model, bp.MSELoss(), rng.standard_normal((5, 3)), rng.standard_normal((5, 1)))
    assert report.passed, str(report)
    with pytest.raises(TypeError, match="loss_fn"):
        bp.gradcheck(model, "mse", rng.standard_normal((5, 3)), rng.standard_normal((5, 1)))
