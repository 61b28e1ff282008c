"""MultiHeadAttention: self-attention with its backward pass written out.

Shapes: x (N, T, E), H heads of width D = E / H. With W_qkv (E, 3E) = [W_q | W_k | W_v] and
W_out (E, E) (y = x @ W + b, so torch's weights are ours transposed):

    q, k, v = split(x @ W_qkv + b_qkv)            each (N, T, E), then viewed as (N, H, T, D)
    S = (q / sqrt(D)) @ k^T  (+ M)                 (N, H, T, T) scores; M = -inf above the diagonal
                                                   when causal (position t sees positions <= t)
    P = softmax(S) along the last axis             exp(S - max S) / sum: stable; exp(-inf) = 0, so a
                                                   masked position gets exactly zero weight
    O = P @ v                                      (N, H, T, D), then back to (N, T, E)
    y = O @ W_out + b_out                          (N, T, E)

Backward, from g = dL/dy, the same steps in reverse:

    dW_out = O^T g,  db_out = sum g,  dO = g @ W_out^T      the output projection
    dP = dO @ v^T,  dv = P^T @ dO                           the weighted sum O = P @ v
    dS = P * (dP - sum_j(dP * P))                           the softmax (row by row); dS = 0 where P = 0,
                                                            so nothing flows through the mask
    dq = (dS @ k) / sqrt(D),  dk = dS^T @ (q / sqrt(D))     the scaled scores S = (q / sqrt(D)) k^T
    dqkv = [dq | dk | dv] (N, T, 3E)
    dW_qkv = x^T dqkv,  db_qkv = sum dqkv,  dx = dqkv @ W_qkv^T   the input projection

The softmax line: P_i = e^{S_i} / sum_j e^{S_j} has dP_i/dS_j = P_i (delta_ij - P_j), so
dL/dS_j = sum_i dP_i P_i (delta_ij - P_j) = P_j (dP_j - sum_i dP_i P_i).
"""
from __future__ import annotations

import math

from .._checks import check_int
from . import init as _init
from .module import Layer



def check_heads(owner: str, embed_dim, num_heads) -> tuple[int, int]:
    """(embed_dim, num_heads) as ints, embed_dim a multiple of num_heads; the errors name ``owner``
    (MultiHeadAttention, TransformerBlock, gpt)."""
    embed_dim, num_heads = check_int(owner, "embed_dim", embed_dim), check_int(owner, "num_heads", num_heads)
    if embed_dim % num_heads:
        raise ValueError(f"{owner}: embed_dim ({embed_dim}) must be a multiple of num_heads ({num_heads}): each "
                         f"head takes embed_dim / num_heads features")
    return embed_dim, num_heads

class MultiHeadAttention(Layer):
    """Multi-head self-attention, as ``torch.nn.MultiheadAttention(E, H, batch_first=True)``.

    x (N, T, E) -> y (N, T, E); the formulas and the backward pass are in the module docstring.

    Args:
        embed_dim: E, the width of the input and the output.
        num_heads: H; E must be a multiple of H (each head has width E / H).
        causal: position t attends only to positions 0..t (a decoder, GPT), else to all T.
        bias: whether the projections have biases b_qkv (3E,) and b_out (E,). Without them the
            parameters are exactly W_qkv and W_out.
        seed: int, None or a NumPy Generator for the initial weights.

    Its parameters, in this order: W_qkv (E, 3E) = [q | k | v], b_qkv (3E,), W_out (E, E), b_out (E,).
    torch's ``in_proj_weight`` is W_qkv.T, ``in_proj_bias`` b_qkv, ``out_proj.weight`` W_out.T,
    ``out_proj.bias`` b_out. Initialised as torch does: W_qkv Xavier-uniform
    (U(-a, a), a = sqrt(6 / (E + 3E))), W_out U(-1/sqrt(E), 1/sqrt(E)) (torch's Linear), biases zero.
    """

    def __init__(self, embed_dim: int, num_heads: int, causal: bool = False, bias: bool = True, seed=None):
        super().__init__()
        self.embed_dim, self.num_heads = check_heads("MultiHeadAttention", embed_dim, num_heads)
        if not isinstance(causal, bool) or not isinstance(bias, bool):
            raise TypeError(f"MultiHeadAttention: causal and bias must be True or False, got "
                            f"causal={causal!r}, bias={bias!r}")
        self.head_dim = embed_dim // num_heads
        self.causal = causal
        rng = _init.host_rng(seed, type(self).__name__)
        E = embed_dim
        self.W_qkv = self.parameter(_init.weight("xavier_uniform", E, 3 * E, rng))
        self.b_qkv = self.parameter(_init.zeros(3 * E)) if bias else None
        self.W_out = self.parameter(_init.uniform((E, E), 1.0 / math.sqrt(E), rng))
        self.b_out = self.parameter(_init.zeros(E)) if bias else None

    def config(self) -> dict:
        return {"embed_dim": self.embed_dim, "num_heads": self.num_heads, "causal": self.causal,
                "bias": self.b_qkv is not None}

    def _mask(self, T, dtype):
        """(T, T): 0 on and below the diagonal, -inf above it (the future), added to the scores."""
        xp = self.xp
        return xp.triu(xp.full((T, T), -math.inf, dtype=dtype, device=self.backend.device), k=1)

    def forward(self, x):
        """x: (N, T, E) -> y: (N, T, E), the formulas of the module docstring."""
        x = self.check_input(x, shape=("batch", "time", self.embed_dim))
        xp = self.xp
        _, T, E = x.shape                   # N is not used: it may be symbolic (ONNX export), hence the -1s
        if T == 0:
            raise ValueError(f"{self._name()}: the sequence is empty (time axis of length 0): {tuple(x.shape)}; "
                             f"attention needs at least one position to attend to")
        H, D = self.num_heads, self.head_dim
        # every projection is one 2-D matmul over the N T rows (NumPy's 3-D @ 2-D skips BLAS)
        qkv = xp.reshape(x, (-1, E)) @ self.W_qkv.data
        if self.b_qkv is not None:
            qkv += self.b_qkv.data
        # (N, T, 3E) -> (N, T, 3, H, D) -> (3, N, H, T, D): feature c of q is head c // D, position c % D
        qkv = xp.permute_dims(xp.reshape(qkv, (-1, T, 3, H, D)), (2, 0, 3, 1, 4))
        q, k, v = qkv[0, ...] * (1.0 / math.sqrt(D)), qkv[1, ...], qkv[2, ...]
        scores = q @ xp.matrix_transpose(k)                        # (N, H, T, T)
        # in place (+=, -=, /=) on arrays made here: each (N, H, T, T) temporary costs as much as the arithmetic
        if self.causal:
            scores += self._mask(T, scores.dtype)
        scores -= xp.max(scores, axis=-1, keepdims=True)           # stable: exp(<= 0); the diagonal is never masked
        weights = xp.exp(scores)
        weights /= xp.sum(weights, axis=-1, keepdims=True)
        heads = weights @ v                                        # (N, H, T, D)
        merged = xp.reshape(xp.permute_dims(heads, (0, 2, 1, 3)), (-1, E))
        self.save_for_backward(x=x, q=q, k=k, v=v, weights=weights, merged=merged)
        y = merged @ self.W_out.data
        if self.b_out is not None:
            y += self.b_out.data
        return xp.reshape(y, (-1, T, E))

    def attention_weights(self):
        """P (N, H, T, T) of the last forward: row t holds how much position t took from each position
        (zeros above the diagonal when causal). For pictures (``bp.viz.attention``)."""
        return self.saved("weights")

    def backward(self, grad_out):
        """grad_out: dL/dy (N, T, E) -> dL/dx (N, T, E); adds dL/dW_qkv, dL/db_qkv, dL/dW_out, dL/db_out
        (the formulas of the module docstring)."""
        x, q, k, v, weights, merged = self.saved("x", "q", "k", "v", "weights", "merged")
        grad_out = self.check_grad_out(grad_out, x.shape)
        xp = self.xp
        N, T, E = x.shape
        H, D = self.num_heads, self.head_dim
        # the output projection y = O @ W_out + b_out
        grad_out = xp.reshape(grad_out, (N * T, E))
        self.W_out.accumulate_grad(merged.T @ grad_out)
        if self.b_out is not None:
            self.b_out.accumulate_grad(xp.sum(grad_out, axis=0))
        grad_heads = xp.permute_dims(xp.reshape(grad_out @ self.W_out.data.T, (N, T, H, D)), (0, 2, 1, 3))
        # the weighted sum O = P @ v
        grad_weights = grad_heads @ xp.matrix_transpose(v)         # dP (N, H, T, T)
        grad_v = xp.matrix_transpose(weights) @ grad_heads         # (N, H, T, D)
        # the softmax, row by row: dS = P * (dP - sum_j dP_j P_j); zero where P is (the mask)
        grad_scores = grad_weights                                 # (dP is not needed again: in place)
        grad_scores -= xp.vecdot(grad_weights, weights, axis=-1)[..., None]   # row sums of dP * P
        grad_scores *= weights
        # S = q_scaled @ k^T with q_scaled = q / sqrt(D)
        grad_q = grad_scores @ k
        grad_q *= 1.0 / math.sqrt(D)
        grad_k = xp.matrix_transpose(grad_scores) @ q
        # back to (N, T, 3E) = [dq | dk | dv], the layout of x @ W_qkv: (N, T, 3, H, D) filled in one copy each
        grad_qkv = xp.empty((N, T, 3, H, D), dtype=x.dtype, device=self.backend.device)
        for i, part in enumerate((grad_q, grad_k, grad_v)):
            grad_qkv[:, :, i, :, :] = xp.permute_dims(part, (0, 2, 1, 3))
        grad_qkv = xp.reshape(grad_qkv, (N * T, 3 * E))
        self.W_qkv.accumulate_grad(xp.reshape(x, (N * T, E)).T @ grad_qkv)
        if self.b_qkv is not None:
            self.b_qkv.accumulate_grad(xp.sum(grad_qkv, axis=0))
        return xp.reshape(grad_qkv @ self.W_qkv.data.T, (N, T, E))

    def __repr__(self):
        extra = (", causal=True" if self.causal else "") + ("" if self.b_qkv is not None else ", bias=False")
        return f"MultiHeadAttention({self.embed_dim}, num_heads={self.num_heads}{extra})"
