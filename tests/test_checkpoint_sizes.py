"""Checkpoint sizes: loading costs memory bounded by the file (a forged layer must be backed by the
file's tensors before anything is allocated), and saves that must load (a long history lives in the
payload; a header the loader would refuse is refused when saving; old files still load)."""
from __future__ import annotations

import math
import os
import struct
import tracemalloc

import checkpoint_helpers
import numpy as np
import pytest
from checkpoint_helpers import refused_everywhere, refused_load_peak
from forging import edited, forge

import bpcore as bp

good = checkpoint_helpers.good      # the module-scoped fixture: a trained checkpoint's bytes


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
    assert refused_load_peak(path, "would create 1000000 or more numbers")[1] < 6 * os.path.getsize(path)


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
