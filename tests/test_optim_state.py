"""Optimizer state: on every backend, following ``model.to()`` and ``astype()``, and through
``state_dict()`` / ``load_state_dict()`` (bitwise continuation, copies, refusals that change nothing)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import host, tolerance
from optim_helpers import NUMPY, PARAM_SHAPES, gradient_sequence, make_params, set_grads

import bpcore as bp
from bpcore import optim

# ---------------------------------------------------------------- every backend

BACKEND_OPTIMIZERS = [
    ("Adam", {"lr": 0.05, "weight_decay": 0.01, "amsgrad": True}),
    ("AdamW", {"lr": 0.05}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9, "centered": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
]
BACKEND_IDS = [name for name, _ in BACKEND_OPTIMIZERS]
MODEL_SIZES = [3, 5, 2]


def batches(count, seed=11):
    """``count`` (x, grad_out) host pairs drawn from ``seed``: the same numbers for every backend."""
    data = np.random.default_rng(seed)
    return [(data.standard_normal((6, MODEL_SIZES[0])), data.standard_normal((6, MODEL_SIZES[-1])))
            for _ in range(count)]


def train_steps(model, opt, pairs):
    """A forward/backward/update round per (x, grad_out) pair."""
    for x, grad_out in pairs:
        opt.zero_grad()
        model(x)
        model.backward(model.device.asarray(grad_out, dtype=model.dtype))
        opt.step()


def assert_state_on(opt, model, backend, dtype="float64"):
    for name, p in model.named_parameters():
        buffers = {k: v for k, v in opt.state[id(p)].items() if hasattr(v, "shape")}
        assert buffers, name
        for key, value in buffers.items():
            assert backend.owns(value), f"{key} of {name} is not on {backend}"
            assert host(backend, value).dtype == np.dtype(dtype), f"{key} of {name}"
            assert tuple(value.shape) == p.shape, f"{key} of {name}"


def reference_run(name, kwargs, steps):
    model = bp.mlp(MODEL_SIZES, activation="tanh", seed=0).astype("float64")
    opt = getattr(optim, name)(model.parameters(), **kwargs)
    train_steps(model, opt, batches(steps))
    return model.state_dict()


@pytest.mark.parametrize("name, kwargs", BACKEND_OPTIMIZERS, ids=BACKEND_IDS)
def test_optimizer_on_every_backend_matches_numpy(backend, name, kwargs):
    model = bp.mlp(MODEL_SIZES, activation="tanh", seed=0).to(backend).astype("float64")
    opt = getattr(optim, name)(model.parameters(), **kwargs)
    train_steps(model, opt, batches(4))
    expected = reference_run(name, kwargs, 4)
    for param_name, p in model.named_parameters():
        assert backend.owns(p.data), param_name
        np.testing.assert_allclose(host(backend, p.data), expected[param_name], **tolerance("float64"),
                                   err_msg=param_name)
    assert_state_on(opt, model, backend)


@pytest.mark.parametrize("name, kwargs", BACKEND_OPTIMIZERS, ids=BACKEND_IDS)
@pytest.mark.parametrize("direction", ["numpy_to_backend", "backend_to_numpy"])
def test_state_follows_the_model_to_another_backend(backend, name, kwargs, direction):
    first, second = (NUMPY, backend) if direction == "numpy_to_backend" else (backend, NUMPY)
    model = bp.mlp(MODEL_SIZES, activation="tanh", seed=0).to(first).astype("float64")
    opt = getattr(optim, name)(model.parameters(), **kwargs)
    pairs = batches(4)
    train_steps(model, opt, pairs[:2])
    assert_state_on(opt, model, first)
    model.to(second)
    train_steps(model, opt, pairs[2:])
    assert_state_on(opt, model, second)
    expected = reference_run(name, kwargs, 4)
    for param_name, p in model.named_parameters():
        np.testing.assert_allclose(host(second, p.data), expected[param_name], **tolerance("float64"),
                                   err_msg=param_name)


@pytest.mark.parametrize("name, kwargs", BACKEND_OPTIMIZERS, ids=BACKEND_IDS)
def test_state_follows_astype(backend, name, kwargs):
    model = bp.mlp(MODEL_SIZES, activation="tanh", seed=0).to(backend).astype("float64")
    opt = getattr(optim, name)(model.parameters(), **kwargs)
    pairs = batches(2)
    train_steps(model, opt, pairs[:1])
    model.astype("float32")
    train_steps(model, opt, pairs[1:])
    assert_state_on(opt, model, backend, dtype="float32")
    assert all(host(backend, p.data).dtype == np.float32 for p in model.parameters())


# ---------------------------------------------------------------- state_dict / load_state_dict

STATEFUL_CASES = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.9), "amsgrad": True}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.2}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "momentum": 0.5, "centered": True}),
]
STATEFUL_IDS = [name for name, _ in STATEFUL_CASES]
FRESH_LR = {"SGD": {"lr": 0.5}, "Adam": {}, "AdamW": {}, "RMSprop": {}}


def trained_optimizer(name, kwargs, steps=3, seed=5):
    rng = np.random.default_rng(seed)
    params = make_params(rng)
    opt = getattr(optim, name)(params, **kwargs)
    for grads in gradient_sequence(rng, steps):
        set_grads(params, grads)
        opt.step()
    return params, opt


def assert_state_dicts_equal(a, b):
    assert a["type"] == b["type"] and a["hyper"] == b["hyper"]
    assert set(a["state"]) == set(b["state"])
    for index in a["state"]:
        assert set(a["state"][index]) == set(b["state"][index])
        for key, value in a["state"][index].items():
            np.testing.assert_array_equal(value, b["state"][index][key], err_msg=f"{index}.{key}")


@pytest.mark.parametrize("name, kwargs", STATEFUL_CASES, ids=STATEFUL_IDS)
def test_loaded_optimizer_continues_bitwise_identically(name, kwargs):
    params, opt = trained_optimizer(name, kwargs)
    state = opt.state_dict()
    assert state["type"] == name and set(state["state"]) == {0, 1}
    assert all(isinstance(v, np.ndarray) for buffers in state["state"].values()
               for v in buffers.values() if hasattr(v, "shape"))
    twins = [bp.Parameter(p.data.copy(), NUMPY) for p in params]
    fresh = getattr(optim, name)(twins, **FRESH_LR[name])        # other hyper-parameters
    fresh.load_state_dict(copy.deepcopy(state))
    assert_state_dicts_equal(fresh.state_dict(), state)
    more = gradient_sequence(np.random.default_rng(99), 4)
    for grads in more:
        set_grads(params, grads)
        set_grads(twins, grads)
        opt.step()
        fresh.step()
        for p, q in zip(params, twins):
            np.testing.assert_array_equal(q.data, p.data)
    assert_state_dicts_equal(fresh.state_dict(), opt.state_dict())


def test_loading_a_fresh_state_resets_a_trained_optimizer():
    """Buffers the loaded dict does not have are dropped, not kept from before."""
    params, trained = trained_optimizer("Adam", {"lr": 0.01})
    twins = [bp.Parameter(p.data.copy(), NUMPY) for p in params]
    fresh = optim.Adam(twins, lr=0.01)
    trained.load_state_dict(fresh.state_dict())
    assert trained.state_dict()["state"] == {}
    for grads in gradient_sequence(np.random.default_rng(3), 3):
        set_grads(params, grads)
        set_grads(twins, grads)
        trained.step()
        fresh.step()
        for p, q in zip(params, twins):
            np.testing.assert_array_equal(p.data, q.data)


def test_state_dict_is_a_copy():
    params, opt = trained_optimizer("Adam", {"lr": 0.01})
    state = opt.state_dict()
    state["state"][0]["exp_avg"][...] = 123.0
    assert not np.any(opt.state[id(params[0])]["exp_avg"] == 123.0)
    before = opt.state_dict()
    loaded = optim.Adam(params)
    loaded.load_state_dict(state)
    state["state"][1]["exp_avg_sq"][...] = 7.0           # the loaded optimizer keeps its own copy
    assert not np.any(loaded.state[id(params[1])]["exp_avg_sq"] == 7.0)
    assert_state_dicts_equal(opt.state_dict(), before)


@pytest.mark.parametrize("source, target", [("Adam", "SGD"), ("SGD", "Adam"), ("AdamW", "Adam"),
                                            ("Adam", "AdamW"), ("RMSprop", "Adam")])
def test_state_of_another_optimizer_type_is_refused(source, target):
    _, other = trained_optimizer(source, dict(STATEFUL_CASES)[source])
    _, opt = trained_optimizer(target, dict(STATEFUL_CASES)[target])
    before = opt.state_dict()
    with pytest.raises(ValueError, match=source):
        opt.load_state_dict(other.state_dict())
    assert_state_dicts_equal(opt.state_dict(), before)


def _bad_shape(state):
    state["state"][1]["exp_avg"] = np.zeros((3, 4))      # parameter 1 is a (4,) vector
    state["hyper"]["lr"] = 123.0


def _transposed(state):
    state["state"][0]["exp_avg_sq"] = state["state"][0]["exp_avg_sq"].T.copy()


def _scalar_buffer(state):
    state["state"][0]["exp_avg"] = np.array(0.5)         # a 0-d moment for a (3, 4) parameter


def _negative_lr(state):
    state["hyper"]["lr"] = -1.0


def _index_out_of_range(state):
    state["state"][2] = dict(state["state"][1])


@pytest.mark.parametrize("change, match", [
    (_bad_shape, "shape"),
    (_transposed, "shape"),
    (_scalar_buffer, "shape"),
    (_index_out_of_range, "parameter 2"),
    (_negative_lr, "lr"),
])
def test_state_that_does_not_fit_is_refused_and_changes_nothing(change, match):
    _, opt = trained_optimizer("Adam", {"lr": 0.01})
    before = opt.state_dict()
    state = opt.state_dict()
    change(state)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    assert_state_dicts_equal(opt.state_dict(), before)
    assert opt.lr == 0.01


def test_load_state_dict_refuses_something_else():
    _, opt = trained_optimizer("SGD", {"lr": 0.1, "momentum": 0.9})
    before = opt.state_dict()
    for bad in ({"lr": 0.1}, [1, 2], None):
        with pytest.raises(TypeError, match="state_dict"):
            opt.load_state_dict(bad)
    assert_state_dicts_equal(opt.state_dict(), before)


def test_loaded_state_goes_to_the_parameters_backend(backend):
    _, source = trained_optimizer("RMSprop", dict(STATEFUL_CASES)["RMSprop"])
    params = make_params(np.random.default_rng(5), backend)
    opt = optim.RMSprop(params)
    opt.load_state_dict(source.state_dict())
    for p in params:
        for key, value in opt.state[id(p)].items():
            if hasattr(value, "shape"):
                assert backend.owns(value), key
    set_grads(params, [np.ones(s) for s in PARAM_SHAPES])
    opt.step()                                            # and the step runs there
