"""No host sync per batch: counted on the simulated device (tests/helpers.py ``count_syncs``).

On a GPU every sync stalls the queue; DESIGN.md: nothing syncs inside the training loop except
what the user asks to see. ``fit`` may read the loss once per epoch, never once per batch.
"""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
from helpers import SYNC_SPEC, count_syncs

import backends
import bpcore as bp

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(SYNC_SPEC not in backends.available(), reason="array_api_strict is not installed")


def problem(n=64):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 2)).astype("float32")
    return X, (X[:, :1] * X[:, 1:] > 0).astype("float32")


def model():
    return bp.Sequential(bp.Linear(2, 8), bp.ReLU(), bp.Linear(8, 8), bp.ReLU(), bp.Linear(8, 1)).to(SYNC_SPEC)


def test_the_counter_counts_and_refuses_numpy_conversion():
    be = backends.get(SYNC_SPEC)
    a = be.asarray(np.ones(2, dtype="float32"))
    with count_syncs() as syncs:
        with be.activate():
            float(be.xp.sum(a))
            bool(be.xp.all(a > 0))
        be.to_numpy(a)
        be.synchronize()
        with pytest.raises(RuntimeError):
            np.asarray(a)
    assert syncs.counts == {"__float__": 1, "__bool__": 1, "to_numpy": 1, "synchronize": 1, "__array__": 1}
    with count_syncs() as after:
        pass
    assert after.total == 0 and float(a[0]) == 1.0       # the patches are undone


def syncs_of_fit(batches, loss_fn):
    X, y = problem(8 * batches)
    net = model()
    opt = bp.optim.Adam(net.parameters(), lr=1e-2)
    with count_syncs() as syncs:
        bp.fit(net, loss_fn, opt, X, y, epochs=1, batch_size=8, progress=False, metrics=["accuracy"])
    return syncs


@pytest.mark.parametrize("check_targets", [False, True])
def test_fit_makes_no_sync_per_batch(check_targets):
    """The syncs of one epoch do not grow with the number of batches."""
    loss_fn = bp.BCEWithLogitsLoss()
    loss_fn.check_targets = check_targets
    few, many = syncs_of_fit(2, loss_fn), syncs_of_fit(6, loss_fn)
    assert many.counts == few.counts, f"syncs grow with batches: 2 batches {few}, 6 batches {many}"


def readme_step_syncs(loss_fn):
    X, y = problem()
    net = model()
    opt = bp.optim.SGD(net.parameters(), lr=0.5)
    be = backends.get(SYNC_SPEC)
    X, y = be.asarray(X), be.asarray(y)          # data on the device once, as fit does
    with count_syncs() as syncs:
        opt.zero_grad()
        out = net(X)
        loss_fn.forward(out, y)
        net.backward(loss_fn.backward())
        bp.optim.clip_grad_norm_(net, 1.0)
        bp.optim.clip_grad_value_(net, 1.0)
        opt.step()
    return syncs


def test_the_readme_loop_makes_no_sync_per_step():
    """By default a loss checks shapes and dtypes only: its target values are checked where data
    enter (fit, evaluate, or loss_fn.check(target) once before a hand-written loop)."""
    syncs = readme_step_syncs(bp.BCEWithLogitsLoss())
    assert syncs.total == 0, syncs


def readme_tour_syncs(steps: int):
    """The README's tour block as printed, up to the end of its loop (what follows, gradcheck and
    the figures, is checked elsewhere), on the simulated device, for ``steps`` steps."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index("## A tour"):].split("```python\n", 1)[1].split("```", 1)[0]
    assert "for epoch in range(1000):" in block and '.to("cpu")' in block, block
    lines = block.splitlines()
    end = next(i for i, line in enumerate(lines) if i > 0 and line.startswith(("print(", "bp.viz")))
    block = "\n".join(lines[:end]).replace("range(1000)", f"range({steps})")
    block = block.replace('.to("cpu")', f'.to("{SYNC_SPEC}")')
    with count_syncs() as syncs:
        exec(compile(block, "README.md (tour)", "exec"), {})              # noqa: S102 (our own README)
    return syncs


def test_the_readme_tour_moves_the_data_once_and_never_syncs_in_its_loop():
    """Host -> device copies are counted too: passing host X and y to every step would copy them
    each step (on a GPU, a synchronous copy per step)."""
    few, many = readme_tour_syncs(2), readme_tour_syncs(5)
    assert many.counts == few.counts, f"per-step syncs or copies: 2 steps {few}, 5 steps {many}"
    assert few.counts.get("asarray", 0) >= 2                 # X and y, once, before the loop


def test_the_copy_counter_sees_data_moved_every_step():
    """The premise: a loop that passes host arrays to the model copies them once per step."""
    X, y = problem()
    net, loss_fn = model(), bp.BCEWithLogitsLoss()
    counts = []
    for steps in (2, 5):
        with count_syncs() as syncs:
            for _ in range(steps):
                loss_fn.forward(net(X), y)
                net.backward(loss_fn.backward())
        counts.append(syncs.counts.get("asarray", 0))
    assert counts[1] - counts[0] == 2 * 3                    # X and y, each step


def test_per_call_value_checks_are_an_explicit_choice_and_cost_one_sync_each():
    loss_fn = bp.BCEWithLogitsLoss()
    loss_fn.check_targets = True
    assert readme_step_syncs(loss_fn).total > 0


@pytest.mark.parametrize("loss_fn, last", [(bp.BCEWithLogitsLoss(), []), (bp.BCELoss(), [bp.Sigmoid()])],
                         ids=["BCEWithLogitsLoss", "BCELoss"])
def test_hot_paths_give_no_python_scalar_to_maximum_minimum_where(monkeypatch, loss_fn, last):
    """array-api-compat copies a Python scalar to the GPU with a blocking copy on torch CUDA: ReLU,
    the BCE losses and clipping use cached device constants (Backend.constant) instead."""
    be = backends.get(SYNC_SPEC)
    scalars = []
    for name in ("maximum", "minimum", "where", "clip"):
        function = getattr(be.xp, name)

        def watched(*args, _function=function, _name=name, **kwargs):
            scalars.extend(f"{_name}({a!r})" for a in (*args, *kwargs.values()) if isinstance(a, (int, float)))
            return _function(*args, **kwargs)
        monkeypatch.setattr(be.xp, name, watched)
    net = bp.Sequential(bp.Linear(2, 8), bp.ReLU(), bp.Linear(8, 1), *last).to(SYNC_SPEC)
    loss_fn.check_targets = False
    X, y = problem(16)
    loss_fn.forward(net(X), y)
    net.backward(loss_fn.backward())
    bp.optim.clip_grad_norm_(net, 1.0)
    bp.optim.clip_grad_value_(net, 0.5)
    assert scalars == []
