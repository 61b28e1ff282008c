"""Checkpoint writes are atomic: a failed or killed save leaves the old file (or a whole new one)
and no temporary of its own; the next save removes the temporaries of dead writers only."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from checkpoint_helpers import assert_bit_identical, small_model, states_differ

import bpcore as bp


def temporaries(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


def dead_pid() -> int:
    """A pid that no process has now."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    candidates = [proc.pid] + list(range(4_194_000, 4_000_000, -7919))
    for pid in candidates:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    pytest.skip("found no unused pid")


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_write_file_leaves_only_the_file(tmp_path):
    path = tmp_path / "arrays.bp"
    bp.io.write_file(path, {"a": np.arange(6.0).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}, {})
    bp.io.write_file(path, {"a": np.zeros(2)}, {"note": "second"})      # over an existing file
    assert os.listdir(tmp_path) == ["arrays.bp"]
    arrays, header = bp.io.read_file(path)
    assert list(arrays) == ["a"] and header["note"] == "second"
    small_model().save(tmp_path / "model.bp")
    assert sorted(os.listdir(tmp_path)) == ["arrays.bp", "model.bp"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.bp"
    old = small_model(seed=1)
    old.save(path)
    content = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        small_model(seed=2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == content
    assert temporaries(tmp_path) == []
    assert_bit_identical(bp.load(path).state_dict(), old.state_dict())


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path, sleeper):
    dead = dead_pid()
    name = "model.bp"
    stale = f".{name}.{dead}.k3j_x9.tmp"
    live = f".{name}.{sleeper}.q1w2e3.tmp"
    unrelated = [f".other.bp.{dead}.abc.tmp", f".{name}.notapid.abc.tmp", "notes.tmp", f"{name}.bak"]
    for entry in [stale, live] + unrelated:
        (tmp_path / entry).write_bytes(b"half a checkpoint")
    small_model().save(tmp_path / name)
    left = set(os.listdir(tmp_path))
    assert stale not in left
    assert live in left and (tmp_path / live).read_bytes() == b"half a checkpoint"
    assert set(unrelated) <= left
    assert left == {name, live, *unrelated}


def test_temporaries_of_a_live_writer_of_a_similarly_named_file_are_kept(tmp_path, sleeper):
    number = dead_pid()
    live_other = f".ckpt.{number}.{sleeper}.a1b2c3.tmp"      # a live writer of "ckpt.<number>"
    (tmp_path / live_other).write_bytes(b"in progress")
    small_model().save(tmp_path / "ckpt")
    assert live_other in os.listdir(tmp_path)


WRITER = textwrap.dedent("""
    import sys
    import bpcore as bp

    path = sys.argv[1]
    models = [bp.mlp([64, 256, 256, 8], seed=1), bp.mlp([64, 256, 256, 8], seed=2)]
    models[0].save(path)
    models[1].save(path)
    print("ready", flush=True)
    i = 0
    while True:
        models[i % 2].save(path)
        i += 1
""")


def test_kill_9_at_random_moments_leaves_a_loadable_file(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    work = tmp_path / "run"
    work.mkdir()
    path = work / "model.bp"
    models = [bp.mlp([64, 256, 256, 8], seed=1), bp.mlp([64, 256, 256, 8], seed=2)]
    states = [m.state_dict() for m in models]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    chooser = random.Random(2024)
    seen, since_clean, kills = set(), 0, 24
    for attempt in range(kills):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, env=env)
        try:
            assert proc.stdout.readline() == b"ready\n"
            time.sleep(chooser.uniform(0.0, 0.03))
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL          # killed while saving, not finished
        since_clean += 1

        loaded = bp.load(path)                             # always a whole checkpoint
        state = loaded.state_dict()
        matches = [i for i, s in enumerate(states) if not states_differ(state, s)]
        assert len(matches) == 1, "the file is neither of the two models"
        seen.add(matches[0])
        stray = temporaries(work)
        assert len(stray) <= since_clean                   # at most one per killed writer
        assert set(os.listdir(work)) == {"model.bp", *stray}
        if attempt % 4 == 3:                               # the next save cleans up after dead writers
            models[matches[0]].save(path)
            assert os.listdir(work) == ["model.bp"]
            since_clean = 0
    assert seen == {0, 1}                                  # the writer really alternated the content
