"""Time one CNN training step (forward, loss, backward, SGD update): bpcore against PyTorch eager.

    python benchmarks/bench_cnn.py [--device cpu|cuda|torch|...] [--steps 50] [--memory]

Nets, batch 64, as the convolution issue asks:
  digits CNN   1x8x8:   Conv2d(1, 16, 3, p1) ReLU MaxPool2 Conv2d(16, 32, 3, p1) ReLU MaxPool2 Flatten Linear(128, 10)
  CIFAR-sized 3x32x32: Conv2d(3, 32, 3, p1) ReLU MaxPool2 Conv2d(32, 64, 3, p1) ReLU MaxPool2 Flatten Linear(4096, 10)
bpcore runs on --device; PyTorch eager (autograd, torch.optim.SGD, its own conv kernels) on the
same kind of device. Prints the median time per step and the ratio bpcore / torch; with --memory,
the peak memory one step allocates (tracemalloc for NumPy, which sees NumPy's buffers; the CUDA
allocator's peak on a GPU; torch on the CPU is not traced, so its column is empty there).
Compare ratios, not seconds: timings vary from machine to machine and from run to run.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import backends  # noqa: E402
import bpcore as bp  # noqa: E402

CASES = {
    "digits CNN 1x8x8, batch 64": dict(shape=(1, 8, 8), widths=(16, 32)),
    "CIFAR-sized 3x32x32 conv 3-32-64, batch 64": dict(shape=(3, 32, 32), widths=(32, 64)),
}
BATCH = 64


def bpcore_model(case):
    c, h, w = case["shape"]
    c1, c2 = case["widths"]
    return bp.Sequential(bp.Conv2d(c, c1, 3, padding=1, seed=0), bp.ReLU(), bp.MaxPool2d(2),
                         bp.Conv2d(c1, c2, 3, padding=1, seed=1), bp.ReLU(), bp.MaxPool2d(2),
                         bp.Flatten(), bp.Linear(c2 * (h // 4) * (w // 4), 10, seed=2))


def bpcore_step(case, device, X, y):
    model = bpcore_model(case).to(device)
    be = model.device
    X, y = be.asarray(X), be.asarray(y)
    loss_fn = bp.SoftmaxCrossEntropyLoss()
    loss_fn.check_targets = False     # data checked once; no per-step device sync
    opt = bp.optim.SGD(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        loss_fn.forward(model(X), y)
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
    return step, be.synchronize


def torch_step(case, torch, device, X, y):
    nn = torch.nn
    c, h, w = case["shape"]
    c1, c2 = case["widths"]
    model = nn.Sequential(nn.Conv2d(c, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(c2 * (h // 4) * (w // 4), 10)).to(device)
    X, y = torch.tensor(X, device=device), torch.tensor(y, device=device)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        loss_fn(model(X), y).backward()
        opt.step()

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return step, sync


def median_step_time(step, sync, steps, repeats=5):
    for _ in range(max(3, steps // 10)):      # warm up (allocator, caches, kernels)
        step()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times), (max(times) - min(times)) / statistics.median(times)


def host_peak_bytes(step):
    """Peak bytes NumPy allocates during one step (after a warm-up step), by tracemalloc."""
    step()
    tracemalloc.start()
    tracemalloc.reset_peak()
    step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def fmt_time(seconds):
    return f"{seconds * 1e3:.2f}ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f}us"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--memory", action="store_true", help="also measure the peak memory of one step")
    args = p.parse_args(argv)
    device = backends.get(args.device)
    try:
        import torch
    except ImportError:
        torch = None
    torch_device = "cuda" if device.kind == "cuda" else "cpu"
    print(f"bpcore {bp.__version__} on {device.spec} | numpy {np.__version__} | python {platform.python_version()} "
          f"| {platform.machine()}")
    if torch is not None:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = f"{'case':<44}{'bpcore':>10}{'torch':>10}{'bpcore/torch':>14}{'spread':>8}"
    if args.memory:
        header += f"{'bpcore peak':>13}{'torch peak':>12}"
    print(header)
    rng = np.random.default_rng(0)
    results = {}
    for name, case in CASES.items():
        X = rng.standard_normal((BATCH,) + case["shape"]).astype(np.float32)
        y = rng.integers(0, 10, BATCH)
        step, sync = bpcore_step(case, device, X, y)
        ours, spread = median_step_time(step, sync, args.steps)
        theirs = float("nan")
        if torch is not None:
            t_step, t_sync = torch_step(case, torch, torch_device, X, y)
            theirs, t_spread = median_step_time(t_step, t_sync, args.steps)
            spread = max(spread, t_spread)
        line = f"{name:<44}{fmt_time(ours):>10}{fmt_time(theirs):>10}{ours / theirs:>14.2f}{spread:>8.0%}"
        if args.memory:
            ours_peak = host_peak_bytes(step) if device.kind == "cpu" and device.name == "numpy" else float("nan")
            theirs_peak = float("nan")
            if torch is not None and torch_device == "cuda":
                torch.cuda.reset_peak_memory_stats()
                t_step()
                torch.cuda.synchronize()
                theirs_peak = torch.cuda.max_memory_allocated()
            line += f"{ours_peak / 2**20:>11.1f}MB{theirs_peak / 2**20:>10.1f}MB"
        print(line)
        results[name] = (ours, theirs)
    return results


if __name__ == "__main__":
    main()
