"""One table of layer cases: every layer configuration once, run by tests/test_layer_cases.py.

In the spirit of Chainer's FunctionTestCase, a case says how to make a layer and its input, and
the generic tests run every case through every check (the first two on every backend):

    gradcheck  float64 central differences of MSE(layer(x), random target), every parameter and x,
               to error <= 1e-8 + 1e-6 * scale
    torch      the torch twin (tests/torch_twins.py): output, dL/dx, every parameter gradient and
               buffer to 1e-8 in float64, RuntimeWarnings as errors, the host inputs unchanged
    device1    on array_api_strict:device1 (a second GPU, simulated): everything stays on the
               device and equals the numpy backend's results
    onnx       bp.onnx.export, and onnxruntime equal to the numpy forward (float32 and float64)

and a test fails when a built-in class of ``bp.nn.layer_types()`` has no case here. Planted bugs
in test_layer_cases.py show that each check can fail. Keep shapes tiny: each case runs about ten
times (gradcheck and torch once per backend).

To add a case, append to CASES (see the cases below for more):

    LayerCase("Linear-3d", make=lambda: nontrivial(bp.Linear(4, 3, seed=1)), inputs=normal(2, 3, 4))

    make         () -> a fresh seeded layer (float32; the checks cast). ``nontrivial(layer)`` gives
                 parameters that start constant (biases, norm weights) random values, so a dropped
                 term shows; ``warmed(layer, shape)`` runs training batches to move running statistics.
    inputs       rng -> the host input: float64, or integer token ids for layers that take indices
                 (``lambda rng: rng.integers(0, 10, (2, 3))``: no dL/dx is then checked).
    edge_inputs  rng -> inputs with huge values or exact kinks (ReLU at 0), for every check but the
                 gradient check (central differences cannot cross a kink); default: ``inputs``.
    mode         "train" or "eval", for every check (the export is always eval).
    torch        layer (float64) -> TorchTwin; ``torch_twin`` (the default) covers every layer type
                 with a builder in tests/torch_twins.py: add one there for a new type.
    skip         {check name: reason} for what does not apply; the check shows as SKIPPED with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from torch_twins import torch_twin

import bpcore as bp

CHECKS = ("gradcheck", "torch", "device1", "onnx")

# Layer types that need no case, with the reason (the completeness test reads it).
EXEMPT = {"LayerList": "holds layers for its owner and runs nothing: its forward and backward raise"}

# Values that overflow a naive exp(-x) (|x| = 1000) or sit on a kink (0).
EXTREME_ROW = [-1000.0, -50.0, 0.0, 50.0, 1000.0]


@dataclass(frozen=True)
class LayerCase:
    """One layer configuration (see the module docstring for the fields)."""

    name: str
    make: Callable
    inputs: Callable
    edge_inputs: Callable | None = None
    mode: str = "train"
    torch: Callable | None = torch_twin
    skip: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in ("train", "eval"):
            raise ValueError(f"{self.name}: mode must be 'train' or 'eval', got {self.mode!r}")
        unknown = set(self.skip) - set(CHECKS)
        if unknown:
            raise ValueError(f"{self.name}: skip names unknown checks {sorted(unknown)}; checks are {CHECKS}")
        if self.torch is None and "torch" not in self.skip:
            raise ValueError(f"{self.name}: no torch reference: say why in skip={{'torch': reason}}")

    def layer(self, dtype: str = "float64"):
        """A fresh layer in ``dtype`` and the case's mode, on the CPU."""
        layer = self.make().astype(dtype)
        return layer.train(self.mode == "train")

    def input(self, rng, edge: bool = False) -> np.ndarray:
        draw = self.edge_inputs if edge and self.edge_inputs is not None else self.inputs
        return draw(rng)


def params(check: str):
    """The cases as pytest params for ``check``; a case that skips it shows SKIPPED with its reason."""
    return [pytest.param(case, id=case.name,
                         marks=[pytest.mark.skip(reason=f"{case.name}: {case.skip[check]}")] if check in case.skip
                         else []) for case in CASES]


def layer_types_without_a_case(types: dict) -> list:
    """Names of the built-in classes among ``types`` ({name: class}) that no case makes, nor EXEMPT."""
    covered = {type(case.make()) for case in CASES}
    return sorted(name for name, cls in types.items()
                  if cls.__module__.startswith("bpcore.") and cls not in covered and name not in EXEMPT)


# -- making layers and inputs ----------------------------------------------------------------------
def nontrivial(layer, seed: int = 0):
    """``layer`` with every parameter that starts constant (zeros, ones) set to seeded values of size
    0.5..1.5 and random sign; returns it."""
    rng = np.random.default_rng(seed)
    state = layer.state_dict()
    for name, _ in layer.named_parameters():
        value = state[name]
        if value.size > 1 and np.all(value == value.flat[0]):
            state[name] = rng.uniform(0.5, 1.5, value.shape) * rng.choice([-1.0, 1.0], value.shape)
    layer.load_state_dict(state)
    return layer


def warmed(layer, shape, steps: int = 3, seed: int = 1):
    """``layer`` after ``steps`` training forwards of shifted data of ``shape``: running statistics moved."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        layer(shifted(*shape)(rng).astype("float32"))
    return layer


def normal(*shape, scale: float = 1.0):
    return lambda rng: scale * rng.standard_normal(shape)


def shifted(*shape):
    """Features (axis 1) with different means and scales, so a normalization has work to do."""
    def draw(rng):
        view = (1, shape[1]) + (1,) * (len(shape) - 2)
        return (rng.uniform(-5, 5, shape[1]).reshape(view) + rng.uniform(0.5, 4.0, shape[1]).reshape(view)
                * rng.standard_normal(shape))
    return draw


def tokens(vocab_size, *shape):
    """Integer token ids in [0, vocab_size)."""
    return lambda rng: rng.integers(0, vocab_size, shape)


def with_extreme_row(*shape):
    """2 N(0, 1) values, the first row along the last axis (of 5) being EXTREME_ROW."""
    def draw(rng):
        x = 2.0 * rng.standard_normal(shape)
        x.reshape(-1, shape[-1])[0] = EXTREME_ROW
        return x
    return draw


def activation(name, make, shape=(4, 5)):
    return LayerCase(name, make, inputs=normal(*shape, scale=2.0), edge_inputs=with_extreme_row(*shape))


def conv(name, batch, c_in, c_out, hw, kernel, stride=1, padding=0, dilation=1, bias=True):
    return LayerCase(name, lambda: nontrivial(bp.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding,
                                                        dilation=dilation, bias=bias, seed=3)),
                     inputs=normal(batch, c_in, *hw))


def pool(name, make, hw):
    return LayerCase(name, make, inputs=normal(1, 2, *hw))


# -- the table ---------------------------------------------------------------------------------------
CASES = [
    activation("Identity", bp.Identity),
    activation("ReLU", bp.ReLU),
    activation("LeakyReLU", lambda: bp.LeakyReLU(0.2)),
    activation("LeakyReLU-negative_slope", lambda: bp.LeakyReLU(negative_slope=0.3)),    # torch's keyword
    activation("Sigmoid", bp.Sigmoid),
    activation("Tanh", bp.Tanh),
    activation("Softmax", bp.Softmax),
    activation("Softmax-dim0", lambda: bp.Softmax(dim=0)),
    activation("Softmax-dim1-3d", lambda: bp.Softmax(dim=1), shape=(2, 3, 5)),
    activation("GELU", bp.GELU),

    LayerCase("Linear", lambda: nontrivial(bp.Linear(4, 3, seed=0)), inputs=normal(5, 4)),
    LayerCase("Linear-no-bias", lambda: bp.Linear(4, 3, seed=0, bias=False), inputs=normal(5, 4)),
    LayerCase("Linear-3d", lambda: nontrivial(bp.Linear(4, 3, seed=1)), inputs=normal(2, 3, 4)),

    LayerCase("BatchNorm1d", lambda: warmed(nontrivial(bp.BatchNorm1d(4, momentum=0.5)), (8, 4)),
              inputs=shifted(6, 4)),
    LayerCase("BatchNorm1d-eval", lambda: warmed(nontrivial(bp.BatchNorm1d(4, momentum=0.5)), (8, 4)),
              inputs=shifted(6, 4), mode="eval"),
    LayerCase("BatchNorm1d-no-affine", lambda: warmed(bp.BatchNorm1d(4, affine=False, eps=0.5), (8, 4)),
              inputs=shifted(5, 4)),
    LayerCase("BatchNorm1d-cumulative", lambda: warmed(nontrivial(bp.BatchNorm1d(4, momentum=None)), (8, 4)),
              inputs=shifted(6, 4)),
    LayerCase("BatchNorm2d", lambda: warmed(nontrivial(bp.BatchNorm2d(3)), (4, 3, 3, 3)),
              inputs=shifted(2, 3, 3, 3)),
    LayerCase("BatchNorm2d-eval", lambda: warmed(nontrivial(bp.BatchNorm2d(3)), (4, 3, 3, 3)),
              inputs=shifted(2, 3, 3, 3), mode="eval"),
    LayerCase("LayerNorm", lambda: nontrivial(bp.LayerNorm(5)), inputs=shifted(2, 3, 5)),
    LayerCase("LayerNorm-eval", lambda: nontrivial(bp.LayerNorm(5)), inputs=shifted(4, 5), mode="eval"),
    LayerCase("LayerNorm-no-affine", lambda: bp.LayerNorm(5, eps=0.3, elementwise_affine=False),
              inputs=shifted(4, 5)),

    LayerCase("Dropout", lambda: bp.Dropout(0.5, seed=3), inputs=normal(4, 6), torch=None,
              skip={"torch": "torch draws its own masks; tests/test_dropout.py checks bpcore's by hand"}),
    LayerCase("Dropout-eval", lambda: bp.Dropout(0.5, seed=3), inputs=normal(4, 6), mode="eval"),

    LayerCase("Residual", lambda: bp.Residual(bp.Sequential(nontrivial(bp.Linear(5, 5, init="xavier", seed=3)),
                                                            bp.Tanh())), inputs=normal(4, 5, scale=1.5)),
    LayerCase("Sequential", lambda: bp.Sequential(nontrivial(bp.Linear(4, 5, seed=0)), nontrivial(bp.BatchNorm1d(5)),
                                                  bp.GELU(), nontrivial(bp.Linear(5, 3, seed=1)), bp.Softmax()),
              inputs=normal(6, 4)),

    # Conv2d: (batch, in, out, (H, W), kernel, stride, padding, dilation, bias)
    conv("Conv2d-1x1-batch1", 1, 1, 1, (5, 5), 1),
    conv("Conv2d-non-overlapping", 2, 2, 4, (4, 4), 2, stride=2),
    conv("Conv2d-same-padding-non-square", 2, 2, 3, (5, 4), 3, padding=1),
    conv("Conv2d-5x5-padding2", 1, 1, 2, (5, 5), 5, padding=2),
    conv("Conv2d-stride3-no-bias", 1, 2, 2, (7, 6), 3, stride=3, bias=False),
    conv("Conv2d-dilation2-stride-padding", 1, 2, 2, (7, 7), 3, stride=2, padding=1, dilation=2),
    conv("Conv2d-pairs", 1, 2, 3, (7, 6), (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1)),
    conv("Conv2d-8-channels-1x3", 1, 8, 2, (3, 5), (1, 3), stride=(1, 2), padding=(0, 1)),
    conv("Conv2d-8-to-8-dilation2", 1, 8, 8, (5, 5), 3, dilation=2),

    pool("MaxPool2d", lambda: bp.MaxPool2d(2), (6, 6)),                            # non-overlapping 2x2
    pool("MaxPool2d-overlapping-padded", lambda: bp.MaxPool2d(3, stride=2, padding=1), (7, 7)),   # -inf pads
    pool("MaxPool2d-non-square-stride1", lambda: bp.MaxPool2d((2, 3), stride=1), (5, 6)),
    pool("MaxPool2d-stride3-remainder", lambda: bp.MaxPool2d(3, stride=3, padding=1), (7, 8)),
    pool("AvgPool2d", lambda: bp.AvgPool2d(2), (6, 6)),
    pool("AvgPool2d-padded", lambda: bp.AvgPool2d(3, stride=2, padding=1), (7, 7)),   # pads count as zeros
    pool("AvgPool2d-pairs", lambda: bp.AvgPool2d((2, 3), stride=(1, 2), padding=(1, 1)), (5, 6)),
    LayerCase("AdaptiveAvgPool2d", lambda: bp.AdaptiveAvgPool2d(1), inputs=normal(2, 3, 5, 2)),
    LayerCase("Flatten", bp.Flatten, inputs=normal(2, 3, 2, 2)),
    LayerCase("Flatten-middle", lambda: bp.Flatten(start_dim=1, end_dim=2), inputs=normal(2, 3, 2, 2)),

    # sequences (tests/test_recurrent.py and test_embedding.py hold T = 1, T = 200, states, checkpoints)
    LayerCase("Embedding", lambda: bp.Embedding(7, 3, seed=0),
              inputs=lambda rng: np.concatenate([rng.integers(0, 7, (2, 4)), [[6, 6, 0, 6]]])),   # repeats
    LayerCase("RNN", lambda: bp.RNN(3, 4, seed=0), inputs=normal(2, 5, 3)),
    LayerCase("RNN-relu", lambda: bp.RNN(3, 4, nonlinearity="relu", seed=0), inputs=normal(2, 5, 3)),
    LayerCase("LSTM", lambda: bp.LSTM(3, 4, seed=0), inputs=normal(2, 5, 3), edge_inputs=normal(2, 5, 3, scale=30.0)),
    LayerCase("GRU", lambda: bp.GRU(3, 4, seed=0), inputs=normal(2, 5, 3), edge_inputs=normal(2, 5, 3, scale=30.0)),
    # attention and the GPT (tests/test_attention.py and test_gpt.py hold heads 1..4, T = 1, generation)
    LayerCase("MultiHeadAttention", lambda: nontrivial(bp.MultiHeadAttention(4, 2, seed=2)), inputs=normal(2, 3, 4)),
    LayerCase("MultiHeadAttention-causal-no-bias", lambda: bp.MultiHeadAttention(4, 2, causal=True, bias=False, seed=2),
              inputs=normal(2, 3, 4)),
    LayerCase("TransformerBlock", lambda: nontrivial(bp.TransformerBlock(4, 2, mlp_ratio=2, seed=3)),
              inputs=normal(2, 3, 4)),
    LayerCase("TokenPositionEmbedding", lambda: bp.TokenPositionEmbedding(7, 6, 4, seed=4), inputs=tokens(7, 2, 5)),
    LayerCase("gpt", lambda: nontrivial(bp.gpt(7, 6, 4, num_heads=2, num_layers=1, mlp_ratio=2, seed=5)),
              inputs=tokens(7, 2, 4)),
]

assert len({case.name for case in CASES}) == len(CASES), "case names must be unique"
