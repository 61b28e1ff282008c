"""Synthetic sequence tasks (re-exported as ``bp.data.adder``): small, exact, offline; host NumPy only.

    (X, y), (X_test, y_test) = bp.data.adder(ndigits=2)
    loss_fn = bp.SoftmaxCrossEntropyLoss(ignore_index=-100)      # the loss only on the answer
"""
from __future__ import annotations

import numpy as np

from ._checks import check_int
from .nn.init import host_rng


def _digits(values, count):
    """(n, count) decimal digits of ``values``, most significant first."""
    powers = 10 ** np.arange(count - 1, -1, -1)
    return (values[:, None] // powers) % 10


def adder(ndigits: int = 2, test_size: int | None = None, seed=0, ignore_index: int = -100):
    """minGPT's addition task: read two ``ndigits``-digit numbers, write their sum, digit by digit.

    Each example is the digits of a and b (zero-padded to ``ndigits``) followed by the
    ``ndigits + 1`` digits of c = a + b *reversed* (least significant first, the order in which
    a person adds, carrying), so a sequence has 3 ndigits + 1 tokens in 0..9; 85 + 50 = 135 is
    ``8 5 5 0 5 3 1``. Next-token training takes X = sequence[:-1] and y = sequence[1:] with the
    first 2 ndigits - 1 targets (the predictions of the question's own digits) set to
    ``ignore_index``, so the loss is on the answer only. All 10^(2 ndigits) pairs are shuffled
    (seeded); the first ``test_size`` are held out.

    A model answers a question by extending its first 2 ndigits tokens with ndigits + 1 greedy
    tokens; exact match: ``bp.generate(model, X_test[:, :2 * ndigits], ndigits + 1,
    temperature=0)[:, 2 * ndigits:] == y_test[:, -(ndigits + 1):]`` in every digit.

    Args:
        ndigits: digits per operand (1 to 4: 100 to 10^8 pairs).
        test_size: held-out pairs (default: a tenth, at most 500, as minGPT).
        seed: int, None or a NumPy Generator for the shuffle.
        ignore_index: the target value the loss skips (give the same to SoftmaxCrossEntropyLoss).
    Returns:
        ``(X, y), (X_test, y_test)``: int64 host arrays of shape (n, 3 ndigits).
    """
    ndigits = check_int("adder", "ndigits", ndigits)
    if ndigits > 4:
        raise ValueError(f"adder: ndigits must be at most 4 (10^(2 ndigits) pairs), got {ndigits}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)) or 0 <= ignore_index <= 9:
        raise ValueError(f"adder: ignore_index must be an int that is not a digit (0..9), got {ignore_index!r}")
    pairs = 10 ** (2 * ndigits)
    if test_size is None:
        test_size = min(pairs // 10, 500)
    test_size = check_int("adder", "test_size", test_size, minimum=0)
    if test_size >= pairs:
        raise ValueError(f"adder: test_size must leave training pairs: {test_size} of {pairs}")
    order = host_rng(seed).permutation(pairs)
    a, b = order // 10 ** ndigits, order % 10 ** ndigits
    sequences = np.concatenate([_digits(a, ndigits), _digits(b, ndigits), _digits(a + b, ndigits + 1)[:, ::-1]],
                               axis=1).astype(np.int64)
    X, y = sequences[:, :-1].copy(), sequences[:, 1:].copy()
    y[:, :2 * ndigits - 1] = ignore_index
    return (X[test_size:], y[test_size:]), (X[:test_size], y[:test_size])
