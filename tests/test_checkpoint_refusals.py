"""Checkpoint files that must be refused: truncated, padded, bit-flipped, forged headers that
lie, pickles, .npz and .npy files (none of whose code may run), unknown layers, other
architectures, optimizer state of another kind.

A refused file must raise bp.CheckpointError (FileNotFoundError for a missing file) whose
message names the file and the fault, must run no code from the file, and must leave the
model (and optimizer) being loaded into unchanged.
"""
from __future__ import annotations

import os
import pickle
import re
import struct

import numpy as np
import pytest
from checkpoint_helpers import assert_bit_identical, small_model
from forging import assemble, header_length, split, with_checksum

import bpcore as bp


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
