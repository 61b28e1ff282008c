"""BatchNorm1d and LayerNorm beyond the layer cases: running statistics over many steps and
momenta against torch, the update rule by hand, a batch of one, buffers in state_dict/to/astype,
parameter names.

Every BatchNorm1d/2d and LayerNorm configuration's generic checks (gradient check, torch twin in
train and eval, simulated device, ONNX) are cases in tests/layer_cases.py. PyTorch is the oracle
here too (CPU, float64, rtol = atol = 1e-8); tests that need it skip when it is not installed.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_matches_torch, forward_backward, from_torch, host, on, to_torch, torch_forward_backward

import bpcore as bp

try:
    import torch
except ImportError:          # the torch comparisons are skipped, the rest still runs
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is the oracle here: pip install torch")


def shifted_batch(rng, batch, n):
    """Features with different means and scales, so the normalization has work to do."""
    return 3.0 + rng.uniform(0.5, 4.0, n) * rng.standard_normal((batch, n)) + rng.uniform(-5, 5, n)


# -- BatchNorm1d against torch.nn.BatchNorm1d, step after step -------------------------------

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


def test_normalization_parameter_names():
    assert [name for name, _ in bp.LayerNorm(3).named_parameters()] == ["weight", "bias"]
    assert bp.LayerNorm(3, elementwise_affine=False).parameters() == []
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


# -- BatchNorm1d with one sample -----------------------------------------------------------

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
