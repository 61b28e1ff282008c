"""Fast paths (backends/_fast.py): every registered one gives what the portable lines give.

Each operation is run twice on the same inputs, once with the backend's fast path and once
inside ``backends.portable_only()``, over kernels, strides, dilations, paddings, odd sizes,
overlapping windows and ties; then whole layers and a CNN step are compared the same way, on
every backend (where a backend registers no fast path, both runs take the portable lines).
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import host, tolerance

import backends
import bpcore as bp
from bpcore.nn import windows

# (N, C, H, W, kernel, stride, dilation, padding)
WINDOW_CASES = [
    (2, 3, 6, 6, (3, 3), (1, 1), (1, 1), (1, 1)),       # the everyday 3x3 "same" convolution
    (2, 4, 7, 5, (2, 2), (2, 2), (1, 1), (0, 0)),       # tiling windows, an odd size left over
    (1, 2, 9, 9, (3, 2), (2, 1), (2, 1), (1, 0)),       # dilation, stride, non-square kernel
    (3, 1, 5, 8, (1, 3), (1, 3), (1, 1), (0, 1)),       # a 1-channel image, stride 3
    (2, 5, 6, 7, (3, 3), (2, 2), (1, 1), (1, 1)),       # overlapping strided windows
]
POOL_CASES = [   # (N, C, H, W, kernel, stride, padding): tiling, overlapping, odd, padded
    (2, 3, 8, 8, (2, 2), (2, 2), (0, 0)),
    (2, 3, 7, 9, (2, 2), (2, 2), (0, 0)),
    (2, 2, 7, 7, (3, 3), (2, 2), (1, 1)),
    (1, 4, 5, 6, (2, 3), (1, 1), (0, 0)),
    (2, 2, 6, 6, (3, 3), (3, 3), (1, 1)),
]


def twice(function):
    """function() with the backend's fast paths, then with the portable lines only."""
    fast = function()
    with backends.portable_only():
        portable = function()
    return fast, portable


def padded_input(backend, rng, n, c, h, w, padding, dtype="float64", ties=False):
    values = rng.integers(0, 3, (n, h + 2 * padding[0], w + 2 * padding[1], c)) if ties else \
        rng.standard_normal((n, h + 2 * padding[0], w + 2 * padding[1], c))
    return backend.asarray(values.astype(dtype))


def out_hw(h, w, kernel, stride, dilation, padding):
    return tuple(windows.output_size(size, k, s, p, d)
                 for size, k, s, p, d in zip((h, w), kernel, stride, padding, dilation))


@pytest.mark.parametrize("case", WINDOW_CASES, ids=[f"w{i}" for i in range(len(WINDOW_CASES))])
def test_sliding_windows_and_the_conv_input_gradient_equal_the_portable_lines(backend, rng, case):
    n, c, h, w, kernel, stride, dilation, padding = case
    x_pad = padded_input(backend, rng, n, c, h, w, padding)
    hw = out_hw(h, w, kernel, stride, dilation, padding)
    with backend.activate():
        fast, portable = twice(lambda: windows.sliding_windows(backend, x_pad, kernel, stride, dilation, hw))
    assert tuple(fast.shape) == tuple(portable.shape) == (n,) + hw + kernel + (c,)
    np.testing.assert_array_equal(host(backend, fast), host(backend, portable))
    expected = host(backend, x_pad)[:, 1 * stride[0] + (kernel[0] - 1) * dilation[0],
                                    0 * stride[1] + (kernel[1] - 1) * dilation[1], :] if hw[0] > 1 else None
    if expected is not None:                       # one entry by the formula: [n, 1, 0, kH-1, kW-1, c]
        np.testing.assert_array_equal(host(backend, portable)[:, 1, 0, -1, -1, :], expected)

    oc = 3
    grad_rows = backend.asarray(rng.standard_normal((n * hw[0] * hw[1], oc)))
    w_mat = backend.asarray(rng.standard_normal((oc, kernel[0] * kernel[1] * c)))
    shape = tuple(x_pad.shape)
    with backend.activate():
        fast, portable = twice(lambda: windows.conv_input_grad(backend, grad_rows, w_mat, shape, hw, kernel, stride,
                                                               dilation))
    np.testing.assert_allclose(host(backend, fast), host(backend, portable), **tolerance("float64"))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("case", POOL_CASES, ids=[f"p{i}" for i in range(len(POOL_CASES))])
def test_max_routing_equals_the_portable_lines(backend, rng, case, ties):
    n, c, h, w, kernel, stride, padding = case
    x_pad = padded_input(backend, rng, n, c, h, w, padding, ties=ties)
    hw = out_hw(h, w, kernel, stride, (1, 1), padding)
    with backend.activate():
        largest, argmax = windows.window_max(backend, x_pad, kernel, stride, hw)
        grad_out = backend.asarray(rng.standard_normal((n,) + hw + (c,)))
        fast, portable = twice(lambda: windows.route_max(backend, grad_out, argmax, tuple(x_pad.shape), kernel,
                                                         stride))
        view = host(backend, windows.sliding_windows(backend, x_pad, kernel, stride, (1, 1), hw))
    np.testing.assert_array_equal(host(backend, fast), host(backend, portable))
    # the argmax is the first maximum of each window (NumPy's argmax on ties), and the maximum is right
    flat = view.reshape(view.shape[:3] + (-1, c))
    np.testing.assert_array_equal(host(backend, argmax), flat.argmax(axis=3))
    np.testing.assert_array_equal(host(backend, largest), flat.max(axis=3))


def layer_run(layer, backend, x, grad_out):
    out = layer(backend.asarray(x))
    grad_in = layer.backward(backend.asarray(grad_out))
    grads = [host(backend, p.grad) for p in layer.parameters()]
    layer.zero_grad()
    return host(backend, out), host(backend, grad_in), grads


@pytest.mark.parametrize("make", [
    lambda: bp.Conv2d(3, 4, 3, padding=1, seed=0),
    lambda: bp.Conv2d(3, 2, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), seed=1),
    lambda: bp.MaxPool2d(2),
    lambda: bp.MaxPool2d(3, stride=2, padding=1),
    lambda: bp.AvgPool2d(3, stride=2, padding=1),
], ids=["conv-same", "conv-strided-dilated", "maxpool2", "maxpool3s2p1", "avgpool3s2p1"])
def test_layers_give_the_same_outputs_and_gradients_both_ways(backend, rng, make):
    layer = make().astype("float64").to(backend)
    x = rng.standard_normal((2, 3, 7, 8))
    grad_out = rng.standard_normal(tuple(layer(backend.asarray(x)).shape))
    fast, portable = twice(lambda: layer_run(layer, backend, x, grad_out))
    for got, want in zip(fast[:2] + tuple(fast[2]), portable[:2] + tuple(portable[2])):
        np.testing.assert_allclose(got, want, **tolerance("float64"))


def test_a_cnn_trains_to_the_same_weights_both_ways(backend, rng):
    x = rng.standard_normal((8, 1, 8, 8)).astype("float32")
    labels = rng.integers(0, 3, 8)

    def train():
        model = bp.Sequential(bp.Conv2d(1, 4, 3, padding=1, seed=0), bp.ReLU(), bp.MaxPool2d(2),
                              bp.Conv2d(4, 4, 3, padding=1, seed=1), bp.ReLU(), bp.MaxPool2d(2), bp.Flatten(),
                              bp.Linear(16, 3, seed=2)).to(backend)
        bp.fit(model, bp.SoftmaxCrossEntropyLoss(), bp.optim.SGD(model.parameters(), lr=0.1), x, labels,
               epochs=2, batch_size=4, seed=0, progress=False)
        return [host(backend, p.data) for p in model.parameters()]
    fast, portable = twice(train)
    for got, want in zip(fast, portable):
        np.testing.assert_allclose(got, want, **tolerance("float32", 1000))


# -- the registry ----------------------------------------------------------------------------
def test_numpy_registers_its_fast_paths_and_portable_only_turns_them_off():
    numpy_backend = backends.get("numpy")
    registered = {operation for name, operation in backends.fast_paths() if name == "numpy"}
    assert {"sliding_windows", "route_max", "conv_input_grad"} <= registered
    assert {operation for name, operation in backends.fast_paths() if name == "cupy"} >= {"sliding_windows",
                                                                                          "route_max"}
    assert numpy_backend.fast_path("sliding_windows") is not None
    with backends.portable_only():
        with backends.portable_only():                  # nested: still off after the inner one ends
            pass
        assert numpy_backend.fast_path("sliding_windows") is None
        assert backends.fast_path("numpy", "route_max") is None
    assert numpy_backend.fast_path("sliding_windows") is not None
    assert numpy_backend.fast_path("no such operation") is None


def test_a_registered_fast_path_is_used_and_a_wrong_one_is_caught(rng):
    """A user's fast path on a backend that has none: the layer calls it, and comparing it with
    the portable lines (as this file does for bpcore's own) catches one that is wrong."""
    strict = backends.get("array_api_strict") if "array_api_strict" in backends.available() else None
    if strict is None:
        pytest.skip("array_api_strict is not installed")
    calls = []

    def wrong_route(grad_out, argmax, padded_shape, kernel, stride):
        calls.append(kernel)
        with backends.portable_only():
            right = windows.route_max(strict, grad_out, argmax, padded_shape, kernel, stride)
        return right * 2.0                               # a planted bug
    backends.register_fast_path("array_api_strict", "route_max", wrong_route)
    try:
        layer = bp.MaxPool2d(2).to(strict)
        x = rng.standard_normal((1, 2, 4, 4)).astype("float32")
        out = layer(strict.asarray(x))
        fast, portable = twice(lambda: host(strict, layer.backward(strict.xp.ones_like(out))))
        assert calls == [(2, 2)]
        assert not np.allclose(fast, portable)
    finally:
        backends.unregister_fast_path("array_api_strict", "route_max")
    assert strict.fast_path("route_max") is None
