"""Time one LSTM training step (forward through time, loss, backward through time, SGD update):
bpcore's hand-written LSTM against PyTorch eager ``nn.LSTM``, as a ratio measured in one run.

    python benchmarks/bench_lstm.py [--device cpu|torch|cuda] [--batch 32 --steps 64 --inputs 64 --hidden 256]
                                    [--rounds 7] [--repeats 5] [--profile]

The step, the same on both sides: y = LSTM(x) for x (batch, T, C) from a zero state, the mean
squared error against a fixed target (batch, T, H), the gradients of every parameter, and an SGD
update (lr 0.01). Both start from the same weights. bpcore runs on --device; PyTorch eager
(autograd, its own LSTM kernels: oneDNN's on the CPU where torch uses it) on the same kind of
device. The two take turns round by round (``--repeats`` steps each per round) and the median
seconds per step of each is printed with their ratio. ``--profile`` prints where bpcore's step
spends its time (cProfile, own time per function). Compare ratios, not seconds.
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

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_data(batch, steps, inputs, hidden, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, steps, inputs)).astype("float32"),
            rng.standard_normal((batch, steps, hidden)).astype("float32"))


def bpcore_step(layer, X, Y):
    """One training step of ``layer`` (an LSTM on its device) on device arrays X, Y."""
    be = layer.device
    X, Y = be.asarray(X), be.asarray(Y)
    loss_fn = bp.MSELoss()
    opt = bp.optim.SGD(layer.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        loss_fn.forward(layer.forward(X), Y)
        layer.backward_params(loss_fn.backward())
        opt.step()
    return step


def torch_step(torch, layer, X, Y, device):
    """The same step in PyTorch eager, from ``layer``'s weights (torch's weight_ih_l0 = W_ih.T)."""
    be = layer.device
    reference = torch.nn.LSTM(layer.input_size, layer.hidden_size, batch_first=True).to(device)
    with torch.no_grad():
        for name, ours in (("weight_ih_l0", layer.W_ih), ("weight_hh_l0", layer.W_hh)):
            getattr(reference, name).copy_(torch.tensor(be.to_numpy(ours.data).T))
        for name, ours in (("bias_ih_l0", layer.b_ih), ("bias_hh_l0", layer.b_hh)):
            getattr(reference, name).copy_(torch.tensor(be.to_numpy(ours.data)))
    X, Y = torch.tensor(X, device=device), torch.tensor(Y, device=device)
    opt = torch.optim.SGD(reference.parameters(), lr=0.01)

    def step():
        opt.zero_grad(set_to_none=False)
        out, _ = reference(X)
        torch.nn.functional.mse_loss(out, Y).backward()
        opt.step()
    step.reference = reference
    return step


def interleaved(steps_by_name, sync, rounds, repeats):
    """{name: [seconds per step, one per round]}, the implementations taking turns each round."""
    for step in steps_by_name.values():
        for _ in range(2):
            step()
    sync()
    times = {name: [] for name in steps_by_name}
    for _ in range(rounds):
        for name, step in steps_by_name.items():
            start = time.perf_counter()
            for _ in range(repeats):
                step()
            sync()
            times[name].append((time.perf_counter() - start) / repeats)
    return times


def profile(step, repeats=10, top=12) -> list[str]:
    """cProfile's functions by own time over ``repeats`` steps (read the shares, not the microseconds)."""
    import cProfile
    import pstats

    step()
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [step() for _ in range(repeats)])
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())
    lines = [f"profile of bpcore's LSTM step ({repeats} steps): share of own time, calls per step, function"]
    for (path, line, function), (_, calls, own, _, _) in sorted(stats.stats.items(), key=lambda i: -i[1][2])[:top]:
        where = f"{os.path.relpath(path, HERE)}:{line}" if path.startswith(HERE) else os.path.basename(path)
        lines.append(f"  {100 * own / total:5.1f}%  {calls / repeats:7.1f}  {function} ({where})")
    return lines


def matmul_share(layer, X, step, repeats=9) -> list[str]:
    """How much of bpcore's step is matrix products: the same products (one before the loop, one per
    step forward, one per step backward, three after the loop: X^T dZ, H_prev^T dZ and their sums'
    partner dZ W_ih^T skipped as fit skips it) timed alone on arrays of the step's shapes."""
    be, xp = layer.device, layer.xp
    N, T, C = X.shape
    H = layer.hidden_size
    rng = np.random.default_rng(1)
    x_flat, h = be.asarray(rng.standard_normal((T * N, C)).astype("float32")), be.asarray(
        rng.standard_normal((N, H)).astype("float32"))
    dZ_t = be.asarray(rng.standard_normal((N, 4 * H)).astype("float32"))
    dZ, h_prev = be.asarray(rng.standard_normal((T * N, 4 * H)).astype("float32")), be.asarray(
        rng.standard_normal((T * N, H)).astype("float32"))
    W_ih, W_hh = layer.W_ih.data, layer.W_hh.data
    W_hh_T = xp.reshape(xp.reshape(W_hh.T, (-1,)), (4 * H, H))

    def products():
        x_flat @ W_ih
        for _ in range(T):
            h @ W_hh
        for _ in range(T):
            dZ_t @ W_hh_T
        x_flat.T @ dZ
        h_prev.T @ dZ
    pairs = [(_seconds(step), _seconds(products)) for _ in range(repeats)]      # taking turns
    whole, alone = min(p[0] for p in pairs), min(p[1] for p in pairs)
    return [f"matrix products alone (1 + {T} + {T} + 2 of them, the step's shapes): {alone * 1e3:.2f} ms, "
            f"{100 * alone / whole:.0f}% of bpcore's step ({whole * 1e3:.2f} ms; each the best of {repeats}, "
            f"taking turns); the rest is elementwise work and Python"]


def _seconds(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def machine_lines(be, torch):
    lines = [f"bpcore {bp.__version__} on {be.spec} | numpy {np.__version__} | python {platform.python_version()}"]
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                lines.append(f"BLAS {pool.get('internal_api')} {pool.get('version')} "
                             f"({pool.get('num_threads')} threads)")
    except ImportError:
        lines.append("BLAS: unknown (pip install threadpoolctl to see it)")
    if torch is not None:
        lines.append(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
                     f"oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}")
    return lines


def _limit_threads(count):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise SystemExit("--threads needs threadpoolctl (pip install threadpoolctl)") from None
    threadpool_limits(count)
    try:
        import torch
        torch.set_num_threads(count)
    except ImportError:
        pass


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="bpcore's device: cpu (numpy), torch, cuda (CuPy), ...")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=64, help="sequence length T")
    p.add_argument("--inputs", type=int, default=64, help="input width C")
    p.add_argument("--hidden", type=int, default=256, help="hidden width H")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--repeats", type=int, default=5, help="steps of each per round")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads for NumPy and torch alike (default: each library's own; on a shared "
                        "machine 1 keeps busy-waiting threads from distorting both)")
    p.add_argument("--profile", action="store_true", help="also print where bpcore's step spends its time")
    args = p.parse_args(argv)
    if args.threads is not None:
        _limit_threads(args.threads)
    be = backends.get(args.device)
    try:
        import torch
    except ImportError:
        torch = None
    X, Y = make_data(args.batch, args.steps, args.inputs, args.hidden)
    layer = bp.LSTM(args.inputs, args.hidden, seed=0).to(be)
    steps = {"bpcore": bpcore_step(layer, X, Y)}
    torch_device = "cuda" if be.kind == "cuda" else "cpu"
    if torch is not None:
        steps["torch eager"] = torch_step(torch, layer, X, Y, torch_device)

    def sync():
        be.synchronize()
        if torch is not None and torch_device == "cuda":
            torch.cuda.synchronize()

    lines = machine_lines(be, torch)
    lines.append(f"LSTM training step, batch {args.batch}, T {args.steps}, C {args.inputs}, H {args.hidden} "
                 f"(float32); {args.rounds} rounds x {args.repeats} steps each, interleaved; median ms per step")
    times = interleaved(steps, sync, args.rounds, args.repeats)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in medians.items():
        lines.append(f"  {name:<12}{seconds * 1e3:9.2f} ms")
    if "torch eager" in medians:
        lines.append(f"ratio bpcore / torch eager: {medians['bpcore'] / medians['torch eager']:.2f} "
                     f"(below 1: bpcore is faster)")
    else:
        lines.append("torch is not installed: no ratio (pip install torch)")
    if args.profile:
        lines += matmul_share(layer, X, steps["bpcore"])
        lines += profile(steps["bpcore"])
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main()
