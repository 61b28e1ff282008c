"""What Embedding's backward (a scatter-add of rows) costs: the portable Array API reference against
each backend's registered fast path, at a large vocabulary.

    python benchmarks/bench_scatter.py [--vocab 50000] [--dim 256] [--tokens 2048,16384] [--repeats 5] [--threads 1]

For K tokens (batch x time) of width D into a table of V rows, prints the median time of
``portable_scatter_add_rows`` (sort, segmented scan, searchsorted: bpcore/nn/scatter.py) and of the
fast path (np.add.at; torch's index_add_), and the peak memory either allocates on NumPy (tracemalloc
sees NumPy's buffers), next to the V x D output itself. The portable path never builds a V x K array.
Compare ratios, not seconds: timings vary from machine to machine and from run to run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import backends  # noqa: E402
from bpcore.nn.scatter import OPERATION, portable_scatter_add_rows  # noqa: E402


def _median_seconds(function, repeats):
    function()                                  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_bytes(function):
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(spec, vocab, dim, tokens, repeats, rng):
    """(portable seconds, fast seconds or None, portable peak bytes, fast peak bytes) on ``spec``."""
    backend = backends.get(spec)
    indices = backend.asarray(rng.integers(0, vocab, tokens))
    values = backend.asarray(rng.standard_normal((tokens, dim)).astype("float32"))
    fast = backend.fast_path(OPERATION)

    def portable():
        return portable_scatter_add_rows(backend.xp, values, indices, vocab, backend.device)

    def faster():
        return fast(values, indices, vocab)

    if fast is not None:       # the two agree before either is timed
        np.testing.assert_allclose(backend.to_numpy(portable()), backend.to_numpy(faster()), rtol=1e-4, atol=1e-4)
    seconds = (_median_seconds(portable, repeats), _median_seconds(faster, repeats) if fast else None)
    memory = (None, None)
    if spec == "numpy":
        memory = (_peak_bytes(portable), _peak_bytes(faster))
    return seconds + memory


def _limit_threads(count):
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(count)
    except ImportError:
        pass
    try:
        import torch
        torch.set_num_threads(count)
    except ImportError:
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--tokens", default="2048,16384", help="comma-separated token counts K (batch x time)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default=",".join(s for s in ("numpy", "torch") if s in backends.available()))
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for NumPy's BLAS and torch alike (default: each library's own; on a busy "
                             "machine 1 keeps waiting threads from distorting the times)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        _limit_threads(args.threads)
    rng = np.random.default_rng(0)
    output_mb = args.vocab * args.dim * 4 / 1e6
    lines = [f"scatter-add of K rows of width {args.dim} into V = {args.vocab:,} rows (float32; the V x D "
             f"output alone is {output_mb:.1f} MB)",
             f"{'backend':<8}{'K':>8}{'portable ms':>14}{'fast path ms':>14}{'ratio':>8}"
             f"{'portable peak MB':>18}{'fast peak MB':>14}"]
    for spec in args.backends.split(","):
        for tokens in (int(t) for t in args.tokens.split(",")):
            portable_s, fast_s, portable_b, fast_b = measure(spec, args.vocab, args.dim, tokens, args.repeats, rng)
            ratio = f"{portable_s / fast_s:.2f}" if fast_s else "-"
            fast_ms = f"{fast_s * 1e3:.2f}" if fast_s else "-"
            peak = (f"{portable_b / 1e6:.1f}", f"{fast_b / 1e6:.1f}") if portable_b is not None else ("-", "-")
            lines.append(f"{spec:<8}{tokens:>8}{portable_s * 1e3:>14.2f}{fast_ms:>14}{ratio:>8}"
                         f"{peak[0]:>18}{peak[1]:>14}")
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main()
