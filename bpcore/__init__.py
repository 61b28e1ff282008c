"""bpcore: backpropagation you can read, on any Array API backend.

    import bpcore as bp
    model = bp.mlp([2, 16, 8, 1], activation="tanh", seed=0).to("cpu")
    loss_fn = bp.BCEWithLogitsLoss()
    out = model(X); loss = loss_fn(out, y); model.backward(loss_fn.backward())
    print(bp.gradcheck(model, loss_fn, X, y))
"""
# no `from __future__ import annotations` here: it would leave bp.annotations in the public namespace
import backends as _backends

if getattr(_backends, "IS_BPCORE_BACKENDS", False) is not True:
    raise ImportError(
        f"`import backends` found {getattr(_backends, '__file__', None) or _backends!r}, which is not "
        f"bpcore's backend registry: an unrelated PyPI project is also named 'backends'. "
        f"Remove it (pip uninstall backends) and reinstall bpcore (pip install -e .)")

from . import data, distributed, io, onnx, optim, viz  # noqa: E402
from ._checks import ArgumentTypeError  # noqa: E402
from ._version import __version__  # noqa: E402
from .checkpoint import CheckpointError, load, save_checkpoint  # noqa: E402
from .gradcheck import GradcheckReport, gradcheck  # noqa: E402
from .losses import BCELoss, BCEWithLogitsLoss, Loss, MSELoss, SoftmaxCrossEntropyLoss  # noqa: E402
from .nn import (  # noqa: E402
    ACTIVATIONS, GELU, BatchNorm1d, Dropout, Identity, Layer, LayerList, LayerNorm, LeakyReLU, Linear, Parameter,
    ReLU, Residual, Sequential, Sigmoid, Softmax, Tanh, init, mlp, register_layer,
)
from .nn import MultiHeadAttention, TokenPositionEmbedding, TransformerBlock, gpt  # noqa: E402  (transformers)
from .nn import AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Flatten, MaxPool2d, summary  # noqa: E402
from .training import (  # noqa: E402
    Callback, CSVLogger, DivergenceError, EarlyStopping, History, ModelCheckpoint, evaluate, fit, generate,
    load_checkpoint, predict,
)
from .training import GradientHealth, GradientHealthWarning, HealthReport, diagnose  # noqa: E402
from .viz import FlowRecorder  # noqa: E402
from .nn import GRU, LSTM, RNN, Embedding  # noqa: E402  (sequence models)


__all__ = [
    "ACTIVATIONS", "ArgumentTypeError", "BatchNorm1d", "BCELoss", "BCEWithLogitsLoss", "Callback", "CheckpointError",
    "CSVLogger",
    "data", "distributed", "DivergenceError", "Dropout", "EarlyStopping", "evaluate", "fit", "FlowRecorder",
    "GELU", "gradcheck", "GradcheckReport", "History", "Identity", "init", "io", "Layer", "LayerList", "register_layer",
    "LayerNorm", "LeakyReLU", "Linear", "load", "load_checkpoint", "Loss", "mlp", "ModelCheckpoint",
    "MSELoss", "onnx", "optim", "Parameter", "predict", "ReLU", "Residual", "save_checkpoint", "Sequential",
    "Sigmoid", "Softmax", "SoftmaxCrossEntropyLoss", "Tanh", "viz", "__version__",
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "Conv2d", "Flatten", "MaxPool2d", "summary",
    "diagnose", "GradientHealth", "GradientHealthWarning", "HealthReport",
    "Embedding", "GRU", "LSTM", "RNN",
    "MultiHeadAttention", "TokenPositionEmbedding", "TransformerBlock", "generate", "gpt",
]
