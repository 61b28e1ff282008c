"""Optimizer steps: SGD, Adam, AdamW and RMSprop against ``torch.optim`` step by step in float64,
against steps computed by hand from the update formulas (always run), and the hyper-parameters
they refuse.

Tests against torch take the ``torch`` fixture (tests/optim_helpers.py) and are skipped, test by
test, when torch is not installed. Plain SGD by hand, SGD's momentum state on another backend
and SGD's refused arguments are in test_model.py.
"""
from __future__ import annotations

import math

import numpy as np
import optim_helpers
import pytest
from helpers import host
from optim_helpers import NUMPY, PARAM_SHAPES, gradient_sequence, make_params, set_grads

import bpcore as bp
from bpcore import optim

ORACLE_TOL = {"rtol": 1e-9, "atol": 1e-9}
torch = optim_helpers.torch      # the fixture: the torch module, or the test is skipped


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
