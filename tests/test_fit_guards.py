"""fit refuses, before anything is trained, what would train silently wrong; writers agree on paths.

Covered: an optimizer or scheduler bound to something else, BCE targets outside [0, 1] (and a
logits model fed to BCELoss), torch inputs tracked by autograd, a layer shared by two models,
backward(grad_out) checked as forward checks its input, a BatchNorm last batch of one, and the
file-system corners of saving (missing folders, file modes, long names, another user's stale
temporary in a sticky folder).
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import backends
import bpcore as bp


def data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, (X[:, :1] > 0).astype(np.float64)


def net(seed=0):
    return bp.Sequential(bp.Linear(3, 4, seed=seed), bp.Tanh(), bp.Linear(4, 1, seed=seed + 1))


def unchanged(model, before):
    return all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


# ===================================================================== bindings
def test_an_optimizer_of_another_models_parameters_is_refused_before_training():
    model, other = net(0), net(5)
    opt = bp.optim.AdamW(other.parameters(), lr=0.1)
    before, other_before = model.state_dict(), other.state_dict()
    with pytest.raises(ValueError, match=r"optimizer holds 4 of 4 parameters that do not belong to this model"):
        bp.fit(model, bp.BCEWithLogitsLoss(), opt, *data(), epochs=2, progress=False)
    assert unchanged(model, before) and unchanged(other, other_before)      # AdamW decayed nothing


def test_an_optimizer_of_a_part_of_the_model_is_accepted():
    model = net(0)
    opt = bp.optim.SGD(model.layers[2].parameters(), lr=0.1)          # the first layer frozen
    first = model.layers[0].W.data.copy()
    bp.fit(model, bp.BCEWithLogitsLoss(), opt, *data(), epochs=2, progress=False)
    assert np.array_equal(model.layers[0].W.data, first)


def test_a_scheduler_of_another_optimizer_is_refused():
    model = net(0)
    opt, other = bp.optim.SGD(model.parameters(), lr=0.1), bp.optim.SGD(model.parameters(), lr=0.1)
    for scheduler in (bp.optim.StepLR(other, step_size=1), bp.optim.ReduceLROnPlateau(other)):
        with pytest.raises(ValueError, match=r"scheduler .* drives another optimizer"):
            bp.fit(model, bp.BCEWithLogitsLoss(), opt, *data(), epochs=1, scheduler=scheduler, progress=False)


# ===================================================================== the loss's value rules
@pytest.mark.parametrize("loss_fn", [bp.BCEWithLogitsLoss(), bp.BCELoss()], ids=["with-logits", "probabilities"])
def test_bce_targets_outside_0_1_are_refused_where_data_enter(loss_fn):
    X, y = data()
    y[3] = 2.0
    model = bp.Sequential(net(0), bp.Sigmoid()) if isinstance(loss_fn, bp.BCELoss) else net(0)
    opt = bp.optim.SGD(model.parameters(), lr=0.1)
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"fit: y: .*target must lie in \[0.0, 1.0\].*to 2.0"):
        bp.fit(model, loss_fn, opt, X, y, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"validation_data: y: .*target must lie in \[0.0, 1.0\]"):
        bp.fit(model, loss_fn, opt, *data(), validation_data=(X, y), epochs=1, progress=False)
    assert unchanged(model, before)
    with pytest.raises(ValueError, match=r"evaluate: y: .*target must lie"):
        bp.evaluate(model, loss_fn, X, y)
    assert not loss_fn.check_targets              # fit and evaluate leave the loss's setting as it was
    loss_fn.check_targets = True
    with pytest.raises(ValueError, match=r"evaluate: y: .*target must lie"):
        bp.evaluate(model, loss_fn, X, y)
    assert loss_fn.check_targets


def test_a_logits_model_fed_to_bce_loss_is_refused_on_the_first_batch():
    X, y = data(64)
    model = bp.Sequential(bp.Linear(3, 1, seed=0))
    model.layers[0].W.data[...] = 10.0                 # logits far outside [0, 1]
    opt = bp.optim.SGD(model.parameters(), lr=0.1)
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"pred \(probabilities\) must lie in \[0.0, 1.0\]"):
        bp.fit(model, bp.BCELoss(), opt, X, y, epochs=1, progress=False)
    assert unchanged(model, before)                  # refused before the first step
    with pytest.raises(ValueError, match=r"pred \(probabilities\)"):
        bp.evaluate(model, bp.BCELoss(), X, y)


# ===================================================================== autograd-tracked inputs
def test_torch_inputs_that_track_gradients_are_refused():
    torch = pytest.importorskip("torch")
    if backends.status().get("torch") is not None:
        pytest.skip(backends.status()["torch"])
    model = net(0).to("torch")
    X, y = data()
    tracked = torch.tensor(X, dtype=torch.float32, requires_grad=True)
    opt = bp.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match=r"fit X is a torch tensor with requires_grad=True.*detach"):
        bp.fit(model, bp.BCEWithLogitsLoss(), opt, tracked, y, epochs=1, progress=False)
    with pytest.raises(TypeError, match=r"fit: y is a torch tensor with requires_grad=True"):
        bp.fit(model, bp.BCEWithLogitsLoss(), opt, X, torch.tensor(y, requires_grad=True), epochs=1,
               progress=False)
    with pytest.raises(TypeError, match=r"requires_grad=True"):
        model.forward(tracked)
    out = model.forward(tracked.detach())
    with pytest.raises(TypeError, match=r"grad_out is a torch tensor with requires_grad=True"):
        model.backward(torch.ones_like(out, requires_grad=True))


# ===================================================================== layer API
def test_a_layer_shared_by_two_models_is_refused_at_backward():
    shared = bp.Linear(3, 4, seed=0)
    first = bp.Sequential(shared, bp.Tanh(), bp.Linear(4, 1, seed=1))
    second = bp.Sequential(shared, bp.ReLU(), bp.Linear(4, 1, seed=2))
    X = np.ones((2, 3))
    first.forward(X)
    second.forward(2 * X)                             # overwrote the shared layer's cache
    with pytest.raises(RuntimeError, match=r"last ran forward inside another model"):
        first.backward(np.ones((2, 1), dtype=np.float32))
    second.backward(np.ones((2, 1), dtype=np.float32))   # its own forward: fine
    first.forward(X)
    first.backward(np.ones((2, 1), dtype=np.float32))    # a fresh forward makes it right again
    block = bp.Linear(3, 3, seed=3)
    residual, other = bp.Residual(block), bp.Residual(block)
    residual.forward(X)
    other.forward(2 * X)
    with pytest.raises(RuntimeError, match=r"last ran forward inside another model"):
        residual.backward(np.ones((2, 3), dtype=np.float32))


def test_a_layer_reused_to_build_a_new_model_still_trains():
    """Reusing the layers of a model that is no longer run (transfer learning) stays allowed."""
    old = net(0)
    new = bp.Sequential(old.layers[0], bp.Tanh(), bp.Linear(4, 1, seed=9))
    opt = bp.optim.SGD(new.parameters(), lr=0.1)
    bp.fit(new, bp.BCEWithLogitsLoss(), opt, *data(), epochs=2, progress=False)


@pytest.mark.parametrize("grad_out, error, pattern", [
    ([[1.0]] * 2, TypeError, "grad_out must be an array"),
    (None, TypeError, "grad_out must be an array"),
    (np.ones((2, 1), dtype=np.float64), TypeError, "grad_out has dtype float64, but the layer is float32"),
    (np.ones((2, 2), dtype=np.float32), ValueError, "grad_out of shape"),
], ids=["list", "None", "float64-into-float32", "wrong-shape"])
def test_backward_checks_grad_out_as_forward_checks_its_input(grad_out, error, pattern):
    model = net(0)
    model.forward(np.ones((2, 3)))
    with pytest.raises(error, match=pattern) as info:
        model.backward(grad_out)
    assert "Linear(4, 1)" in str(info.value)         # named by the layer that received it


def test_backward_refuses_another_backends_grad_out():
    torch = pytest.importorskip("torch")
    model = net(0)
    model.forward(np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"grad_out is on backend .*torch"):
        model.backward(torch.ones((2, 1)))


# ===================================================================== batches
def test_a_batchnorm_last_batch_of_one_is_refused_before_training():
    model = bp.Sequential(bp.Linear(3, 4, seed=0), bp.BatchNorm1d(4), bp.ReLU(), bp.Linear(4, 1, seed=1))
    opt = bp.optim.SGD(model.parameters(), lr=0.1)
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"BatchNorm1d.*needs at least 2 samples per training batch.*13 samples "
                                         r"and batch_size=4 a batch holds 1"):
        bp.fit(model, bp.BCEWithLogitsLoss(), opt, *data(13), batch_size=4, epochs=1, progress=False)
    assert unchanged(model, before)
    bp.fit(model, bp.BCEWithLogitsLoss(), opt, *data(14), batch_size=4, epochs=1, progress=False)
    plain = net(0)                                    # without BatchNorm a batch of 1 is fine
    bp.fit(plain, bp.BCEWithLogitsLoss(), bp.optim.SGD(plain.parameters()), *data(13), batch_size=4,
           epochs=1, progress=False)


# ===================================================================== paths
def test_fit_creates_the_checkpoint_folder_before_training(tmp_path):
    model = net(0)
    path = tmp_path / "runs" / "today" / "ckpt.bp"
    bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters()), *data(), epochs=1,
           checkpoint=path, progress=False)
    assert bp.load_checkpoint(path)["epoch"] == 1


def test_fit_refuses_an_unwritable_checkpoint_path_before_training(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    model = net(0)
    before = model.state_dict()
    for path, error in [(tmp_path / "a_file" / "ckpt.bp", OSError), (tmp_path, IsADirectoryError)]:
        with pytest.raises(error):
            bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.5), *data(), epochs=3,
                   checkpoint=path, progress=False)
        assert unchanged(model, before)


def test_every_writer_creates_a_missing_folder(tmp_path):
    model = net(0)
    callbacks = [bp.CSVLogger(tmp_path / "logs" / "run.csv"), bp.ModelCheckpoint(tmp_path / "best" / "m.bp")]
    bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters()), *data(), epochs=1,
           callbacks=callbacks, progress=False)
    assert (tmp_path / "logs" / "run.csv").exists() and (tmp_path / "best" / "m.bp").exists()
    model.save(tmp_path / "a" / "model.bp")
    bp.save_checkpoint(tmp_path / "b" / "c" / "ckpt.bp", model=model, epoch=0)
    bp.io.write_file(tmp_path / "d" / "arrays.bp", {"x": np.zeros(2)}, {})
    assert bp.load(tmp_path / "a" / "model.bp") is not None
    assert bp.load_checkpoint(tmp_path / "b" / "c" / "ckpt.bp")["epoch"] == 0


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600, 0o664])
def test_a_save_keeps_the_files_mode(tmp_path, mode):
    path = tmp_path / "served.bp"
    net(0).save(path)
    os.chmod(path, mode)
    net(1).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode


def test_a_new_file_gets_the_umasks_mode(tmp_path):
    old = os.umask(0o027)
    try:
        net(0).save(tmp_path / "new.bp")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.bp").st_mode) == 0o640


def test_a_long_valid_file_name_saves(tmp_path):
    name = "m" * 251 + ".bp"                            # 254 characters: the longest most file systems allow
    net(0).save(tmp_path / name)
    net(1).save(tmp_path / name)                        # over it, with a short temporary
    assert bp.load(tmp_path / name) is not None
    assert os.listdir(tmp_path) == [name]


STICKY_WRITER = textwrap.dedent("""
    import sys
    import bpcore as bp
    bp.mlp([2, 3, 1], seed=0).save(sys.argv[1])
    print("saved")
""")


def _run_as_nobody(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, user=65534, group=65534, timeout=120, **kwargs)


def test_a_stale_temporary_that_cannot_be_removed_does_not_stop_a_save(tmp_path):
    """Any failure to remove a dead writer's temporary (here: it is a folder) leaves it be."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".model.bp.{dead.pid}.abc123.tmp"
    stale.mkdir()
    (stale / "inside").write_text("x")
    net(0).save(tmp_path / "model.bp")
    assert bp.load(tmp_path / "model.bp") is not None and stale.exists()


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                    reason="needs root to make a file of another user")
def test_another_users_stale_temporary_in_a_sticky_folder_does_not_stop_a_save():
    try:
        probe = _run_as_nobody([sys.executable, "-c", "import bpcore"], cwd="/")
    except PermissionError as error:
        pytest.skip(f"user nobody cannot run this Python ({error})")
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot import bpcore here: {probe.stderr[-300:]}")
    folder = tempfile.mkdtemp(prefix="bpcore-sticky-", dir="/tmp")
    try:
        os.chmod(folder, 0o1777)                       # like /tmp: only a file's owner may delete it
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        stale = os.path.join(folder, f".model.bp.{proc.pid}.abc123.tmp")     # root's, of a dead writer
        with open(stale, "wb") as stream:
            stream.write(b"half a checkpoint")
        result = _run_as_nobody([sys.executable, "-c", STICKY_WRITER, os.path.join(folder, "model.bp")], cwd="/")
        assert result.returncode == 0, result.stderr[-2000:]
        assert bp.load(os.path.join(folder, "model.bp")) is not None
        assert os.path.exists(stale)                   # not this user's to remove: left alone
    finally:
        shutil.rmtree(folder)


def test_a_fit_shape_error_shows_x_and_names_validation_data():
    model = net(0)
    opt = bp.optim.SGD(model.parameters())
    with pytest.raises(ValueError, match=r"^validation_data: X of shape \(7, 2\) does not fit the model.*"
                                         r"Linear\(3, 4\)"):
        bp.fit(model, bp.MSELoss(), opt, *data(), validation_data=(np.ones((7, 2)), np.ones((7, 1))),
               progress=False)
    with pytest.raises(ValueError, match=r"^fit: X of shape \(5, 2\)"):
        bp.fit(model, bp.MSELoss(), opt, np.ones((5, 2)), np.ones((5, 1)), progress=False)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs (a real full disk), or a skip where this process may not mount one."""
    folder = tmp_path / "small"
    folder.mkdir()
    if shutil.which("mount") is None or not hasattr(os, "getuid") or os.getuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()[:200]}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_and_a_read_only_mount_keep_the_old_file(small_tmpfs):
    path = small_tmpfs / "model.bp"
    small = bp.mlp([4, 8, 1], seed=0)
    small.save(path)
    content = path.read_bytes()
    with pytest.raises(OSError, match="No space left"):
        bp.mlp([4, 256, 256, 1], seed=1).save(path)            # ~270 KB: more than the disk holds
    assert path.read_bytes() == content and os.listdir(small_tmpfs) == ["model.bp"]
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    with pytest.raises(OSError, match="read-only file system"):
        bp.mlp([4, 8, 1], seed=2).save(path)
    assert path.read_bytes() == content
    assert np.array_equal(bp.load(path).state_dict()["0.W"], small.state_dict()["0.W"])


def test_a_save_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "run-12.bp"
    net(0).save(target)
    link = tmp_path / "latest.bp"
    link.symlink_to(target)
    net(1).save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert np.array_equal(bp.load(target).state_dict()["0.W"], net(1).state_dict()["0.W"])
    assert sorted(os.listdir(tmp_path / "runs")) == ["run-12.bp"] and sorted(os.listdir(tmp_path)) == ["latest.bp",
                                                                                                         "runs"]
