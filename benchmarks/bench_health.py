"""What bp.GradientHealth adds to an epoch of fit: the MNIST-sized MLP, with and without the callback.

    python benchmarks/bench_health.py [--device cpu|cuda|torch|...] [--samples 60000] [--epochs 2] [--repeats 5]

784-256-128-10 ReLU softmax net, random inputs and labels, SGD, batch 128. Each configuration
runs ``--epochs`` epochs, ``--repeats`` times, alternating; prints the median seconds per epoch
and the ratio (with / without). The callback probes a copy of the model on 256 samples once per
epoch and rides on fit's one host transfer per epoch. Compare ratios, not seconds.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bpcore as bp  # noqa: E402


class TimedHealth(bp.GradientHealth):
    """GradientHealth that adds up the seconds its own hooks take (robust on a busy machine)."""

    spent = 0.0

    def _timed(self, method, *args):
        start = time.perf_counter()
        result = method(*args)
        TimedHealth.spent += time.perf_counter() - start
        return result

    def on_train_begin(self, logs=None):
        return self._timed(super().on_train_begin, logs)

    def _epoch_device_values(self, X, y, epoch):
        return self._timed(super()._epoch_device_values, X, y, epoch)

    def _epoch_host_values(self, values):
        return self._timed(super()._epoch_host_values, values)


def epoch_seconds(device, X, y, epochs, callbacks):
    model = bp.mlp([784, 256, 128, 10], activation="relu", seed=0).to(device)
    opt = bp.optim.SGD(model.parameters(), lr=0.01)
    start = time.perf_counter()
    bp.fit(model, bp.SoftmaxCrossEntropyLoss(), opt, X, y, epochs=epochs, batch_size=128, progress=False,
           callbacks=callbacks)
    model.device.synchronize()
    return (time.perf_counter() - start) / epochs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.samples, 784)).astype(np.float32)
    y = rng.integers(0, 10, args.samples)
    epoch_seconds(args.device, X, y, 1, [])                    # warm up
    plain, health = [], []
    for _ in range(args.repeats):
        plain.append(epoch_seconds(args.device, X, y, args.epochs, []))
        health.append(epoch_seconds(args.device, X, y, args.epochs, [TimedHealth()]))
    a, b = statistics.median(plain), statistics.median(health)
    inside = TimedHealth.spent / (args.repeats * args.epochs)
    print(f"{args.samples} samples, batch 128, on {args.device}: {a * 1e3:.1f} ms/epoch without, "
          f"{b * 1e3:.1f} ms/epoch with GradientHealth: ratio {b / a:.3f}; the callback's own hooks "
          f"take {inside * 1e3:.2f} ms/epoch = {inside / a:.1%} of an epoch without it")
    return b / a


if __name__ == "__main__":
    main()
