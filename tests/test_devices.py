"""Device placement, caught on the CPU: ``array_api_strict:device1`` behaves as CuPy on a second GPU.

CuPy makes arrays and launches kernels on the *current* GPU, so every piece of bpcore that
computes outside ``Backend.activate()`` would put its arrays on GPU 0 of a model on "cuda:1". The
simulated device makes each of those a failure here: arrays made without ``device=`` outside
``activate()`` land on the default device (and cannot be combined with the model's), and a
namespace function or operator given a device1 array outside ``activate()`` raises.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

import backends
import bpcore as bp
from bpcore.training.snapshot import restore, snapshot

SPEC = "array_api_strict:device1"
pytestmark = pytest.mark.skipif(SPEC not in backends.available(), reason="array_api_strict is not installed")


@pytest.fixture
def device1():
    return backends.get(SPEC)


def on_device1(be, array) -> bool:
    return be.owns(array)


def data(n=8, n_in=3):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n_in)).astype("float32"), (rng.random((n, 1)) > 0.5).astype("float32")


# -- the simulation itself ------------------------------------------------------------------------
def test_the_simulated_device_refuses_what_cupy_refuses(device1):
    xp = device1.xp
    a = device1.asarray(np.ones(3, dtype="float32"))
    assert on_device1(device1, a) and backends.backend_of(a) is device1
    # made outside activate(): the default device, as CuPy's "GPU 0"
    assert not on_device1(device1, xp.zeros_like(a)) and not on_device1(device1, xp.astype(a, xp.float64))
    with pytest.raises(RuntimeError, match="outside backend.activate"):
        xp.sum(a)
    with pytest.raises(RuntimeError):       # implicit NumPy conversion, refused as CuPy refuses it
        np.asarray(a)
    with device1.activate():
        assert on_device1(device1, xp.zeros_like(a)) and on_device1(device1, xp.zeros(2))
        assert on_device1(device1, xp.sum(a))
    assert np.array_equal(device1.to_numpy(a), np.ones(3))


OPERATORS = {
    "a + b": lambda a, b: a + b, "2 + a": lambda a, b: 2.0 + a, "a @ b": lambda a, b: a @ b, "-a": lambda a, b: -a,
    "a < b": lambda a, b: a < b, "a ** 2": lambda a, b: a ** 2, "abs(a)": lambda a, b: abs(a),
    "a += b": lambda a, b: a.__iadd__(b), "a[0] = 1": lambda a, b: a.__setitem__(0, 1.0),
    "a[index array]": lambda a, b: a[b > 0.0],
}


@pytest.mark.parametrize("name", list(OPERATORS))
def test_operators_outside_activate_are_refused_as_on_cupy(device1, name):
    a, b = (device1.asarray(np.ones(3, dtype="float32")) for _ in range(2))
    with pytest.raises(RuntimeError, match=r"the operator .* on .*device1.* outside backend.activate"):
        OPERATORS[name](a, b)
    with device1.activate():
        result = OPERATORS[name](a, b)
    assert result is None or on_device1(device1, result)


def test_views_and_host_reads_launch_nothing_and_pass(device1):
    a = device1.asarray(np.arange(6, dtype="float32").reshape(2, 3))
    assert a.T.shape == (3, 2) and a[1:, :2].shape == (1, 2) and float(a[1, 2]) == 5.0
    plain = backends.get("array_api_strict").asarray(np.ones(3))
    assert float((plain + 1.0)[0]) == 2.0                         # the default device is not watched


def test_backend_of_finds_a_device_that_available_does_not_probe():
    """Like an array on "cupy:1" when only "cupy" (GPU 0) is probed; to_host follows."""
    other = backends.get("array_api_strict:device2")
    assert "array_api_strict:device2" not in backends.available()
    array = other.asarray(np.arange(3.0))
    assert backends.backend_of(array) is other
    assert np.array_equal(backends.to_host(array), np.arange(3.0))


def test_spec_of_must_be_callable():
    with pytest.raises(TypeError, match="spec_of"):
        backends.register("spec_of_test", lambda device: None, spec_of="cupy")


# -- every piece of bpcore that runs outside a Sequential ------------------------------------------
def test_astype_and_lazy_grad_stay_on_the_device(device1):
    model = bp.Sequential(bp.Linear(3, 4), bp.ReLU(), bp.Linear(4, 1)).to(SPEC)
    model.astype("float64")
    for p in model.parameters():
        assert on_device1(device1, p.data) and on_device1(device1, p.grad)


def test_accumulate_grad_outside_a_layer(device1):
    p = bp.Linear(3, 2).to(SPEC).W
    p.accumulate_grad(device1.asarray(np.ones((3, 2), dtype="float32")))
    p.accumulate_grad(device1.asarray(np.ones((3, 2), dtype="float32")))
    assert on_device1(device1, p.grad) and np.array_equal(device1.to_numpy(p.grad), np.full((3, 2), 2.0))


# Every layer type called on its own on this device: test_on_the_simulated_second_device in
# tests/test_layer_cases.py (one case per layer configuration, results equal to numpy's).


class Doubled(bp.nn.Layer):
    """A user layer that makes a device array in forward and backward (the current device's, on CuPy)."""

    def forward(self, x):
        x = self.check_input(x)
        self.save_for_backward(shape=tuple(x.shape))
        return x * self.xp.asarray(2.0, dtype=x.dtype, device=x.device)

    def backward(self, grad_out):
        self.check_grad_out(grad_out, self.saved("shape"))
        return grad_out * self.xp.asarray(2.0, dtype=grad_out.dtype)        # made on the current device


def test_a_layer_called_on_its_own_enters_its_device_and_no_class_changes(device1):
    """Moving layers to a device changes no class: a layer on a backend that switches devices gets
    its own device-entering forward/backward (in its __dict__, bound to it), a layer on the CPU
    none. A layer called on its own, outside any model, still computes on its device."""
    methods = {cls: (cls.forward, cls.backward) for cls in (bp.Linear, Doubled)}
    model = bp.Sequential(bp.Linear(3, 3, seed=0), Doubled()).to(SPEC)
    assert {cls: (cls.forward, cls.backward) for cls in methods} == methods
    be = model.device
    out = model.layers[1].forward(model.layers[0].forward(np.ones((2, 3), "float32")))
    assert be.owns(out)
    assert be.owns(model.layers[1].backward(be.asarray(np.ones((2, 3), "float32"))))
    twin = copy.deepcopy(model)                           # the copy's methods are bound to the copy
    assert twin.layers[1].forward.__self__ is twin.layers[1] and be.owns(twin(np.ones((2, 3), "float32")))
    shallow = copy.copy(model.layers[0])
    assert shallow.forward.__self__ is shallow
    model.to("cpu")
    assert not {"forward", "backward", "backward_params"} & set(vars(model.layers[0]))
    assert not {"forward", "backward", "backward_params"} & set(vars(bp.Linear(2, 2)))


def test_clip_functions(device1):
    model = bp.Sequential(bp.Linear(3, 4), bp.Tanh(), bp.Linear(4, 1)).to(SPEC)
    x, y = data()
    loss_fn = bp.BCEWithLogitsLoss()
    loss_fn.forward(model(x), y)
    model.backward(loss_fn.backward())
    total = bp.optim.clip_grad_norm_(model, 1e-3)
    bp.optim.clip_grad_value_(model, 1e-4)
    assert on_device1(device1, total)
    for p in model.parameters():
        assert on_device1(device1, p.grad)
        assert np.abs(device1.to_numpy(p.grad)).max() <= 1e-4


def test_snapshot_restore_and_gradcheck(device1):
    model = bp.Sequential(bp.Linear(3, 4), bp.Dropout(0.3, seed=2), bp.Tanh(), bp.Linear(4, 1)).to(SPEC)
    copies = snapshot(model)
    assert all(on_device1(device1, value) for value in copies.values())
    restore(model, copies)
    assert all(on_device1(device1, p.data) for p in model.parameters())
    x, y = data()
    assert bp.gradcheck(model, bp.BCEWithLogitsLoss(), x, y).passed


def test_flow_recorder_outside_fit(device1):
    model = bp.Sequential(bp.Linear(3, 4, bias=False), bp.Tanh(), bp.Linear(4, 1)).to(SPEC)
    x, y = data()
    recorder = bp.FlowRecorder(x[:2], y[:2])
    recorder.set_context(model, None, None, bp.BCEWithLogitsLoss())
    recorder.record(0)
    snapshot = recorder.snapshots[0]
    assert snapshot["b"][0] == [0.0] * 4
    expected = np.asarray(device1.to_numpy(model.layers[2].W.data), dtype=np.float64)
    np.testing.assert_allclose(snapshot["W"][1], expected, rtol=1e-3)


def test_data_helpers_take_device_arrays_and_give_them_back(device1):
    x, y = data(10)
    X_train, X_test, y_train, y_test = bp.data.train_test_split(device1.asarray(x), device1.asarray(y), 0.2)
    host = bp.data.train_test_split(x, y, 0.2)
    for got, expected in zip((X_train, X_test, y_train, y_test), host):
        assert on_device1(device1, got) and np.array_equal(device1.to_numpy(got), expected)
    scaled, scaled_test = bp.data.standardize(X_train, X_test)
    expected_train, expected_test = bp.data.standardize(host[0], host[1])
    assert on_device1(device1, scaled) and np.allclose(device1.to_numpy(scaled_test), expected_test)
    np.testing.assert_array_equal(device1.to_numpy(scaled), expected_train)
    with pytest.raises(TypeError, match="different backends"):
        bp.data.standardize(X_train, backends.get("array_api_strict").asarray(x))
