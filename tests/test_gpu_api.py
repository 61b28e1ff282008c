"""CuPy's and torch.cuda's API, checked without a GPU: every name bpcore calls, with what it passes.

No GPU is lent to this project, so bpcore's CUDA code is written by construction; an API change in
a CuPy or PyTorch release would otherwise show first on a GPU. Here the installed CuPy (CI installs
cupy-cuda12x and NCCL: ``BPCORE_GPU_API=1 bash ci/test.sh``) and torch are probed
(tests/api_probe.py): bpcore's own CUDA code runs against them, each name it reads must exist and
each call must bind to the real signature. ``BPCORE_CHECK_GPU_API=1`` turns a missing CuPy into a
failure instead of a skip.
"""
from __future__ import annotations

import contextlib
import os
import sys
import types

import numpy as np
import pytest
from api_probe import LIVE, Instance, Probe, check_call

import backends
import bpcore as bp
from backends import _cupy, _torch
from backends._numpy import NumpyBackend

try:
    import cupy

    import array_api_compat.cupy  # noqa: F401  (imported before cupy is probed: it star-imports cupy)
except ImportError as error:
    cupy, CUPY_MISSING = None, f"CuPy is not installed ({error}): pip install -e '.[gpu-api]'"
else:
    CUPY_MISSING = None
needs_cupy = pytest.mark.skipif(cupy is None and os.environ.get("BPCORE_CHECK_GPU_API") != "1",
                                reason=CUPY_MISSING or "")


def require_cupy():
    if cupy is None:                     # BPCORE_CHECK_GPU_API=1: CI installed it, so this is a failure
        pytest.fail(f"BPCORE_CHECK_GPU_API=1 but {CUPY_MISSING}")


def gpu_present() -> bool:
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 (no driver: what this machine is expected to say)
        return False


class FakeCupyArray:
    """What the probed cupy.asarray / cupy.array hand back: host values, CuPy's attributes."""

    def __init__(self, host):
        self.host = np.asarray(host)
        self.dtype, self.size = self.host.dtype, int(self.host.size)
        self.data = types.SimpleNamespace(ptr=id(self) % 2 ** 40)
        self.device = types.SimpleNamespace(id=1)


# == CuPy installed, no GPU: still reported unusable =========================================
@needs_cupy
def test_installed_cupy_without_a_gpu_is_reported_unusable_with_the_reason():
    require_cupy()
    if gpu_present():
        pytest.skip("a CUDA GPU is present: CuPy is usable here")
    assert "cupy" not in backends.available() and not any("cuda" in spec for spec in backends.available())
    reason = backends.status()["cupy"]
    assert "CuPy is installed but no CUDA GPU is usable here" in reason, reason
    with pytest.raises(backends.BackendUnavailableError, match="no CUDA GPU is usable here"):
        backends.get("cuda")


# == the cupy backend ========================================================================
@needs_cupy
def test_the_cupy_backend_calls_names_that_exist_with_those_arguments(monkeypatch):
    require_cupy()
    log, fakes = [], {}
    fakes.update({
        "cupy.cuda.runtime.getDeviceCount": lambda: 2,
        "cupy.cuda.Device": lambda device=None: Instance(cupy.cuda.Device, "cupy.cuda.Device", log, fakes, id=device),
        "cupy.asarray": lambda a, dtype=None, **_: FakeCupyArray(np.asarray(a, dtype=dtype)),
        "cupy.array": lambda obj, dtype=None, copy=True, **_: FakeCupyArray(np.array(obj, dtype=dtype)),
        "cupy.asnumpy": lambda a, **_: a.host.copy(),
    })
    monkeypatch.setitem(sys.modules, "cupy", Probe(cupy, "cupy", log, fakes))
    be = _cupy.make_cupy("1")                        # GPU 1 of the 2 the probe reports
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    moved, copied = be.asarray(host), be.asarray(host, dtype="float64", copy=True)
    np.testing.assert_array_equal(be.to_numpy(moved), host)
    assert copied.host.dtype == np.float64
    be.synchronize()
    with be.activate():
        pass
    assert be.owns(moved) is False                   # isinstance against the real cupy.ndarray
    called = [path for path, _, _ in log]
    for name in ("cupy.cuda.runtime.getDeviceCount", "cupy.cuda.Device", "cupy.asarray", "cupy.array",
                 "cupy.asnumpy", "cupy.cuda.Device.synchronize", "cupy.cuda.Device.__enter__"):
        assert name in called, name
    assert ("cupy.cuda.Device", (1,), {}) in log
    assert backends._registry._spec_of_device_object(cupy.cuda.Device(1)) == "cupy:1"
    with pytest.raises(backends.BackendUnavailableError, match="GPU 2 does not exist"):
        _cupy.make_cupy("2")


@needs_cupy
def test_the_nccl_reducer_calls_cupys_nccl_as_it_is(monkeypatch):
    """get_unique_id runs for real (it needs no GPU: bytes in CuPy 14); the communicator and the
    all-reduce are checked against cupy.cuda.nccl's declared signatures and C types."""
    require_cupy()
    from cupy.cuda import nccl

    if not getattr(nccl, "available", False):
        pytest.fail("cupy.cuda.nccl cannot load NCCL: pip install 'nvidia-nccl-cu12' (bpcore[gpu-api])")
    from bpcore.distributed.nccl import NcclReducer

    log, fakes = [], {}
    fakes.update({
        "cupy.cuda.nccl.get_unique_id": LIVE,
        "cupy.cuda.nccl.NcclCommunicator": lambda ndev, commId, rank, config=None: Instance(  # noqa: N803
            nccl.NcclCommunicator, "cupy.cuda.nccl.NcclCommunicator", log, fakes),
        "cupy.ascontiguousarray": lambda a, dtype=None: a,
        "cupy.cuda.get_current_stream": lambda device_id=-1: cupy.cuda.Stream.null,
    })
    monkeypatch.setitem(sys.modules, "cupy", Probe(cupy, "cupy", log, fakes))
    monkeypatch.setitem(sys.modules, "cupy.cuda", Probe(cupy.cuda, "cupy.cuda", log, fakes))
    backend = types.SimpleNamespace(activate=contextlib.nullcontext)
    reducer = NcclReducer(bp.distributed.init(), backend)
    flat = FakeCupyArray(np.ones(10, dtype=np.float32))
    assert reducer.sum(flat, backend) is flat
    (_, made, _), = [entry for entry in log if entry[0] == "cupy.cuda.nccl.NcclCommunicator"]
    assert made[0] == 1 and made[2] == 0 and isinstance(made[1], bytes)
    (_, reduced, _), = [entry for entry in log if entry[0] == "cupy.cuda.nccl.NcclCommunicator.allReduce"]
    assert reduced[1:] == (flat.data.ptr, flat.data.ptr, 10, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 0)


# == the Array API namespace on the hot path ====================================================
class RecordingNamespace:
    """A namespace whose function calls are logged as (name, number of positional args, keywords)."""

    def __init__(self, real, log, prefix=""):
        self._real, self._log, self._prefix = real, log, prefix

    def __getattr__(self, name):
        value = getattr(self._real, name)
        if isinstance(value, types.ModuleType):
            return RecordingNamespace(value, self._log, f"{self._prefix}{name}.")
        if not callable(value) or isinstance(value, type):
            return value

        def record(*args, **kwargs):
            self._log.add((self._prefix + name, len(args), tuple(sorted(kwargs))))
            return value(*args, **kwargs)
        return record


class RecordingBackend(NumpyBackend):
    name = "xp_recorder"

    def __init__(self, log):
        super().__init__()
        self.xp, self.spec = RecordingNamespace(self.xp, log), "xp_recorder"


def hot_path_calls() -> set:
    """Every namespace call of every layer, loss and optimizer in a forward, backward and step, and
    of fit with metrics and validation, evaluate and predict: what runs on CuPy through
    array_api_compat.cupy."""
    log = set()
    recorder = RecordingBackend(log)         # given as an object: registering would empty the registry's cache
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 4)).astype("float32"), rng.integers(0, 3, 32)
    dense = bp.Sequential(bp.Linear(4, 8, seed=0), bp.BatchNorm1d(8), bp.ReLU(), bp.Dropout(0.3, seed=1),
                          bp.LayerNorm(8), bp.GELU(), bp.Residual(bp.Sequential(bp.Linear(8, 8, seed=2),
                                                                                bp.Tanh())),
                          bp.LeakyReLU(0.1), bp.Sigmoid(), bp.Identity(), bp.Linear(8, 3, seed=3))
    images = rng.standard_normal((8, 1, 8, 8)).astype("float32")
    conv = bp.Sequential(bp.Conv2d(1, 2, 3, padding=1, seed=0), bp.BatchNorm2d(2), bp.ReLU(), bp.MaxPool2d(2),
                         bp.AvgPool2d(2), bp.AdaptiveAvgPool2d(1), bp.Flatten(), bp.Linear(2, 3, seed=1),
                         bp.Softmax())
    for optimizer in (lambda p: bp.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
                      lambda p: bp.optim.Adam(p), lambda p: bp.optim.AdamW(p), lambda p: bp.optim.RMSprop(p)):
        model = dense.to(recorder)
        bp.fit(model, bp.SoftmaxCrossEntropyLoss(), optimizer(model.parameters()), X, y, epochs=1,
               batch_size=16, validation_data=(X, y), metrics=["accuracy"], progress=False)
    bp.optim.clip_grad_norm_(model.parameters(), 1.0)
    bp.optim.clip_grad_value_(model.parameters(), 1.0)
    bp.evaluate(model, bp.SoftmaxCrossEntropyLoss(), X, y, metrics=["accuracy"])
    bp.predict(model, X)
    conv = conv.to(recorder)
    out = conv(images)
    conv.backward(out)
    pair = bp.mlp([4, 1], seed=0).to(recorder)
    for loss_fn, target in ((bp.MSELoss(), y[:, None] * 1.0), (bp.BCEWithLogitsLoss(), y[:, None] % 2 * 1.0)):
        loss_fn.forward(pair(X), pair.device.asarray(target.astype("float32")))
        pair.backward(loss_fn.backward())
    probability = bp.Sequential(bp.Linear(4, 1, seed=0), bp.Sigmoid()).to(recorder)
    loss_fn = bp.BCELoss()
    loss_fn.forward(probability(X), probability.device.asarray((y[:, None] % 2).astype("float32")))
    probability.backward(loss_fn.backward())
    return log


@needs_cupy
def test_every_namespace_function_on_the_hot_path_exists_in_array_api_compat_cupy():
    require_cupy()
    import array_api_compat.cupy as cupy_xp

    calls = hot_path_calls()
    assert {"sum", "exp", "arange", "stack", "reshape", "concat"} <= {name for name, _, _ in calls}, calls
    problems = []
    for name, n_args, keywords in sorted(calls):
        function = cupy_xp
        try:
            for part in name.split("."):
                function = getattr(function, part)
            check_call(function, f"array_api_compat.cupy.{name}", (None,) * n_args, dict.fromkeys(keywords))
        except (AttributeError, AssertionError) as error:
            problems.append(f"{name} ({n_args} positional, keywords {keywords}): {error}")
    assert not problems, "\n".join(problems)


@needs_cupy
def test_the_hand_written_cupy_step_of_the_benchmark_calls_what_cupy_has():
    """benchmarks/bench_step.py runs its baseline on CuPy with out= everywhere: NumPy's names."""
    require_cupy()
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "bench_step.py")
    spec = importlib.util.spec_from_file_location("bench_step_api", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    calls = set()
    for name in ("spiral", "mnist"):
        sizes, activation, batch = bench.NETS[name]
        X, y = bench.make_data(sizes, 8)
        weights = [(layer.W.data.copy(), layer.b.data.copy()) for layer in bench.bpcore_model(sizes, activation).layers
                   if isinstance(layer, bp.Linear)]
        bench.handwritten_step(RecordingNamespace(np, calls), weights, activation, X, y)()
    problems = []
    for name, n_args, keywords in sorted(calls):
        try:
            check_call(getattr(cupy, name), f"cupy.{name}", (None,) * n_args, dict.fromkeys(keywords))
        except (AttributeError, AssertionError) as error:
            problems.append(str(error))
    assert not problems, "\n".join(problems)
    assert all(hasattr(cupy.ndarray, method) for method in ("max", "sum", "T", "__iadd__", "__isub__"))


# == torch.cuda ===============================================================================
@pytest.mark.skipif("torch" not in backends.available(), reason="torch is not installed")
def test_the_torch_cuda_backend_calls_names_that_exist_with_those_arguments(monkeypatch):
    import torch

    class FakeTensor:
        def __init__(self, host):
            self.host = np.asarray(host)

        def detach(self):
            assert hasattr(torch.Tensor, "detach")
            return self

        def cpu(self):
            assert hasattr(torch.Tensor, "cpu")
            return self

        def numpy(self):
            assert hasattr(torch.Tensor, "numpy")
            return self.host

    log, fakes = [], {"torch.device": LIVE, "torch.cuda.is_available": lambda: True,
                      "torch.cuda.device_count": lambda: 2, "torch.cuda.synchronize": lambda device=None: None,
                      "torch.tensor": lambda data, **_: FakeTensor(data)}
    monkeypatch.setitem(sys.modules, "torch", Probe(torch, "torch", log, fakes))
    be = _torch.make_torch("cuda:1")
    assert (be.kind, be.spec) == ("cuda", "torch:cuda:1")
    host = np.arange(4.0)
    np.testing.assert_array_equal(be.to_numpy(be.asarray(host)), host)
    be.synchronize()
    called = {path: (args, kwargs) for path, args, kwargs in log}
    assert called["torch.cuda.synchronize"] == ((torch.device("cuda", 1),), {})
    assert called["torch.tensor"][1] == {"device": torch.device("cuda", 1)}
    assert "torch.cuda.device_count" in called and "torch.cuda.is_available" in called
    # and what the benchmarks call on CUDA
    for name in ("synchronize", "reset_peak_memory_stats", "max_memory_allocated"):
        check_call(getattr(torch.cuda, name), f"torch.cuda.{name}", (), {})


@needs_cupy
def test_the_probe_catches_a_wrong_keyword_a_missing_name_and_a_wrong_c_type():
    """The premise of the checks above: a call that would fail on a GPU fails here."""
    require_cupy()
    import array_api_compat.cupy as cupy_xp
    from cupy.cuda import nccl

    check_call(cupy_xp.sum, "sum", (None,), {"axis": None, "keepdims": None})
    with pytest.raises(AssertionError, match="keywords"):
        check_call(cupy_xp.sum, "sum", (None,), {"keepdim": None})           # torch's spelling
    with pytest.raises(AssertionError, match="keywords"):
        check_call(cupy.exp, "cupy.exp", (None, None, None), {})             # a ufunc, from its docstring
    with pytest.raises(AssertionError, match="does not exist"):
        Probe(cupy, "cupy", [], {}).cuda.no_such_function()
    if getattr(nccl, "available", False):
        with pytest.raises(AssertionError, match="commId is declared bytes, bpcore passes a tuple"):
            check_call(nccl.NcclCommunicator, "NcclCommunicator", (2, (1, 2, 3), 0), {})   # CuPy 13's id
