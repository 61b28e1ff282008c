"""Floor 2: the layer contract and every layer, forward and backward side by side.

    parameter.py      Parameter: a trainable array and its gradient
    kit.py            the layer kit: parameter, register_buffer, check_input, save_for_backward/saved,
                      check_grad_out (Layer's base; Parameter.accumulate_grad is the sixth tool)
    module.py         Layer (the contract), the layer-type registry
    devices.py        moving and casting a layer: to, cpu, cuda, astype (Layer's base)
    budget.py         what rebuilding a model from a file may allocate
    state.py          state_dict loading: check everything, then write
    containers.py     Sequential, Residual, LayerList, mlp
    linear.py         Linear
    activations.py    Identity, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, GELU (+ stable_sigmoid)
    normalization.py  BatchNorm1d, BatchNorm2d, LayerNorm
    attention.py      MultiHeadAttention (self-attention, causal or not; backward written out)
    transformer.py    TransformerBlock (GPT-2's pre-LN block), TokenPositionEmbedding, gpt
    chunks.py         row blocks: elementwise chains (GELU) one cache-sized block at a time on a CPU
    conv.py           Conv2d (one matrix product per pass on im2col rows, explained in its docstring)
    windows.py        sliding windows (im2col, col2im, max routing): the portable lines conv and pooling use
    pooling.py        MaxPool2d, AvgPool2d, AdaptiveAvgPool2d
    flatten.py        Flatten
    summary.py        summary(model, input_shape): one line per layer, output shape and parameters
    dropout.py        Dropout
    embedding.py      Embedding (integer indices -> rows of W)
    recurrent.py      RNN, LSTM, GRU (backpropagation through time)
    scatter.py        scatter_add_rows: Embedding's backward, portable, or a backend's fast path
    init.py           weight initialisation (He, Xavier/Glorot, LeCun) as torch.nn.init

Everything here imports only ``backends`` (floor 1) and ``bpcore._checks``.
"""
from __future__ import annotations

from . import init
from .attention import MultiHeadAttention
from .activations import ACTIVATIONS, GELU, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, stable_sigmoid
from .containers import LayerList, Residual, Sequential, mlp
from .conv import Conv2d
from .dropout import Dropout
from .flatten import Flatten
from .linear import Linear
from .module import FLOAT_DTYPES, Layer, Parameter, dtype_name, layer_types, register_layer
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .summary import ModelSummary, summary
from .embedding import Embedding
from .recurrent import GRU, LSTM, RNN
from .transformer import TokenPositionEmbedding, TransformerBlock, gpt

__all__ = [
    "ACTIVATIONS", "BatchNorm1d", "Dropout", "FLOAT_DTYPES", "GELU", "Identity", "init", "Layer", "LayerList",
    "LayerNorm",
    "LeakyReLU", "Linear", "Parameter", "ReLU", "Residual", "Sequential", "Sigmoid", "Softmax", "Tanh",
    "dtype_name", "layer_types", "mlp", "register_layer", "stable_sigmoid",
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "Conv2d", "Flatten", "MaxPool2d", "ModelSummary", "summary",
    "Embedding", "GRU", "LSTM", "RNN",
    "MultiHeadAttention", "TokenPositionEmbedding", "TransformerBlock", "gpt",
]
