"""Checkpoints: round trips between backends, refused files, atomic writes, exact resume,
interrupts, ModelCheckpoint and optimizer state.

A refused file must raise bp.CheckpointError (FileNotFoundError for a missing file) whose
message names the file and the fault, must run no code from the file, and must leave the
model (and optimizer) being loaded into unchanged.
"""
from __future__ import annotations

import itertools
import hashlib
import json
import os
import pickle
import random
import re
import signal
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from helpers import tolerance

import backends
import bpcore as bp
from bpcore.io import MAGIC

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


def bitwise(spec) -> bool:
    """Exact equality is promised on NumPy and array_api_strict; float32 tolerance elsewhere."""
    return backends.get(spec).name in ("numpy", "array_api_strict")


# ------------------------------------------------------------------------ comparisons
def assert_bit_identical(state_a: dict, state_b: dict):
    """Two state dicts (name -> host array) hold the same names, dtypes, shapes and bytes."""
    assert list(state_a) == list(state_b)
    for name, value in state_a.items():
        a, b = np.asarray(value), np.asarray(state_b[name])
        assert a.dtype == b.dtype, f"{name}: {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{name}: {a.shape} != {b.shape}"
        assert a.tobytes() == b.tobytes(), f"{name} differs"


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


def states_differ(state_a: dict, state_b: dict) -> bool:
    return any(np.asarray(state_a[k]).tobytes() != np.asarray(state_b[k]).tobytes() for k in state_a)


# ===================================================================== 1. round trip
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


# ===================================================================== 2. refusals
def small_model(seed=0, hidden=4):
    return bp.Sequential(bp.Linear(3, hidden, seed=seed), bp.BatchNorm1d(hidden), bp.ReLU(),
                         bp.Linear(hidden, 2, seed=seed + 1))


def split(raw: bytes):
    """(header dict, payload bytes) of a valid file (the 32-byte SHA-256 trailer dropped)."""
    (length,) = struct.unpack("<Q", raw[8:16])
    return json.loads(raw[16:16 + length].decode("utf-8")), raw[16 + length:-32]


def with_checksum(body: bytes) -> bytes:
    """Append the SHA-256 trailer, so a deliberately edited file gets past the checksum."""
    return body + hashlib.sha256(body).digest()


def header_length(raw: bytes) -> int:
    return struct.unpack("<Q", raw[8:16])[0]


def assemble(header: dict, payload: bytes) -> bytes:
    """A file from an edited header, with the right length prefix and a matching SHA-256 trailer:
    what a deliberate forger would do, so the checks behind the checksum are what is tested."""
    text = json.dumps(header).encode("utf-8")
    return with_checksum(MAGIC + struct.pack("<Q", len(text)) + text + payload)


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    """The bytes of a valid checkpoint: model with buffers, Adam state, epoch and history."""
    model = small_model(seed=0)
    opt = bp.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = bp.MSELoss()
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    for _ in range(2):
        opt.zero_grad()
        loss_fn.forward(model.forward(X), y)
        model.backward(loss_fn.backward())
        opt.step()
    path = tmp_path_factory.mktemp("good") / "good.bp"
    bp.save_checkpoint(path, model=model, optimizer=opt, epoch=2)
    raw = path.read_bytes()
    bp.load(path)                                   # the unedited file loads
    return raw


class CreatesFile:
    """Unpickling this runs open(path, "w"): the file appearing proves code from the file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def edit_header(change):
    def make(raw):
        header, payload = split(raw)
        change(header)
        return assemble(header, payload)
    return make


def _set(entry, **values):
    entry.update(values)


def flip(position_of, mask=0xFF):
    def make(raw):
        data = bytearray(raw)
        data[position_of(raw)] ^= mask
        return bytes(data)
    return make


def _digit_in_shape(raw):
    """The byte of the first dimension inside the first tensor's shape ("[3, 4]": the 3)."""
    start = raw.index(b'"shape": [', 16) + len(b'"shape": [')
    assert raw[start:start + 1].isdigit()
    return start


# (id, file name, bytes from the good file's bytes, what the message must say)
REFUSALS = [
    ("empty", "empty.bp", lambda raw: b"", r"not a bpcore checkpoint.*empty"),
    ("cut-inside-magic", "cut.bp", lambda raw: raw[:4], r"truncated|not a bpcore checkpoint"),
    ("cut-magic-only", "cut.bp", lambda raw: raw[:8], r"truncated"),
    ("cut-inside-header-length", "cut.bp", lambda raw: raw[:12], r"truncated"),
    ("cut-inside-header", "cut.bp", lambda raw: raw[:16 + header_length(raw) // 2], r"truncated"),
    ("cut-after-header", "cut.bp", lambda raw: raw[:16 + header_length(raw)], r"truncated"),
    ("cut-inside-payload", "cut.bp", lambda raw: raw[:(16 + header_length(raw) + len(raw)) // 2],
     r"truncated"),
    ("cut-last-byte", "cut.bp", lambda raw: raw[:-1], r"truncated"),
    ("padded", "padded.bp", lambda raw: raw + b"\x00", r"SHA-256.*corrupt"),
    ("padded-forged", "padded.bp", lambda raw: with_checksum(raw[:-32] + b"\x00"), r"padded"),
    ("flip-first-payload-byte", "flip.bp", flip(lambda raw: 16 + header_length(raw)), r"SHA-256.*corrupt"),
    ("flip-middle-payload-bit", "flip.bp", flip(lambda raw: (16 + header_length(raw) + len(raw)) // 2, 0x01),
     r"SHA-256.*corrupt"),
    ("flip-last-payload-byte", "flip.bp", flip(lambda raw: len(raw) - 1), r"SHA-256.*corrupt"),
    ("flip-header-brace", "flip.bp", flip(lambda raw: 16), r"SHA-256.*corrupt"),
    ("flip-header-to-invalid-utf8", "flip.bp", flip(lambda raw: 16 + header_length(raw) // 2, 0x80),
     r"SHA-256.*corrupt"),
    ("flip-header-shape-digit", "flip.bp", flip(_digit_in_shape, 0x01), r"SHA-256.*corrupt"),
    ("forged-header-brace", "flip.bp", lambda raw: with_checksum(flip(lambda r: 16)(raw)[:-32]),
     r"not valid JSON"),
    ("forged-header-shape-digit", "flip.bp", lambda raw: with_checksum(flip(_digit_in_shape, 0x01)(raw)[:-32]),
     r"lies about tensor"),
    ("flip-magic", "flip.bp", flip(lambda raw: 0, 0x01), r"not a bpcore checkpoint"),
    ("header-length-edited", "len.bp", lambda raw: raw[:8] + struct.pack("<Q", len(raw)) + raw[16:],
     r"SHA-256.*corrupt"),
    ("header-length-too-big", "len.bp",
     lambda raw: with_checksum(raw[:8] + struct.pack("<Q", len(raw)) + raw[16:-32]), r"header claims"),
    ("header-length-too-small", "len.bp",
     lambda raw: with_checksum(raw[:8] + struct.pack("<Q", header_length(raw) - 1) + raw[16:-32]),
     r"not valid JSON"),
    ("header-length-huge", "len.bp", lambda raw: with_checksum(raw[:8] + b"\xff" * 8 + raw[16:-32]),
     r"header claims"),
    ("header-not-an-object", "hdr.bp", lambda raw: assemble([1, 2], split(raw)[1]), r"does not describe"),
    ("wrong-format-name", "hdr.bp", edit_header(lambda h: _set(h, format="safetensors")),
     r"does not describe"),
    ("newer-format-version", "new.bp", edit_header(lambda h: _set(h, format_version=h["format_version"] + 1)),
     r"format version 2 is newer"),
    ("lie-nbytes", "lie.bp",
     edit_header(lambda h: _set(h["tensors"][0], nbytes=h["tensors"][0]["nbytes"] + 4)),
     r"lies about tensor 'model/0\.W'"),
    ("lie-nbytes-smaller", "lie.bp",
     edit_header(lambda h: _set(h["tensors"][1], nbytes=h["tensors"][1]["nbytes"] - 4)),
     r"lies about tensor 'model/0\.b'"),
    ("lie-offset-beyond-payload", "lie.bp",
     edit_header(lambda h: _set(h["tensors"][-1], offset=h["payload_bytes"] + 64)),
     r"lies about tensor"),
    ("lie-overlapping-offsets", "lie.bp",
     edit_header(lambda h: _set(h["tensors"][1], offset=h["tensors"][0]["offset"] + 4)),
     r"lies about tensor 'model/0\.b'"),
    ("lie-negative-offset", "lie.bp", edit_header(lambda h: _set(h["tensors"][0], offset=-4)),
     r"lies about tensor"),
    ("lie-shape-vs-nbytes", "lie.bp", edit_header(lambda h: _set(h["tensors"][0], shape=[3, 5])),
     r"lies about tensor 'model/0\.W'"),
    ("lie-negative-shape", "lie.bp", edit_header(lambda h: _set(h["tensors"][0], shape=[-3, -4])),
     r"invalid shape"),
    ("lie-payload-bytes", "lie.bp", edit_header(lambda h: _set(h, payload_bytes=h["payload_bytes"] + 4)),
     r"truncated or padded"),
    ("lie-dropped-tensor-entry", "lie.bp", edit_header(lambda h: h["tensors"].pop()),
     r"belong to no tensor"),
    ("tensors-not-a-list", "hdr.bp", edit_header(lambda h: _set(h, tensors={"a": 1})), r"no list of tensors"),
    ("tensor-entry-missing-fields", "hdr.bp", edit_header(lambda h: h["tensors"][0].pop("offset")),
     r"malformed tensor entry"),
    ("dtype-object", "dtype.bp", edit_header(lambda h: _set(h["tensors"][0], dtype="object")),
     r"dtype 'object'"),
    ("dtype-unicode", "dtype.bp", edit_header(lambda h: _set(h["tensors"][0], dtype="<U3")), r"dtype '<U3'"),
    ("dtype-complex", "dtype.bp", edit_header(lambda h: _set(h["tensors"][0], dtype="complex64")),
     r"dtype 'complex64'"),
    ("npy-file", "weights.npy", None, r"\.npy"),
]


def _npy_bytes(tmp_path):
    np.save(tmp_path / "source.npy", np.arange(12, dtype=np.float32))
    return (tmp_path / "source.npy").read_bytes()


def loaded_into_refused(path, pattern, error=bp.CheckpointError, with_optimizer=False):
    """Load ``path`` into a model (and optimizer); assert the refusal and that nothing changed."""
    target = small_model(seed=7)
    opt = bp.optim.Adam(target.parameters(), lr=0.5)
    before, opt_before = target.state_dict(), opt.state_dict()
    with pytest.raises(error) as info:
        if with_optimizer:
            bp.load_checkpoint(path, model=target, optimizer=opt)
        else:
            bp.load_checkpoint(path, model=target)
    message = str(info.value)
    assert os.fspath(path) in message, message
    assert re.search(pattern, message, re.DOTALL), message
    assert_bit_identical(target.state_dict(), before)
    assert opt.lr == 0.5 and opt.state == {} and opt.state_dict()["hyper"] == opt_before["hyper"]
    return message


@pytest.mark.parametrize("name, filename, make, pattern", REFUSALS, ids=[case[0] for case in REFUSALS])
def test_refused_file(tmp_path, good_file, name, filename, make, pattern):
    path = tmp_path / filename
    content = _npy_bytes(tmp_path) if make is None else make(good_file)
    assert content != good_file
    path.write_bytes(content)
    loaded_into_refused(path, pattern)
    loaded_into_refused(path, pattern, with_optimizer=True)
    with pytest.raises(bp.CheckpointError) as info:
        bp.load(path)
    assert os.fspath(path) in str(info.value) and re.search(pattern, str(info.value), re.DOTALL)
    assert path.read_bytes() == content                  # the refused file itself is left alone


def test_missing_file_is_file_not_found_and_changes_nothing(tmp_path):
    path = tmp_path / "nowhere" / "model.bp"
    loaded_into_refused(path, r"no checkpoint", error=FileNotFoundError)
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        bp.load(path)


@pytest.mark.parametrize("filename", ["model.pkl", "model.bp"])
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_is_refused_without_running_it(tmp_path, filename, protocol):
    control = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(CreatesFile(control), protocol=protocol)).close()
    assert control.exists()                               # the payload is live: unpickling runs it

    marker = tmp_path / "marker"
    path = tmp_path / filename
    path.write_bytes(pickle.dumps(CreatesFile(marker), protocol=protocol))
    message = loaded_into_refused(path, r"not a bpcore checkpoint.*pickle")
    assert "pickle" in message
    with pytest.raises(bp.CheckpointError):
        bp.load(path)
    assert not marker.exists()


def test_an_npz_with_object_arrays_is_refused_without_running_it(tmp_path):
    control = tmp_path / "control_marker"
    np.savez(tmp_path / "control.npz", W=np.array([CreatesFile(control)], dtype=object))
    with np.load(tmp_path / "control.npz", allow_pickle=True) as archive:
        archive["W"][0].close()
    assert control.exists()                               # what np.load(allow_pickle=True) would do

    marker = tmp_path / "marker"
    path = tmp_path / "weights.npz"
    np.savez(path, W=np.array([CreatesFile(marker)], dtype=object), b=np.zeros(3))
    loaded_into_refused(path, r"zip archive.*\.npz")
    with pytest.raises(bp.CheckpointError, match="npz"):
        bp.load(path)
    assert not marker.exists()


def test_an_npy_with_an_object_array_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "weights.npy"
    np.save(path, np.array([CreatesFile(marker)], dtype=object))
    loaded_into_refused(path, r"\.npy")
    assert not marker.exists()


def test_unknown_layer_type_is_refused_when_rebuilding(tmp_path, good_file):
    header, payload = split(good_file)
    header["architecture"]["layers"][2]["type"] = "EvilLayer"
    path = tmp_path / "unknown.bp"
    path.write_bytes(assemble(header, payload))
    with pytest.raises(bp.CheckpointError, match=r"unknown layer type 'EvilLayer'") as info:
        bp.load(path)
    assert str(path) in str(info.value)


def test_unknown_layer_type_is_refused_when_loading_into_a_model(tmp_path, good_file):
    header, payload = split(good_file)
    header["architecture"]["layers"][2]["type"] = "EvilLayer"
    path = tmp_path / "unknown.bp"
    path.write_bytes(assemble(header, payload))
    loaded_into_refused(path, r"unknown layer type 'EvilLayer'")


def test_layer_config_that_cannot_be_built_is_refused(tmp_path, good_file):
    header, payload = split(good_file)
    header["architecture"]["layers"][0]["config"]["n_in"] = -3
    path = tmp_path / "badconfig.bp"
    path.write_bytes(assemble(header, payload))
    with pytest.raises(bp.CheckpointError, match=r"cannot rebuild Linear") as info:
        bp.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("shape", [[2 ** 64], [2 ** 62, 4]], ids=["beyond-int64", "wraps-to-zero"])
def test_header_with_an_overflowing_shape_is_refused(tmp_path, good_file, shape):
    header, payload = split(good_file)
    header["tensors"].append({"name": "model/extra", "dtype": "float32", "shape": shape,
                              "offset": len(payload), "nbytes": 0})
    path = tmp_path / "overflow.bp"
    path.write_bytes(assemble(header, payload))
    loaded_into_refused(path, r"shape|lies")


def test_architecture_lying_about_layer_sizes_is_refused_before_allocating(tmp_path, good_file):
    header, payload = split(good_file)
    header["architecture"]["layers"][0]["config"].update(n_in=10 ** 7, n_out=10 ** 7)  # 728 TiB of weights
    path = tmp_path / "huge.bp"
    path.write_bytes(assemble(header, payload))
    with pytest.raises(bp.CheckpointError):
        bp.load(path)


def test_a_bit_flip_in_the_architecture_is_refused(tmp_path):
    model = bp.Sequential(bp.Linear(2, 3, seed=0), bp.LeakyReLU(0.2), bp.Linear(3, 1, seed=1))
    path = tmp_path / "m.bp"
    model.save(path)
    data = bytearray(path.read_bytes())
    at = bytes(data).index(b'"slope": 0.2') + len(b'"slope": 0.')
    data[at] ^= 0x01                                     # '2' -> '3'
    path.write_bytes(bytes(data))
    with pytest.raises(bp.CheckpointError):
        bp.load(path)


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "wide.bp"
    small_model(seed=3, hidden=6).save(path)
    loaded_into_refused(path, r"different architecture.*n_out.: 6")
    other = bp.Sequential(bp.Linear(3, 4, seed=0), bp.ReLU(), bp.Linear(4, 2, seed=1))   # no BatchNorm
    before = other.state_dict()
    with pytest.raises(bp.CheckpointError, match=r"different architecture") as info:
        bp.load_checkpoint(path, model=other)
    assert str(path) in str(info.value)
    assert_bit_identical(other.state_dict(), before)


def test_a_model_only_file_refuses_an_optimizer_and_changes_nothing(tmp_path):
    path = tmp_path / "model_only.bp"
    small_model(seed=3).save(path)
    loaded_into_refused(path, r"no optimizer state", with_optimizer=True)


def test_optimizer_state_of_another_kind_is_refused_all_or_nothing(tmp_path, good_file):
    path = tmp_path / "adam.bp"
    path.write_bytes(good_file)
    target = small_model(seed=7)
    sgd = bp.optim.SGD(target.parameters(), lr=0.3, momentum=0.9)
    before, sgd_before = target.state_dict(), sgd.state_dict()
    with pytest.raises(bp.CheckpointError, match=r"does not fit this optimizer") as info:
        bp.load_checkpoint(path, model=target, optimizer=sgd)
    assert str(path) in str(info.value)
    assert_bit_identical(target.state_dict(), before)          # the model was put back
    assert sgd.state_dict() == sgd_before


# ===================================================================== 3. atomic writes
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


# ===================================================================== 4. exact resume
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


# ===================================================================== 5. interrupts
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


# ===================================================================== 6. ModelCheckpoint
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


# ===================================================================== 7. optimizer state
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
