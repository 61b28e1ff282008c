"""The torch twin of a bpcore layer: the equal torch module, with the same numbers, and where each
bpcore gradient is found in torch.

``torch_twin(layer)`` takes a bpcore layer (its values are read from ``layer.state_dict()``, so
cast it to float64 first) and returns a :class:`TorchTwin`: a float64 CPU ``torch.nn.Module``
computing the same function, ``grads`` mapping each bpcore parameter name ("W", "0.b",
"block.0.W") to a function giving torch's gradient in bpcore's layout (Linear's W is torch's
``weight.T``), and ``buffers`` likewise for the running statistics. Containers (Sequential,
Residual) are twinned child by child, with dotted names.

A new layer type gets a twin by adding a builder to ``BUILDERS`` (class -> function(layer) ->
TorchTwin). torch is imported inside the builders: importing this module does not need it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import bpcore as bp


@dataclass
class TorchTwin:
    """A torch module equal to a bpcore layer; ``grads``/``buffers``: bpcore name -> () -> torch tensor."""

    module: object
    grads: dict[str, Callable] = field(default_factory=dict)
    buffers: dict[str, Callable] = field(default_factory=dict)

    def prefixed(self, prefix: str) -> "TorchTwin":
        """The same twin with every name under ``prefix`` ("0" -> "0.W")."""
        return TorchTwin(self.module, {f"{prefix}.{k}": v for k, v in self.grads.items()},
                         {f"{prefix}.{k}": v for k, v in self.buffers.items()})


def torch_twin(layer) -> TorchTwin:
    """The twin of ``layer`` (any bpcore layer with a builder in ``BUILDERS``, containers included)."""
    for cls in type(layer).__mro__:
        if cls in BUILDERS:
            return BUILDERS[cls](layer)
    raise LookupError(f"no torch twin for {type(layer).__name__}: add a builder to tests/torch_twins.py BUILDERS")


def _load(module, values: dict) -> None:
    """Copy host arrays into the module's parameters/buffers of the same names."""
    import torch

    with torch.no_grad():
        for name, value in values.items():
            target = getattr(module, name)
            target.copy_(torch.as_tensor(np.asarray(value)).to(target.dtype))


def _no_parameters(make_module: Callable) -> Callable:
    """A builder for a layer without parameters: ``make_module(config)`` gives the torch module."""
    def build(layer):
        import torch

        return TorchTwin(make_module(torch, layer.config()).double())
    return build


def _linear(layer):
    import torch

    state = layer.state_dict()
    module = torch.nn.Linear(layer.n_in, layer.n_out, bias=layer.b is not None, dtype=torch.float64)
    _load(module, {"weight": state["W"].T})                # torch keeps W as (n_out, n_in)
    grads = {"W": lambda: module.weight.grad.T}
    if layer.b is not None:
        _load(module, {"bias": state["b"]})
        grads["b"] = lambda: module.bias.grad
    return TorchTwin(module, grads)


def _conv2d(layer):
    import torch

    state, config = layer.state_dict(), layer.config()
    module = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                             padding=layer.padding, dilation=layer.dilation, bias=config["bias"],
                             dtype=torch.float64)
    _load(module, {"weight": state["W"]})                  # the same (OC, C, kH, kW) layout
    grads = {"W": lambda: module.weight.grad}
    if config["bias"]:
        _load(module, {"bias": state["b"]})
        grads["b"] = lambda: module.bias.grad
    return TorchTwin(module, grads)


def _normalization(torch_class, affine_key):
    """BatchNorm1d/2d and LayerNorm: the same parameter and buffer names as torch."""
    def build(layer):
        import torch

        config = layer.config()
        size = config.pop("n", None) or config.pop("num_features")
        module = getattr(torch.nn, torch_class)(size, **config, dtype=torch.float64)
        state = layer.state_dict()
        _load(module, state)
        grads = {name: (lambda name=name: getattr(module, name).grad) for name, _ in layer.named_parameters()}
        buffers = {name: (lambda name=name: getattr(module, name)) for name in state if name not in grads}
        assert bool(grads) == config[affine_key]
        return TorchTwin(module, grads, buffers)
    return build


def _sequential(layer):
    import torch

    twins = [torch_twin(child).prefixed(str(i)) for i, child in enumerate(layer)]
    merged = TorchTwin(torch.nn.Sequential(*(twin.module for twin in twins)))
    for twin in twins:
        merged.grads.update(twin.grads)
        merged.buffers.update(twin.buffers)
    return merged


def _residual(layer):
    import torch

    class Residual(torch.nn.Module):
        def __init__(self, block):
            super().__init__()
            self.block = block

        def forward(self, x):
            return x + self.block(x)

    inner = torch_twin(layer.block).prefixed("block")
    return TorchTwin(Residual(inner.module), inner.grads, inner.buffers)


def _embedding(layer):
    import torch

    module = torch.nn.Embedding(layer.num_embeddings, layer.embedding_dim, dtype=torch.float64)
    _load(module, {"weight": layer.state_dict()["W"]})        # the same (V, D) layout
    return TorchTwin(module, {"W": lambda: module.weight.grad})


def _recurrent(layer):
    """RNN/LSTM/GRU: torch's batch-first module, its output sequence only (not the (output, h_n) pair)."""
    import torch

    kind = type(layer).__name__
    extra = {"nonlinearity": layer.nonlinearity} if kind == "RNN" else {}
    inner = getattr(torch.nn, kind)(layer.input_size, layer.hidden_size, batch_first=True, dtype=torch.float64,
                                    **extra)
    state = layer.state_dict()
    _load(inner, {"weight_ih_l0": state["W_ih"].T, "weight_hh_l0": state["W_hh"].T,
                  "bias_ih_l0": state["b_ih"], "bias_hh_l0": state["b_hh"]})

    class Sequence(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)[0]

    grads = {"W_ih": lambda: inner.weight_ih_l0.grad.T, "W_hh": lambda: inner.weight_hh_l0.grad.T,
             "b_ih": lambda: inner.bias_ih_l0.grad, "b_hh": lambda: inner.bias_hh_l0.grad}
    return TorchTwin(Sequence(), grads)


def _causal_mask(torch, T):
    return torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)      # True: the future, masked


def _attention(layer):
    """torch.nn.MultiheadAttention (batch first): in_proj_weight = W_qkv.T, out_proj.weight = W_out.T."""
    import torch

    config, state = layer.config(), layer.state_dict()
    attention = torch.nn.MultiheadAttention(layer.embed_dim, layer.num_heads, batch_first=True, bias=config["bias"],
                                            dtype=torch.float64)
    _load(attention, {"in_proj_weight": state["W_qkv"].T})
    _load(attention.out_proj, {"weight": state["W_out"].T})
    grads = {"W_qkv": lambda: attention.in_proj_weight.grad.T, "W_out": lambda: attention.out_proj.weight.grad.T}
    if config["bias"]:
        _load(attention, {"in_proj_bias": state["b_qkv"]})
        _load(attention.out_proj, {"bias": state["b_out"]})
        grads.update(b_qkv=lambda: attention.in_proj_bias.grad, b_out=lambda: attention.out_proj.bias.grad)

    class SelfAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = attention

        def forward(self, x):
            mask = _causal_mask(torch, x.shape[1]) if config["causal"] else None
            return self.attention(x, x, x, attn_mask=mask, need_weights=False)[0]

    return TorchTwin(SelfAttention(), grads)


def _children(layer, names) -> TorchTwin:
    """A twin whose module holds the named children's twins (names kept), for a forward written below."""
    import torch

    twins = {name: torch_twin(getattr(layer, name)).prefixed(name) for name in names}
    merged = TorchTwin(torch.nn.ModuleDict({name: twin.module for name, twin in twins.items()}))
    for twin in twins.values():
        merged.grads.update(twin.grads)
        merged.buffers.update(twin.buffers)
    return merged


def _transformer_block(layer):
    """GPT-2's pre-LN block: h = x + attn(ln_1(x)); y = h + mlp(ln_2(h))."""
    import torch

    parts = _children(layer, ("ln_1", "attn", "ln_2", "mlp"))

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = parts.module

        def forward(self, x):
            p = self.parts
            h = x + p["attn"](p["ln_1"](x))
            return h + p["mlp"](p["ln_2"](h))

    return TorchTwin(Block(), parts.grads, parts.buffers)


def _token_position(layer):
    """token(x) + position(0..T-1)."""
    import torch

    parts = _children(layer, ("token", "position"))

    class TokenPosition(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = parts.module

        def forward(self, x):
            return self.parts["token"](x) + self.parts["position"](torch.arange(x.shape[1]))[None]

    return TorchTwin(TokenPosition(), parts.grads, parts.buffers)


def _tuples(config: dict) -> dict:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in config.items()}


BUILDERS: dict[type, Callable] = {
    bp.Identity: _no_parameters(lambda torch, c: torch.nn.Identity()),
    bp.ReLU: _no_parameters(lambda torch, c: torch.nn.ReLU()),
    bp.LeakyReLU: _no_parameters(lambda torch, c: torch.nn.LeakyReLU(negative_slope=c["slope"])),
    bp.Sigmoid: _no_parameters(lambda torch, c: torch.nn.Sigmoid()),
    bp.Tanh: _no_parameters(lambda torch, c: torch.nn.Tanh()),
    bp.Softmax: _no_parameters(lambda torch, c: torch.nn.Softmax(dim=c["dim"])),
    bp.GELU: _no_parameters(lambda torch, c: torch.nn.GELU(approximate="tanh")),
    bp.Dropout: _no_parameters(lambda torch, c: torch.nn.Dropout(c["p"])),      # equal in eval mode only
    bp.Flatten: _no_parameters(lambda torch, c: torch.nn.Flatten(**c)),
    bp.MaxPool2d: _no_parameters(lambda torch, c: torch.nn.MaxPool2d(**_tuples(c))),
    bp.AvgPool2d: _no_parameters(lambda torch, c: torch.nn.AvgPool2d(**_tuples(c))),   # count_include_pad
    bp.AdaptiveAvgPool2d: _no_parameters(lambda torch, c: torch.nn.AdaptiveAvgPool2d(c["output_size"])),
    bp.Linear: _linear,
    bp.Conv2d: _conv2d,
    bp.BatchNorm1d: _normalization("BatchNorm1d", "affine"),
    bp.BatchNorm2d: _normalization("BatchNorm2d", "affine"),
    bp.LayerNorm: _normalization("LayerNorm", "elementwise_affine"),
    bp.Sequential: _sequential,
    bp.Residual: _residual,
    bp.Embedding: _embedding,
    bp.RNN: _recurrent,
    bp.LSTM: _recurrent,
    bp.GRU: _recurrent,
    bp.MultiHeadAttention: _attention,
    bp.TransformerBlock: _transformer_block,
    bp.TokenPositionEmbedding: _token_position,
}
