"""Optimizers, gradient clipping and learning-rate schedules.

* against ``torch.optim`` / ``torch.nn.utils`` / ``torch.optim.lr_scheduler`` in float64
  (skipped, test by test, when torch is not installed: those tests take the ``torch`` fixture);
* against steps computed by hand from the update formulas (always run);
* on every backend, including state that follows ``model.to()`` / ``astype()``;
* ``state_dict()`` / ``load_state_dict()``, and the hyper-parameters and arguments refused.

Plain SGD by hand, SGD's momentum state on another backend and SGD's refused
arguments are in test_model.py.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from helpers import host, tolerance

import backends
import bpcore as bp
from bpcore import optim

NUMPY = backends.get("numpy")

# Two parameters of different shapes: a matrix and a vector.
PARAM_SHAPES = [(3, 4), (4,)]
ORACLE_STEPS = 10
ORACLE_TOL = {"rtol": 1e-9, "atol": 1e-9}
CLIP_TOL = {"rtol": 1e-12, "atol": 1e-12}
LR_TOL = {"rel": 1e-12, "abs": 1e-12}


@pytest.fixture
def torch():
    """The torch module; the test is skipped when torch is not installed."""
    return pytest.importorskip("torch")


def make_params(rng, backend=NUMPY):
    """float64 Parameters of PARAM_SHAPES on ``backend`` with random values."""
    return [bp.Parameter(backend.asarray(rng.standard_normal(shape), dtype="float64", copy=True), backend)
            for shape in PARAM_SHAPES]


def gradient_sequence(rng, steps=ORACLE_STEPS):
    """Random gradients whose size changes from step to step (so amsgrad's running max matters)."""
    scales = [1.0, 0.05, 2.0, 0.3, 0.01, 1.5, 0.2, 3.0, 0.02, 0.7, 1.0, 0.1]
    return [[scales[step % len(scales)] * rng.standard_normal(shape) for shape in PARAM_SHAPES]
            for step in range(steps)]


def set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = p.backend.asarray(g, dtype="float64", copy=True)


def values(params):
    return [host(p.backend, p.data).copy() for p in params]


# ---------------------------------------------------------------- torch.optim as the oracle

OPTIMIZER_CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.5, "weight_decay": 0.2}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-3}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.3}),
    ("AdamW", {"lr": 0.02, "betas": (0.7, 0.95), "eps": 1e-4, "weight_decay": 0.3, "amsgrad": True}),
    ("RMSprop", {}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9}),
    ("RMSprop", {"lr": 0.01, "eps": 1e-3, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9}),
    ("RMSprop", {"lr": 0.01, "centered": True}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.8, "weight_decay": 0.05, "momentum": 0.5, "centered": True}),
]


def _case_id(case):
    name, kwargs = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


@pytest.mark.parametrize("name, kwargs", OPTIMIZER_CASES, ids=[_case_id(c) for c in OPTIMIZER_CASES])
def test_optimizer_matches_torch_step_by_step(torch, name, kwargs):
    rng = np.random.default_rng(7)
    params = make_params(rng)
    torch_params = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    kwargs = dict(kwargs)
    if name == "SGD":
        kwargs.setdefault("lr", 0.1)
    ours = getattr(optim, name)(params, **kwargs)
    theirs = getattr(torch.optim, name)(torch_params, **kwargs)
    start = values(params)
    for step, grads in enumerate(gradient_sequence(rng)):
        set_grads(params, grads)
        for t, g in zip(torch_params, grads):
            t.grad = torch.tensor(g)
        ours.step()
        theirs.step()
        for i, (p, t) in enumerate(zip(params, torch_params)):
            np.testing.assert_allclose(p.data, t.detach().numpy(), **ORACLE_TOL,
                                       err_msg=f"{name}{kwargs}: parameter {i} after step {step + 1}")
    assert not any(np.array_equal(a, b) for a, b in zip(start, values(params)))   # it did move


def test_defaults_match_torch(torch):
    """Default hyper-parameters are torch's (the oracle cases with {} rely on it)."""
    p = make_params(np.random.default_rng(0))
    t = [torch.zeros(1, requires_grad=True)]
    pairs = [(optim.Adam(p), torch.optim.Adam(t)), (optim.AdamW(p), torch.optim.AdamW(t)),
             (optim.RMSprop(p), torch.optim.RMSprop(t))]
    for ours, theirs in pairs:
        group = theirs.param_groups[0]
        for key in ours._hyper:
            expected = tuple(group[key]) if key == "betas" else group[key]
            assert getattr(ours, key) == expected, (type(ours).__name__, key)


# ---------------------------------------------------------------- by hand (always runs)

def _one_param(theta):
    return bp.Parameter(np.array(theta, dtype=np.float64), NUMPY)


# Each case: the optimizer, its arguments, the gradients of each step (2 entries), and the
# expected parameter after each step, written out from the update formulas.
# theta starts at [1, -1]; lr = 0.1 throughout.
_SQ = math.sqrt
HAND_CASES = {
    # Adam, betas (0.5, 0.75), eps 0.5.  Step 1, g = [2, -4]:
    #   m = 0.5 g = [1, -2];  v = 0.25 g^2 = [1, 4];  bias corrections 0.5 and sqrt(0.25) = 0.5
    #   denom = sqrt(v) / 0.5 + 0.5 = [2.5, 4.5];  theta -= 0.1 / 0.5 * m / denom
    # Step 2, g = [1, 0]:  m = [1, -1];  v = [1, 3];  bias corrections 0.75 and sqrt(0.4375)
    "Adam": (optim.Adam, {"lr": 0.1, "betas": (0.5, 0.75), "eps": 0.5},
             [[2.0, -4.0], [1.0, 0.0]],
             [[1.0 - 0.2 * 1 / 2.5, -1.0 + 0.2 * 2 / 4.5],
              [0.92 - (0.1 / 0.75) * 1 / (_SQ(1) / _SQ(0.4375) + 0.5),
               (-1.0 + 0.2 * 2 / 4.5) + (0.1 / 0.75) * 1 / (_SQ(3) / _SQ(0.4375) + 0.5)]]),
    # amsgrad: step 2 with g = [0, 0] makes v = [0.75, 3] fall below its max [1, 4];
    #   m = [0.5, -1];  denom uses sqrt(max v) = [1, 2]
    "Adam-amsgrad": (optim.Adam, {"lr": 0.1, "betas": (0.5, 0.75), "eps": 0.5, "amsgrad": True},
                     [[2.0, -4.0], [0.0, 0.0]],
                     [[0.92, -1.0 + 0.4 / 4.5],
                      [0.92 - (0.1 / 0.75) * 0.5 / (1 / _SQ(0.4375) + 0.5),
                       (-1.0 + 0.4 / 4.5) + (0.1 / 0.75) * 1 / (2 / _SQ(0.4375) + 0.5)]]),
    # Adam's L2 weight decay 0.5: g = [2, -4] + 0.5 [1, -1] = [2.5, -4.5];
    #   m = [1.25, -2.25];  v = 0.25 g^2 = [1.5625, 5.0625];  denom = sqrt(v) / 0.5 + 0.5 = [3, 5]
    "Adam-weight_decay": (optim.Adam, {"lr": 0.1, "betas": (0.5, 0.75), "eps": 0.5, "weight_decay": 0.5},
                          [[2.0, -4.0]],
                          [[1.0 - 0.2 * 1.25 / 3, -1.0 + 0.2 * 2.25 / 5]]),
    # AdamW, decoupled decay 0.5: theta *= 1 - 0.1 * 0.5 = 0.95, then Adam's step on the plain g
    "AdamW": (optim.AdamW, {"lr": 0.1, "betas": (0.5, 0.75), "eps": 0.5, "weight_decay": 0.5},
              [[2.0, -4.0]],
              [[0.95 - 0.2 * 1 / 2.5, -0.95 + 0.2 * 2 / 4.5]]),
    # RMSprop, alpha 0.75, eps 0.5.  Step 1, g = [2, -4]: s = 0.25 g^2 = [1, 4];
    #   theta -= 0.1 g / (sqrt(s) + 0.5) = 0.1 [2 / 1.5, -4 / 2.5]
    # Step 2, g = [1, 2]: s = 0.75 [1, 4] + 0.25 [1, 4] = [1, 4]
    "RMSprop": (optim.RMSprop, {"lr": 0.1, "alpha": 0.75, "eps": 0.5},
                [[2.0, -4.0], [1.0, 2.0]],
                [[1.0 - 0.2 / 1.5, -1.0 + 0.4 / 2.5],
                 [1.0 - 0.2 / 1.5 - 0.1 / 1.5, -1.0 + 0.4 / 2.5 - 0.2 / 2.5]]),
    # momentum 0.9: buf = g / denom, then buf = 0.9 buf + g / denom; theta -= 0.1 buf
    #   step 2: buf = 0.9 [2/1.5, -4/2.5] + [1/1.5, 2/2.5] = [1.8667, -0.64]
    "RMSprop-momentum": (optim.RMSprop, {"lr": 0.1, "alpha": 0.75, "eps": 0.5, "momentum": 0.9},
                         [[2.0, -4.0], [1.0, 2.0]],
                         [[1.0 - 0.2 / 1.5, -1.0 + 0.4 / 2.5],
                          [1.0 - 0.2 / 1.5 - 0.1 * (0.9 * 2 / 1.5 + 1 / 1.5),
                           -1.0 + 0.4 / 2.5 - 0.1 * (-0.9 * 4 / 2.5 + 2 / 2.5)]]),
    # centered: a = 0.25 g = [0.5, -1];  s - a^2 = [1 - 0.25, 4 - 1] = [0.75, 3]
    "RMSprop-centered": (optim.RMSprop, {"lr": 0.1, "alpha": 0.75, "eps": 0.5, "centered": True},
                         [[2.0, -4.0]],
                         [[1.0 - 0.2 / (_SQ(0.75) + 0.5), -1.0 + 0.4 / (_SQ(3) + 0.5)]]),
    # L2 weight decay 0.5: g = [2.5, -4.5];  s = 0.25 g^2 = [1.5625, 5.0625];  sqrt(s) = [1.25, 2.25]
    "RMSprop-weight_decay": (optim.RMSprop, {"lr": 0.1, "alpha": 0.75, "eps": 0.5, "weight_decay": 0.5},
                             [[2.0, -4.0]],
                             [[1.0 - 0.25 / 1.75, -1.0 + 0.45 / 2.75]]),
}


@pytest.mark.parametrize("case", list(HAND_CASES))
def test_step_computed_by_hand(case):
    cls, kwargs, grads, expected = HAND_CASES[case]
    p = _one_param([1.0, -1.0])
    opt = cls([p], **kwargs)
    for step, (grad, want) in enumerate(zip(grads, expected)):
        p.grad = np.array(grad)
        opt.step()
        np.testing.assert_allclose(p.data, want, rtol=1e-14, atol=1e-15, err_msg=f"{case}, step {step + 1}")


def test_adamw_decay_differs_from_adam_l2_decay():
    """The two weight decays give different parameters after the same step."""
    kwargs = {"lr": 0.1, "betas": (0.5, 0.75), "eps": 0.5, "weight_decay": 0.5}
    results = []
    for cls in (optim.Adam, optim.AdamW):
        p = _one_param([1.0, -1.0])
        p.grad = np.array([2.0, -4.0])
        cls([p], **kwargs).step()
        results.append(p.data)
    assert not np.allclose(results[0], results[1])


@pytest.mark.parametrize("name, kwargs", [
    ("SGD", {"lr": 0.1, "momentum": 0.9}), ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("Adam", {"lr": 0.1, "amsgrad": True}), ("RMSprop", {"lr": 0.1, "momentum": 0.9, "centered": True}),
])
def test_state_does_not_alias_the_gradient(name, kwargs):
    """Gradients accumulated in place (no zero_grad) must not change the optimizer's buffers."""
    rng = np.random.default_rng(4)
    accumulated, replaced = make_params(rng), make_params(np.random.default_rng(4))
    opt_a = getattr(optim, name)(accumulated, **kwargs)
    opt_r = getattr(optim, name)(replaced, **kwargs)
    grads = gradient_sequence(rng, 4)
    running = [np.zeros(shape) for shape in PARAM_SHAPES]
    for step_grads in grads:
        for p, g in zip(accumulated, step_grads):
            p.accumulate_grad(np.array(g))           # += into the gradient the last step used
        running = [r + g for r, g in zip(running, step_grads)]
        set_grads(replaced, running)                 # the same sums, in fresh arrays
        opt_a.step()
        opt_r.step()
        for p, q in zip(accumulated, replaced):
            np.testing.assert_allclose(p.data, q.data, rtol=1e-14, atol=1e-15)


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


# ---------------------------------------------------------------- refused hyper-parameters

BAD_HYPER = [
    ("Adam", {"lr": -1e-3}, "lr"),
    ("Adam", {"lr": float("inf")}, "lr"),
    ("Adam", {"lr": "0.1"}, "lr"),
    ("Adam", {"betas": (1.0, 0.999)}, r"betas\[0\]"),
    ("Adam", {"betas": (0.9, 1.0)}, r"betas\[1\]"),
    ("Adam", {"betas": (-0.1, 0.999)}, r"betas\[0\]"),
    ("Adam", {"betas": (0.9, 1.5)}, r"betas\[1\]"),
    ("Adam", {"betas": (0.9, float("nan"))}, r"betas\[1\]"),
    ("Adam", {"betas": (0.9,)}, "betas"),
    ("Adam", {"betas": (0.9, 0.99, 0.999)}, "betas"),
    ("Adam", {"betas": 0.9}, "betas"),
    ("Adam", {"eps": -1e-8}, "eps"),
    ("Adam", {"weight_decay": -0.01}, "weight_decay"),
    ("AdamW", {"lr": -1e-3}, "lr"),
    ("AdamW", {"betas": (0.9, 1.0)}, r"betas\[1\]"),
    ("AdamW", {"betas": [0.9]}, "betas"),
    ("AdamW", {"eps": -1.0}, "eps"),
    ("AdamW", {"weight_decay": -0.01}, "weight_decay"),
    ("RMSprop", {"lr": -0.01}, "lr"),
    ("RMSprop", {"alpha": -0.1}, "alpha"),
    ("RMSprop", {"alpha": 1.01}, "alpha"),
    ("RMSprop", {"eps": -1e-8}, "eps"),
    ("RMSprop", {"weight_decay": -1.0}, "weight_decay"),
    ("RMSprop", {"momentum": -0.9}, "momentum"),
    ("SGD", {"lr": 0.1, "dampening": -0.1}, "dampening"),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True}, "nesterov"),
]


@pytest.mark.parametrize("name, kwargs, match", BAD_HYPER,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, _ in BAD_HYPER])
def test_bad_hyperparameter_is_refused_by_name(name, kwargs, match):
    params = make_params(np.random.default_rng(0))
    with pytest.raises(ValueError, match=match):
        getattr(optim, name)(params, **kwargs)


@pytest.mark.parametrize("name, kwargs", [
    ("Adam", {"lr": 0.0, "betas": (0.0, 0.0), "eps": 0.0, "weight_decay": 0.0}),
    ("Adam", {"betas": (0.999999, 0.999999)}),
    ("AdamW", {"weight_decay": 0.0}),
    ("RMSprop", {"alpha": 0.0}),
    ("RMSprop", {"alpha": 1.0, "momentum": 0.0}),
    ("SGD", {"lr": 0, "momentum": 0.0}),
])
def test_boundary_hyperparameters_are_accepted(name, kwargs):
    params = make_params(np.random.default_rng(0))
    opt = getattr(optim, name)(params, **kwargs)
    for key, value in kwargs.items():
        assert getattr(opt, key) == (tuple(value) if key == "betas" else value)


# ---------------------------------------------------------------- gradient clipping

def grads_for_clipping(scale):
    rng = np.random.default_rng(21)
    return [scale * rng.standard_normal(shape) for shape in PARAM_SHAPES]


def clip_pair(torch, grads):
    params = make_params(np.random.default_rng(0))
    set_grads(params, grads)
    tensors = [torch.zeros(shape, dtype=torch.float64, requires_grad=True) for shape in PARAM_SHAPES]
    for t, g in zip(tensors, grads):
        t.grad = torch.tensor(g)
    return params, tensors


@pytest.mark.parametrize("norm_type", [2, 2.0, 1, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(torch, norm_type, max_norm):
    grads = grads_for_clipping(1.0)
    params, tensors = clip_pair(torch, grads)
    total = optim.clip_grad_norm_(params, max_norm=max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(tensors, max_norm=max_norm, norm_type=norm_type)
    assert float(total) == pytest.approx(float(expected), rel=1e-12, abs=1e-12)
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), **CLIP_TOL)
    if max_norm > float(total):              # below max_norm: the gradients are left exactly as they were
        for p, g in zip(params, grads):
            np.testing.assert_array_equal(p.grad, g)
    else:
        assert not np.allclose(params[0].grad, grads[0])


@pytest.mark.parametrize("clip_value", [0.0, 0.3, 10.0])
def test_clip_grad_value_matches_torch(torch, clip_value):
    grads = grads_for_clipping(1.0)
    params, tensors = clip_pair(torch, grads)
    assert optim.clip_grad_value_(params, clip_value) is None
    torch.nn.utils.clip_grad_value_(tensors, clip_value)
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), **CLIP_TOL)


@pytest.mark.parametrize("norm_type, expected", [
    (2, math.sqrt(9 + 16 + 144)),            # sqrt(3^2 + 4^2 + 12^2) = 13
    (1, 3 + 4 + 12),
    (math.inf, 12.0),
])
def test_clip_grad_norm_by_hand(norm_type, expected):
    a = bp.Parameter(np.zeros(2), NUMPY)
    b = bp.Parameter(np.zeros(1), NUMPY)
    a.grad, b.grad = np.array([3.0, -4.0]), np.array([12.0])
    total = optim.clip_grad_norm_([a, b], max_norm=1.0, norm_type=norm_type)
    assert float(total) == pytest.approx(expected, rel=1e-14)
    scale = 1.0 / (expected + 1e-6)
    np.testing.assert_allclose(a.grad, [3.0 * scale, -4.0 * scale], rtol=1e-14)
    np.testing.assert_allclose(b.grad, [12.0 * scale], rtol=1e-14)


@pytest.mark.parametrize("norm_type", [2, 1, math.inf])
def test_clipping_on_every_backend(backend, norm_type):
    grads = grads_for_clipping(2.0)
    reference = make_params(np.random.default_rng(0))
    set_grads(reference, grads)
    expected_total = float(optim.clip_grad_norm_(reference, max_norm=1.0, norm_type=norm_type))
    model_params = make_params(np.random.default_rng(0), backend)
    set_grads(model_params, grads)
    total = optim.clip_grad_norm_(model_params, max_norm=1.0, norm_type=norm_type)
    assert backend.owns(total)
    assert float(host(backend, total)) == pytest.approx(expected_total, rel=1e-12)
    for p, q in zip(model_params, reference):
        assert backend.owns(p.grad)
        np.testing.assert_allclose(host(backend, p.grad), q.grad, **tolerance("float64"))
    optim.clip_grad_value_(model_params, 0.1)
    for p, q in zip(model_params, reference):
        assert backend.owns(p.grad)
        np.testing.assert_allclose(host(backend, p.grad), np.clip(q.grad, -0.1, 0.1), **tolerance("float64"))


def test_clipping_accepts_a_model():
    model = bp.mlp([3, 4, 1], seed=0).astype("float64")
    for p in model.parameters():
        p.grad = np.full(p.shape, 10.0)
    total = optim.clip_grad_norm_(model, max_norm=1.0)
    assert float(total) == pytest.approx(10.0 * math.sqrt(sum(p.data.size for p in model.parameters())))
    norm = math.sqrt(sum(float(np.sum(p.grad ** 2)) for p in model.parameters()))
    assert norm == pytest.approx(1.0, rel=1e-5)
    optim.clip_grad_value_(model, 0.5)
    assert all(np.all(p.grad <= 0.5) for p in model.parameters())


@pytest.mark.parametrize("kwargs, match", [
    ({"max_norm": -1.0}, "max_norm"), ({"max_norm": float("nan")}, "max_norm"),
    ({"max_norm": float("inf")}, "max_norm"), ({"max_norm": "1"}, "max_norm"),
    ({"max_norm": 1.0, "norm_type": 0}, "norm_type"), ({"max_norm": 1.0, "norm_type": -2.0}, "norm_type"),
    ({"max_norm": 1.0, "norm_type": "fro"}, "norm_type"),
])
def test_clip_grad_norm_refuses_bad_arguments(kwargs, match):
    params = make_params(np.random.default_rng(0))
    set_grads(params, grads_for_clipping(1.0))
    before = [p.grad.copy() for p in params]
    with pytest.raises(ValueError, match=match):
        optim.clip_grad_norm_(params, **kwargs)
    for p, g in zip(params, before):
        np.testing.assert_array_equal(p.grad, g)


def test_clipping_refuses_bad_inputs():
    with pytest.raises(ValueError, match="clip_value"):
        optim.clip_grad_value_(make_params(np.random.default_rng(0)), -0.5)
    with pytest.raises(ValueError, match="no parameters"):
        optim.clip_grad_norm_([], max_norm=1.0)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        optim.clip_grad_norm_([np.ones(3)], max_norm=1.0)


# ---------------------------------------------------------------- schedules against torch

def schedule_pair(torch, base_lr=0.1):
    ours = optim.SGD(make_params(np.random.default_rng(0)), lr=base_lr)
    theirs = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    return ours, theirs


def assert_same_lr(ours, theirs, sched, torch_sched, epoch):
    expected = theirs.param_groups[0]["lr"]
    assert ours.lr == pytest.approx(expected, **LR_TOL), f"epoch {epoch}"
    last = sched.get_last_lr()
    assert isinstance(last, list) and len(last) == 1
    assert last[0] == pytest.approx(torch_sched.get_last_lr()[0], **LR_TOL), f"epoch {epoch}"


SCHEDULE_CASES = [
    ("StepLR", {"step_size": 3, "gamma": 0.5}, 20),
    ("StepLR", {"step_size": 1, "gamma": 0.9}, 15),
    ("StepLR", {"step_size": 4}, 20),
    ("ExponentialLR", {"gamma": 0.9}, 25),
    ("ExponentialLR", {"gamma": 1.0}, 5),
    ("CosineAnnealingLR", {"T_max": 10}, 20),
    ("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.01}, 14),
    ("CosineAnnealingLR", {"T_max": 1, "eta_min": 0.001}, 2),
    ("LinearLR", {}, 10),
    ("LinearLR", {"start_factor": 0.1, "total_iters": 4}, 10),
    ("LinearLR", {"start_factor": 0.25, "end_factor": 0.75, "total_iters": 6}, 10),
    ("LinearLR", {"start_factor": 1.0, "end_factor": 0.2, "total_iters": 3}, 8),     # a linear decay
]


@pytest.mark.parametrize("name, kwargs, epochs", SCHEDULE_CASES,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, _ in SCHEDULE_CASES])
def test_schedule_matches_torch_epoch_by_epoch(torch, name, kwargs, epochs):
    ours, theirs = schedule_pair(torch)
    sched = getattr(optim, name)(ours, **kwargs)
    torch_sched = getattr(torch.optim.lr_scheduler, name)(theirs, **kwargs)
    assert_same_lr(ours, theirs, sched, torch_sched, 0)
    seen = {ours.lr}
    for epoch in range(1, epochs + 1):
        ours.step()
        theirs.step()
        sched.step()
        torch_sched.step()
        assert_same_lr(ours, theirs, sched, torch_sched, epoch)
        seen.add(ours.lr)
    if kwargs.get("gamma") != 1.0:
        assert len(seen) > 1                   # the schedule did change the learning rate


def test_cosine_returns_to_the_base_lr_after_two_periods():
    opt = optim.SGD(make_params(np.random.default_rng(0)), lr=0.2)
    sched = optim.CosineAnnealingLR(opt, T_max=5, eta_min=0.02)
    lrs = [opt.lr]
    for _ in range(10):
        sched.step()
        lrs.append(opt.lr)
    assert lrs[5] == pytest.approx(0.02, abs=1e-15)
    assert lrs[10] == pytest.approx(0.2, abs=1e-15)
    assert lrs[:6] == sorted(lrs[:6], reverse=True) and lrs[5:] == sorted(lrs[5:])


def test_linear_warmup_by_hand():
    opt = optim.SGD(make_params(np.random.default_rng(0)), lr=1.0)
    sched = optim.LinearLR(opt, start_factor=0.25, end_factor=1.0, total_iters=3)
    lrs = [opt.lr]
    for _ in range(5):
        sched.step()
        lrs.append(opt.lr)
    np.testing.assert_allclose(lrs, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0], rtol=1e-15)


# A metric with falls, long plateaus, tiny (below-threshold) improvements and a late fall.
PLATEAU_METRIC = ([1.0, 0.9, 0.8] + [0.8] * 4 + [0.79999] * 3 + [0.6, 0.5] + [0.5] * 6
                  + [0.49] * 4 + [0.3] + [0.31, 0.3, 0.32, 0.3, 0.3, 0.3, 0.3] + [0.1] + [0.1] * 12)
PLATEAU_CASES = [
    ({"patience": 2}, PLATEAU_METRIC),
    ({"patience": 0, "factor": 0.5}, PLATEAU_METRIC),
    ({"patience": 1, "factor": 0.5, "cooldown": 3}, PLATEAU_METRIC),
    ({"patience": 1, "factor": 0.3, "min_lr": 0.004}, PLATEAU_METRIC),
    ({"patience": 1, "factor": 0.5, "threshold": 0.05, "threshold_mode": "abs"},
     [10 * m for m in PLATEAU_METRIC]),       # 5 -> 4.9 is a gain for abs, not for rel
    ({"patience": 2, "factor": 0.5, "threshold": 0.1}, PLATEAU_METRIC),
    ({"mode": "max", "patience": 2, "factor": 0.5}, [2 - m for m in PLATEAU_METRIC]),
    ({"mode": "max", "patience": 1, "factor": 0.5, "cooldown": 2}, [1 - m for m in PLATEAU_METRIC]),
    ({"mode": "max", "patience": 1, "factor": 0.5, "threshold": 0.05, "threshold_mode": "abs"},
     [5 - m for m in PLATEAU_METRIC]),        # rel would need a gain of ~0.2 here, abs 0.05
    ({"patience": 0, "factor": 0.1, "eps": 1e-3}, PLATEAU_METRIC),
]


@pytest.mark.parametrize("kwargs, metric", PLATEAU_CASES,
                         ids=["-".join(f"{k}={v}" for k, v in kw.items()) for kw, _ in PLATEAU_CASES])
def test_reduce_lr_on_plateau_matches_torch(torch, kwargs, metric):
    ours, theirs = schedule_pair(torch)
    sched = optim.ReduceLROnPlateau(ours, **kwargs)
    torch_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **kwargs)
    reductions = 0
    for epoch, value in enumerate(metric, start=1):
        before = ours.lr
        ours.step()
        theirs.step()
        sched.step(value)
        torch_sched.step(value)
        assert_same_lr(ours, theirs, sched, torch_sched, epoch)
        reductions += ours.lr < before
    assert reductions >= 2
    if "min_lr" in kwargs:
        assert ours.lr == kwargs["min_lr"]


def test_reduce_lr_on_plateau_by_hand():
    """patience 1, cooldown 1: two bad epochs reduce, then one epoch is not counted."""
    opt = optim.SGD(make_params(np.random.default_rng(0)), lr=1.0)
    sched = optim.ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=1)
    lrs = []
    for value in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5]:
        sched.step(np.float64(value))
        lrs.append(opt.lr)
    # bad epochs: 1, 2 -> reduce at epoch 3; epoch 4 cooldown; 5, 6 bad -> reduce at 6; 7 cooldown...
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]
    assert sched.get_last_lr() == [0.25]


@pytest.mark.parametrize("make, match", [
    (lambda o: optim.StepLR(o, step_size=0), "step_size"),
    (lambda o: optim.StepLR(o, step_size=2.5), "step_size"),
    (lambda o: optim.StepLR(o, step_size=2, gamma=-0.1), "gamma"),
    (lambda o: optim.ExponentialLR(o, gamma=-1.0), "gamma"),
    (lambda o: optim.ExponentialLR(o, gamma="0.9"), "gamma"),
    (lambda o: optim.CosineAnnealingLR(o, T_max=0), "T_max"),
    (lambda o: optim.CosineAnnealingLR(o, T_max=10, eta_min=-0.1), "eta_min"),
    (lambda o: optim.LinearLR(o, start_factor=0.0), "start_factor"),
    (lambda o: optim.LinearLR(o, start_factor=1.5), "start_factor"),
    (lambda o: optim.LinearLR(o, end_factor=1.5), "end_factor"),
    (lambda o: optim.LinearLR(o, end_factor=-0.5), "end_factor"),
    (lambda o: optim.LinearLR(o, total_iters=0), "total_iters"),
    (lambda o: optim.ReduceLROnPlateau(o, mode="minimum"), "mode"),
    (lambda o: optim.ReduceLROnPlateau(o, threshold_mode="relative"), "threshold_mode"),
    (lambda o: optim.ReduceLROnPlateau(o, factor=1.0), "factor"),
    (lambda o: optim.ReduceLROnPlateau(o, factor=-0.5), "factor"),
    (lambda o: optim.ReduceLROnPlateau(o, patience=-1), "patience"),
    (lambda o: optim.ReduceLROnPlateau(o, cooldown=-1), "cooldown"),
    (lambda o: optim.ReduceLROnPlateau(o, min_lr=-1e-3), "min_lr"),
    (lambda o: optim.ReduceLROnPlateau(o, threshold=-1e-4), "threshold"),
    (lambda o: optim.ReduceLROnPlateau(o, eps=-1.0), "eps"),
])
def test_schedule_refuses_bad_arguments(make, match):
    opt = optim.SGD(make_params(np.random.default_rng(0)), lr=0.1)
    with pytest.raises(ValueError, match=match):
        make(opt)
    assert opt.lr == 0.1                       # a refused schedule leaves the optimizer alone


def test_schedules_refuse_a_non_optimizer_and_a_non_finite_metric():
    with pytest.raises(TypeError, match="optimizer"):
        optim.StepLR(object(), step_size=1)
    sched = optim.ReduceLROnPlateau(optim.SGD(make_params(np.random.default_rng(0)), lr=0.1))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="metric"):
            sched.step(bad)
    assert sched.last_epoch == 0 and sched.num_bad_epochs == 0
