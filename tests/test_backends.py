"""The backend registry: device strings, availability, errors, moving data, random numbers."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import backends
import bpcore as bp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_numpy_and_strict_are_always_available():
    available = backends.available()
    assert "numpy" in available
    assert "array_api_strict" in available


def test_cpu_is_numpy():
    be = backends.get("cpu")
    assert be is backends.get("numpy")
    assert (be.name, be.kind) == ("numpy", "cpu")


def test_same_device_gives_the_same_backend_object():
    torch = pytest.importorskip("torch")
    del torch
    assert backends.get("torch") is backends.get("torch:cpu")
    assert backends.get("torch").kind == "cpu"


def test_unknown_spec_lists_known_names():
    with pytest.raises(ValueError) as info:
        backends.get("tpu9")
    message = str(info.value)
    assert "tpu9" in message
    for name in ("cpu", "cuda", "numpy", "torch", "cupy", "array_api_strict"):
        assert name in message


def test_non_string_spec_is_a_type_error():
    with pytest.raises(TypeError, match="device must be a string"):
        backends.get(3)


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cupy", "cupy:1"])
def test_cuda_without_cupy_or_gpu_says_why_and_how_to_fix(spec):
    reason = backends.status().get("cupy")
    if reason is None:
        pytest.skip("CuPy and a GPU are usable here")
    with pytest.raises(backends.BackendUnavailableError) as info:
        backends.get(spec)
    message = str(info.value)
    if "not installed" in message:
        assert 'pip install -e ".[cuda12]"' in message
    else:
        assert "GPU" in message


def test_cuda_device_must_be_an_index():
    with pytest.raises(ValueError, match="GPU index"):
        backends.get("cuda:x")


def test_status_gives_a_reason_for_every_unusable_backend():
    for spec, reason in backends.status().items():
        assert reason is None or (isinstance(reason, str) and reason)
        assert (reason is None) == (spec in backends.available())


def test_round_trip_keeps_values_and_dtype(backend, rng):
    for dtype in ("float32", "float64", "int64"):
        host = (rng.standard_normal((3, 4)) * 10).astype(dtype)
        on_device = backend.asarray(host)
        assert backend.owns(on_device)
        back = backend.to_numpy(on_device)
        assert back.dtype == host.dtype
        np.testing.assert_array_equal(back, host)


def test_to_numpy_owns_its_memory(backend):
    host = np.arange(6.0)
    on_device = backend.asarray(host, copy=True)
    back = backend.to_numpy(on_device)
    back[0] = 99.0
    assert backend.to_numpy(on_device)[0] == 0.0
    assert host[0] == 0.0


def test_asarray_casts_on_request(backend):
    on_device = backend.asarray(np.arange(3), dtype="float32")
    assert backend.to_numpy(on_device).dtype == np.float32


def test_backend_of_finds_the_owner(backend):
    array = backend.asarray(np.zeros(2))
    assert backends.backend_of(array) is backend
    with pytest.raises(TypeError, match="not an array"):
        backends.backend_of([1, 2])


def test_random_numbers_are_seeded_and_on_device(backend):
    first = backend.random(7).uniform((1000,), "float32")
    again = backend.random(7).uniform((1000,), "float32")
    other = backend.random(8).uniform((1000,), "float32")
    assert backend.owns(first)
    a, b, c = (backend.to_numpy(x) for x in (first, again, other))
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0.0 <= a.min() and a.max() < 1.0
    assert abs(a.mean() - 0.5) < 0.05
    normal = backend.to_numpy(backend.random(7).normal((4000,), "float64"))
    assert normal.dtype == np.float64
    assert abs(normal.mean()) < 0.1 and abs(normal.std() - 1.0) < 0.1


def test_synchronize_returns(backend):
    assert backend.synchronize() is None


def test_register_a_user_backend():
    base = backends.get("numpy")

    class Tagged(type(base)):
        name = "tagged"

        def __init__(self):
            super().__init__()
            self.spec = "tagged"

    backends.register("tagged", lambda device: Tagged())
    try:
        _check_tagged(Tagged)
    finally:
        backends.unregister("tagged")
    assert "tagged" not in backends.available()
    with pytest.raises(ValueError, match="unknown device"):
        backends.get("tagged")


def _check_tagged(Tagged):
    be = backends.get("tagged")
    assert be.spec == "tagged"
    assert "tagged" in backends.available()
    model = bp.mlp([2, 3, 1], seed=0).to("tagged")
    assert model.device is be
    with pytest.raises(ValueError, match="already registered"):
        backends.register("tagged", lambda device: Tagged())
    with pytest.raises(ValueError, match="reserved"):
        backends.register("cuda", lambda device: Tagged())


def test_register_refuses_bad_arguments():
    with pytest.raises(ValueError):
        backends.register("a:b", lambda device: None)
    with pytest.raises(TypeError):
        backends.register("notcallable", 42)


def test_an_unrelated_backends_package_is_refused(tmp_path):
    fake = tmp_path / "backends"
    fake.mkdir()
    (fake / "__init__.py").write_text("VERSION = 'someone else'\n")
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        sys.path.insert(1, {REPO!r})
        import bpcore
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "not bpcore's backend registry" in result.stderr
    assert "pip uninstall backends" in result.stderr


def test_zero_dimensional_arrays_stay_zero_dimensional(backend):
    assert tuple(backend.asarray(np.float32(2.0)).shape) == ()


def test_replacing_a_backend_updates_its_aliases():
    original = backends.get("cpu")
    factory = type(original)
    backends.register("numpy", lambda device: factory(), replace=True)
    try:
        assert backends.get("cpu") is backends.get("numpy")
        assert backends.get("cpu") is not original
    finally:
        from backends._numpy import make_numpy
        backends.register("numpy", make_numpy, replace=True)


def test_the_models_device_is_made_current_for_every_step():
    """What makes cuda:N work on CuPy (which computes on the current device), checked with a
    NumPy backend that counts how often its device is entered."""
    import contextlib

    base = type(backends.get("numpy"))
    entered = []

    class Counting(base):
        name = "counting"

        def __init__(self):
            super().__init__()
            self.spec = "counting"

        def activate(self):
            entered.append(1)
            return contextlib.nullcontext()

    backends.register("counting", lambda device: Counting())
    try:
        model = bp.mlp([2, 3, 1], seed=0).to("counting")
        X, y = np.ones((4, 2), dtype=np.float32), np.zeros((4, 1), dtype=np.float32)
        for call in (lambda: model(X),
                     lambda: bp.MSELoss().forward(model(X), y),
                     lambda: bp.optim.SGD(model.parameters(), lr=0.1).step(),
                     lambda: bp.predict(model, X),
                     lambda: bp.fit(model, bp.MSELoss(), bp.optim.SGD(model.parameters(), lr=0.1), X, y,
                                    progress=False)):
            entered.clear()
            call()
            assert entered, call
    finally:
        backends.unregister("counting")


def test_a_hidden_backend_is_unusable_for_the_run(monkeypatch):
    """BPCORE_HIDE_BACKENDS (set by `BPCORE_TORCH=none bash ci/test.sh`) removes a backend from a run."""
    monkeypatch.setenv("BPCORE_HIDE_BACKENDS", "array_api_strict, torch")
    monkeypatch.setattr(backends._registry, "_CACHE", {})
    assert "array_api_strict" not in backends.available() and "numpy" in backends.available()
    assert "hidden for this run" in backends.status()["array_api_strict"]
    with pytest.raises(backends.BackendUnavailableError, match="BPCORE_HIDE_BACKENDS"):
        backends.get("array_api_strict")


@pytest.mark.parametrize("name", ["sum", "max", "min", "astype"])
def test_numpy_fast_paths_equal_array_api_compat(name):
    """The NumPy backend's namespace swaps a few of array_api_compat.numpy's functions for faster
    calls (backends/_numpy.py, FAST_PATHS); each gives the same values, dtype and shape."""
    import array_api_compat.numpy as compat

    from backends._numpy import FAST_PATHS, column_sums_by_matvec

    xp = backends.get("numpy").xp
    assert getattr(xp, name) is FAST_PATHS[name]
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((2, 3, 4)),
              rng.integers(-9, 9, (4, 6)).astype(np.int32), rng.integers(0, 9, (7,)),
              rng.standard_normal((3, 4)) > 0, np.asarray(2.5, dtype=np.float32),
              np.asarray([[np.nan, 1.0], [2.0, 3.0]])]
    if name == "astype":
        cases = [((x, dtype), {"copy": copy}) for x in arrays
                 for dtype in (np.float32, np.float64, np.int64, np.bool_) for copy in (True, False)]
    else:
        cases = [((x,), {"axis": axis, "keepdims": keepdims}) for x in arrays if x.size
                 for axis in [None] + list(range(-x.ndim, x.ndim)) + ([(0, x.ndim - 1)] if x.ndim > 1 else [])
                 for keepdims in (False, True)]
        if name == "sum":
            cases += [((x,), {"axis": None, "dtype": np.float64}) for x in arrays]
            # column sums of a batch (a bias gradient) as ones @ x: narrow matrices only, C order
            batches = [rng.standard_normal((400, 16)).astype(np.float32), rng.standard_normal((64, 256)),
                       rng.standard_normal((8, 300)).astype(np.float32),
                       np.asfortranarray(rng.standard_normal((50, 4)))]
            cases += [((x,), {"axis": axis, "keepdims": keepdims}) for x in batches for axis in (0, 1, -2)
                      for keepdims in (False, True)]
            assert [column_sums_by_matvec(x) for x in batches] == [True, True, False, False]
            assert not column_sums_by_matvec(np.zeros((9, 1), np.float32))
            assert not column_sums_by_matvec(np.zeros((9, 4), np.int64))
            assert not column_sums_by_matvec(np.zeros((9, 4), np.float16))
    for args, kwargs in cases:
        with np.errstate(invalid="ignore"):            # NaN cast to an integer: both give the same junk
            ours, theirs = getattr(xp, name)(*args, **kwargs), getattr(compat, name)(*args, **kwargs)
        assert np.asarray(ours).dtype == np.asarray(theirs).dtype, (name, args[0].dtype, kwargs)
        assert np.shape(ours) == np.shape(theirs), (name, args[0].shape, kwargs)
        if name == "sum" and kwargs.get("axis") == 0 and column_sums_by_matvec(args[0]):   # BLAS's order
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * args[0].shape[0])
        else:
            np.testing.assert_array_equal(ours, theirs)
    if name == "astype":
        x = arrays[0]
        assert xp.astype(x, np.float32, copy=False) is x
        assert xp.astype(x, np.float32) is not x
        with pytest.raises(ValueError, match="device"):
            xp.astype(x, np.float64, device="cuda")


def test_constant_and_isdtype_are_remembered_per_dtype(backend):
    xp = backend.xp
    for dtype in (xp.float32, xp.float64):
        first = backend.constant(1e-12, dtype)
        assert backend.constant(1e-12, dtype) is first
        assert first.dtype == dtype and tuple(first.shape) == ()
        assert float(backend.to_numpy(first)) == float(np.asarray(1e-12, dtype=backend.to_numpy(first).dtype))
    assert backend.constant(0.0, xp.float32) is not backend.constant(0.0, xp.float64)
    for dtype, kind in [(xp.float32, "real floating"), (xp.int64, "integral"), (xp.bool, "bool"),
                        (xp.int32, "real floating"), (xp.float64, ("integral", "bool"))]:
        assert backend.isdtype(dtype, kind) == bool(xp.isdtype(dtype, kind))
        assert backend.isdtype(dtype, kind) == bool(xp.isdtype(dtype, kind))     # remembered, same answer
