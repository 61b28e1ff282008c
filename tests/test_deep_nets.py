"""Deep nets: Residual's refusals and names, and examples/deep_nets.py's quality bar (a deep
sigmoid net's vanishing gradient; residual and batch-normalized nets reaching 95% on the digits).

Residual's generic checks (gradient check, torch twin, simulated device, ONNX) are a case in
tests/layer_cases.py.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re

import numpy as np
import pytest
from helpers import on

import bpcore as bp

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


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


# -- examples/deep_nets.py: the quality bar ---------------------------------------------------

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

