"""GPT-2 from the existing layers: TransformerBlock, TokenPositionEmbedding and bp.gpt, backward written out.

TransformerBlock is GPT-2's pre-LN block:

    h = x + attn(ln_1(x))          attention, on a normalized copy, added to the residual stream
    y = h + mlp(ln_2(h))           a two-layer MLP (Linear, GELU, Linear), the same way

Backward, from g = dL/dy: each residual sum passes g on unchanged and adds what comes back
through its branch,

    dL/dh = g + ln_2.backward(mlp.backward(g))
    dL/dx = dL/dh + ln_1.backward(attn.backward(dL/dh))

TokenPositionEmbedding turns tokens into token + position embeddings; ``gpt`` stacks it, the
blocks, a final LayerNorm and a Linear head into a Sequential (so ``summary`` shows each layer).
"""
from __future__ import annotations

from .._checks import check_int
from . import init as _init
from .activations import GELU
from .attention import MultiHeadAttention, check_heads
from .containers import Sequential, _check_placed, _check_runs
from .embedding import Embedding
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
        self.embed_dim, _ = check_heads("TransformerBlock", embed_dim, num_heads)   # named here, not by the attention
        self.mlp_ratio = check_int("TransformerBlock", "mlp_ratio", mlp_ratio)
        if not isinstance(causal, bool):
            raise TypeError(f"TransformerBlock: causal must be True or False, got {causal!r}")
        rng = _init.host_rng(seed, type(self).__name__)
        E, hidden = embed_dim, mlp_ratio * embed_dim
        self.ln_1 = LayerNorm(E)
        self.attn = MultiHeadAttention(E, num_heads, causal=causal, seed=rng)
        self.ln_2 = LayerNorm(E)
        self.mlp = Sequential(Linear(E, hidden, init="xavier_uniform", seed=rng), GELU(),
                              Linear(hidden, E, init="xavier_uniform", seed=rng))

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
        _check_placed(self, (("ln_1", self.ln_1), ("attn", self.attn), ("ln_2", self.ln_2), ("mlp", self.mlp)))
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


class TokenPositionEmbedding(Layer):
    """GPT's input layer: integer tokens (N, T) -> token embedding + position embedding (N, T, E).

    y[n, t] = token.W[x[n, t]] + position.W[t], with two :class:`Embedding` children ``token``
    (vocab_size, E) and ``position`` (context_length, E), so the names are "token.W" and
    "position.W". Backward: the token table gets grad_out scattered to the rows its tokens picked;
    the position table gets grad_out summed over the batch (row t from every sequence's position t).
    Returns None (tokens have no gradient).

    Args:
        vocab_size: V, tokens are integers in [0, V). context_length: the longest T.
        embed_dim: E. seed: int, None or a NumPy Generator (both tables are drawn N(0, 1), as torch's
        Embedding).
    """

    def __init__(self, vocab_size: int, context_length: int, embed_dim: int, seed=None):
        super().__init__()
        rng = _init.host_rng(seed, type(self).__name__)
        self.token = Embedding(vocab_size, embed_dim, seed=rng)
        self.position = Embedding(context_length, embed_dim, seed=rng)

    @property
    def vocab_size(self) -> int:
        return self.token.num_embeddings

    @property
    def context_length(self) -> int:
        return self.position.num_embeddings

    @property
    def embed_dim(self) -> int:
        return self.token.embedding_dim

    def config(self) -> dict:
        return {"vocab_size": self.vocab_size, "context_length": self.context_length, "embed_dim": self.embed_dim}

    def input_indices(self) -> int:
        return self.vocab_size

    def forward(self, x):
        """x: integer tokens (N, T), T <= context_length -> (N, T, E)."""
        x = self.check_input(x, shape=("batch", "time"))
        T = x.shape[1]
        if T > self.context_length:
            raise ValueError(f"{self._name()}: a sequence of {T} tokens is longer than the context_length "
                             f"{self.context_length} the position table covers; pass at most "
                             f"{self.context_length} tokens (generate keeps the last ones)")
        _check_placed(self, (("token", self.token), ("position", self.position)))
        xp = self.xp
        positions = xp.reshape(xp.arange(T, dtype=x.dtype, device=self.backend.device), (1, T))
        y = self.token.forward(x) + self.position.forward(positions)      # (N, T, E) + (1, T, E)
        self.save_for_backward(shape=tuple(x.shape), runs=[self.token._saved, self.position._saved])
        return y

    def backward(self, grad_out):
        """grad_out: dL/dy (N, T, E) -> None; adds into token.W.grad and position.W.grad."""
        shape, runs = self.saved("shape", "runs")
        grad_out = self.check_grad_out(grad_out, shape + (self.embed_dim,))
        _check_runs(self, (self.token, self.position), runs)
        self.position.backward(self.xp.sum(grad_out, axis=0, keepdims=True))
        self.token.backward(grad_out)
        return None

    def backward_params(self, grad_out):
        self.backward(grad_out)

    def _label(self) -> str:
        return repr(self)

    def __repr__(self):
        return f"TokenPositionEmbedding({self.vocab_size}, {self.context_length}, {self.embed_dim})"


def gpt(vocab_size: int, context_length: int, embed_dim: int, num_heads: int, num_layers: int, seed=None,
        mlp_ratio: int = 4) -> Sequential:
    """A GPT: integer tokens (N, T), T <= context_length -> next-token logits (N, T, vocab_size).

    ``Sequential(TokenPositionEmbedding(vocab_size, context_length, embed_dim), TransformerBlock x
    num_layers (causal), LayerNorm(embed_dim), Linear(embed_dim, vocab_size))``, GPT-2's layout, so
    ``summary(input_shape=(T,))`` shows it layer by layer and the names are "0.token.W",
    "0.position.W", "1.ln_1.weight", ..., the head "{num_layers + 2}.W". Backward returns None (tokens
    have no gradient). The head is drawn Xavier-uniform; the blocks as :class:`TransformerBlock`.

    Args:
        vocab_size: V. context_length: the longest input. embed_dim: E (a multiple of num_heads).
        num_heads, num_layers: heads per block, blocks. seed: one seed gives the whole model.
        mlp_ratio: each block's MLP width is mlp_ratio * embed_dim.
    """
    for name, value in (("vocab_size", vocab_size), ("context_length", context_length), ("embed_dim", embed_dim),
                        ("num_heads", num_heads), ("num_layers", num_layers)):
        check_int("gpt", name, value)
    check_heads("gpt", embed_dim, num_heads)
    rng = _init.host_rng(seed, "gpt")
    return Sequential(TokenPositionEmbedding(vocab_size, context_length, embed_dim, seed=rng),
                      *[TransformerBlock(embed_dim, num_heads, mlp_ratio=mlp_ratio, causal=True, seed=rng)
                        for _ in range(num_layers)],
                      LayerNorm(embed_dim), Linear(embed_dim, vocab_size, init="xavier_uniform", seed=rng))
