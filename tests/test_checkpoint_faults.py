"""Forged checkpoints (with valid SHA-256s), saves that must load, and values that must be refused.

Every forged file here is built by ``forge``, which recomputes both checksums, so what is
tested is the checking behind the checksum. For each one: the error is a bp.CheckpointError
naming the file, nothing in the model, optimizer or scheduler being loaded into changes,
and the message quotes at most a little of the file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import tracemalloc

import numpy as np
import pytest

import bpcore as bp
from bpcore.io import MAGIC


# ------------------------------------------------------------------------ forging
def split(raw: bytes):
    """(header dict, payload bytes) of a valid file."""
    (length,) = struct.unpack("<Q", raw[8:16])
    return json.loads(raw[16:16 + length].decode("utf-8")), raw[16 + length:-32]


def forge_text(header_text: bytes, payload: bytes) -> bytes:
    """A file from raw header bytes: the length prefix and the SHA-256 trailer made to match."""
    body = MAGIC + struct.pack("<Q", len(header_text)) + header_text + payload
    return body + hashlib.sha256(body).digest()


def forge(header: dict, payload: bytes) -> bytes:
    """A file from an edited header and payload, with payload_bytes, payload_sha256 and the
    trailer recomputed: what a deliberate forger would do."""
    header = dict(header, payload_bytes=len(payload), payload_sha256=hashlib.sha256(payload).hexdigest())
    return forge_text(json.dumps(header).encode("utf-8"), payload)


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


def edited(good, change):
    header, payload = split(good)
    result = change(header, payload)
    return forge(header, result if isinstance(result, bytes) else payload)


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


# ===================================================================== one error type
def _deep(depth):
    return ("[" * depth + "]" * depth).encode()


PARSE_FAULTS = [
    # (id, how the good file becomes the forged one)
    ("deep-json-nesting", lambda good: forge_text(b'{"format": "bpcore-checkpoint", "x": ' + _deep(100_000) + b"}",
                                                  b"")),
    ("huge-integer-literal", lambda good: edited_text(good, b'"epoch": 2', b'"epoch": ' + b"7" * 5000)),
    ("shape-0-by-2**62", lambda good: edited(good, lambda h, p: h["tensors"][0].update(shape=[0, 2 ** 62]))),
    ("dtype-a-list", lambda good: edited(good, lambda h, p: h["tensors"][0].update(dtype=["float32"]))),
    ("name-a-number", lambda good: edited(good, lambda h, p: h["tensors"][0].update(name=12))),
    ("tensor-entry-a-string", lambda good: edited(good, lambda h, p: h["tensors"].__setitem__(0, "W"))),
    ("optimizer-a-list", lambda good: edited(good, lambda h, p: h.update(optimizer=[1, 2]))),
    ("optimizer-hyper-a-string", lambda good: edited(good, lambda h, p: h["optimizer"].update(hyper="lr"))),
    ("optimizer-scalars-bad-index", lambda good: edited(good, lambda h, p: h["optimizer"]["scalars"].update(
        abc={"step": 1}))),
    ("architecture-layers-a-dict", lambda good: edited(good, lambda h, p: h["architecture"].update(layers={}))),
    ("config-a-list", lambda good: edited(good, lambda h, p: h["architecture"]["layers"][0].update(config=[3]))),
    ("random-streams-a-list", lambda good: edited(good, lambda h, p: h.update(random_streams=[1]))),
    ("random-stream-state-garbage", lambda good: edited(good, lambda h, p: h["random_streams"].__setitem__(
        "3", {"generator": "threefry2x32-20", "seed": 2 ** 300, "calls": 1}))),
    ("random-stream-calls-negative", lambda good: edited(good, lambda h, p: h["random_streams"]["3"].update(
        calls=-1))),
    ("random-stream-other-generator", lambda good: edited(good, lambda h, p: h["random_streams"]["3"].update(
        generator="mt19937"))),
    ("random-stream-a-number", lambda good: edited(good, lambda h, p: h["random_streams"].__setitem__("3", 7))),
    ("history-not-a-mapping", lambda good: edited(good, lambda h, p: h.update(history=[1, 2]))),
    ("dtype-of-the-model-a-dict", lambda good: edited(good, lambda h, p: h.update(dtype={"a": 1}))),
]


def edited_text(good, old: bytes, new: bytes) -> bytes:
    (length,) = struct.unpack("<Q", good[8:16])
    text = good[16:16 + length]
    assert old in text
    return forge_text(text.replace(old, new, 1), good[16 + length:-32])


@pytest.mark.parametrize("make", [case[1] for case in PARSE_FAULTS], ids=[case[0] for case in PARSE_FAULTS])
def test_any_parse_fault_is_a_checkpoint_error_and_changes_nothing(tmp_path, good, make):
    path = tmp_path / "forged.bp"
    path.write_bytes(make(good))
    refused_everywhere(path)


@pytest.mark.parametrize("rng_state", [
    {"bit_generator": "PCG64", "state": {"state": 2 ** 300, "inc": 1}, "has_uint32": 0, "uinteger": 0},
    {"bit_generator": "MT19937", "state": {"key": [1, 2], "pos": 0}},
    "abc", 17, [1, 2]])
def test_a_bad_shuffling_rng_state_is_refused_before_anything_changes(tmp_path, good, rng_state):
    path = tmp_path / "rng.bp"
    path.write_bytes(edited(good, lambda h, p: h.update(rng_state=rng_state)))
    bp.load_checkpoint(path)                       # the rest of the file is fine: only fit uses it
    refused_everywhere(path, "shuffling RNG", load=False, load_into=False)


def test_quoted_content_is_capped(tmp_path, good):
    path = tmp_path / "long.bp"
    path.write_bytes(edited(good, lambda h, p: h["architecture"]["layers"][2].update(type="X" * 10_000_000)))
    for message in refused_everywhere(path, "unknown layer type"):
        assert "XXXX" in message


# ===================================================================== messages
def test_format_version_of_the_wrong_type_is_not_called_newer(tmp_path, good):
    for version in (1.0, "1", True, 0):
        path = tmp_path / "version.bp"
        path.write_bytes(edited(good, lambda h, p, version=version: h.update(format_version=version)))
        message = refused_everywhere(path, "not a bpcore format version", resume=False)[0]
        assert "newer" not in message


def test_an_oversized_header_is_named_as_such_and_refused_before_reading(tmp_path, good):
    path = tmp_path / "big.bp"
    path.write_bytes(good[:8] + struct.pack("<Q", 2 ** 40) + good[16:])
    tracemalloc.start()
    try:
        with pytest.raises(bp.CheckpointError) as info:
            bp.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "64 MiB" in str(info.value) and "truncated" not in str(info.value)
    assert peak < 1_000_000


def test_a_large_file_that_is_not_a_checkpoint_is_refused_after_its_first_bytes(tmp_path):
    path = tmp_path / "big.bin"
    with open(path, "wb") as stream:
        stream.truncate(2 ** 31)                  # 2 GiB of zeros, sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(bp.CheckpointError, match="not a bpcore checkpoint"):
            bp.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_dev_zero_is_refused_without_reading_it():
    with pytest.raises(bp.CheckpointError, match="/dev/zero.*not a regular file"):
        bp.load("/dev/zero")


# ===================================================================== all or nothing
def test_a_scheduler_of_another_class_is_refused_on_resume_and_nothing_changes(tmp_path, good):
    path = tmp_path / "ckpt.bp"
    path.write_bytes(good)
    model, opt = model_and_optimizer(seed=5)
    scheduler = bp.optim.CosineAnnealingLR(opt, T_max=4)
    before = snapshot(model, opt, scheduler)
    with pytest.raises(bp.CheckpointError, match=r"does not fit this scheduler.*StepLR"):
        bp.fit(model, bp.MSELoss(), opt, np.zeros((8, 3)), np.zeros((8, 2)), epochs=4, scheduler=scheduler,
               resume=path, progress=False)
    assert_unchanged(model, opt, before, scheduler)


@pytest.mark.parametrize("change, pattern, load_checkpoint_checks_it", [
    (lambda h, p: h["history"]["in_payload"]["history"].append("extra"), "history", True),
    (lambda h, p: h.update(history={"history": {"loss": ["a", "b"]}, "grad_norms": {}, "weight_norms": {},
                                    "epochs": [0, 1]}), "history", True),
    (lambda h, p: h.update(history={"history": {"loss": [1.0]}, "grad_norms": {}, "weight_norms": {},
                                    "epochs": [1, 0]}), "epochs", True),
    (lambda h, p: h["scheduler"].update(last_epoch="3"), "last_epoch", False),
    (lambda h, p: h["scheduler"].update(last_epoch=-1), "last_epoch", False),
    (lambda h, p: h["scheduler"].update(gamma=True), "gamma", False),
], ids=["history-key-without-values", "history-strings", "epochs-decreasing", "last-epoch-a-string",
        "last-epoch-negative", "gamma-a-bool"])
def test_history_and_scheduler_faults_are_found_before_anything_changes(tmp_path, good, change, pattern,
                                                                        load_checkpoint_checks_it):
    path = tmp_path / "ckpt.bp"
    path.write_bytes(edited(good, change))
    model, opt = model_and_optimizer(seed=5)
    before = snapshot(model, opt)
    if load_checkpoint_checks_it:                  # the scheduler is only known to fit(resume=)
        with pytest.raises(bp.CheckpointError, match=pattern):
            bp.load_checkpoint(path, model=model, optimizer=opt)
        assert_unchanged(model, opt, before)
    scheduler = bp.optim.StepLR(opt, step_size=2)
    before = snapshot(model, opt, scheduler)
    with pytest.raises(bp.CheckpointError, match=pattern):
        bp.fit(model, bp.MSELoss(), opt, np.zeros((8, 3)), np.zeros((8, 2)), epochs=4, scheduler=scheduler,
               resume=path, progress=False)
    assert_unchanged(model, opt, before, scheduler)


# ===================================================================== values
@pytest.mark.parametrize("epoch", ["5", 2.5, float("nan"), -5, True, [2]])
def test_an_epoch_that_is_not_a_count_is_refused(tmp_path, good, epoch):
    path = tmp_path / "epoch.bp"
    path.write_bytes(edited(good, lambda h, p: h.update(epoch=epoch)))
    refused_everywhere(path, "epoch")


@pytest.mark.parametrize("step", ["abc", -3, 2.5, None, True])
def test_an_adam_step_that_is_not_a_count_is_refused(tmp_path, good, step):
    path = tmp_path / "step.bp"
    path.write_bytes(edited(good, lambda h, p: h["optimizer"]["scalars"]["0"].update(step=step)))
    bp.load(path)                                  # the model alone is fine
    refused_everywhere(path, "step", load=False)


def test_finite_float64_beyond_float32_is_refused_not_turned_into_inf(tmp_path):
    model64 = bp.Sequential(bp.Linear(3, 2, seed=0)).astype("float64")
    model64.layers[0].W.data[0, 0] = 1e300
    path = tmp_path / "wide.bp"
    model64.save(path)
    assert bp.load(path).layers[0].W.data[0, 0] == 1e300          # float64 rebuilds keep it
    model32 = bp.Sequential(bp.Linear(3, 2, seed=1))
    before = model32.state_dict()
    with pytest.raises(bp.CheckpointError, match=r"1e\+300, beyond the largest float32") as info:
        bp.load_checkpoint(path, model=model32)
    assert "NaN" not in str(info.value)
    assert all(np.array_equal(before[k], v) for k, v in model32.state_dict().items())
    with pytest.raises(ValueError, match="beyond the largest float32"):
        model32.load_state_dict({"0.W": np.full((3, 2), 1e39), "0.b": np.zeros(2)})
    assert all(np.array_equal(before[k], v) for k, v in model32.state_dict().items())


def test_optimizer_buffers_beyond_float32_are_refused(tmp_path, good):
    model, opt = model_and_optimizer()
    loss_fn = bp.MSELoss()
    loss_fn.forward(model.forward(np.ones((4, 3))), np.zeros((4, 2)))
    model.backward(loss_fn.backward())
    opt.step()
    state = opt.state_dict()
    state["state"][0]["exp_avg"] = np.full(state["state"][0]["exp_avg"].shape, 1e300)
    with pytest.raises(ValueError, match="beyond the largest float32"):
        opt.load_state_dict(state)


# ===================================================================== bounded memory
def relaid(header, payload, change):
    """The payload rebuilt after ``change(name, dtype, shape, data) -> (shape, data)`` ran on every
    tensor, with offsets and byte counts recomputed (a consistent, forged layout)."""
    pieces = []
    for entry in header["tensors"]:
        data = payload[entry["offset"]:entry["offset"] + entry["nbytes"]]
        entry["shape"], data = change(entry["name"], entry["dtype"], entry["shape"], data)
        pieces.append(data)
    offset = 0
    for entry, data in zip(header["tensors"], pieces):
        entry["offset"], entry["nbytes"] = offset, len(data)
        offset += len(data)
    return b"".join(pieces)


def test_an_empty_tensor_cannot_vouch_for_a_huge_layer(tmp_path, good):
    def change(h, p):
        h["architecture"]["layers"][1]["config"]["n"] = 2 ** 40
        return relaid(h, p, lambda name, dtype, shape, data: ([0, 2 ** 40], b"") if name.startswith("model/1.")
                      else (shape, data))
    path = tmp_path / "huge.bp"
    path.write_bytes(edited(good, change))
    refused_everywhere(path)


def test_a_thousand_big_layers_backed_by_one_tensor_are_refused_before_allocating(tmp_path):
    big = np.zeros((1000, 1000), dtype=np.float32)            # 4 MB, the file's one tensor
    header = {"format": "bpcore-checkpoint", "format_version": 1, "bpcore_version": "x", "dtype": "float32",
              "tensors": [{"name": "model/0.W", "dtype": "float32", "shape": [1000, 1000], "offset": 0,
                           "nbytes": big.nbytes}],
              "architecture": {"type": "Sequential", "layers": [
                  {"type": "Linear", "config": {"n_in": 1000, "n_out": 1000}} for _ in range(1000)]}}
    path = tmp_path / "many.bp"
    path.write_bytes(forge(header, big.tobytes()))
    tracemalloc.start()
    try:
        with pytest.raises(bp.CheckpointError, match="would create 1000000 or more numbers"):
            bp.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * os.path.getsize(path)


def test_loading_costs_a_small_multiple_of_the_file(tmp_path):
    model = bp.mlp([256, 1024, 1024, 1024, 8], seed=0)
    path = tmp_path / "model.bp"
    model.save(path)
    size = os.path.getsize(path)
    tracemalloc.start()
    try:
        loaded = bp.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(loaded.state_dict()["0.W"], model.state_dict()["0.W"])
    assert peak < 3.2 * size, peak / size


# ===================================================================== saves that load
def test_a_long_history_does_not_grow_the_header_and_always_loads(tmp_path):
    model = bp.mlp([4] + [8] * 20 + [1], seed=0)
    history = bp.History()
    grads = {name: 0.5 for name, _ in model.named_parameters()}
    for epoch in range(40_000):
        history._record(epoch, {"loss": 1.0 / (epoch + 1), "lr": 0.1}, grads, grads)
    path = tmp_path / "long.bp"
    bp.save_checkpoint(path, model=model, epoch=40_000, history=history)
    (length,) = struct.unpack("<Q", path.read_bytes()[8:16])
    assert length < 100_000                           # 40 000 epochs of 42 norms live in the payload
    saved = bp.load_checkpoint(path)
    assert saved["history"]["loss"][-1] == 1.0 / 40_000 and saved["history"].epochs[-1] == 39_999
    assert len(saved["history"].grad_norms["20.W"]) == 40_000


def test_a_save_whose_header_the_loader_would_refuse_keeps_the_old_file(tmp_path, monkeypatch):
    import bpcore.checkpoint.format as fmt

    path = tmp_path / "model.bp"
    bp.mlp([2, 3, 1], seed=0).save(path)
    content = path.read_bytes()
    monkeypatch.setattr(fmt, "_MAX_HEADER", 2000)        # the one cap, shared by saving and loading
    bp.load(path)
    with pytest.raises(ValueError, match=r"header would be \d+ bytes.*bp.load would refuse it.*architecture"):
        bp.mlp([2] + [3] * 40 + [1], seed=0).save(path)
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["model.bp"]


def test_old_files_with_the_history_in_the_header_still_load(tmp_path, good):
    history = {"history": {"loss": [0.5, 0.25]}, "grad_norms": {}, "weight_norms": {}, "epochs": [0, 1]}
    path = tmp_path / "old.bp"

    def change(h, p):
        h["history"] = history
        h["tensors"] = [t for t in h["tensors"] if not t["name"].startswith("history/")]
        kept = sum(t["nbytes"] for t in h["tensors"])
        return p[:kept]
    path.write_bytes(edited(good, change))
    assert bp.load_checkpoint(path)["history"]["loss"] == [0.5, 0.25]
    assert math.isclose(bp.load_checkpoint(path)["history"]["loss"][1], 0.25)


# ===================================================================== fuzzing the header
def _leaves(value, path=()):
    """Every (path, value) in a JSON document, containers included."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))


_REPLACEMENTS = [None, True, -1, 0, 2 ** 70, 1.5, float("nan"), float("inf"), "", "x" * 300, [], [1, "a"], {},
                 {"type": "Linear"}, [0, 2 ** 40], -2 ** 63]


def test_fuzzed_headers_give_a_checkpoint_error_or_a_valid_load_and_change_nothing_when_refused(tmp_path, good):
    """400 forged files, each with one header value replaced (checksums recomputed): every load
    either works or raises CheckpointError, and a refused load into a model changes nothing."""
    import random

    header, payload = split(good)
    places = [path for path, _ in _leaves(header) if path and path[0] not in ("payload_sha256", "payload_bytes")]
    chooser = random.Random(13)
    path = tmp_path / "fuzz.bp"
    model, opt = model_and_optimizer(seed=5)
    scheduler = bp.optim.StepLR(opt, step_size=2)
    for _ in range(400):
        forged = json.loads(json.dumps(header))
        place = chooser.choice(places)
        parent = forged
        for key in place[:-1]:
            parent = parent[key]
        parent[place[-1]] = chooser.choice(_REPLACEMENTS)
        path.write_bytes(forge(forged, payload))
        before = snapshot(model, opt, scheduler)
        for load in (lambda: bp.load(path),
                     lambda: bp.load_checkpoint(path, model=model, optimizer=opt),
                     lambda: bp.fit(model, bp.MSELoss(), opt, np.zeros((8, 3)), np.zeros((8, 2)), epochs=2,
                                    scheduler=scheduler, resume=path, progress=False)):
            try:
                load()
            except bp.CheckpointError as error:
                assert os.fspath(path) in str(error) and len(str(error)) < 2000, (place, str(error)[:300])
                assert_unchanged(model, opt, before, scheduler)
            except ValueError as error:             # fit's own argument checks (more saved epochs than asked)
                assert "already holds" in str(error), (place, error)
                assert_unchanged(model, opt, before, scheduler)
            before = snapshot(model, opt, scheduler)


@pytest.mark.parametrize("kind, config, needed", [
    ("Conv2d", {"in_channels": 512, "out_channels": 512, "kernel_size": [9, 9]}, 512 * 512 * 81),
    ("BatchNorm2d", {"num_features": 2 ** 30}, 2 ** 30),
])
def test_convolutional_layers_must_be_backed_by_the_file_too(tmp_path, kind, config, needed):
    small = np.zeros(4, dtype=np.float32)
    header = {"format": "bpcore-checkpoint", "format_version": 1, "bpcore_version": "x", "dtype": "float32",
              "tensors": [{"name": "model/0.b", "dtype": "float32", "shape": [4], "offset": 0,
                           "nbytes": small.nbytes}],
              "architecture": {"type": "Sequential", "layers": [{"type": kind, "config": config}]}}
    path = tmp_path / "conv.bp"
    path.write_bytes(forge(header, small.tobytes()))
    with pytest.raises(bp.CheckpointError, match=f"would create {needed} or more numbers"):
        bp.load(path)
