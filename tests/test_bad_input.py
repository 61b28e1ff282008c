"""Bad input gets a typed error naming the layer and what was expected vs received."""
from __future__ import annotations

import numpy as np
import pytest

import backends
import bpcore as bp


def checking(loss_fn):
    """The loss with its per-call value checks on (off by default: each costs a device sync)."""
    loss_fn.check_targets = True
    return loss_fn

X = np.ones((4, 2), dtype=np.float32)


def model():
    return bp.mlp([2, 3, 1], seed=0)


def forward_then(loss_fn, pred, target):
    return loss_fn.forward(pred, target)


# (id, call, error type, words the message must contain)
CASES = [
    ("wrong feature count", lambda: model()(np.ones((4, 3))), ValueError,
     ["Linear(2, 3)", "layer '0'", "(batch, 2)", "(4, 3)"]),
    ("1-D input to Linear", lambda: model()(np.ones(2)), ValueError, ["Linear(2, 3)", "(batch, 2)", "(2,)"]),
    # (N, T, C) sequences pass through Linear since the third round of API.md: a wrong C is refused
    ("3-D input to Linear", lambda: bp.Linear(2, 3)(np.ones((2, 2, 5))), ValueError, ["(batch, ..., 2)", "(2, 2, 5)"]),
    ("list as input", lambda: model()([[1.0, 2.0]]), TypeError, ["must be an array", "list"]),
    ("string array input", lambda: model()(np.array([["a", "b"]])), TypeError, ["real-valued"]),
    ("float64 device array into float32 model",
     lambda: model().to("array_api_strict")(backends.get("array_api_strict").asarray(np.ones((2, 2)))),
     TypeError, ["float64", "float32", "astype"]),
    ("zero width", lambda: bp.Linear(0, 3), ValueError, ["n_in", "positive", "0"]),
    ("negative width", lambda: bp.Linear(2, -1), ValueError, ["n_out", "-1"]),
    ("float width", lambda: bp.Linear(2.5, 1), ValueError, ["n_in", "2.5"]),
    ("mlp with one size", lambda: bp.mlp([2]), ValueError, ["at least"]),
    ("mlp with a zero size", lambda: bp.mlp([2, 0, 1]), ValueError, ["sizes[1]"]),
    ("unknown activation", lambda: bp.mlp([2, 1], activation="swish"), ValueError,
     ["swish", "relu", "tanh", "sigmoid"]),
    ("unknown init", lambda: bp.Linear(2, 1, init="orthogonal"), ValueError, ["orthogonal", "he", "xavier"]),
    ("bad seed", lambda: bp.Linear(2, 1, seed=-3), ValueError, ["seed"]),
    ("backward before forward", lambda: bp.Linear(2, 1).backward(np.ones((1, 1))), RuntimeError,
     ["Linear(2, 1)", "before forward"]),
    ("activation backward before forward", lambda: model().layers[1].backward(np.ones((1, 3))), RuntimeError,
     ["ReLU", "layer '1'", "before forward"]),
    ("grad_out of the wrong shape", lambda: _forward(model()).backward(np.ones((4, 2), dtype=np.float32)),
     ValueError, ["Linear(3, 1)", "(4, 1)", "(4, 2)"]),
    ("unknown device", lambda: model().to("tpu9"), ValueError, ["tpu9", "known names"]),
    ("unknown dtype", lambda: model().astype("float16"), ValueError, ["float16", "float32", "float64"]),
    ("Sequential of non-layers", lambda: bp.Sequential(bp.Linear(2, 2), "relu"), TypeError, ["item 1", "str"]),
    ("label out of range", lambda: checking(bp.SoftmaxCrossEntropyLoss())(np.zeros((3, 4)), np.array([0, 4, 1])),
     ValueError, ["labels", "4 classes", "[0, 3]", "4"]),
    ("negative label", lambda: checking(bp.SoftmaxCrossEntropyLoss())(np.zeros((3, 4)), np.array([0, -1, 1])),
     ValueError, ["labels", "-1"]),
    ("float labels", lambda: bp.SoftmaxCrossEntropyLoss()(np.zeros((3, 4)), np.array([0.0, 1.0, 2.0])),
     TypeError, ["integer", "float64"]),
    ("labels batch mismatch", lambda: bp.SoftmaxCrossEntropyLoss()(np.zeros((3, 4)), np.array([0, 1])),
     ValueError, ["batch size mismatch", "3", "2"]),
    ("1-D logits", lambda: bp.SoftmaxCrossEntropyLoss()(np.zeros(3), np.array([0, 1, 2])), ValueError,
     ["(batch, classes)", "(3,)"]),
    ("target batch mismatch", lambda: bp.MSELoss()(np.zeros((4, 1)), np.zeros((5, 1))), ValueError,
     ["batch size mismatch", "4", "(5, 1)"]),
    ("target shape mismatch", lambda: bp.MSELoss()(np.zeros((4, 2)), np.zeros((4, 3))), ValueError,
     ["(4, 3)", "(4, 2)"]),
    ("(N, 1) pred against (N, 2) target", lambda: bp.BCEWithLogitsLoss()(np.zeros((4, 1)), np.zeros((4, 2))),
     ValueError, ["(4, 2)", "(4, 1)"]),
    ("BCE target outside [0, 1]", lambda: checking(bp.BCEWithLogitsLoss())(np.zeros((2, 1)), np.array([[0.0], [2.0]])),
     ValueError, ["target", "[0.0, 1.0]", "2.0"]),
    ("BCE target outside [0, 1], checked once", lambda: bp.BCELoss().check(np.array([[0.5], [-0.5]])),
     ValueError, ["target", "[0.0, 1.0]", "-0.5"]),
    ("BCELoss pred outside [0, 1]", lambda: checking(bp.BCELoss())(np.array([[1.5]]), np.array([[1.0]])),
     ValueError, ["pred", "1.5"]),
    ("empty batch", lambda: bp.MSELoss()(np.zeros((0, 1)), np.zeros((0, 1))), ValueError, ["non-empty"]),
    ("integer pred", lambda: bp.MSELoss()(np.zeros((2, 1), dtype=np.int64), np.zeros((2, 1))), TypeError,
     ["floating"]),
    ("list as pred", lambda: bp.MSELoss()([[0.0]], np.zeros((1, 1))), TypeError, ["pred must be an array", "list"]),
    ("list as target", lambda: bp.MSELoss()(np.zeros((1, 1)), [[0.0]]), TypeError, ["target must be an array"]),
    ("loss backward before forward", lambda: bp.MSELoss().backward(), RuntimeError, ["MSELoss", "before forward"]),
    ("non-finite LeakyReLU slope", lambda: bp.LeakyReLU(float("inf")), ValueError, ["slope"]),
    ("Softmax dim out of range", lambda: bp.Softmax(dim=2)(np.ones((2, 3))), ValueError, ["dim 2", "(2, 3)"]),
]


def _forward(m):
    m(X)
    return m


@pytest.mark.parametrize("call, error, words", [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_bad_input_is_refused_clearly(call, error, words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_pred_n1_with_target_n_is_reshaped_not_broadcast():
    pred = np.array([[0.0], [1.0], [2.0]])
    target = np.array([0.0, 1.0, 2.0])
    loss_fn = bp.MSELoss()
    assert float(loss_fn(pred, target)) == 0.0          # a (3, 3) broadcast would give 4/3
    assert loss_fn.backward().shape == (3, 1)
    bce = bp.BCEWithLogitsLoss()
    bce(np.zeros((3, 1)), np.array([0, 1, 1]))
    assert bce.backward().shape == (3, 1)


def test_array_from_another_backend_is_refused(backend):
    other = "array_api_strict" if backend.spec != "array_api_strict" else "numpy"
    model = bp.mlp([2, 1], seed=0).to(other)
    foreign = backend.asarray(X)
    if backends.is_host_array(foreign):
        pytest.skip("host NumPy arrays are accepted (and moved) on every backend")
    with pytest.raises(TypeError) as info:
        model(foreign)
    assert backend.spec in str(info.value) and other in str(info.value)
    with pytest.raises(TypeError, match="target is on backend"):
        bp.MSELoss()(model.device.asarray(np.zeros((4, 1), dtype=np.float32)), backend.asarray(np.zeros((4, 1))))


def test_mixed_devices_in_sequential_are_refused():
    with pytest.raises(ValueError, match="different devices"):
        bp.Sequential(bp.Linear(2, 2).to("array_api_strict"), bp.Linear(2, 1))
