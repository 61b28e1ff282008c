"""TransformerBlock: GPT-2's pre-LN block, made of the existing layers, its backward written out.

    h = x + attn(ln_1(x))          attention, on a normalized copy, added to the residual stream
    y = h + mlp(ln_2(h))           a two-layer MLP (Linear, GELU, Linear), the same way

Backward, from g = dL/dy: each residual sum passes g on unchanged and adds what comes back
through its branch,

    dL/dh = g + ln_2.backward(mlp.backward(g))
    dL/dx = dL/dh + ln_1.backward(attn.backward(dL/dh))
"""
from __future__ import annotations

from .._checks import check_int
from . import init as _init
from .activations import GELU
from .attention import MultiHeadAttention
from .containers import Sequential, _check_runs
from .linear import Linear
from .module import Layer
from .normalization import LayerNorm


class TransformerBlock(Layer):
    """GPT-2's pre-LN transformer block: x (N, T, E) -> (N, T, E).

    Children (so parameter names are "ln_1.weight", "attn.W_qkv", "mlp.0.W", ...):
    ``ln_1`` LayerNorm(E), ``attn`` MultiHeadAttention(E, num_heads, causal), ``ln_2`` LayerNorm(E),
    ``mlp`` Sequential(Linear(E, mlp_ratio E), GELU(), Linear(mlp_ratio E, E)). GELU is the tanh form
    (GPT-2's). The Linears are drawn Xavier-uniform (U(-a, a), a = sqrt(6 / (n_in + n_out))) with zero
    biases, as the attention's W_qkv (see :class:`MultiHeadAttention`).

    Args:
        embed_dim: E. num_heads: attention heads (E must be a multiple). mlp_ratio: the MLP's hidden
        width is mlp_ratio * E. causal: masked attention (a decoder, as in GPT). seed: int, None or a
        NumPy Generator; one seed gives the whole block.
    """

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: int = 4, causal: bool = True, seed=None):
        super().__init__()
        self.embed_dim = check_int("TransformerBlock", "embed_dim", embed_dim)
        self.mlp_ratio = check_int("TransformerBlock", "mlp_ratio", mlp_ratio)
        rng = _init.host_rng(seed)
        E, hidden = embed_dim, mlp_ratio * embed_dim
        self.ln_1 = LayerNorm(E)
        self.attn = MultiHeadAttention(E, num_heads, causal=causal, seed=rng)
        self.ln_2 = LayerNorm(E)
        self.mlp = Sequential(Linear(E, hidden, init="xavier_uniform", seed=rng), GELU(),
                              Linear(hidden, E, init="xavier_uniform", seed=rng))
        self._adopt_children()

    @property
    def num_heads(self) -> int:
        return self.attn.num_heads

    @property
    def causal(self) -> bool:
        return self.attn.causal

    def config(self) -> dict:
        return {"embed_dim": self.embed_dim, "num_heads": self.num_heads, "mlp_ratio": self.mlp_ratio,
                "causal": self.causal}

    def forward(self, x):
        """x: (N, T, E) -> x + attn(ln_1(x)), then + mlp(ln_2(.)): (N, T, E)."""
        x = self.check_input(x, shape=("batch", "time", self.embed_dim))
        h = x + self.attn.forward(self.ln_1.forward(x))
        y = h + self.mlp.forward(self.ln_2.forward(h))
        children = (self.ln_1, self.attn, self.ln_2, self.mlp)
        self.save_for_backward(shape=tuple(x.shape), runs=[child._saved for child in children])
        return y

    def backward(self, grad_out):
        """grad_out: dL/dy (N, T, E) -> dL/dx (N, T, E), through both residual sums (module docstring)."""
        shape, runs = self.saved("shape", "runs")
        grad_out = self.check_grad_out(grad_out, shape)
        _check_runs(self, (self.ln_1, self.attn, self.ln_2, self.mlp), runs)
        grad_h = grad_out + self.ln_2.backward(self.mlp.backward(grad_out))
        return grad_h + self.ln_1.backward(self.attn.backward(grad_h))

    def _label(self) -> str:
        return f"TransformerBlock({self.embed_dim}, num_heads={self.num_heads})"
