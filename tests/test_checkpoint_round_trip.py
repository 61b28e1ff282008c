"""Checkpoints that load back exactly: round trips between every pair of backends (bit for bit
where the backends promise it), what save_checkpoint keeps beside the model, and optimizer
state that gives identical next steps."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from checkpoint_helpers import assert_bit_identical, small_model, states_differ
from helpers import tolerance

import backends
import bpcore as bp

STATUS = backends.status(trains=True)   # checkpoints round-trip between backends that train


def _is_gpu(spec):
    return "cuda" in spec or spec.startswith("cupy")


def _backend_pairs():
    """(source, target) for every ordered pair of registered backends; unusable ones are skipped."""
    for source, target in itertools.product(STATUS, repeat=2):
        marks = [pytest.mark.runs_on(source, target)] + ([pytest.mark.gpu] if _is_gpu(source) or _is_gpu(target)
                                                           else [])
        for spec in (source, target):
            if STATUS[spec] is not None:
                marks.append(pytest.mark.skip(reason=STATUS[spec]))
                break
        yield pytest.param(source, target, marks=marks, id=f"{source}->{target}")


# ===================================================================== round trip
def rich_model(seed=0, n_in=5, n_out=3):
    return bp.Sequential(
        bp.Linear(n_in, 8, seed=seed), bp.BatchNorm1d(8), bp.LeakyReLU(0.2),
        bp.Residual(bp.Sequential(bp.Linear(8, 8, seed=seed + 1), bp.Tanh())),
        bp.Dropout(0.25, seed=seed), bp.LayerNorm(8), bp.Linear(8, n_out, seed=seed + 2), bp.GELU(),
        bp.Softmax(dim=-1))


def trained_rich_model(spec, dtype, seed=0):
    """Every parameter random (LayerNorm and BatchNorm affine too), running statistics non-trivial."""
    rng = np.random.default_rng(seed + 100)
    model = rich_model(seed).astype(dtype)
    model.load_state_dict({name: rng.standard_normal(value.shape).astype(dtype)
                           for name, value in model.state_dict().items()
                           if name in dict(model.named_parameters())} | dict(model.named_buffers()))
    model.to(spec)
    model.train()
    model.forward(rng.standard_normal((16, 5)) * 3.0 + 1.5)      # updates running_mean / running_var
    state = model.state_dict()
    assert not np.allclose(state["1.running_mean"], 0.0) and not np.allclose(state["1.running_var"], 1.0)
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("source, target", list(_backend_pairs()))
def test_round_trip_between_backends_is_bit_for_bit(tmp_path, source, target, dtype):
    model = trained_rich_model(source, dtype)
    path = tmp_path / "model.bp"
    model.save(path)
    loaded = bp.load(path, device=target)

    assert repr(loaded) == repr(model)
    assert [type(m).__name__ for m in loaded.modules()] == [type(m).__name__ for m in model.modules()]
    assert [m.config() for m in loaded.modules()] == [m.config() for m in model.modules()]
    assert loaded.layers[2].config() == {"slope": 0.2}
    assert loaded.layers[4].config() == {"p": 0.25, "seed": 0}
    assert loaded.dtype == dtype
    assert_bit_identical(loaded.state_dict(), model.state_dict())
    for name, value in loaded.state_dict().items():
        assert value.dtype == np.dtype(dtype), name
    target_backend = backends.get(target)
    assert loaded.device is target_backend
    for name, p in loaded.named_parameters():
        assert target_backend.owns(p.data), name
    for name, buffer in loaded.named_buffers():
        assert target_backend.owns(buffer), name

    # eval outputs: equal to the original moved to the target backend, close to the source's
    x = np.random.default_rng(5).standard_normal((7, 5)).astype(dtype)
    reference = rich_model(seed=50).astype(dtype)
    reference.load_state_dict(model.state_dict())
    reference.to(target)
    out_loaded = target_backend.to_numpy(loaded.eval().forward(x))
    out_reference = target_backend.to_numpy(reference.eval().forward(x))
    np.testing.assert_array_equal(out_loaded, out_reference)
    out_source = model.device.to_numpy(model.eval().forward(x))
    np.testing.assert_allclose(out_loaded, out_source, **tolerance(dtype))


def test_save_and_load_accept_str_paths_and_report_no_training_state(tmp_path):
    model = trained_rich_model("numpy", "float32")
    path = str(tmp_path / "model.bp")
    model.save(path)
    saved = bp.load_checkpoint(path)
    assert_bit_identical(saved["model"].state_dict(), model.state_dict())
    assert saved["epoch"] is None and saved["history"] is None and saved["optimizer"] is None


def test_save_checkpoint_keeps_history_epoch_and_rng_state(tmp_path):
    model = bp.mlp([2, 4, 1], seed=0)
    X, y = bp.data.moons(40, seed=0)
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.1), X, y, epochs=3,
                  batch_size=8, metrics=["accuracy"], progress=False)
    generator = np.random.default_rng(9)
    generator.random(5)
    path = tmp_path / "c.bp"
    bp.save_checkpoint(path, model=model, epoch=3, history=hist, rng_state=generator.bit_generator.state)
    saved = bp.load_checkpoint(path)
    assert saved["epoch"] == 3
    assert saved["history"].history == hist.history and saved["history"].epochs == hist.epochs
    assert saved["history"].grad_norms == hist.grad_norms
    restored = np.random.default_rng(0)
    restored.bit_generator.state = saved["rng_state"]
    assert restored.random() == generator.random()


# ===================================================================== optimizer state
OPTIMIZERS = [
    ("SGD", lambda params: bp.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True)),
    ("Adam", lambda params: bp.optim.Adam(params, lr=0.01, amsgrad=True)),
    ("AdamW", lambda params: bp.optim.AdamW(params, lr=0.01, weight_decay=0.1)),
    ("RMSprop", lambda params: bp.optim.RMSprop(params, lr=0.01, momentum=0.5, centered=True)),
]


@pytest.mark.parametrize("name, make", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_load_checkpoint_restores_the_optimizer_for_identical_next_steps(tmp_path, backend, name, make):
    rng = np.random.default_rng(11)
    batches = [(rng.standard_normal((8, 3)), rng.standard_normal((8, 2))) for _ in range(6)]
    loss_fn = bp.MSELoss()

    def step(model, opt, X, y):
        opt.zero_grad()
        loss_fn.forward(model.forward(X), y)
        model.backward(loss_fn.backward())
        opt.step()

    original = small_model(seed=0).to(backend.spec)
    opt = make(original.parameters())
    for X, y in batches[:3]:
        step(original, opt, X, y)
    opt.lr = 0.0123                                           # a scheduler changed it
    path = tmp_path / "ckpt.bp"
    bp.save_checkpoint(path, model=original, optimizer=opt, epoch=3)

    restored = small_model(seed=9).to(backend.spec)
    restored_opt = make(restored.parameters())
    saved = bp.load_checkpoint(path, model=restored, optimizer=restored_opt)
    assert saved["epoch"] == 3 and restored_opt.lr == 0.0123
    control = small_model(seed=9).to(backend.spec)                  # same weights, fresh optimizer state
    control.load_state_dict(original.state_dict())
    control_opt = make(control.parameters())
    control_opt.lr = 0.0123
    for X, y in batches[3:]:
        step(original, opt, X, y)
        step(restored, restored_opt, X, y)
        step(control, control_opt, X, y)
    assert_bit_identical(restored.state_dict(), original.state_dict())
    assert states_differ(control.state_dict(), original.state_dict())   # the state mattered
    for q in restored.parameters():
        assert backend.owns(q.data)
    state_a, state_b = opt.state_dict()["state"], restored_opt.state_dict()["state"]
    assert sorted(state_a) == sorted(state_b)
    for index in state_a:
        assert sorted(state_a[index]) == sorted(state_b[index])
        for key, value in state_a[index].items():
            if hasattr(value, "shape"):
                assert np.asarray(value).tobytes() == np.asarray(state_b[index][key]).tobytes(), key
            else:
                assert value == state_b[index][key], key
