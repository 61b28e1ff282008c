"""Embedding: integer indices in, rows of a learned table W out; its backward is a scatter-add."""
from __future__ import annotations

import math

from .._checks import check_int
from . import init as _init
from .module import Layer
from .scatter import scatter_add_rows


class Embedding(Layer):
    """y[n, t] = W[x[n, t]]: each integer index picks a row of W (num_embeddings, embedding_dim).

    Forward is a gather (``take``). Backward adds each row of grad_out into the row of W its index
    picked: dL/dW[v] = sum of grad_out[n, t] over every (n, t) with x[n, t] = v (a scatter-add, see
    ``bpcore.nn.scatter``; a token seen twice gets both rows). It returns None: indices have no
    gradient. Equals ``torch.nn.Embedding`` with ``weight == W``.

    Indices out of [0, num_embeddings) are refused by ``fit``, ``evaluate`` and ``predict`` where
    data enter, and on every call where checking costs no device sync (NumPy, array_api_strict,
    torch on the CPU). On a GPU a call is not checked (that would sync); an out-of-range index there
    gives NaN outputs for the whole batch, so the loss turns NaN and ``fit`` stops on it.

    Args:
        num_embeddings: V, the number of rows (the vocabulary size).
        embedding_dim: D, the width of each row.
        seed: int, None or a NumPy Generator; W is drawn N(0, 1) on the host (as PyTorch), so one
            seed gives the same table on every backend.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, seed=None):
        super().__init__()
        self.num_embeddings = check_int("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = check_int("Embedding", "embedding_dim", embedding_dim)
        rng = _init.host_rng(seed, "Embedding")
        self.W = self.parameter(_init.normal((self.num_embeddings, self.embedding_dim), 1.0, rng))

    def config(self) -> dict:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim}

    def input_indices(self) -> int:
        return self.num_embeddings

    def forward(self, x):
        """x: integer indices (batch, ...), such as (N, T) -> (batch, ..., embedding_dim)."""
        x = self.check_input(x, shape=("batch", ...))
        xp, backend = self.xp, self.backend
        flat = xp.reshape(x, (-1,))          # -1, not a product: the batch may be symbolic (ONNX export)
        if not backend.sync_free:
            # unchecked on a GPU (a check would sync): take clipped indices, so no library reads out
            # of bounds, and make the output NaN if any index was out of range (see the docstring)
            in_range = xp.all((flat >= 0) & (flat < self.num_embeddings))
            flat = xp.clip(flat, 0, self.num_embeddings - 1)
        rows = xp.take(self.W.data, flat, axis=0)
        if not backend.sync_free:
            rows = xp.where(in_range, rows, backend.constant(math.nan, rows.dtype))
        self.save_for_backward(flat=flat, shape=tuple(x.shape))
        # an empty batch or sequence: -1 would be ambiguous, and every size is known
        batch = x.shape[0] if 0 in tuple(x.shape) else -1
        return xp.reshape(rows, (batch,) + tuple(x.shape[1:]) + (self.embedding_dim,))

    def backward(self, grad_out):
        """grad_out: dL/dy (batch, ..., embedding_dim) -> None; adds dL/dW (a scatter-add) into W.grad."""
        flat, shape = self.saved("flat", "shape")
        grad_out = self.check_grad_out(grad_out, shape + (self.embedding_dim,))
        rows = self.xp.reshape(grad_out, (flat.shape[0], self.embedding_dim))
        self.W.accumulate_grad(scatter_add_rows(self.backend, rows, flat, self.num_embeddings))
        return None

    def __repr__(self):
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"
