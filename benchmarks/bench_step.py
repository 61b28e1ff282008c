"""Time one training step (forward, loss, backward, SGD update) three ways, in one run.

    python benchmarks/bench_step.py [--device cpu|cuda|torch|...] [--steps 300]

1. bpcore on --device,
2. the same network written by hand in NumPy (CPU) or CuPy (GPU) with in-place updates,
3. PyTorch eager with autograd and torch.optim.SGD (on the same kind of device),
and prints the median time per step and the ratios to the hand-written code. Nets: the lessons'
2-16-8-1 tanh on 400 spiral points (full batch), and a 784-256-128-10 ReLU softmax net on a
batch of 256 random inputs. Timings vary from machine to machine: compare ratios, not seconds.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import backends  # noqa: E402
import bpcore as bp  # noqa: E402

CASES = {
    "spiral 2-16-8-1 tanh, batch 400": dict(sizes=[2, 16, 8, 1], activation="tanh", batch=400),
    "784-256-128-10 relu, batch 256": dict(sizes=[784, 256, 128, 10], activation="relu", batch=256),
}


def median_step_time(step, sync, steps, repeats=5):
    for _ in range(max(10, steps // 10)):   # warm up (allocator, caches, kernels)
        step()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def make_data(case, seed=0):
    rng = np.random.default_rng(seed)
    n_in, n_out = case["sizes"][0], case["sizes"][-1]
    if n_in == 2:
        X, y = bp.data.spiral(case["batch"], seed=seed)
        return X, y
    X = rng.standard_normal((case["batch"], n_in)).astype(np.float32)
    return X, rng.integers(0, n_out, case["batch"])


def bpcore_step(case, device, X, y):
    model = bp.mlp(case["sizes"], activation=case["activation"], seed=0).to(device)
    be = model.device
    X, y = be.asarray(X), be.asarray(y)
    loss_fn = bp.SoftmaxCrossEntropyLoss() if case["sizes"][-1] > 1 else bp.BCEWithLogitsLoss()
    loss_fn.check_targets = False     # data checked once; no per-step device sync
    opt = bp.optim.SGD(model.parameters(), lr=0.1)

    def step():
        opt.zero_grad()
        loss_fn.forward(model(X), y)
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
    return step, be.synchronize


def handwritten_step(case, xp, X, y):
    """The network written out by hand: the baseline bpcore must come within 10% of.

    Like any training loop it computes the loss value (stably) as well as dL/dz, and it
    skips dL/dX for the first layer, as bpcore's backward(..., input_grad=False) does.
    """
    rng = np.random.default_rng(0)
    sizes, relu = case["sizes"], case["activation"] == "relu"
    Ws = [xp.asarray(rng.normal(0, np.sqrt((2.0 if relu else 1.0) / a), (a, b)).astype(np.float32))
          for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [xp.zeros(b, dtype=xp.float32) for b in sizes[1:]]
    X = xp.asarray(X)
    n = X.shape[0]
    multiclass = sizes[-1] > 1
    onehot = xp.asarray(np.eye(sizes[-1], dtype=np.float32)[y]) if multiclass else xp.asarray(y)
    lr = np.float32(0.1)

    def step():
        acts = [X]
        for W, b in zip(Ws[:-1], bs[:-1]):
            z = acts[-1] @ W
            z += b
            acts.append(xp.maximum(z, 0) if relu else xp.tanh(z))
        z = acts[-1] @ Ws[-1]
        z += bs[-1]
        # the loss value, as a training loop reports it, and dL/dz
        if multiclass:
            shifted = z - z.max(axis=1, keepdims=True)
            e = xp.exp(shifted)
            total = e.sum(axis=1, keepdims=True)
            loss = -(onehot * (shifted - xp.log(total))).sum() / n
            grad = e / total
            grad -= onehot
        else:
            e = xp.exp(-xp.abs(z))
            loss = (xp.maximum(z, 0) - z * onehot + xp.log1p(e)).sum() / n
            grad = xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
            grad -= onehot
        grad /= n
        for i in range(len(Ws) - 1, -1, -1):
            dW = acts[i].T @ grad
            db = grad.sum(axis=0)
            if i > 0:
                grad = grad @ Ws[i].T
                grad *= (acts[i] > 0) if relu else (1.0 - acts[i] * acts[i])
            Ws[i] -= lr * dW
            bs[i] -= lr * db
        return loss
    return step


def torch_step(case, device, X, y):
    import torch

    torch.manual_seed(0)
    sizes = case["sizes"]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU() if case["activation"] == "relu" else torch.nn.Tanh())
    model = torch.nn.Sequential(*layers).to(device)
    X = torch.as_tensor(X, device=device)
    if sizes[-1] > 1:
        y, loss_fn = torch.as_tensor(y, device=device), torch.nn.CrossEntropyLoss()
    else:
        y, loss_fn = torch.as_tensor(y, device=device), torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step():
        opt.zero_grad()
        loss_fn(model(X), y).backward()
        opt.step()
    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)
    return step, sync


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args(argv)
    be = backends.get(args.device)
    print(f"bpcore {bp.__version__} on {be} | numpy {np.__version__} | python {platform.python_version()} "
          f"| {platform.machine()}")
    if be.name == "cupy":
        import cupy as hand_xp
        torch_device = "cuda"
    elif be.kind == "cuda":       # torch:cuda needs no CuPy: the hand-written baseline stays NumPy
        hand_xp, torch_device = np, "cuda"
        print("hand-written baseline: NumPy on the CPU (CuPy is not needed for torch:cuda)")
    else:
        hand_xp, torch_device = np, "cpu"
    try:
        import torch
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    except ImportError:
        torch = None
    print(f"{'case':<34}{'hand-written':>14}{'bpcore':>12}{'torch':>12}{'bpcore/hand':>13}{'torch/hand':>12}")
    for name, case in CASES.items():
        X, y = make_data(case)
        hand = median_step_time(handwritten_step(case, hand_xp, X, y),
                                getattr(be, "synchronize"), args.steps)
        ours = median_step_time(*bpcore_step(case, be, X, y), args.steps)
        theirs = median_step_time(*torch_step(case, torch_device, X, y), args.steps) if torch else float("nan")
        print(f"{name:<34}{hand * 1e6:>12.1f}us{ours * 1e6:>10.1f}us{theirs * 1e6:>10.1f}us"
              f"{ours / hand:>13.2f}{theirs / hand:>12.2f}")


if __name__ == "__main__":
    main()
