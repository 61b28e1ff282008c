"""Scatter-add of rows, which the Array API standard lacks: out[indices[k]] += values[k].

Embedding's backward needs it: dL/dW gets one row of grad_out per token, and a token that appears
twice gets both rows added. :func:`scatter_add_rows` runs a backend's registered fast path when it
has one (``np.add.at`` on NumPy, ``cupyx.scatter_add`` on CuPy, ``index_add_`` on torch: see
``backends.register_fast_path``) and otherwise the portable reference, which uses only standard
functions and never builds a (rows x tokens) array:

1. sort the tokens by index (a stable ``argsort``), so equal indices sit side by side;
2. a segmented inclusive scan down the sorted rows (Hillis-Steele: log2(K) steps; step s adds the
   row s places back when it has the same index). The last row of each run of one index then holds
   the run's sum. Only rows of one index are ever added together, so nothing cancels (a cumulative
   sum over all rows, differenced at run ends, would lose float32 digits to its large prefix sums);
3. each output row v takes the last row of its run, found with ``searchsorted`` (zeros when v does
   not occur).

Cost with K tokens of D features into V rows: time O(K log K + K D log K + V log K + V D), memory
O(K D + V D), the output itself being V D; no shape depends on the values, so no device sync.
(``benchmarks/bench_scatter.py`` prints what it costs at V = 50,000 next to the fast path.)
"""
from __future__ import annotations

OPERATION = "scatter_add_rows"


def scatter_add_rows(backend, values, indices, num_rows: int):
    """out (num_rows, D) with out[indices[k]] += values[k] for every k, on ``backend``.

    Args:
        values: (K, D) floats. indices: (K,) integers in [0, num_rows). num_rows: V.
    Returns:
        A new (V, D) array of ``values``' dtype; rows no index names are zero.
    """
    fast = backend.fast_path(OPERATION)
    if fast is not None:
        return fast(values, indices, num_rows)
    return portable_scatter_add_rows(backend.xp, values, indices, num_rows, backend.device)


def portable_scatter_add_rows(xp, values, indices, num_rows: int, device):
    """The portable reference of :func:`scatter_add_rows` (the module docstring explains it)."""
    count, width = values.shape
    zero = xp.zeros((), dtype=values.dtype, device=device)
    if count == 0:
        return xp.zeros((num_rows, width), dtype=values.dtype, device=device)
    keys = indices if indices.dtype == xp.int64 else xp.astype(indices, xp.int64)
    order = xp.argsort(keys, stable=True)
    keys = xp.take(keys, order)
    sums = xp.take(values, order, axis=0)
    shift = 1
    while shift < count:            # after this step, row i holds the sum of rows i-2s+1..i of its run
        same_run = (keys[shift:] == keys[:-shift])[:, None]
        # the right side is computed (from the rows before this step) before it is written back
        sums[shift:, ...] = sums[shift:, ...] + xp.where(same_run, sums[:-shift, ...], zero)
        shift *= 2
    rows = xp.arange(num_rows, dtype=xp.int64, device=device)
    last = xp.searchsorted(keys, rows, side="right") - 1      # the last sorted row with index <= v
    last = xp.where(last >= 0, last, xp.zeros_like(last))
    # a row whose index does not occur takes an appended zero row: one gather makes the whole output
    last = xp.where(xp.take(keys, last) == rows, last, xp.full_like(last, count))
    return xp.take(xp.concat([sums, xp.zeros((1, width), dtype=sums.dtype, device=device)], axis=0), last, axis=0)
