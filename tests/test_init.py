"""bp.init: gains, the He/Xavier initializers' statistics against their formulas and torch's,
seeds, dtype and backend kept, bad input refused."""
from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import host

import bpcore as bp

try:
    import torch
except ImportError:          # the torch comparisons are skipped, the rest still runs
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is the oracle here: pip install torch")


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

