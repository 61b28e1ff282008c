"""Forged checkpoints (with valid SHA-256s) and values that must be refused; saves that must load
and memory bounded by the file are in test_checkpoint_sizes.py.

Every forged file here is built by ``forge`` (tests/forging.py), which recomputes both
checksums, so what is tested is the checking behind the checksum. For each one: the error is a
bp.CheckpointError naming the file, nothing in the model, optimizer or scheduler being loaded
into changes, and the message quotes at most a little of the file.
"""
from __future__ import annotations

import json
import os
import struct

import checkpoint_helpers
import numpy as np
import pytest
from checkpoint_helpers import (assert_unchanged, model_and_optimizer, refused_everywhere, refused_load_peak,
                                snapshot)
from forging import edited, edited_text, forge, forge_text, split

import bpcore as bp

good = checkpoint_helpers.good      # the module-scoped fixture: a trained checkpoint's bytes


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
    message, peak = refused_load_peak(path)
    assert "64 MiB" in message and "truncated" not in message
    assert peak < 1_000_000


def test_a_large_file_that_is_not_a_checkpoint_is_refused_after_its_first_bytes(tmp_path):
    path = tmp_path / "big.bin"
    with open(path, "wb") as stream:
        stream.truncate(2 ** 31)                  # 2 GiB of zeros, sparse: no disk used
    assert refused_load_peak(path, "not a bpcore checkpoint")[1] < 1_000_000


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
