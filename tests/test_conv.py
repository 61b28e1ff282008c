"""Convolutional nets: what the layer cases do not cover. Each Conv2d, pooling, BatchNorm2d and
Flatten configuration is a case in tests/layer_cases.py (gradient check, torch, simulated device,
ONNX); here: max-pool ties, BatchNorm2d over several steps, whole CNNs (gradient checks, a planted
col2im bug, training on every backend), init fans, state, summary and bad input.

(Dropout on images is in test_dropout.py.) Shapes are tiny on purpose: every case runs in milliseconds.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_matches_torch, checked_forward_backward, host, tolerance

import backends
import bpcore as bp


@pytest.mark.parametrize("kernel,stride", [(2, 2), (3, 1)])
def test_max_pool_ties_send_the_gradient_to_one_maximum_as_torch(backend, rng, kernel, stride):
    torch = pytest.importorskip("torch")
    x = rng.integers(0, 2, (2, 2, 6, 6)).astype("float64")       # many equal maxima per window
    x[0, 0] = 1.0                                                   # a channel that is all ties
    layer = bp.MaxPool2d(kernel, stride=stride).astype("float64").to(backend)
    out, grad_out, grad_in = checked_forward_backward(layer, backend, x, np.ones)
    x_t = torch.tensor(x, requires_grad=True)
    torch.nn.MaxPool2d(kernel, stride=stride)(x_t).backward(torch.tensor(grad_out))
    assert_matches_torch(grad_in, x_t.grad.numpy(), "MaxPool2d dL/dx with ties")
    assert grad_in.sum() == pytest.approx(grad_out.size)        # one position per window, never two


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm2d_train_and_eval_match_torch_over_several_steps(backend, rng, momentum):
    torch = pytest.importorskip("torch")
    layer = bp.BatchNorm2d(3, momentum=momentum).astype("float64").to(backend)
    reference = torch.nn.BatchNorm2d(3, momentum=momentum, dtype=torch.float64)
    for step in range(3):
        train = step < 2
        layer.train(train)
        reference.train(train)
        x = 2.0 * rng.standard_normal((2, 3, 4, 3)) + step
        grad_out = rng.standard_normal(x.shape)
        layer.zero_grad()
        reference.zero_grad()
        out = layer(backend.asarray(x))
        grad_in = layer.backward(backend.asarray(grad_out))
        x_t = torch.tensor(x, requires_grad=True)
        out_t = reference(x_t)
        out_t.backward(torch.tensor(grad_out))
        what = f"BatchNorm2d step {step} ({'train' if train else 'eval'})"
        assert_matches_torch(host(backend, out), out_t.detach().numpy(), f"{what} output")
        assert_matches_torch(host(backend, grad_in), x_t.grad.numpy(), f"{what} dL/dx")
        assert_matches_torch(host(backend, layer.weight.grad), reference.weight.grad.numpy(), f"{what} dL/dweight")
        assert_matches_torch(host(backend, layer.bias.grad), reference.bias.grad.numpy(), f"{what} dL/dbias")
        assert_matches_torch(host(backend, layer.running_mean), reference.running_mean.numpy(), f"{what} mean")
        assert_matches_torch(host(backend, layer.running_var), reference.running_var.numpy(), f"{what} var")


def small_cnn(seed=0, dropout=0.0):
    """Conv -> BatchNorm2d -> ReLU -> MaxPool -> Conv (dilated, strided) -> AvgPool -> Flatten -> Linear."""
    return bp.Sequential(
        bp.Conv2d(2, 4, 3, padding=1, seed=seed), bp.BatchNorm2d(4), bp.ReLU(), bp.MaxPool2d(2),
        bp.Dropout(dropout, seed=seed), bp.Conv2d(4, 3, 2, stride=(1, 2), padding=1, dilation=(1, 2), seed=seed + 1),
        bp.Tanh(), bp.AvgPool2d(2, stride=1), bp.Flatten(), bp.Linear(9, 3, seed=seed + 2))


def test_small_cnn_gradcheck_on_every_backend(backend, rng):
    model = small_cnn().to(backend)
    x = rng.standard_normal((3, 2, 6, 6))
    labels = rng.integers(0, 3, 3)
    report = bp.gradcheck(model, bp.SoftmaxCrossEntropyLoss(), x, labels)
    assert report.passed, str(report)
    assert [row.name for row in report.rows] == ["0.W", "0.b", "1.weight", "1.bias", "5.W", "5.b", "9.W", "9.b",
                                                 "input"]


def test_global_pool_cnn_gradcheck_on_every_backend(backend, rng):
    model = bp.Sequential(bp.Conv2d(1, 3, 2, stride=2, seed=1), bp.Sigmoid(), bp.AdaptiveAvgPool2d(1),
                          bp.Flatten(), bp.Linear(3, 1, seed=2)).to(backend)
    report = bp.gradcheck(model, bp.MSELoss(), rng.standard_normal((2, 1, 4, 6)), rng.standard_normal((2, 1)))
    assert report.passed, str(report)


def test_gradcheck_catches_a_planted_col2im_bug(rng, monkeypatch):
    """The checker must be able to fail on a convolution: halve col2im's gradient (portable lines)."""
    from bpcore.nn import windows

    real = windows.add_windows

    def broken(backend, grad_windows, *args):
        return real(backend, grad_windows * 0.5, *args)
    monkeypatch.setattr(windows, "add_windows", broken)
    model = bp.Sequential(bp.Conv2d(1, 2, 2, seed=0), bp.Tanh(), bp.Conv2d(2, 1, 2, seed=1), bp.Flatten())
    with backends.portable_only():
        report = bp.gradcheck(model, bp.MSELoss(), rng.standard_normal((2, 1, 4, 4)), rng.standard_normal((2, 4)))
    assert not report.passed


def test_cnn_agrees_across_backends_and_trains_to_the_same_losses(rng):
    x = rng.standard_normal((16, 2, 6, 6)).astype("float32")
    labels = rng.integers(0, 3, 16)
    losses = {}
    for spec in backends.available(trains=True):      # onnx (export only) has test_onnx.py
        model = small_cnn(seed=5).to(spec)
        opt = bp.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        hist = bp.fit(model, bp.SoftmaxCrossEntropyLoss(), opt, x, labels, epochs=3, batch_size=8, shuffle=True,
                      seed=0, progress=False)
        losses[spec] = np.array(hist["loss"])
    reference = losses.pop("numpy")
    assert reference[-1] < reference[0]
    for spec, curve in losses.items():
        np.testing.assert_allclose(curve, reference, **tolerance("float32", 1000), err_msg=spec)


@pytest.mark.parametrize("init,std", [("he", lambda fi, fo: math.sqrt(2 / fi)),
                                      ("xavier", lambda fi, fo: math.sqrt(2 / (fi + fo))),
                                      ("lecun", lambda fi, fo: math.sqrt(1 / fi))])
def test_conv_init_uses_torch_fans(init, std):
    layer = bp.Conv2d(3, 5, (2, 4), init=init, seed=7).astype("float64")
    fan_in, fan_out = 3 * 2 * 4, 5 * 2 * 4                     # torch's calculate_fan_in_and_fan_out
    expected = np.random.default_rng(7).normal(0.0, std(fan_in, fan_out), (5, 3, 2, 4))
    np.testing.assert_allclose(host(layer.device, layer.W.data), expected)
    assert layer.W.shape == (5, 3, 2, 4) and layer.b.shape == (5,)
    bp.init.kaiming_normal_(layer.W, nonlinearity="relu", seed=1)
    assert np.std(host(layer.device, layer.W.data)) == pytest.approx(math.sqrt(2 / fan_in), rel=0.3)


def test_state_checkpoint_to_and_astype_round_trip(tmp_path, rng):
    model = small_cnn(seed=2)
    x = rng.standard_normal((4, 2, 6, 6)).astype("float32")
    model(x)                                                   # moves the running statistics
    model.eval()
    expected = host(model.device, model(x))
    state = model.state_dict()
    assert {"0.W", "0.b", "1.weight", "1.bias", "1.running_mean", "1.running_var", "5.W", "9.b"} <= set(state)
    assert state["0.W"].shape == (4, 2, 3, 3)
    path = tmp_path / "cnn.bpc"
    model.save(path)
    loaded = bp.load(path).eval()
    np.testing.assert_array_equal(host(loaded.device, loaded(x)), expected)
    fresh = small_cnn(seed=9)
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(host(fresh.device, fresh.eval()(x)), expected)
    for spec in backends.available(trains=True):      # onnx (export only) has test_onnx.py
        moved = bp.load(path).to(spec).astype("float64").eval()
        assert moved.dtype == "float64"
        np.testing.assert_allclose(host(moved.device, moved(x.astype("float64"))), expected, **tolerance("float32"))


def test_summary_lists_each_layer_with_shape_and_parameters(capsys):
    model = bp.Sequential(bp.Conv2d(1, 8, 3, padding=1), bp.ReLU(), bp.MaxPool2d(2), bp.BatchNorm2d(8),
                          bp.Flatten(), bp.Linear(128, 10))
    report = model.summary((1, 8, 8))
    printed = capsys.readouterr().out
    assert [row[2] for row in report.rows] == [(None, 8, 8, 8), (None, 8, 8, 8), (None, 8, 4, 4), (None, 8, 4, 4),
                                               (None, 128), (None, 10)]
    assert [row[3] for row in report.rows] == [80, 0, 0, 16, 0, 1290]
    assert report.total_params == sum(p.data.size for p in model.parameters()) == 1386
    assert "Total params: 1,386" in printed and "(batch, 8, 4, 4)" in printed and "Conv2d(1, 8" in printed
    assert model.training                                     # summary leaves the mode as it was
    assert bp.summary(bp.mlp([3, 4, 2]), print_fn=None).rows[-1][2] == (None, 2)
    print(model.summary((1, 8, 8)))                           # the torchinfo habit: the table once, not twice
    assert capsys.readouterr().out.count("Total params: 1,386") == 1
    quiet = model.summary((1, 8, 8), print_fn=None)
    assert capsys.readouterr().out == "" and str(quiet) == quiet.text and "Total params: 1,386" in quiet.text
    with pytest.raises(ValueError, match="input_shape"):
        model.summary()
    with pytest.raises(ValueError, match=r"summary: layer 0 refused.*one sample's shape"):
        model.summary((64, 1, 8, 8))


BAD_LAYERS = [
    (lambda: bp.Conv2d(0, 4, 3), "Conv2d: in_channels"),
    (lambda: bp.Conv2d(1, 4, 0), "Conv2d: kernel_size"),
    (lambda: bp.Conv2d(1, 4, 3, stride=0), "Conv2d: stride"),
    (lambda: bp.Conv2d(1, 4, 3, padding=-1), "Conv2d: padding"),
    (lambda: bp.Conv2d(1, 4, (3, 3, 3)), "Conv2d: kernel_size must be an int or a pair"),
    (lambda: bp.Conv2d(1, 4, 3, init="magic"), "Conv2d: unknown init"),
    (lambda: bp.MaxPool2d(2, stride=0), "MaxPool2d: stride"),
    (lambda: bp.AvgPool2d(2, padding=2), "AvgPool2d: padding .* at most half"),
    (lambda: bp.AdaptiveAvgPool2d(2), "AdaptiveAvgPool2d: only output_size=1"),
    (lambda: bp.BatchNorm2d(0), "BatchNorm2d: num_features"),
    (lambda: bp.Flatten(start_dim=1.5), "Flatten: start_dim"),
]


@pytest.mark.parametrize("make,message", BAD_LAYERS,
                         ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD_LAYERS)])
def test_bad_arguments_are_refused_naming_the_layer(make, message):
    with pytest.raises(ValueError, match=message):
        make()


BAD_INPUTS = [
    (lambda: bp.Conv2d(3, 4, 3), (2, 3, 8), "Conv2d.*expected a 4-D input.*got shape \\(2, 3, 8\\)"),
    (lambda: bp.Conv2d(3, 4, 3), (2, 1, 8, 8), "Conv2d.*expected 3 input channels.*with 1"),
    (lambda: bp.Conv2d(1, 4, 5, padding=1), (1, 1, 2, 8), "Conv2d.*kernel spans 5x5.*padded input is only 4x10"),
    (lambda: bp.Conv2d(1, 4, 3, dilation=3), (1, 1, 6, 6), "Conv2d.*kernel spans 7x7"),
    (lambda: bp.MaxPool2d(3), (1, 1, 2, 5), "MaxPool2d.*kernel spans 3x3"),
    (lambda: bp.AvgPool2d(2), (4, 4), "AvgPool2d.*4-D input"),
    (lambda: bp.AdaptiveAvgPool2d(1), (2, 3, 4), "AdaptiveAvgPool2d.*4-D input"),
    (lambda: bp.BatchNorm2d(3), (2, 4, 5, 5), r"BatchNorm2d.*\(batch, 3, height, width\), got \(2, 4, 5, 5\)"),
    (lambda: bp.Flatten(start_dim=2), (3, 4), "Flatten.*cannot flatten dimensions 2..-1"),
]


@pytest.mark.parametrize("make,shape,message", BAD_INPUTS, ids=[f"input{i}" for i in range(len(BAD_INPUTS))])
def test_bad_inputs_get_a_typed_error_naming_the_layer(make, shape, message):
    with pytest.raises(ValueError, match=message):
        make()(np.zeros(shape, dtype="float32"))


def test_backward_before_forward_and_wrong_grad_shape(rng):
    for layer in (bp.Conv2d(1, 2, 2), bp.MaxPool2d(2), bp.AvgPool2d(2), bp.AdaptiveAvgPool2d(1), bp.Flatten(),
                  bp.BatchNorm2d(1)):
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.zeros((1, 1, 2, 2), dtype="float32"))
        layer(rng.standard_normal((2, 1, 4, 4)).astype("float32"))
        with pytest.raises(ValueError, match="backward expected grad_out of shape"):
            layer.backward(layer.xp.zeros((2, 1, 3, 3), dtype=layer.xp.float32))
    pool = bp.MaxPool2d(2)
    pool(rng.standard_normal((1, 1, 4, 4)).astype("float32"))
    pool.astype("float64")                                     # drops the cached argmax
    with pytest.raises(RuntimeError, match="before forward"):
        pool.backward(np.zeros((1, 1, 2, 2)))
