"""The counter-based generator (backends/_random.py) and the Dropout masks made from it.

Pinned by Random123's known-answer vectors; the same bits on every backend; statistics of 10**6
draws (chi-square tests, deterministic: the numbers are a function of the seed); the random state
of a Dropout is two integers that resume, copy and move exactly.
"""
from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest

import backends
import bpcore as bp
from backends._random import WORD, call_key, random_bits, threefry2x32
from bpcore.checkpoint import CheckpointWarning, read_file, write_file
from helpers import host

# Threefry-2x32-20, from Random123's kat_vectors: (counter words, key words) -> output words
KNOWN_ANSWERS = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x243F6A88, 0x85A308D3), (0x13198A2E, 0x03707344), (0xC4923A9C, 0x483DF7A0)),
]
CPU_SPECS = [spec for spec in ("numpy", "array_api_strict", "array_api_strict:device1", "torch")
             if spec in backends.available()]


# == the generator ==========================================================================
@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_threefry_gives_random123s_known_answers_on_python_ints(counter, key, expected):
    assert threefry2x32(*key, *counter) == expected


def test_threefry_gives_the_known_answers_on_every_backend(backend):
    with backend.activate():
        x0 = backend.asarray(np.array([c for c, _, _ in KNOWN_ANSWERS], dtype=np.int64)[:, 0])
        x1 = backend.asarray(np.array([c for c, _, _ in KNOWN_ANSWERS], dtype=np.int64)[:, 1])
        for i, (_, key, expected) in enumerate(KNOWN_ANSWERS):
            y0, y1 = threefry2x32(*key, x0[i:i + 1], x1[i:i + 1])
            assert (int(backend.to_numpy(y0)[0]), int(backend.to_numpy(y1)[0])) == expected


def test_the_bits_are_the_same_on_every_backend(backend):
    for seed, call, shape in [(0, 0, (1,)), (5, 3, (7, 9)), (2 ** 64 - 1, 2 ** 40, (3, 4, 5)), (1, 0, (0, 3))]:
        expected = random_bits(np, "cpu", seed, call, shape)
        got = backend.to_numpy(backend.random_bits(seed, call, shape))
        assert got.shape == shape and got.dtype == np.int64
        np.testing.assert_array_equal(got, expected, err_msg=f"seed {seed}, call {call}")
        assert got.size == 0 or (got.min() >= 0 and got.max() <= WORD)


def test_an_element_depends_on_its_index_only_not_on_the_shape():
    whole = random_bits(np, "cpu", 9, 4, (101,))
    np.testing.assert_array_equal(random_bits(np, "cpu", 9, 4, (10, 10)).reshape(-1), whole[:100])
    np.testing.assert_array_equal(random_bits(np, "cpu", 9, 4, (3,)), whole[:3])


def test_uniform_and_normal_streams_agree_across_backends(backend):
    reference = backends.get("numpy")
    for dtype in ("float32", "float64"):
        got = backend.to_numpy(backend.random(7).uniform((500,), dtype))
        expected = reference.to_numpy(reference.random(7).uniform((500,), dtype))
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, expected)              # exact: k random bits times 2**-k
        assert 0.0 <= got.min() and got.max() < 1.0
        normal = backend.to_numpy(backend.random(7).normal((500,), dtype))
        # log, sqrt and cos are each the library's own: equal up to a few ulps
        np.testing.assert_allclose(normal, reference.to_numpy(reference.random(7).normal((500,), dtype)),
                                   rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6)
    with pytest.raises(ValueError, match="float32 or float64"):
        backend.random(1).uniform((3,), "int32")


def test_a_stream_is_its_seed_and_its_count_of_draws(backend):
    stream = backend.random(3)
    first = backend.to_numpy(stream.bits((4,)))
    state = stream.get_state()
    assert state == {"generator": "threefry2x32-20", "seed": 3, "calls": 1}
    second = backend.to_numpy(stream.bits((4,)))
    again = backend.random(999)
    again.set_state(state)
    np.testing.assert_array_equal(backend.to_numpy(again.bits((4,))), second)
    assert not np.array_equal(first, second)
    for bad in ({"generator": "threefry2x32-20", "seed": -1, "calls": 0}, {"kind": "host"}, None,
                {"generator": "threefry2x32-20", "seed": 1, "calls": True}):
        with pytest.raises(ValueError, match="random stream"):
            again.set_state(bad)
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*64\)"):
        backend.random(2 ** 64)
    assert 0 <= backend.random().seed < 2 ** 64                   # None: a fresh seed, kept in the state


# == statistics of 10**6 draws ===========================================================
N_DRAWS = 10 ** 6


def chi_square_limit(dof: int, z: float = 5.0) -> float:
    """The chi-square value that a true distribution exceeds with probability ~3e-7 (z = 5 sigma;
    Wilson-Hilferty). The draws are fixed by their seeds, so a pass is a pass for good."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def chi_square(counts, expected) -> float:
    counts = np.asarray(counts, dtype=np.float64)
    return float(((counts - expected) ** 2 / expected).sum())


def statistics(words, nxt, later_call, other_seed) -> dict:
    """{test name: (chi-square, degrees of freedom)} for 32-bit words and three companions: the
    next element, the same element one call later, the same element under the next seed."""
    results = {}
    ones = np.array([((words >> bit) & 1).sum() for bit in range(32)])
    results["each bit is 1 half the time"] = (chi_square(ones, len(words) / 2) * 2, 32)  # 2 cells per bit
    results["the top byte is uniform"] = (chi_square(np.bincount(words >> 24, minlength=256), len(words) / 256), 255)
    for name, other in (("next element", nxt), ("next call", later_call), ("next seed", other_seed)):
        pairs = (words >> 28) * 16 + (other >> 28)                  # top 4 bits of both: 256 cells
        results[f"independent of the {name}"] = (chi_square(np.bincount(pairs, minlength=256),
                                                            len(words) / 256), 255)
        agree = np.array([(((words ^ other) >> bit) & 1).sum() for bit in range(32)])   # bit i against bit i
        results[f"bits independent of the {name}'s"] = (chi_square(agree, len(words) / 2) * 2, 32)
    return results


def failures(results) -> list[str]:
    return [f"{name}: chi-square {value:.1f} > {chi_square_limit(dof):.1f} ({dof} dof)"
            for name, (value, dof) in results.items() if value > chi_square_limit(dof)]


def test_the_bits_pass_chi_square_tests_over_a_million_draws():
    words = random_bits(np, "cpu", 2024, 7, (N_DRAWS + 1,))
    found = statistics(words[:-1], words[1:], random_bits(np, "cpu", 2024, 8, (N_DRAWS,)),
                       random_bits(np, "cpu", 2025, 7, (N_DRAWS,)))
    assert not failures(found), failures(found)


def test_the_chi_square_tests_catch_a_weak_generator():
    """A multiplicative hash (index * 2654435761 mod 2**32) looks random bit by bit but not pair by pair."""
    index = np.arange(N_DRAWS + 1, dtype=np.int64)
    weak = (index * 2654435761) & WORD
    found = failures(statistics(weak[:-1], weak[1:], (weak[:-1] + 12345) & WORD, weak[:-1] ^ 1))
    assert any("independent of the next element" in line for line in found), found


def test_dropout_keeps_one_minus_p_of_a_million_entries():
    for p in (0.1, 0.5, 0.9):
        drop = bp.Dropout(p, seed=11)
        kept = float((drop(np.ones((1000, 1000), dtype=np.float32)) != 0).mean())
        sigma = math.sqrt(p * (1 - p) / N_DRAWS)
        assert abs(kept - (1 - p)) < 5 * sigma, f"p={p}: kept {kept}"


# == Dropout: the same masks everywhere, a state of two integers ==========================
def masks(spec, seed=4, steps=3, shape=(32, 20), p=0.3, dtype="float32"):
    drop = bp.Dropout(p, seed=seed).astype(dtype).to(spec)
    ones = drop.device.asarray(np.ones(shape, dtype=dtype))
    return [host(drop.device, drop(ones)) for _ in range(steps)]


def test_dropout_masks_are_bit_identical_on_every_backend(backend):
    for dtype in ("float32", "float64"):
        for expected, got in zip(masks("numpy", dtype=dtype), masks(backend.spec, dtype=dtype), strict=True):
            np.testing.assert_array_equal(got, expected)


def test_dropout_resumes_copies_and_moves_without_replaying():
    drop = bp.Dropout(0.5, seed=8)
    x = np.ones((6, 5), dtype=np.float32)
    for _ in range(1000):
        drop(x)
    state = drop.random_state()
    assert state == {"generator": "threefry2x32-20", "seed": 8, "calls": 1000}
    twin = copy.deepcopy(drop)
    fresh = bp.Dropout(0.5, seed=8)
    fresh.set_random_state(state)
    expected = drop(x)
    np.testing.assert_array_equal(twin(x), expected)
    np.testing.assert_array_equal(fresh(x), expected)
    for spec in CPU_SPECS:                            # moving the layer does not restart its masks
        moved = copy.deepcopy(drop).to(spec)
        np.testing.assert_array_equal(host(moved.device, moved(x)), host(drop.device, copy.deepcopy(drop)(x)))
    unseeded = bp.Dropout(0.5)
    assert 0 <= unseeded.random_state()["seed"] < 2 ** 64 and unseeded.random_state()["calls"] == 0
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*64\)"):
        bp.Dropout(0.5, seed=2 ** 64)
    with pytest.raises(ValueError, match="random stream"):
        fresh.set_random_state({"generator": "threefry2x32-20", "seed": 8, "calls": -5})


def test_training_with_dropout_is_the_same_on_every_backend(backend):
    """float64 training with Dropout: the masks are equal bit for bit, so the runs are equal bit for
    bit wherever the arithmetic is NumPy's (numpy, array_api_strict and its second device; with the
    NumPy backend's ones @ x column sums off, backends.portable_only(), as they add in BLAS's order),
    and match to rounding on torch (its own matmuls and reductions)."""
    X, y = bp.data.moons(64, noise=0.2, seed=1)
    found = {}
    for spec in ("numpy", backend.spec):
        model = bp.Sequential(bp.Linear(2, 16, seed=0), bp.ReLU(), bp.Dropout(0.4, seed=3),
                              bp.Linear(16, 1, seed=1)).astype("float64").to(spec)
        with backends.portable_only():
            hist = bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.1), X, y,
                          epochs=3, batch_size=16, seed=0, progress=False)
        found[spec] = (model.state_dict(), hist["loss"], model[2].random_state())
    (params, losses, state), (got_params, got_losses, got_state) = found["numpy"], found[backend.spec]
    assert got_state == state == {"generator": "threefry2x32-20", "seed": 3, "calls": 12}
    exact = backend.name in ("numpy", "array_api_strict")
    for name, value in params.items():
        if exact:
            np.testing.assert_array_equal(got_params[name], value, err_msg=name)
        else:
            np.testing.assert_allclose(got_params[name], value, rtol=1e-12, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(got_losses, losses, rtol=0 if exact else 1e-12)


def test_a_checkpoint_from_before_the_generator_loads_and_says_the_masks_restart(tmp_path):
    model = bp.Sequential(bp.Linear(3, 4, seed=0), bp.Dropout(0.5, seed=6), bp.Linear(4, 1, seed=1))
    model(np.ones((2, 3), dtype=np.float32))
    path, old = tmp_path / "new.bpc", tmp_path / "old.bpc"
    bp.save_checkpoint(path, model=model, epoch=1)
    arrays, header = read_file(path)
    assert header["random_streams"] == {"1": {"generator": "threefry2x32-20", "seed": 6, "calls": 1}}
    header["random_streams"]["1"] = {"kind": "torch", "device": "cpu", "state": [1, 2, 3]}   # as bpcore wrote then
    write_file(old, arrays, {k: v for k, v in header.items() if k not in (
        "format", "format_version", "bpcore_version", "tensors", "payload_bytes", "payload_sha256")})
    with pytest.warns(CheckpointWarning, match=r"layer '1' .* older bpcore .* restart from its seed"):
        loaded = bp.load_checkpoint(old)["model"]
    assert loaded[1].random_state() == {"generator": "threefry2x32-20", "seed": 6, "calls": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bp.load_checkpoint(path)["model"][1].random_state()["calls"] == 1


def test_a_draw_has_a_key_of_its_own():
    keys = {call_key(5, call) for call in range(1000)} | {call_key(seed, 0) for seed in range(1000)}
    assert len(keys) == 1999                                       # (5, 0) is in both sets
