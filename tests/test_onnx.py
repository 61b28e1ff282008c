"""ONNX export: the onnx backend (ndonnx) and bp.onnx.export, checked by onnx.checker and onnxruntime.

Each test skips with the reason when ndonnx, onnx or onnxruntime is missing
(pip install -e ".[onnx]"; ci/test.sh installs them).
"""
from __future__ import annotations

import numpy as np
import pytest

import backends
import bpcore as bp

ONNX_REASON = backends.status().get("onnx")
needs_ndonnx = pytest.mark.skipif(ONNX_REASON is not None, reason=str(ONNX_REASON))


# ------------------------------------------------------------------------ the backend
def test_onnx_is_listed_but_is_not_a_training_backend():
    assert "onnx" in backends.known()
    assert "onnx" not in backends.available(trains=True)
    assert ("onnx" in backends.available()) == (ONNX_REASON is None)
    assert "onnx" not in backends.status(trains=True) and "onnx" in backends.status(trains=False)


@needs_ndonnx
def test_parameters_become_constants_with_the_same_values():
    model = bp.mlp([3, 5, 2], seed=0)
    expected = model.state_dict()
    model.to("onnx")
    be = backends.get("onnx")
    for name, p in model.named_parameters():
        assert be.owns(p.data)
        np.testing.assert_array_equal(be.to_numpy(p.data), expected[name])


@needs_ndonnx
def test_backward_on_the_onnx_backend_says_export_is_inference_only():
    import ndonnx as ndx

    model = bp.mlp([3, 4, 2], seed=0).to("onnx").eval()
    out = model(ndx.argument(shape=("batch", 3), dtype=ndx.float32))
    assert backends.get("onnx").owns(out)
    with pytest.raises(backends.InferenceOnlyError, match="inference-only"):
        model.backward(np.ones((2, 2), dtype="float32"))
    fresh = bp.Tanh().to("onnx")
    with pytest.raises(backends.InferenceOnlyError, match="inference-only"):
        fresh.backward(np.ones((2, 2), dtype="float32"))      # before any forward too


@needs_ndonnx
def test_training_mode_dropout_and_traced_values_are_refused_clearly():
    import ndonnx as ndx

    be = backends.get("onnx")
    x = ndx.argument(shape=("batch", 3), dtype=ndx.float32)
    with pytest.raises(backends.InferenceOnlyError, match="eval"):
        bp.Dropout(0.5, seed=0).to("onnx").train()(x)
    with pytest.raises(ValueError, match="onnxruntime"):
        be.to_numpy(x * 2.0)
    with pytest.raises(ValueError, match="no devices"):
        backends.get("onnx:cuda")
