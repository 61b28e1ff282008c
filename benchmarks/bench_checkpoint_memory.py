"""Peak memory of saving and loading a checkpoint, as a multiple of the file's size.

    python benchmarks/bench_checkpoint_memory.py [--mib 100]

Builds an MLP whose float32 parameters take about --mib MiB, saves it with bp.save_checkpoint
(with Adam state: the file is about three times the parameters), then measures with
tracemalloc (NumPy reports its allocations to it) the peak memory of bp.save_checkpoint,
bp.load (rebuild) and bp.load_checkpoint(model=, optimizer=) (in place). The README's memory
bound is the printed ratio.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bpcore as bp  # noqa: E402


def peak(call):
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=100.0, help="MiB of float32 parameters (default 100)")
    args = parser.parse_args()
    width = max(8, int((args.mib * 2 ** 20 / 4 / 4) ** 0.5))          # four width x width layers
    model = bp.mlp([width] * 5, seed=0)
    opt = bp.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = bp.MSELoss()
    x = np.ones((2, width), dtype=np.float32)
    loss_fn.forward(model.forward(x), x)
    model.backward(loss_fn.backward())
    opt.step()                                                         # Adam moments: 2 more copies
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "run.bpc")
        save = peak(lambda: bp.save_checkpoint(path, model=model, optimizer=opt, epoch=1))
        size = os.path.getsize(path)
        rebuild = peak(lambda: bp.load(path))
        in_place = peak(lambda: bp.load_checkpoint(path, model=model, optimizer=opt))
    print(f"bpcore {bp.__version__}, mlp {[width] * 5}, file {size / 2 ** 20:.1f} MiB "
          f"(parameters {sum(p.data.size for p in model.parameters()) * 4 / 2 ** 20:.1f} MiB, Adam state, epoch)")
    for what, value in [("save_checkpoint", save), ("bp.load (rebuild)", rebuild),
                        ("load_checkpoint(model=, optimizer=)", in_place)]:
        print(f"  {what:38s} peak {value / 2 ** 20:8.1f} MiB = {value / size:.2f} x the file")


if __name__ == "__main__":
    main()
