"""Checkpoints written during fit: resuming gives the uninterrupted run (bitwise on NumPy and
array_api_strict, Dropout's mask stream included), refused resumes change nothing, Ctrl-C saves
the completed epochs, and ModelCheckpoint saves new bests (or every epoch)."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from checkpoint_helpers import assert_bit_identical, states_differ
from helpers import tolerance

import backends
import bpcore as bp


def bitwise(spec) -> bool:
    """Exact equality is promised on NumPy and array_api_strict; float32 tolerance elsewhere."""
    return backends.get(spec).name in ("numpy", "array_api_strict")


def assert_states_match(state_a: dict, state_b: dict, spec: str):
    if bitwise(spec):
        assert_bit_identical(state_a, state_b)
        return
    assert list(state_a) == list(state_b)
    for name, value in state_a.items():
        np.testing.assert_allclose(value, state_b[name], **tolerance("float32"), err_msg=name)


def assert_histories_match(a: bp.History, b: bp.History, spec: str):
    assert a.epochs == b.epochs
    assert sorted(a.history) == sorted(b.history)
    for table_a, table_b in ((a.history, b.history), (a.grad_norms, b.grad_norms),
                             (a.weight_norms, b.weight_norms)):
        assert sorted(table_a) == sorted(table_b)
        for key in table_a:
            if bitwise(spec):
                assert table_a[key] == table_b[key], key
            else:
                np.testing.assert_allclose(table_a[key], table_b[key], rtol=1e-4, atol=1e-6, err_msg=key)


# ===================================================================== exact resume
def resume_data():
    X, y = bp.data.moons(160, noise=0.25, seed=1)
    return bp.data.train_test_split(X, y, test_size=0.25, seed=1)


def resume_model(spec, seed=0):
    return bp.Sequential(bp.Linear(2, 16, seed=seed), bp.BatchNorm1d(16), bp.Tanh(),
                         bp.Linear(16, 1, seed=seed + 1)).to(spec)


def resume_fit(model, epochs, callbacks=None, **kwargs):
    Xtr, Xte, ytr, yte = resume_data()
    opt = bp.optim.Adam(model.parameters(), lr=0.02)
    scheduler = bp.optim.StepLR(opt, step_size=2, gamma=0.5)
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), opt, Xtr, ytr, epochs=epochs, batch_size=16, shuffle=True,
                  seed=3, validation_data=(Xte, yte), metrics=["accuracy"], scheduler=scheduler,
                  callbacks=callbacks, progress=False, **kwargs)
    return hist, opt


def test_resume_gives_the_uninterrupted_run(tmp_path, backend):
    spec = backend.spec
    whole = resume_model(spec)
    hist_whole, opt_whole = resume_fit(whole, epochs=5)
    assert hist_whole["lr"] == [0.02, 0.02, 0.01, 0.01, 0.005]

    path = tmp_path / "ckpt.bp"
    first = resume_model(spec)
    resume_fit(first, epochs=2, checkpoint=path)
    assert bp.load_checkpoint(path)["epoch"] == 2
    second = resume_model(spec, seed=40)                    # a fresh process: other weights, new optimizer
    hist, opt = resume_fit(second, epochs=5, resume=path, checkpoint=path)

    assert_states_match(second.state_dict(), whole.state_dict(), spec)
    assert_histories_match(hist, hist_whole, spec)
    assert opt.lr == opt_whole.lr
    saved = bp.load_checkpoint(path)
    assert saved["epoch"] == 5
    assert_bit_identical(saved["model"].state_dict(), second.state_dict())


def test_resume_with_dropout_gives_the_uninterrupted_run(tmp_path, backend):
    """The Dropout mask stream's position is part of the checkpoint: a fresh model continues it."""
    def model(seed):
        return bp.Sequential(bp.Linear(2, 16, seed=seed), bp.Tanh(), bp.Dropout(0.3, seed=5),
                             bp.Linear(16, 1, seed=seed + 1)).to(backend.spec)

    whole = model(0)
    hist_whole, _ = resume_fit(whole, epochs=4)
    path = tmp_path / "ckpt.bp"
    resume_fit(model(0), epochs=2, checkpoint=path)
    second = model(40)
    hist, _ = resume_fit(second, epochs=4, resume=path)
    assert_states_match(second.state_dict(), whole.state_dict(), backend.spec)
    assert_histories_match(hist, hist_whole, backend.spec)
    without_dropout = bp.Sequential(*[m for m in model(0).layers if not isinstance(m, bp.Dropout)])
    resume_fit(without_dropout, epochs=4)
    assert states_differ(without_dropout.state_dict(), whole.state_dict())      # the masks mattered


def test_checkpoint_every_n_epochs(tmp_path):
    path = tmp_path / "ckpt.bp"
    seen = []

    class FileWatcher(bp.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if path.exists():
                saved = bp.load_checkpoint(path)
                seen.append((saved["epoch"], len(saved["history"].epochs),
                             not states_differ(saved["model"].state_dict(), self.model.state_dict())))
            else:
                seen.append(None)

    model = resume_model("numpy")
    resume_fit(model, epochs=7, checkpoint=path, checkpoint_every=3, callbacks=[FileWatcher()])
    assert seen == [None, None, (3, 3, True), (3, 3, False), (3, 3, False), (6, 6, True), (7, 7, True)]
    assert_bit_identical(bp.load(path).state_dict(), model.state_dict())


def test_resume_from_a_missing_file_starts_at_epoch_zero(tmp_path):
    path = tmp_path / "not_yet.bp"
    plain = resume_model("numpy")
    hist_plain, _ = resume_fit(plain, epochs=3)
    model = resume_model("numpy")
    hist, _ = resume_fit(model, epochs=3, resume=path, checkpoint=path)
    assert hist.epochs == [0, 1, 2]
    assert_histories_match(hist, hist_plain, "numpy")
    assert_bit_identical(model.state_dict(), plain.state_dict())
    assert bp.load_checkpoint(path)["epoch"] == 3


def test_resume_with_fewer_epochs_than_saved_is_refused(tmp_path):
    path = tmp_path / "ckpt.bp"
    resume_fit(resume_model("numpy"), epochs=4, checkpoint=path)
    with pytest.raises(ValueError, match=r"already holds 4 epochs"):
        resume_fit(resume_model("numpy", seed=40), epochs=2, resume=path)
    hist, _ = resume_fit(resume_model("numpy", seed=40), epochs=4, resume=path)   # equal: nothing to do
    assert hist.epochs == [0, 1, 2, 3]


def test_refused_resume_leaves_the_model_unchanged(tmp_path):
    path = tmp_path / "ckpt.bp"
    resume_fit(resume_model("numpy"), epochs=4, checkpoint=path)
    model = resume_model("numpy", seed=40)
    before = model.state_dict()
    with pytest.raises(ValueError):
        resume_fit(model, epochs=2, resume=path)
    assert_bit_identical(model.state_dict(), before)


def test_resume_into_another_architecture_is_refused(tmp_path):
    path = tmp_path / "ckpt.bp"
    resume_fit(resume_model("numpy"), epochs=2, checkpoint=path)
    other = bp.Sequential(bp.Linear(2, 8, seed=0), bp.BatchNorm1d(8), bp.Tanh(), bp.Linear(8, 1, seed=1))
    before = other.state_dict()
    with pytest.raises(bp.CheckpointError, match=r"different architecture") as info:
        resume_fit(other, epochs=4, resume=path)
    assert str(path) in str(info.value)
    assert_bit_identical(other.state_dict(), before)
    assert path.exists() and bp.load_checkpoint(path)["epoch"] == 2     # the checkpoint is untouched


# ===================================================================== interrupts
class CtrlC(bp.Callback):
    """Sends SIGINT to this process after batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch, batch):
        self.at = (epoch, batch)
        self.epoch = None
        self.sent = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


class StateRecorder(bp.Callback):
    def __init__(self):
        self.states = []

    def on_epoch_end(self, epoch, logs=None):
        self.states.append(self.model.state_dict())


@pytest.mark.parametrize("batch, every", [(1, 1), (7, 100)], ids=["mid-epoch", "last-batch-no-periodic-save"])
def test_ctrl_c_saves_the_completed_epochs_and_resumes_exactly(tmp_path, backend, batch, every):
    """With checkpoint_every=100 only the save made on Ctrl-C can put epoch 2 in the file."""
    spec = backend.spec
    whole = resume_model(spec)
    hist_whole, _ = resume_fit(whole, epochs=5)

    path = tmp_path / "ckpt.bp"
    model = resume_model(spec)
    recorder, ctrl_c = StateRecorder(), CtrlC(epoch=2, batch=batch)
    handler_before = signal.getsignal(signal.SIGINT)     # SIG_IGN when the run was started in the background
    hist, opt = resume_fit(model, epochs=5, checkpoint=path, checkpoint_every=every,
                           callbacks=[recorder, ctrl_c])
    assert ctrl_c.sent
    assert len(resume_data()[0]) == 120                        # 8 batches of 16: batch 7 is the last
    assert signal.getsignal(signal.SIGINT) is handler_before          # fit put back the handler it found
    assert hist.interrupted
    assert hist.epochs == [0, 1] and len(hist["loss"]) == 2 and len(hist["val_loss"]) == 2

    saved = bp.load_checkpoint(path)
    assert saved["epoch"] == 2
    assert saved["history"].history == hist.history
    assert_bit_identical(saved["model"].state_dict(), model.state_dict())   # memory == file
    assert_bit_identical(model.state_dict(), recorder.states[-1])           # the partial epoch rolled back
    file_optimizer = saved["optimizer"]["state"]
    memory_optimizer = opt.state_dict()["state"]
    assert sorted(file_optimizer) == sorted(memory_optimizer)
    for index in memory_optimizer:
        assert memory_optimizer[index]["step"] == file_optimizer[index]["step"]
        assert_bit_identical({k: v for k, v in memory_optimizer[index].items() if k != "step"},
                             {k: v for k, v in file_optimizer[index].items() if k != "step"})

    resumed = resume_model(spec, seed=40)
    hist_resumed, _ = resume_fit(resumed, epochs=5, resume=path, checkpoint=path)
    assert not hist_resumed.interrupted
    assert_states_match(resumed.state_dict(), whole.state_dict(), spec)
    assert_histories_match(hist_resumed, hist_whole, spec)


# ===================================================================== ModelCheckpoint
def checkpoint_fit(path, save_best_only, epochs=12):
    X, y = bp.data.moons(120, noise=0.3, seed=1)
    Xtr, Xte, ytr, yte = bp.data.train_test_split(X, y, test_size=0.3, seed=1)
    model = bp.mlp([2, 16, 1], activation="tanh", seed=2)
    recorder = StateRecorder()
    mc = bp.ModelCheckpoint(path, monitor="val_loss", save_best_only=save_best_only)
    file_epochs = []

    class FileWatcher(bp.Callback):
        def on_epoch_end(self, epoch, logs=None):
            file_epochs.append(bp.load_checkpoint(path)["epoch"] if os.path.exists(path) else None)

    hist = bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.Adam(model.parameters(), lr=0.15), Xtr, ytr,
                  epochs=epochs, batch_size=8, validation_data=(Xte, yte),
                  callbacks=[recorder, mc, FileWatcher()], progress=False)
    return model, hist, mc, recorder.states, file_epochs


def test_model_checkpoint_saves_only_new_bests(tmp_path):
    path = tmp_path / "best.bp"
    _, hist, mc, states, file_epochs = checkpoint_fit(path, save_best_only=True)
    val = hist["val_loss"]
    bests = [e for e in range(len(val)) if val[e] < min(val[:e], default=np.inf)]
    assert 1 < len(bests) < len(val), "the run must have epochs that do not improve"
    assert mc.saved_epochs == bests
    expected_file_epochs = [max(b for b in bests if b <= e) + 1 for e in range(len(val))]
    assert file_epochs == expected_file_epochs                   # the file changed only on new bests
    best = int(np.argmin(val))
    saved = bp.load_checkpoint(path)
    assert saved["epoch"] == best + 1
    assert_bit_identical(saved["model"].state_dict(), states[best])
    assert states_differ(states[best], states[-1])


def test_model_checkpoint_without_save_best_only_saves_every_epoch(tmp_path):
    path = tmp_path / "every.bp"
    model, hist, mc, states, file_epochs = checkpoint_fit(path, save_best_only=False, epochs=5)
    assert mc.saved_epochs == [0, 1, 2, 3, 4]
    assert file_epochs == [1, 2, 3, 4, 5]
    saved = bp.load_checkpoint(path)
    assert saved["epoch"] == 5 and saved["history"].history == hist.history
    assert_bit_identical(saved["model"].state_dict(), states[-1])
    assert_bit_identical(bp.load(path).state_dict(), model.state_dict())
