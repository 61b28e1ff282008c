"""Learning-rate schedules against ``torch.optim.lr_scheduler`` epoch by epoch in float64
(ReduceLROnPlateau included), by hand, and the arguments they refuse.

Tests against torch take the ``torch`` fixture (tests/optim_helpers.py) and are skipped, test by
test, when torch is not installed.
"""
from __future__ import annotations

import numpy as np
import optim_helpers
import pytest
from optim_helpers import make_params

from bpcore import optim

LR_TOL = {"rel": 1e-12, "abs": 1e-12}
torch = optim_helpers.torch      # the fixture: the torch module, or the test is skipped


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
