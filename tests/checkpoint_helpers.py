"""Helpers shared by the checkpoint tests: bitwise comparisons of states, the small model they
save, and for forged files a trained checkpoint (the ``good`` fixture) and the check that a
refusal changed nothing in the model, optimizer or scheduler being loaded into."""
from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest

import bpcore as bp


# ------------------------------------------------------------------------ comparisons
def assert_bit_identical(state_a: dict, state_b: dict):
    """Two state dicts (name -> host array) hold the same names, dtypes, shapes and bytes."""
    assert list(state_a) == list(state_b)
    for name, value in state_a.items():
        a, b = np.asarray(value), np.asarray(state_b[name])
        assert a.dtype == b.dtype, f"{name}: {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{name}: {a.shape} != {b.shape}"
        assert a.tobytes() == b.tobytes(), f"{name} differs"


def states_differ(state_a: dict, state_b: dict) -> bool:
    return any(np.asarray(state_a[k]).tobytes() != np.asarray(state_b[k]).tobytes() for k in state_a)


# ------------------------------------------------------------------------ the model the refusals save
def small_model(seed=0, hidden=4):
    return bp.Sequential(bp.Linear(3, hidden, seed=seed), bp.BatchNorm1d(hidden), bp.ReLU(),
                         bp.Linear(hidden, 2, seed=seed + 1))


# ------------------------------------------------------------------------ forged files (test_checkpoint_faults, _sizes)
def model_and_optimizer(seed=0):
    model = bp.Sequential(bp.Linear(3, 4, seed=seed), bp.BatchNorm1d(4), bp.ReLU(), bp.Dropout(0.2, seed=1),
                          bp.Linear(4, 2, seed=seed + 1))
    return model, bp.optim.Adam(model.parameters(), lr=1e-2)


def trained_file(path):
    """A valid checkpoint of a trained model with Adam state, epoch, history, RNG and scheduler."""
    model, opt = model_and_optimizer()
    scheduler = bp.optim.StepLR(opt, step_size=2)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 3)), rng.standard_normal((16, 2))
    bp.fit(model, bp.MSELoss(), opt, X, y, epochs=2, batch_size=8, scheduler=scheduler, checkpoint=path,
           progress=False)
    return path.read_bytes()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return trained_file(tmp_path_factory.mktemp("good") / "good.bp")


def snapshot(model, opt, scheduler=None):
    return ({k: v.copy() for k, v in model.state_dict().items()}, repr(opt.state_dict()),
            None if scheduler is None else repr(scheduler.state_dict()))


def assert_unchanged(model, opt, before, scheduler=None):
    state, opt_state, sched_state = before
    now = model.state_dict()
    assert list(now) == list(state)
    for name in state:
        assert np.array_equal(now[name], state[name]), name
    assert repr(opt.state_dict()) == opt_state
    if scheduler is not None:
        assert repr(scheduler.state_dict()) == sched_state


def refused_load_peak(path, pattern=None) -> tuple[str, int]:
    """bp.load refuses ``path`` with a CheckpointError (matching ``pattern`` when given); returns its
    message and the peak of the host allocations made while it tried (tracemalloc)."""
    tracemalloc.start()
    try:
        with pytest.raises(bp.CheckpointError, match=pattern) as info:
            bp.load(path)
        return str(info.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refused_everywhere(path, pattern=None, resume=True, load=True, load_into=True):
    """bp.load, load_checkpoint(model=, optimizer=) and fit(resume=) all refuse ``path`` with a
    CheckpointError naming it, and change nothing (``load=False``: the fault is in a part that
    a model alone does not read; ``load_into=False``: in a part only fit reads)."""
    messages = []
    if load:
        with pytest.raises(bp.CheckpointError) as info:
            bp.load(path)
        messages.append(str(info.value))
    model, opt = model_and_optimizer(seed=5)
    before = snapshot(model, opt)
    if load_into:
        with pytest.raises(bp.CheckpointError) as info:
            bp.load_checkpoint(path, model=model, optimizer=opt)
        messages.append(str(info.value))
        assert_unchanged(model, opt, before)
    if resume:
        scheduler = bp.optim.StepLR(opt, step_size=2)
        before = snapshot(model, opt, scheduler)
        X = np.zeros((8, 3))
        with pytest.raises(bp.CheckpointError) as info:
            bp.fit(model, bp.MSELoss(), opt, X, np.zeros((8, 2)), epochs=4, scheduler=scheduler, resume=path,
                   progress=False)
        messages.append(str(info.value))
        assert_unchanged(model, opt, before, scheduler)
    for message in messages:
        assert os.fspath(path) in message, message
        assert len(message) < 2000, len(message)
        if pattern is not None:
            assert pattern in message, message
    return messages
