"""CNN training steps (forward, loss, backward, SGD update): bpcore against PyTorch eager, in one run.

    python benchmarks/bench_cnn.py [--device cpu|cuda|torch|...] [--rounds 9] [--steps 10]
                                   [--threads N] [--memory] [--write] [--profile CASE]

Nets, batch 64:
  digits CNN   1x8x8:   Conv2d(1, 16, 3, p1) ReLU MaxPool2 Conv2d(16, 32, 3, p1) ReLU MaxPool2 Flatten Linear(128, 10)
  CIFAR-sized 3x32x32: Conv2d(3, 32, 3, p1) ReLU MaxPool2 Conv2d(32, 64, 3, p1) ReLU MaxPool2 Flatten Linear(4096, 10)

Three contenders from the same starting weights, interleaved round by round in a rotated order
(benchmarks/_timing.py): bpcore on ``--device`` with its backend's fast paths (as_strided windows
on NumPy), bpcore with the portable Array API lines only (``backends.portable_only()``), and
PyTorch eager (autograd, torch.optim.SGD, its own conv kernels) on the same kind of device, all
with ``--threads`` threads. Prints per-step minimum and median and the ratios of both. With
``--memory``, the peak memory one step allocates (tracemalloc for NumPy; the CUDA allocator on
a GPU; torch on the CPU is not traced). ``--write`` puts the output into
``benchmarks/cpu-results.md`` (``gpu-results.md`` on a GPU), in a section per thread count,
keeping the other sections.
Compare ratios, not seconds: timings vary from machine to machine and from run to run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tracemalloc

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import _timing  # noqa: E402

import backends  # noqa: E402
import bpcore as bp  # noqa: E402

CASES = {
    "digits": dict(label="digits CNN 1x8x8", shape=(1, 8, 8), widths=(16, 32)),
    "cifar": dict(label="CIFAR-sized 3x32x32, conv 3-32-64", shape=(3, 32, 32), widths=(32, 64)),
}
BATCH, LR = 64, 0.01


def bpcore_model(case):
    c, h, w = case["shape"]
    c1, c2 = case["widths"]
    return bp.Sequential(bp.Conv2d(c, c1, 3, padding=1, seed=0), bp.ReLU(), bp.MaxPool2d(2),
                         bp.Conv2d(c1, c2, 3, padding=1, seed=1), bp.ReLU(), bp.MaxPool2d(2),
                         bp.Flatten(), bp.Linear(c2 * (h // 4) * (w // 4), 10, seed=2))


def bpcore_step(model, device, X, y, portable=False):
    """One step of ``model`` on ``device``; ``portable``: with every fast path off."""
    model = model.to(device)
    be = model.device
    X, y = be.asarray(X), be.asarray(y)
    loss_fn = bp.SoftmaxCrossEntropyLoss()
    loss_fn.check(y)                  # label values once, where the data enter; no sync per step
    opt = bp.optim.SGD(model.parameters(), lr=LR)

    def step():
        opt.zero_grad()
        loss_fn.forward(model(X), y)
        model.backward_params(loss_fn.backward())        # dL/dX of the data is not needed
        opt.step()

    if not portable:
        return step

    def portable_step():
        with backends.portable_only():
            step()
    return portable_step


def torch_step(torch, device, model, X, y):
    """The same net in PyTorch eager, from bpcore ``model``'s starting weights."""
    nn = torch.nn
    layers = []
    for layer in model.layers:
        if isinstance(layer, bp.Conv2d):
            conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, padding=layer.padding)
            with torch.no_grad():
                conv.weight.copy_(torch.as_tensor(model.device.to_numpy(layer.W.data)))
                conv.bias.copy_(torch.as_tensor(model.device.to_numpy(layer.b.data)))
            layers.append(conv)
        elif isinstance(layer, bp.Linear):
            linear = nn.Linear(layer.n_in, layer.n_out)
            with torch.no_grad():
                linear.weight.copy_(torch.as_tensor(model.device.to_numpy(layer.W.data).T))
                linear.bias.copy_(torch.as_tensor(model.device.to_numpy(layer.b.data)))
            layers.append(linear)
        else:
            layers.append({"ReLU": nn.ReLU, "Flatten": nn.Flatten}.get(type(layer).__name__, lambda: nn.MaxPool2d(2))())
    net = nn.Sequential(*layers).to(device)
    X, y = torch.tensor(X, device=device), torch.tensor(y, device=device)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=LR)

    def step():
        opt.zero_grad()
        loss_fn(net(X), y).backward()
        opt.step()
    step.net = net
    return step


def host_peak_bytes(step):
    """Peak bytes NumPy allocates during one step (after a warm-up step), by tracemalloc: what the
    step holds from before (the weights, the data) is not in it, only what the step allocates."""
    step()
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def profile(device, name, steps=20, top=14) -> list[str]:
    """Where bpcore's step on case ``name`` spends its CPU time (cProfile, benchmarks/_timing.py)."""
    case = CASES[name]
    rng = np.random.default_rng(0)
    step = bpcore_step(bpcore_model(case), device, rng.standard_normal((BATCH,) + case["shape"]).astype(np.float32),
                       rng.integers(0, 10, BATCH))
    for _ in range(3):
        step()
    return _timing.profile(step, steps, top, f"profile of the bpcore step, {case['label']}")


def run(args) -> list[str]:
    try:
        import torch
    except ImportError:
        torch = None
    with _timing.pinned_threads(args.threads, torch) as threads:
        return _run(args, torch, threads)


def _run(args, torch, threads) -> list[str]:
    device = backends.get(args.device)
    out = [threads]
    out += _timing.machine_lines(device.spec, bp.__version__, torch)
    torch_device = "cuda" if device.kind == "cuda" else "cpu"
    out.append(f"batch {BATCH}; {args.rounds} rounds x {args.steps} steps per contender, interleaved, order rotated "
               f"each round; per-step wall-clock min / median; ratios min-based / median-based, by the wall clock "
               f"and by CPU time")
    header = (f"{'case':<34}{'bpcore':>21}{'portable':>21}{'torch':>21}{'bp/torch':>13}{'portable/torch':>16}"
              f"{'bp/torch cpu':>14}")
    if args.memory:
        header += f"{'bp peak':>10}{'torch peak':>12}"
    out.append(header)
    print("\n".join(out), flush=True)
    rng = np.random.default_rng(0)
    sync = device.synchronize if torch is None or torch_device != "cuda" else (
        lambda: (device.synchronize(), torch.cuda.synchronize()))
    for name in args.cases:
        case = CASES[name]
        X = rng.standard_normal((BATCH,) + case["shape"]).astype(np.float32)
        y = rng.integers(0, 10, BATCH)
        steps = {"bpcore": bpcore_step(bpcore_model(case), device, X, y),
                 "portable": bpcore_step(bpcore_model(case), device, X, y, portable=True)}
        if torch is not None:
            steps["torch"] = torch_step(torch, torch_device, bpcore_model(case), X, y)
        times = _timing.interleaved(steps, sync, args.rounds, args.steps)
        stats, cpu = _timing.summary(times["wall"]), _timing.summary(times["cpu"])
        nan = (float("nan"), float("nan"))
        cells = "".join(f"{_timing.fmt_time(stats.get(k, nan)[0]) + ' / ' + _timing.fmt_time(stats.get(k, nan)[1]):>21}"
                        for k in ("bpcore", "portable", "torch"))
        line = (f"{case['label']:<34}{cells}{_timing.ratio_text(stats, 'bpcore', 'torch', 13)}"
                f"{_timing.ratio_text(stats, 'portable', 'torch', 16)}{_timing.ratio_text(cpu, 'bpcore', 'torch', 14)}")
        if args.memory:
            ours = host_peak_bytes(steps["bpcore"]) if device.name == "numpy" else float("nan")
            theirs = float("nan")
            if torch is not None and torch_device == "cuda":
                torch.cuda.reset_peak_memory_stats()
                steps["torch"]()
                torch.cuda.synchronize()
                theirs = torch.cuda.max_memory_allocated()
            line += f"{ours / 2**20:>8.1f}MB{theirs / 2**20:>10.1f}MB"
        out.append(line)
        print(line, flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    p.add_argument("--steps", type=int, default=10, help="steps per contender per round (default 10)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for NumPy's BLAS and for PyTorch alike (default: the machine's cores)")
    p.add_argument("--memory", action="store_true", help="also measure the peak memory of one step")
    p.add_argument("--write", action="store_true", help="write the results file (keeps its other sections)")
    p.add_argument("--profile", metavar="CASE", choices=list(CASES),
                   help="instead of timing: where bpcore's step on CASE spends its time (cProfile)")
    args = p.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not args.cases or any(c not in CASES for c in args.cases):
        p.error(f"--cases: choose from {', '.join(CASES)}")
    if args.rounds < 1 or args.steps < 1 or args.threads < 1:
        p.error("--rounds, --steps and --threads must be at least 1")
    if args.profile:
        with _timing.pinned_threads(args.threads) as threads:
            lines = [threads] + profile(backends.get(args.device), args.profile)
        print("\n".join(lines))
        return lines
    lines = run(args)
    if args.write:
        _timing.write_results(backends.get(args.device).kind, "bench_cnn.py", f"bench_cnn threads={args.threads}",
                              "CNN training steps", args.threads, argv, lines)
    return lines


if __name__ == "__main__":
    main()
