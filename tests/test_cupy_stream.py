"""The CuPy random stream's position (resume, deepcopy), checked on the CPU with a stand-in cupy.

No GPU here: a fake ``cupy.random.RandomState`` (NumPy's generator, seeded the same way) stands
in for curand. What is tested is bpcore's part: that a resumed or copied stream repeats exactly
the draws of the original (same calls, same sizes, same dtypes) from the same seed, so any
deterministic generator, curand's included, ends at the same position.
"""
from __future__ import annotations

import contextlib
import copy
import types

import numpy as np
import pytest

from backends._cupy import CupyRandom


class FakeRandomState:
    instances = 0

    def __init__(self, seed):
        FakeRandomState.instances += 1
        self._rng = np.random.default_rng(seed)
        self._lock = __import__("threading").Lock()          # as CuPy 14's: deepcopy cannot copy it

    def random_sample(self, size, dtype):
        return self._rng.random(size, dtype=dtype)

    def standard_normal(self, size, dtype):
        return self._rng.standard_normal(size, dtype=dtype)


@pytest.fixture
def backend():
    cupy = types.SimpleNamespace(random=types.SimpleNamespace(RandomState=FakeRandomState))
    return types.SimpleNamespace(cupy=cupy, device=contextlib.nullcontext())


def _draw_some(stream):
    for shape in [(4, 3), (4, 3), (4, 3), (2, 3)]:          # full batches, then a smaller last one
        stream.uniform(shape, "float32")
    stream.normal((5,), "float64")


def test_a_resumed_stream_continues_where_the_saved_one_was(backend):
    original = CupyRandom(backend, seed=7)
    _draw_some(original)
    state = original.get_state()
    assert state["draws"] == [["uniform", 12, "float32", 3], ["uniform", 6, "float32", 1],
                              ["normal", 5, "float64", 1]]              # run-length coded
    resumed = CupyRandom(backend, seed=123)                # whatever its own seed: the state decides
    resumed.set_state(state)
    for _ in range(3):
        np.testing.assert_array_equal(resumed.uniform((4, 3), "float32"), original.uniform((4, 3), "float32"))
    np.testing.assert_array_equal(resumed.normal((3,), "float64"), original.normal((3,), "float64"))


def test_a_deep_copy_is_a_fresh_generator_at_the_same_position(backend):
    original = CupyRandom(backend, seed=3)
    _draw_some(original)
    twin = copy.deepcopy(original)                        # a lock inside: a plain deepcopy would fail
    assert twin._state is not original._state
    np.testing.assert_array_equal(twin.uniform((6,), "float32"), original.uniform((6,), "float32"))
    twin.uniform((6,), "float32")                          # the copy moves on alone
    assert len(twin.get_state()["draws"]) == len(original.get_state()["draws"])
    assert twin.get_state()["draws"][-1][3] == original.get_state()["draws"][-1][3] + 1


def test_a_stream_without_a_seed_is_still_resumable(backend):
    original = CupyRandom(backend, seed=None)
    original.uniform((3,), "float32")
    resumed = CupyRandom(backend, seed=None)
    resumed.set_state(original.get_state())
    np.testing.assert_array_equal(resumed.uniform((3,), "float32"), original.uniform((3,), "float32"))


@pytest.mark.parametrize("state", [
    {"kind": "host", "state": {}},
    {"kind": "cupy", "seed": "7", "draws": []},
    {"kind": "cupy", "seed": 7, "draws": [["uniform", 2 ** 40, "float32", 1]]},    # a huge allocation
    {"kind": "cupy", "seed": 7, "draws": [["uniform", 4, "float32", 10 ** 9]]},    # a replay without end
    {"kind": "cupy", "seed": 7, "draws": [["gamma", 4, "float32", 1]]},
    {"kind": "cupy", "seed": 7, "draws": [["uniform", 4, "int8", 1]]},
])
def test_a_bad_state_is_refused_before_anything_is_drawn(backend, state):
    stream = CupyRandom(backend, seed=1)
    made = FakeRandomState.instances
    with pytest.raises(ValueError):
        stream.set_state(state)
    assert FakeRandomState.instances == made and stream.get_state()["seed"] == 1
