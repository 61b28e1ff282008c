"""Every case of tests/layer_cases.py through every generic check, and each check shown able to fail.

gradcheck and the torch oracle run on every backend (the ``backend`` fixture); the simulated
second device and the ONNX export once per case. The torch checks skip when torch is not
installed, the export when onnx/onnxruntime are not.
"""
from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
from helpers import assert_matches_torch, checked_forward_backward, host, tolerance
from layer_cases import EXEMPT, LayerCase, layer_types_without_a_case, normal, params, with_extreme_row
from torch_twins import torch_twin

import backends
import bpcore as bp

DEVICE1 = "array_api_strict:device1"
ONNX_MISSING = (backends.status().get("onnx") or
                next((f"{name} is not installed: pip install -e \".[onnx]\"" for name in ("onnx", "onnxruntime")
                      if importlib.util.find_spec(name) is None), None))


def is_float(x) -> bool:
    return x.dtype.kind == "f"


# -- the checks ---------------------------------------------------------------------------------------
def check_gradients(case: LayerCase, backend, rng) -> None:
    """bp.gradcheck of MSE(layer(x), a random target) in float64: every parameter and the (float)
    input, in order."""
    layer = case.layer().to(backend)
    x = case.input(rng)
    out_shape = tuple(copy.deepcopy(layer)(backend.asarray(x)).shape)
    # rtol 1e-6, ten times stricter than the default: every case here reaches 1e-8 or better
    report = bp.gradcheck(layer, bp.MSELoss(), x, rng.standard_normal(out_shape), rtol=1e-6)
    assert report.passed, f"{case.name}\n{report}"
    inputs = ["input"] if is_float(x) else []          # integer token ids have no gradient
    assert [row.name for row in report.rows] == [name for name, _ in layer.named_parameters()] + inputs


def check_against_torch(case: LayerCase, backend, rng) -> None:
    """Output, dL/dx, every parameter gradient and every buffer equal the torch twin's to 1e-8 (float64)."""
    torch = pytest.importorskip("torch")
    layer = case.layer()
    twin = case.torch(layer)
    twin.module.train(case.mode == "train")
    x = case.input(rng, edge=True)
    out, grad_out, grad_in = checked_forward_backward(layer.to(backend), backend, x, rng.standard_normal)

    x_t = torch.tensor(x, requires_grad=is_float(x))
    out_t = twin.module(x_t)
    out_t.backward(torch.tensor(grad_out))
    assert out.shape == tuple(out_t.shape), f"{case.name}: output shape {out.shape}, torch's {tuple(out_t.shape)}"
    assert np.all(np.isfinite(out)), f"{case.name}: non-finite output"
    assert_matches_torch(out, out_t.detach().numpy(), f"{case.name} output")
    if is_float(x):
        assert np.all(np.isfinite(grad_in)), f"{case.name}: non-finite dL/dx"
        assert_matches_torch(grad_in, x_t.grad.numpy(), f"{case.name} dL/dx")
    names = [name for name, _ in layer.named_parameters()]
    assert sorted(twin.grads) == sorted(names), f"{case.name}: parameters {names}, the twin maps {sorted(twin.grads)}"
    for name, p in layer.named_parameters():
        assert_matches_torch(host(backend, p.grad), twin.grads[name]().detach().numpy(), f"{case.name} dL/d{name}")
    buffers = dict(layer.named_buffers())
    assert sorted(twin.buffers) == sorted(buffers), f"{case.name}: buffers {sorted(buffers)}"
    for name, value in buffers.items():
        assert backend.owns(value), f"{case.name}: buffer {name} left {backend.spec}"
        assert_matches_torch(host(backend, value), twin.buffers[name]().detach().numpy(), f"{case.name} {name}")


def results_on(case: LayerCase, spec: str, x, grad_out=None):
    """{what: array on the backend} after forward and backward on ``spec`` (grad_out drawn from seed 0
    when not given)."""
    be = backends.get(spec)
    layer = case.layer().to(be)
    out = layer(x)                  # a host input: the layer, called on its own, moves it to its device
    if grad_out is None:
        grad_out = np.random.default_rng(0).standard_normal(tuple(out.shape))
    grad_in = layer.backward(be.asarray(grad_out))
    found = {"output": out, "dL/dx": grad_in}
    found.update({f"dL/d{name}": p.grad for name, p in layer.named_parameters()})
    found.update({f"{name} (parameter)": p.data for name, p in layer.named_parameters()})
    found.update(layer.named_buffers())
    return {what: array for what, array in found.items() if array is not None}, grad_out


def check_on_device1(case: LayerCase, rng) -> None:
    """A layer on array_api_strict:device1, called on its own outside any model: every result is on
    the device and equals numpy's (float64)."""
    x = case.input(rng, edge=True)
    expected, grad_out = results_on(case, "numpy", x)
    got, _ = results_on(case, DEVICE1, x, grad_out)
    device1 = backends.get(DEVICE1)
    assert sorted(got) == sorted(expected)
    for what, array in got.items():
        assert device1.owns(array), f"{case.name}: {what} is not on {DEVICE1}"
        np.testing.assert_allclose(device1.to_numpy(array), backends.to_host(expected[what]), **tolerance("float64"),
                                   err_msg=f"{case.name}: {what} on {DEVICE1} differs from numpy")


def check_export(case: LayerCase, dtype: str, rng, tmp_path) -> None:
    """bp.onnx.export, onnx.checker, and onnxruntime at two batch sizes equal to the numpy forward (eval)."""
    import onnx
    import onnxruntime

    layer = case.layer(dtype)
    x = case.input(rng, edge=True)
    x = x.astype(dtype) if is_float(x) else x
    path = tmp_path / f"{case.name}.onnx"
    report = bp.onnx.export(layer, x, path)
    assert report.input_shape == ("batch", *x.shape[1:]) and report.dtype == str(x.dtype)     # int64 for tokens
    assert report.max_difference <= bp.onnx.TOLERANCE[dtype]
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = layer.eval()
    more = case.input(rng, edge=False).astype(x.dtype)
    for batch in (x[:1], np.concatenate([x, more])):          # one dynamic export, several batch sizes
        (got,) = session.run(["output"], {"input": batch})
        expected = model(batch)
        assert got.dtype == expected.dtype and got.shape == expected.shape, case.name
        assert np.all(np.isfinite(got)), f"{case.name}: onnxruntime gave non-finite values"
        np.testing.assert_allclose(got, expected, rtol=bp.onnx.TOLERANCE[dtype], atol=bp.onnx.TOLERANCE[dtype],
                                   err_msg=f"{case.name} {dtype} batch {len(batch)}")


# -- every case through every check --------------------------------------------------------------------
@pytest.mark.parametrize("case", params("gradcheck"))
def test_gradients(case, backend, rng):
    check_gradients(case, backend, rng)


@pytest.mark.parametrize("case", params("torch"))
def test_matches_torch(case, backend, rng):
    check_against_torch(case, backend, rng)


@pytest.mark.skipif(DEVICE1 not in backends.available(), reason="array_api_strict is not installed")
@pytest.mark.parametrize("case", params("device1"))
def test_on_the_simulated_second_device(case, rng):
    check_on_device1(case, rng)


@pytest.mark.skipif(ONNX_MISSING is not None, reason=str(ONNX_MISSING))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", params("onnx"))
def test_exports_to_onnx(case, dtype, rng, tmp_path):
    check_export(case, dtype, rng, tmp_path)


@pytest.mark.parametrize("case", params("gradcheck"))
def test_moves_and_casts_after_a_training_pass(case, rng):
    """After forward and backward, to() and astype() take the layer (nothing it keeps after a pass
    is an array they would refuse or leave behind), and it then computes what it computed before."""
    layer = case.layer()                                     # float64
    x = case.input(rng)
    checked_forward_backward(layer, backends.get("numpy"), x, rng.standard_normal)
    before = copy.deepcopy(layer).eval()(x)
    cast = copy.deepcopy(layer).astype("float32").eval()
    np.testing.assert_allclose(cast(x.astype("float32") if is_float(x) else x), before, rtol=1e-3, atol=1e-3,
                               err_msg=f"{case.name} cast to float32")
    moved = layer.to("array_api_strict").eval()
    after = moved.backend.to_numpy(moved(moved.backend.asarray(x)))
    np.testing.assert_allclose(after, before, rtol=1e-12, atol=1e-12, err_msg=case.name)


def test_every_layer_type_has_a_case():
    types = bp.nn.layer_types()
    missing = layer_types_without_a_case(types)
    assert not missing, f"no case in tests/layer_cases.py for {missing}: add one (its docstring says how)"
    assert set(EXEMPT) <= set(types), "an exemption names a layer type that no longer exists"


# -- each check can fail ------------------------------------------------------------------------------
def test_the_completeness_test_names_a_layer_type_without_a_case():
    class Unlisted(bp.nn.Layer):
        pass

    Unlisted.__module__ = "bpcore.nn.planted"            # as a built-in layer would be
    assert layer_types_without_a_case({**bp.nn.layer_types(), "Unlisted": Unlisted}) == ["Unlisted"]


class TanhMissingSquare(bp.Tanh):
    """A planted bug: dy/dx = 1 - y instead of 1 - y^2."""

    def backward(self, grad_out):
        return grad_out * (1.0 - self.saved("y"))


class ForgetsBiasGradient(bp.Linear):
    """A planted bug: dL/db is never accumulated."""

    def backward(self, grad_out):
        self.W.accumulate_grad(self.saved("x").T @ grad_out)
        return grad_out @ self.W.data.T


class NaiveSigmoid(bp.Sigmoid):
    """A planted bug: 1 / (1 + exp(-x)) overflows at x = -1000."""

    def forward(self, x):
        y = 1.0 / (1.0 + self.xp.exp(-self.check_input(x)))
        self.save_for_backward(y=y)
        return y


class ClipsItsInput(bp.ReLU):
    """A planted bug: the forward writes into its input."""

    def forward(self, x):
        x = self.check_input(x)
        x[x < 0] = 0.0
        return super().forward(x)


class ScalesGradOutInPlace(bp.Tanh):
    """A planted bug: the backward multiplies grad_out in place."""

    def backward(self, grad_out):
        grad_out *= 1.0 - self.saved("y") ** 2
        return grad_out


class OffOnDevice1(bp.Identity):
    """A planted bug: computes something else on the simulated device."""

    def forward(self, x):
        x = super().forward(x)
        return x + 1.0 if self.device.spec == DEVICE1 else x


class OffOnOnnx(bp.Identity):
    """A planted bug: computes something else when traced for ONNX."""

    def forward(self, x):
        x = super().forward(x)
        return x + 1.0 if self.device.name == "onnx" else x


def planted(make, torch=torch_twin, shape=(4, 5)):
    return LayerCase("planted", make, inputs=normal(*shape, scale=2.0), edge_inputs=with_extreme_row(*shape),
                     torch=torch)


def test_the_gradient_check_catches_a_planted_backward_bug(rng):
    with pytest.raises(AssertionError, match="FAIL"):
        check_gradients(planted(TanhMissingSquare), backends.get("numpy"), rng)


@pytest.mark.parametrize("case, match", [
    (planted(TanhMissingSquare), "planted dL/dx differs from torch"),
    (planted(lambda: ForgetsBiasGradient(5, 3, seed=0)), "planted dL/db differs from torch"),
    (planted(lambda: bp.LeakyReLU(0.2), torch=lambda layer: torch_twin(bp.LeakyReLU(0.2 + 1e-6))),
     "planted output differs from torch"),
    (planted(ClipsItsInput), "forward changed its input in place"),
    (planted(ScalesGradOutInPlace), "backward changed grad_out in place"),
    (planted(lambda: bp.Linear(5, 3, seed=0), torch=lambda layer: torch_twin(bp.Linear(5, 3, seed=0, bias=False))),
     r"parameters \['W', 'b'\], the twin maps \['W'\]"),
], ids=["backward", "bias-gradient", "slope", "input-in-place", "grad_out-in-place", "unmapped-parameter"])
def test_the_torch_check_catches_a_planted_bug(case, match, rng):
    pytest.importorskip("torch")
    with pytest.raises(AssertionError, match=match):
        check_against_torch(case, backends.get("numpy"), rng)


def test_the_torch_check_turns_an_overflow_warning_into_a_failure(rng):
    pytest.importorskip("torch")
    with pytest.raises(RuntimeWarning, match="overflow"):
        check_against_torch(planted(NaiveSigmoid), backends.get("numpy"), rng)


@pytest.mark.skipif(DEVICE1 not in backends.available(), reason="array_api_strict is not installed")
def test_the_device_check_catches_a_planted_difference(rng):
    with pytest.raises(AssertionError, match=f"output on {DEVICE1} differs from numpy"):
        check_on_device1(planted(OffOnDevice1), rng)


@pytest.mark.skipif(ONNX_MISSING is not None, reason=str(ONNX_MISSING))
def test_the_export_check_catches_a_planted_difference(rng, tmp_path):
    with pytest.raises(bp.onnx.ExportError, match="differs from the model's"):
        check_export(planted(OffOnOnnx), "float64", rng, tmp_path)
