"""Recurrent training steps (forward through time, loss, backward through time, SGD update): bpcore's
hand-written LSTM, GRU and RNN against PyTorch eager's ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN``, in one run.

    python benchmarks/bench_lstm.py [--device cpu|torch|cuda|...] [--cells LSTM,GRU,RNN]
                                    [--batch 32] [--length 64] [--inputs 64] [--hidden 256]
                                    [--rounds 9] [--steps 5] [--threads N] [--write] [--profile CELL]

The step, the same on both sides: y = cell(x) for x (batch, length T, inputs C) from a zero state,
the mean squared error against a fixed target (batch, T, hidden H), the gradients of every
parameter (not of x: the first layer of a model needs none), and an SGD update (lr 0.01), from
the same starting weights. bpcore runs on ``--device``; PyTorch eager (autograd, its own recurrent
kernels: on the CPU the LSTM runs oneDNN's fused ``mkldnn_rnn_layer``) on the same kind of device.

Timing as in every benchmark here (benchmarks/_timing.py): both contenders use ``--threads``
threads; they take turns round by round, the order rotated each round, ``--steps`` steps each per
round; the table gives the per-step minimum and median and the ratios of both, by the wall clock
and by CPU time. ``--write`` puts the output into ``benchmarks/cpu-results.md`` (``gpu-results.md``
on a GPU), in a section per thread count, keeping the other sections.

``--profile CELL``, instead of timing: how much of bpcore's step the matrix products alone take
(the same products on arrays of the step's shapes, timed by themselves), PyTorch's whole step
beside it, and where bpcore's step spends its CPU time (cProfile); with ``--write`` it has a
section of its own. Compare ratios, not seconds.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import _timing  # noqa: E402

import backends  # noqa: E402
import bpcore as bp  # noqa: E402

CELLS = ("LSTM", "GRU", "RNN")
LR = 0.01


def make_data(batch, length, inputs, hidden, seed=0):
    """x (batch, length, inputs) and the target (batch, length, hidden), float32 host arrays."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, length, inputs)).astype("float32"),
            rng.standard_normal((batch, length, hidden)).astype("float32"))


def bpcore_step(layer, X, Y):
    """One training step of ``layer`` (an RNN, LSTM or GRU on its device) on X, Y."""
    be = layer.device
    X, Y = be.asarray(X), be.asarray(Y)
    loss_fn = bp.MSELoss()
    opt = bp.optim.SGD(layer.parameters(), lr=LR)

    def step():
        opt.zero_grad()
        loss_fn.forward(layer.forward(X), Y)
        layer.backward_params(loss_fn.backward())
        opt.step()
    return step


def torch_step(torch, layer, X, Y, device):
    """The same step in PyTorch eager, from ``layer``'s weights (torch's weight_ih_l0 = W_ih.T);
    ``step.reference`` is the torch module."""
    be, kind = layer.device, type(layer).__name__
    extra = {"nonlinearity": layer.nonlinearity} if kind == "RNN" else {}
    reference = getattr(torch.nn, kind)(layer.input_size, layer.hidden_size, batch_first=True, **extra).to(device)
    with torch.no_grad():
        for name, ours in (("weight_ih_l0", layer.W_ih), ("weight_hh_l0", layer.W_hh)):
            getattr(reference, name).copy_(torch.tensor(be.to_numpy(ours.data).T))
        for name, ours in (("bias_ih_l0", layer.b_ih), ("bias_hh_l0", layer.b_hh)):
            getattr(reference, name).copy_(torch.tensor(be.to_numpy(ours.data)))
    X, Y = torch.tensor(X, device=device), torch.tensor(Y, device=device)
    opt = torch.optim.SGD(reference.parameters(), lr=LR)

    def step():
        opt.zero_grad(set_to_none=False)
        out, _ = reference(X)
        torch.nn.functional.mse_loss(out, Y).backward()
        opt.step()
    step.reference = reference
    return step


def products_alone(layer, X) -> callable:
    """The matrix products of ``layer``'s step, on arrays of its shapes: the input side before the
    loop, h @ W_hh per step forward, dZ_t @ W_hh^T per step backward, X^T dZ and H_prev^T dZ after."""
    be, xp = layer.device, layer.xp
    N, T, C = X.shape
    H, width = layer.hidden_size, layer.W_hh.shape[1]
    rng = np.random.default_rng(1)

    def on_device(*shape):
        return be.asarray(rng.standard_normal(shape).astype("float32"))
    x_rows, h, dZ_t, dZ, h_prev = on_device(N * T, C), on_device(N, H), on_device(N, width), \
        on_device(N * T, width), on_device(N * T, H)
    W_ih, W_hh = layer.W_ih.data, layer.W_hh.data
    W_hh_T = xp.reshape(xp.reshape(W_hh.T, (-1,)), (width, H))

    def products():
        x_rows @ W_ih
        for _ in range(T):
            h @ W_hh
        for _ in range(T):
            dZ_t @ W_hh_T
        x_rows.T @ dZ
        h_prev.T @ dZ
        be.synchronize()
    return products


def profile(args, torch, name) -> list[str]:
    """What dominates bpcore's step for cell ``name``: the products alone against the whole step
    (and PyTorch's whole step), taking turns; then cProfile's functions by own CPU time."""
    be = backends.get(args.device)
    X, Y = make_data(args.batch, args.length, args.inputs, args.hidden)
    layer = getattr(bp, name)(args.inputs, args.hidden, seed=0).to(be)
    steps = {"bpcore step": bpcore_step(layer, X, Y), "its matrix products alone": products_alone(layer, X)}
    if torch is not None:
        steps["torch eager step"] = torch_step(torch, layer, X, Y, "cuda" if be.kind == "cuda" else "cpu")
    times = _timing.interleaved(steps, be.synchronize, args.rounds, 1)
    best = {key: min(values) for key, values in times["cpu"].items()}
    whole, alone = best["bpcore step"], best["its matrix products alone"]
    lines = [f"{name} step, batch {args.batch}, T {args.length}, C {args.inputs}, H {args.hidden}: CPU time per "
             f"step, best of {args.rounds} rounds taking turns"]
    for key, seconds in best.items():
        lines.append(f"  {key:<28}{_timing.fmt_time(seconds):>10}")
    lines.append(f"matrix products (1 + {args.length} + {args.length} + 2 of them) alone: "
                 f"{100 * alone / whole:.0f}% of bpcore's step; the rest is elementwise work and Python")
    if torch is not None:
        lines.append(f"the products alone take {alone / best['torch eager step']:.2f} of PyTorch's whole step")
    return lines + _timing.profile(steps["bpcore step"], 10, 14, f"profile of bpcore's {name} step")


def run(args) -> list[str]:
    try:
        import torch
    except ImportError:
        torch = None
    with _timing.pinned_threads(args.threads, torch) as threads:
        if args.profile:
            return [threads] + profile(args, torch, args.profile)
        return _run(args, torch, threads)


def _run(args, torch, threads) -> list[str]:
    be = backends.get(args.device)
    torch_device = "cuda" if be.kind == "cuda" else "cpu"
    sync = be.synchronize if torch is None or torch_device != "cuda" else (
        lambda: (be.synchronize(), torch.cuda.synchronize()))
    out = [threads] + _timing.machine_lines(be.spec, bp.__version__, torch)
    out.append(f"batch {args.batch}, T {args.length}, C {args.inputs}, H {args.hidden}, float32, MSE loss, SGD; "
               f"{args.rounds} rounds x {args.steps} steps per contender, interleaved, order rotated each round; "
               f"per-step wall-clock min / median; ratios min-based / median-based, by the wall clock and by CPU time")
    out.append(f"{'cell':<6}{'bpcore':>21}{'torch eager':>21}{'bp/torch':>13}{'bp/torch cpu':>15}")
    print("\n".join(out), flush=True)
    X, Y = make_data(args.batch, args.length, args.inputs, args.hidden)
    nan = (float("nan"), float("nan"))
    for name in args.cells:
        layer = getattr(bp, name)(args.inputs, args.hidden, seed=0).to(be)
        steps = {"bpcore": bpcore_step(layer, X, Y)}
        if torch is not None:
            steps["torch"] = torch_step(torch, layer, X, Y, torch_device)
        times = _timing.interleaved(steps, sync, args.rounds, args.steps)
        stats, cpu = _timing.summary(times["wall"]), _timing.summary(times["cpu"])
        cells = "".join(f"{_timing.fmt_time(stats.get(k, nan)[0]) + ' / ' + _timing.fmt_time(stats.get(k, nan)[1]):>21}"
                        for k in ("bpcore", "torch"))
        line = (f"{name:<6}{cells}{_timing.ratio_text(stats, 'bpcore', 'torch', 13)}"
                f"{_timing.ratio_text(cpu, 'bpcore', 'torch', 15)}")
        out.append(line)
        print(line, flush=True)
    if torch is None:
        out.append("torch is not installed: no ratios (pip install torch)")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="bpcore's device: cpu (NumPy), torch, cuda (CuPy), ...")
    p.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated, from {', '.join(CELLS)}")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=64, help="sequence length T")
    p.add_argument("--inputs", type=int, default=64, help="input width C")
    p.add_argument("--hidden", type=int, default=256, help="hidden width H")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    p.add_argument("--steps", type=int, default=5, help="steps per contender per round (default 5)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for NumPy's BLAS and for PyTorch alike (default: the machine's cores; on a "
                        "shared machine 1 keeps busy-waiting threads from distorting both)")
    p.add_argument("--write", action="store_true", help="write the results file (keeps its other sections)")
    p.add_argument("--profile", metavar="CELL", choices=CELLS,
                   help="instead of timing: what dominates bpcore's step for CELL (products alone, cProfile)")
    args = p.parse_args(argv)
    args.cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    if not args.cells or any(c not in CELLS for c in args.cells):
        p.error(f"--cells: choose from {', '.join(CELLS)}")
    if min(args.batch, args.length, args.inputs, args.hidden, args.rounds, args.steps, args.threads) < 1:
        p.error("--batch, --length, --inputs, --hidden, --rounds, --steps and --threads must be at least 1")
    lines = run(args)
    if args.profile:
        print("\n".join(lines))
    if args.write:
        what = f"profile={args.profile} " if args.profile else ""
        title = f"What dominates bpcore's {args.profile} step" if args.profile else "Recurrent training steps"
        _timing.write_results(backends.get(args.device).kind, "bench_lstm.py",
                              f"bench_lstm {what}threads={args.threads}", title, args.threads, argv, lines)
    return lines


if __name__ == "__main__":
    main()
