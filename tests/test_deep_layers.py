"""The deep-network layers of issue 7: BatchNorm1d, LayerNorm, Residual, Dropout and bp.init.

PyTorch is the oracle (CPU, float64, rtol = atol = 1e-8) for outputs, dL/dx, parameter
gradients and running statistics, in train and eval modes; the bpcore side runs on every
backend. Tests that need torch are skipped when it is not installed; the rest (gradient
checks, Dropout statistics and determinism, init statistics, bad inputs, the example's
quality bar) run without it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import os
import re

import numpy as np
import pytest
from helpers import assert_matches_torch, from_torch, host, to_torch

import bpcore as bp

try:
    import torch
except ImportError:          # the torch comparisons are skipped, the rest still runs
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is the oracle here: pip install torch")

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Every torch op here is tiny: extra threads only contend for the cores (10x slower on 2 busy cores)."""
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def on(backend, layer):
    """The layer in float64 on ``backend``."""
    return layer.astype("float64").to(backend)


def forward_backward(layer, backend, x, grad_out):
    """bpcore forward and backward on ``backend``; host (out, dL/dx)."""
    out = layer(backend.asarray(x))
    grad_in = layer.backward(backend.asarray(grad_out))
    return host(backend, out), host(backend, grad_in)


def torch_forward_backward(module, x, grad_out):
    x_t = to_torch(x, requires_grad=True)
    out_t = module(x_t)
    out_t.backward(to_torch(grad_out))
    return from_torch(out_t), from_torch(x_t.grad)


def shifted_batch(rng, batch, n):
    """Features with different means and scales, so the normalization has work to do."""
    return 3.0 + rng.uniform(0.5, 4.0, n) * rng.standard_normal((batch, n)) + rng.uniform(-5, 5, n)


# == 1. BatchNorm1d against torch.nn.BatchNorm1d ==========================================

def batchnorm_pair(backend, rng, n, eps=1e-5, momentum=0.1, affine=True):
    """A bpcore and a torch BatchNorm1d with the same random weight, bias and running statistics."""
    state = {"running_mean": rng.standard_normal(n), "running_var": rng.uniform(0.5, 2.0, n)}
    if affine:
        state.update(weight=rng.uniform(0.5, 2.0, n), bias=rng.standard_normal(n))
    layer = on(backend, bp.BatchNorm1d(n, eps=eps, momentum=momentum, affine=affine))
    layer.load_state_dict(state)
    oracle = torch.nn.BatchNorm1d(n, eps=eps, momentum=momentum, affine=affine, dtype=torch.float64)
    with torch.no_grad():
        for name, value in state.items():
            getattr(oracle, name).copy_(to_torch(value))
    return layer, oracle


def compare_batchnorm_step(layer, oracle, backend, x, grad_out, what):
    layer.zero_grad()
    oracle.zero_grad()
    out, grad_in = forward_backward(layer, backend, x, grad_out)
    expected_out, expected_grad_in = torch_forward_backward(oracle, x, grad_out)
    assert_matches_torch(out, expected_out, f"{what}: output")
    assert_matches_torch(grad_in, expected_grad_in, f"{what}: dL/dx")
    if layer.affine:
        assert_matches_torch(host(backend, layer.weight.grad), from_torch(oracle.weight.grad), f"{what}: dL/dweight")
        assert_matches_torch(host(backend, layer.bias.grad), from_torch(oracle.bias.grad), f"{what}: dL/dbias")
    else:
        assert layer.weight is None and layer.bias is None and layer.parameters() == []
    assert_matches_torch(host(backend, layer.running_mean), from_torch(oracle.running_mean), f"{what}: running_mean")
    assert_matches_torch(host(backend, layer.running_var), from_torch(oracle.running_var), f"{what}: running_var")
    assert backend.owns(layer.running_mean) and backend.owns(layer.running_var)


@needs_torch
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("eps", [1e-5, 1e-3, 0.5])
def test_batchnorm_train_and_eval_match_torch(backend, rng, eps, affine):
    n = 5
    layer, oracle = batchnorm_pair(backend, rng, n, eps=eps, affine=affine)
    x, grad_out = shifted_batch(rng, 6, n), rng.standard_normal((6, n))
    compare_batchnorm_step(layer, oracle, backend, x, grad_out, "train")

    layer.eval()
    oracle.eval()
    stats_before = host(backend, layer.running_mean), host(backend, layer.running_var)
    x, grad_out = shifted_batch(rng, 4, n), rng.standard_normal((4, n))
    compare_batchnorm_step(layer, oracle, backend, x, grad_out, "eval")
    np.testing.assert_array_equal(host(backend, layer.running_mean), stats_before[0])
    np.testing.assert_array_equal(host(backend, layer.running_var), stats_before[1])


@needs_torch
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("momentum", [0.1, 0.5, 1.0, 0.0])
def test_batchnorm_running_statistics_over_steps_match_torch(backend, rng, momentum, affine):
    """Several training steps with different batches (sizes down to 2), then eval with the result."""
    n = 4
    layer, oracle = batchnorm_pair(backend, rng, n, momentum=momentum, affine=affine)
    for step, batch in enumerate([2, 7, 3, 16, 2]):
        x, grad_out = shifted_batch(rng, batch, n), rng.standard_normal((batch, n))
        compare_batchnorm_step(layer, oracle, backend, x, grad_out, f"train step {step} (batch {batch})")
    if momentum > 0:   # the statistics moved away from where they started
        assert not np.allclose(host(backend, layer.running_var), 1.0)
    layer.eval()
    oracle.eval()
    for batch in (1, 5):
        x, grad_out = shifted_batch(rng, batch, n), rng.standard_normal((batch, n))
        compare_batchnorm_step(layer, oracle, backend, x, grad_out, f"eval (batch {batch})")


def test_batchnorm_running_statistics_by_hand(backend, rng):
    """No torch needed: the update rule with the unbiased variance, and normalizing with the biased one."""
    x = shifted_batch(rng, 3, 4)
    layer = on(backend, bp.BatchNorm1d(4, momentum=0.25, eps=1e-5))
    out = host(backend, layer(backend.asarray(x)))
    mean, biased, unbiased = x.mean(0), x.var(0), x.var(0, ddof=1)
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(biased + 1e-5), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(backend, layer.running_mean), 0.25 * mean, rtol=1e-12)
    np.testing.assert_allclose(host(backend, layer.running_var), 0.75 + 0.25 * unbiased, rtol=1e-12)


def test_batchnorm_names_in_a_sequential():
    model = bp.Sequential(bp.Linear(3, 4, seed=0), bp.BatchNorm1d(4), bp.ReLU(), bp.Linear(4, 2, seed=1))
    assert [name for name, _ in model.named_parameters()] == ["0.W", "0.b", "1.weight", "1.bias", "3.W", "3.b"]
    assert [name for name, _ in model.named_buffers()] == ["1.running_mean", "1.running_var"]
    assert set(model.state_dict()) == {"0.W", "0.b", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                       "3.W", "3.b"}
    bare = bp.Sequential(bp.Linear(3, 4, seed=0), bp.BatchNorm1d(4, affine=False))
    assert [name for name, _ in bare.named_parameters()] == ["0.W", "0.b"]
    assert set(bare.state_dict()) == {"0.W", "0.b", "1.running_mean", "1.running_var"}


def small_bn_net(seed):
    return bp.Sequential(bp.Linear(3, 4, seed=seed), bp.BatchNorm1d(4, momentum=0.3), bp.ReLU(),
                         bp.Linear(4, 2, seed=seed + 1))


def test_batchnorm_state_dict_round_trips_the_buffers(backend, rng):
    model = on(backend, small_bn_net(0))
    for batch in (5, 2, 8):
        model(backend.asarray(rng.standard_normal((batch, 3)) * 3 + 1))
    state = model.state_dict()
    assert not np.allclose(state["1.running_mean"], 0.0) and not np.allclose(state["1.running_var"], 1.0)
    expected = {name: value.copy() for name, value in state.items()}
    state["1.running_mean"][:] = 123.0            # state_dict hands out copies
    assert not np.allclose(host(backend, model[1].running_mean), 123.0)
    state["1.running_mean"][:] = expected["1.running_mean"]

    fresh = on(backend, small_bn_net(7))
    fresh.load_state_dict(state)
    for name, value in fresh.state_dict().items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    bn = fresh[1]
    for buffer in (bn.running_mean, bn.running_var):
        assert backend.owns(buffer) and bp.nn.dtype_name(buffer.dtype) == "float64"
    x = backend.asarray(rng.standard_normal((6, 3)))
    model.eval()
    fresh.eval()
    np.testing.assert_array_equal(host(backend, fresh(x)), host(backend, model(x)))


def test_batchnorm_to_moves_the_buffers(backend, rng):
    model = small_bn_net(0).astype("float64")                 # built on the default cpu backend
    model(rng.standard_normal((5, 3)))
    before = {name: host(model.device, value) for name, value in model.named_buffers()}
    model.to(backend)
    bn = model[1]
    assert backend.owns(bn.running_mean) and backend.owns(bn.running_var)
    for name, value in model.named_buffers():
        np.testing.assert_array_equal(host(backend, value), before[name], err_msg=name)
    model(backend.asarray(rng.standard_normal((5, 3))))      # a training step on the new device
    assert backend.owns(bn.running_mean) and backend.owns(bn.running_var)
    assert not np.array_equal(host(backend, bn.running_mean), before["1.running_mean"])
    model.astype("float32")
    assert bp.nn.dtype_name(bn.running_mean.dtype) == "float32"
    assert bp.nn.dtype_name(bn.running_var.dtype) == "float32"


# == 2. BatchNorm1d with one sample ========================================================

def test_batchnorm_refuses_a_training_batch_of_one(backend, rng):
    layer = on(backend, bp.BatchNorm1d(3))
    layer(backend.asarray(rng.standard_normal((4, 3))))
    stats = host(backend, layer.running_mean), host(backend, layer.running_var)
    with pytest.raises(ValueError, match=r"more than 1 sample.*\(1, 3\).*eval\(\)"):
        layer(backend.asarray(rng.standard_normal((1, 3))))
    # the refused batch changed nothing
    np.testing.assert_array_equal(host(backend, layer.running_mean), stats[0])
    np.testing.assert_array_equal(host(backend, layer.running_var), stats[1])

    layer.eval()
    x = rng.standard_normal((1, 3))
    out = host(backend, layer(backend.asarray(x)))
    np.testing.assert_allclose(out, (x - stats[0]) / np.sqrt(stats[1] + 1e-5), rtol=1e-12, atol=1e-12)
    grad_in = host(backend, layer.backward(backend.asarray(np.ones((1, 3)))))
    np.testing.assert_allclose(grad_in, np.ones((1, 3)) / np.sqrt(stats[1] + 1e-5), rtol=1e-12)


@needs_torch
def test_torch_refuses_a_training_batch_of_one_too():
    """The behaviour bpcore copies: torch raises ValueError in training, works in eval."""
    oracle = torch.nn.BatchNorm1d(3, dtype=torch.float64)
    with pytest.raises(ValueError):
        oracle(torch.ones(1, 3, dtype=torch.float64))
    oracle.eval()
    assert oracle(torch.ones(1, 3, dtype=torch.float64)).shape == (1, 3)


# == 3. LayerNorm against torch.nn.LayerNorm ==============================================

@needs_torch
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize("eps", [1e-5, 0.3])
def test_layernorm_matches_torch(backend, rng, shape, affine, eps):
    n = shape[-1]
    layer = on(backend, bp.LayerNorm(n, eps=eps, elementwise_affine=affine))
    oracle = torch.nn.LayerNorm(n, eps=eps, elementwise_affine=affine, dtype=torch.float64)
    if affine:
        w, b = rng.uniform(0.5, 2.0, n), rng.standard_normal(n)
        layer.load_state_dict({"weight": w, "bias": b})
        with torch.no_grad():
            oracle.weight.copy_(to_torch(w))
            oracle.bias.copy_(to_torch(b))
        assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    else:
        assert layer.parameters() == []
    for mode in ("train", "eval"):
        layer.train(mode == "train")
        layer.zero_grad()
        oracle.zero_grad()
        x = 2.0 + rng.uniform(0.5, 3.0, shape[:-1] + (1,)) * rng.standard_normal(shape)
        grad_out = rng.standard_normal(shape)
        out, grad_in = forward_backward(layer, backend, x, grad_out)
        expected_out, expected_grad_in = torch_forward_backward(oracle, x, grad_out)
        assert_matches_torch(out, expected_out, f"LayerNorm {mode} output")
        assert_matches_torch(grad_in, expected_grad_in, f"LayerNorm {mode} dL/dx")
        if affine:
            assert_matches_torch(host(backend, layer.weight.grad), from_torch(oracle.weight.grad), "dL/dweight")
            assert_matches_torch(host(backend, layer.bias.grad), from_torch(oracle.bias.grad), "dL/dbias")


# == 4. Residual ===========================================================================

@needs_torch
def test_residual_matches_torch(backend, rng):
    n, batch = 5, 6
    W, b = rng.standard_normal((n, n)) * 0.7, rng.standard_normal(n)
    block = bp.Sequential(bp.Linear(n, n, seed=0), bp.Tanh())
    layer = on(backend, bp.Residual(block))
    layer.load_state_dict({"block.0.W": W, "block.0.b": b})
    linear = torch.nn.Linear(n, n, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(to_torch(W.T))               # torch keeps W as (n_out, n_in)
        linear.bias.copy_(to_torch(b))
    x, grad_out = 1.5 * rng.standard_normal((batch, n)), rng.standard_normal((batch, n))
    out, grad_in = forward_backward(layer, backend, x, grad_out)
    expected_out, expected_grad_in = torch_forward_backward(lambda t: t + torch.tanh(linear(t)), x, grad_out)
    assert_matches_torch(out, expected_out, "Residual output")
    assert_matches_torch(grad_in, expected_grad_in, "Residual dL/dx")
    assert_matches_torch(host(backend, block[0].W.grad), from_torch(linear.weight.grad).T, "Residual dL/dW")
    assert_matches_torch(host(backend, block[0].b.grad), from_torch(linear.bias.grad), "Residual dL/db")


def test_residual_refuses_a_block_that_changes_the_width(backend, rng):
    layer = on(backend, bp.Residual(bp.Sequential(bp.Linear(3, 5, seed=0), bp.Tanh())))
    with pytest.raises(ValueError, match=re.escape("(4, 3)") + ".*" + re.escape("(4, 5)")):
        layer(backend.asarray(rng.standard_normal((4, 3))))
    with pytest.raises(TypeError, match="Layer"):
        bp.Residual(lambda x: x)


def test_residual_parameter_names_in_a_sequential():
    model = bp.Sequential(bp.Residual(bp.Sequential(bp.Linear(4, 4, seed=0), bp.Tanh())), bp.Linear(4, 2, seed=1))
    assert [name for name, _ in model.named_parameters()] == ["0.block.0.W", "0.block.0.b", "1.W", "1.b"]
    assert set(model.state_dict()) == {"0.block.0.W", "0.block.0.b", "1.W", "1.b"}


# == 5. Dropout ===========================================================================

@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keeps_one_minus_p_and_the_expectation(backend, rng, p):
    drop = on(backend, bp.Dropout(p, seed=11))
    x = rng.uniform(0.5, 1.5, (1000, 1000))
    out = host(backend, drop(backend.asarray(x)))
    kept = out != 0
    assert abs(kept.mean() - (1 - p)) < 0.004, f"kept fraction {kept.mean()} for p={p}"
    np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-12)
    assert out.mean() == pytest.approx(x.mean(), rel=0.02)


def dropout_mask(backend, seed, shape=(50, 40), p=0.5):
    drop = on(backend, bp.Dropout(p, seed=seed))
    return host(backend, drop(backend.asarray(np.ones(shape)))) != 0


def test_dropout_is_deterministic_by_seed(backend):
    first = dropout_mask(backend, 5)
    np.testing.assert_array_equal(dropout_mask(backend, 5), first)
    assert not np.array_equal(dropout_mask(backend, 6), first)
    drop = on(backend, bp.Dropout(0.5, seed=5))
    ones = backend.asarray(np.ones((50, 40)))
    masks = [host(backend, drop(ones)) != 0 for _ in range(2)]
    np.testing.assert_array_equal(masks[0], first)
    assert not np.array_equal(masks[1], masks[0])      # the stream moves on between batches


def test_dropout_eval_and_p_zero_are_the_identity(backend, rng):
    x, grad_out = rng.standard_normal((20, 7)), rng.standard_normal((20, 7))
    for drop in (on(backend, bp.Dropout(0.5, seed=1)).eval(), on(backend, bp.Dropout(0.0, seed=1)),
                 on(backend, bp.Dropout(0))):
        out, grad_in = forward_backward(drop, backend, x, grad_out)
        np.testing.assert_array_equal(out, x)
        np.testing.assert_array_equal(grad_in, grad_out)


@pytest.mark.parametrize("p", [1.0, 1, -0.1, 1.5, True, False, float("nan"), "0.5", None])
def test_dropout_refuses_p_outside_0_1(p):
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        bp.Dropout(p)


def test_dropout_backward_uses_the_forward_mask(backend, rng):
    p = 0.3
    drop = on(backend, bp.Dropout(p, seed=2))
    for _ in range(2):                                  # and the newest mask after a second forward
        x = rng.uniform(1.0, 2.0, (30, 8))             # never 0, so out == 0 exactly where dropped
        grad_out = rng.standard_normal((30, 8))
        out, grad_in = forward_backward(drop, backend, x, grad_out)
        mask = (out != 0).astype(np.float64)
        assert 0 < mask.mean() < 1
        np.testing.assert_allclose(out, x * mask / (1 - p), rtol=1e-12)
        np.testing.assert_allclose(grad_in, grad_out * mask / (1 - p), rtol=1e-12, atol=0)


# == 6. Gradient checks on every backend ==================================================

def middle_layer(kind):
    if kind == "batchnorm":
        return bp.BatchNorm1d(5, momentum=0.5)
    if kind == "batchnorm_no_affine":
        return bp.BatchNorm1d(5, affine=False, momentum=0.5)
    if kind == "layernorm":
        return bp.LayerNorm(5)
    if kind == "residual":
        return bp.Residual(bp.Sequential(bp.Linear(5, 5, init="xavier", seed=3), bp.Tanh()))
    raise AssertionError(kind)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kind", ["batchnorm", "batchnorm_no_affine", "layernorm", "residual"])
def test_gradcheck_deep_layers(backend, rng, kind, mode):
    model = on(backend, bp.Sequential(bp.Linear(4, 5, seed=0), middle_layer(kind), bp.Linear(5, 2, seed=1)))
    # non-trivial weights and (for BatchNorm) running statistics
    for p in model.parameters():
        p.data = backend.asarray(rng.uniform(0.5, 1.5, p.shape) * np.sign(rng.standard_normal(p.shape)))
    for _ in range(3):
        model(backend.asarray(2.0 * rng.standard_normal((8, 4)) + 1.0))
    model.train(mode == "train")
    report = bp.gradcheck(model, bp.MSELoss(), rng.standard_normal((6, 4)), rng.standard_normal((6, 2)))
    assert report.passed, str(report)
    assert {row.name for row in report.rows} == {name for name, _ in model.named_parameters()} | {"input"}


class FixedMaskDropout(bp.Dropout):
    """Dropout that goes back to its first mask at every forward (through the public random state)."""

    def forward(self, x):
        self.set_random_state(dict(self.random_state(), calls=0))
        return super().forward(x)


def dropout_net(backend, dropout):
    return on(backend, bp.Sequential(bp.Linear(4, 6, seed=0), bp.Tanh(), dropout, bp.Linear(6, 2, seed=1)))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradcheck_dropout_with_a_fixed_mask(backend, rng, mode):
    model = dropout_net(backend, FixedMaskDropout(0.5, seed=3))
    x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 2))
    model(backend.asarray(x))
    mask = host(backend, model[2].saved("scale"))
    assert 0 < (mask == 0).mean() < 1                  # some entries dropped, some kept
    model.train(mode == "train")
    report = bp.gradcheck(model, bp.MSELoss(), x, y)
    assert report.passed, str(report)


def test_fixed_mask_dropout_really_repeats_its_mask(backend, rng):
    """The premise of the check above: the subclass draws one mask, an ordinary Dropout a new one each time."""
    x = backend.asarray(rng.uniform(1.0, 2.0, (8, 6)))
    fixed, plain = on(backend, FixedMaskDropout(0.5, seed=3)), on(backend, bp.Dropout(0.5, seed=3))
    first = host(backend, fixed(x))
    np.testing.assert_array_equal(host(backend, fixed(x)), first)
    np.testing.assert_array_equal(host(backend, plain(x)), first)       # the same seed: the same first mask
    assert not np.array_equal(host(backend, plain(x)), first)


# == 7. bp.init ===========================================================================

GAIN_CASES = [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None), ("selu", None),
              ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 0), ("leaky_relu", 1.0)]


@needs_torch
@pytest.mark.parametrize("nonlinearity, param", GAIN_CASES)
def test_calculate_gain_matches_torch(nonlinearity, param):
    assert bp.init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15)


def test_calculate_gain_values_and_refusals():
    assert bp.init.calculate_gain("identity") == 1.0
    assert bp.init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert bp.init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert bp.init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    with pytest.raises(ValueError, match="swish"):
        bp.init.calculate_gain("swish")
    with pytest.raises(ValueError, match="slope"):
        bp.init.calculate_gain("leaky_relu", "0.1")
    with pytest.raises(ValueError, match="slope"):
        bp.init.calculate_gain("leaky_relu", True)


FAN_IN, FAN_OUT = 400, 300
SQRT3 = math.sqrt(3.0)

# name -> (bp initializer, its kwargs, torch's initializer, expected std, uniform bound or None)
INIT_CASES = {
    "kaiming_normal": (bp.init.kaiming_normal_, {}, "kaiming_normal_", math.sqrt(2 / FAN_IN), None),
    "kaiming_normal_fan_out_relu": (bp.init.kaiming_normal_, {"mode": "fan_out", "nonlinearity": "relu"},
                                    "kaiming_normal_", math.sqrt(2 / FAN_OUT), None),
    "kaiming_normal_leaky_0.2": (bp.init.kaiming_normal_, {"a": 0.2}, "kaiming_normal_",
                                 math.sqrt(2 / 1.04) / math.sqrt(FAN_IN), None),
    "kaiming_uniform": (bp.init.kaiming_uniform_, {}, "kaiming_uniform_", math.sqrt(2 / FAN_IN),
                        math.sqrt(2) * math.sqrt(3 / FAN_IN)),
    "kaiming_uniform_fan_out_tanh": (bp.init.kaiming_uniform_, {"mode": "fan_out", "nonlinearity": "tanh"},
                                     "kaiming_uniform_", 5 / 3 / math.sqrt(FAN_OUT), 5 / 3 * math.sqrt(3 / FAN_OUT)),
    "xavier_normal": (bp.init.xavier_normal_, {}, "xavier_normal_", math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    "xavier_normal_tanh_gain": (bp.init.xavier_normal_, {"gain": 5 / 3}, "xavier_normal_",
                                5 / 3 * math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    "xavier_uniform_gain_2": (bp.init.xavier_uniform_, {"gain": 2.0}, "xavier_uniform_",
                              2 * math.sqrt(2 / (FAN_IN + FAN_OUT)), 2 * math.sqrt(6 / (FAN_IN + FAN_OUT))),
}


def big_weight(backend=None, dtype="float64"):
    layer = bp.Linear(FAN_IN, FAN_OUT, init="zeros").astype(dtype)
    if backend is not None:
        layer.to(backend)
    return layer.W


@pytest.mark.parametrize("case", list(INIT_CASES))
def test_init_statistics(case):
    init_fn, kwargs, _, std, bound = INIT_CASES[case]
    W = big_weight()
    assert init_fn(W, seed=0, **kwargs) is W
    w = host(W.backend, W.data)
    assert w.shape == (FAN_IN, FAN_OUT)
    assert w.std() == pytest.approx(std, rel=0.02)
    assert abs(w.mean()) < 0.02 * std
    if bound is None:       # normal: about 4.55% of the draws lie beyond 2 std
        assert 0.040 < (np.abs(w) > 2 * std).mean() < 0.051
    else:                   # uniform: inside the bounds, reaching close to both
        assert w.max() <= bound and w.min() >= -bound
        assert w.max() > 0.99 * bound and w.min() < -0.99 * bound
        assert std == pytest.approx(bound / SQRT3)


@needs_torch
@pytest.mark.parametrize("case", list(INIT_CASES))
def test_init_statistics_agree_with_torch(case):
    """torch's weight is (fan_out, fan_in), bpcore's (fan_in, fan_out): the spreads must agree."""
    init_fn, kwargs, torch_name, _, _ = INIT_CASES[case]
    W = big_weight()
    init_fn(W, seed=1, **kwargs)
    tensor = torch.empty(FAN_OUT, FAN_IN, dtype=torch.float64)
    getattr(torch.nn.init, torch_name)(tensor, generator=torch.Generator().manual_seed(1), **kwargs)
    assert host(W.backend, W.data).std() == pytest.approx(float(tensor.std()), rel=0.03)


INITIALIZERS = [bp.init.kaiming_normal_, bp.init.kaiming_uniform_, bp.init.xavier_normal_, bp.init.xavier_uniform_]


@pytest.mark.parametrize("init_fn", INITIALIZERS, ids=lambda f: f.__name__)
def test_init_seeds_are_reproducible(init_fn):
    W = bp.Linear(6, 5).astype("float64").W
    draw = lambda seed: host(W.backend, init_fn(W, seed=seed).data).copy()  # noqa: E731
    np.testing.assert_array_equal(draw(3), draw(3))
    assert not np.array_equal(draw(3), draw(4))
    assert not np.array_equal(draw(None), draw(None))
    np.testing.assert_array_equal(draw(np.random.default_rng(3)), draw(3))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("init_fn", INITIALIZERS, ids=lambda f: f.__name__)
def test_init_keeps_the_dtype_and_backend(backend, init_fn, dtype):
    W = bp.Linear(6, 5).astype(dtype).to(backend).W
    init_fn(W, seed=9)
    assert backend.owns(W.data) and W.backend is backend
    assert bp.nn.dtype_name(W.data.dtype) == dtype
    reference = bp.Linear(6, 5).astype(dtype).W            # drawn on the host: the same numbers everywhere
    init_fn(reference, seed=9)
    np.testing.assert_array_equal(host(backend, W.data), host(reference.backend, reference.data))
    # the layer still trains with it
    layer = bp.Linear(6, 5).astype(dtype).to(backend)
    init_fn(layer.W, seed=9)
    layer(backend.asarray(np.ones((2, 6), dtype=dtype)))
    layer.backward(backend.asarray(np.ones((2, 5), dtype=dtype)))
    assert backend.owns(layer.W.grad)


@pytest.mark.parametrize("init_fn", INITIALIZERS, ids=lambda f: f.__name__)
def test_init_refuses_bad_inputs(init_fn):
    layer = bp.Linear(6, 5, seed=0).astype("float64")
    before = host(layer.device, layer.W.data).copy()
    with pytest.raises(ValueError, match=r"2-D.*\(5,\)"):
        init_fn(layer.b)
    with pytest.raises(TypeError, match="Parameter"):
        init_fn(np.zeros((6, 5)))
    with pytest.raises(TypeError, match="Parameter"):
        init_fn(layer.W.data)
    with pytest.raises(ValueError, match="seed"):
        init_fn(layer.W, seed=-1)
    if init_fn in (bp.init.kaiming_normal_, bp.init.kaiming_uniform_):
        with pytest.raises(ValueError, match="swish"):
            init_fn(layer.W, nonlinearity="swish")
        with pytest.raises(ValueError, match="mode"):
            init_fn(layer.W, mode="fan_avg")
    np.testing.assert_array_equal(host(layer.device, layer.W.data), before)   # refused calls changed nothing


# == 8. examples/deep_nets.py: the quality bar ============================================

KINDS = ["sigmoid", "relu_he", "relu_he_batchnorm", "residual"]


def load_deep_nets():
    spec = importlib.util.spec_from_file_location("example_deep_nets_tested", os.path.join(EXAMPLES, "deep_nets.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def full_deep_nets_run(tmp_path_factory):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn (pip install -e '.[data]')")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = load_deep_nets().main(["--epochs", "30", "--out", str(tmp_path_factory.mktemp("deep_nets"))])
    return result, printed.getvalue()


def test_deep_nets_quality_bar(full_deep_nets_run):
    result, printed = full_deep_nets_run
    best = max(result["residual"]["test_accuracy"], result["relu_he_batchnorm"]["test_accuracy"])
    assert best >= 0.95, {kind: result[kind]["test_accuracy"] for kind in KINDS}
    norms = result["sigmoid"]["grad_norms"]
    assert len(norms) == 20 and all(np.isfinite(norms))
    assert 1e4 * norms[0] <= norms[-1], f"sigmoid first-layer |dL/dW| {norms[0]:.3e}, last {norms[-1]:.3e}"
    assert result["sigmoid"]["first_over_last"] == pytest.approx(norms[0] / norms[-1])
    # the example prints both numbers
    assert "final test accuracy" in printed and "first/last" in printed
    assert f"{result['sigmoid']['first_over_last']:.1e} times the last" in printed
    for kind in ("residual", "relu_he_batchnorm"):
        assert re.search(rf"{kind}\s+{result[kind]['test_accuracy']:.4f}", printed), kind


def test_deep_nets_runs_briefly_on_every_backend(backend, tmp_path):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn (pip install -e '.[data]')")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        result = load_deep_nets().main(["--device", backend.spec, "--epochs", "1", "--seed", "1",
                                        "--out", str(tmp_path)])
    assert sorted(result) == sorted(KINDS)
    for kind in KINDS:
        assert len(result[kind]["grad_norms"]) == 20 and all(np.isfinite(result[kind]["grad_norms"]))
        assert 0.0 <= result[kind]["test_accuracy"] <= 1.0
    assert f"on {backend.spec}" in printed.getvalue()


def test_batchnorm_cumulative_average_matches_torch(backend):
    """momentum=None: the k-th batch weighs 1/k, counted in num_batches_tracked (a saved buffer)."""
    if torch is None:
        pytest.skip("PyTorch is the oracle here: pip install torch")
    rng = np.random.default_rng(3)
    ours = bp.BatchNorm1d(3, momentum=None).astype("float64").to(backend)
    theirs = torch.nn.BatchNorm1d(3, momentum=None).double()
    for batch in (4, 2, 7, 3):
        x = rng.standard_normal((batch, 3))
        ours(x)
        theirs(to_torch(x))
    state = ours.state_dict()
    assert_matches_torch(state["running_mean"], from_torch(theirs.running_mean), "running_mean")
    assert_matches_torch(state["running_var"], from_torch(theirs.running_var), "running_var")
    assert int(state["num_batches_tracked"]) == int(theirs.num_batches_tracked) == 4
    assert "momentum=None" in repr(ours)
