"""One training step (forward, loss, backward, SGD update, zero_grad), three ways, in one run.

    python benchmarks/bench_step.py [--device cpu|cuda] [--nets spiral,moons,...] [--rounds 9]
                                    [--steps N] [--threads N] [--write] [--profile NET]

For each of five nets (the lessons' spiral and moons nets, an MNIST-sized MLP, a wide MLP and a
deep narrow one), with the same starting weights for all three:

1. bpcore on ``--device`` (numpy; CuPy with ``--device cuda``; PyTorch with ``--device torch`` or
   ``--device torch:cuda``);
2. the same net written by hand as fast as the array library allows: every buffer allocated once
   and filled in place with ``out=``, the reductions bpcore's NumPy namespace makes, the loss
   value computed as a training loop would; in NumPy on a CPU, in CuPy on a GPU (for
   ``torch:cuda``: CuPy on the same GPU, if installed);
3. PyTorch eager with autograd and ``torch.optim.SGD`` (``cuda`` on a GPU).

All three run ``--threads`` threads and take turns in an order that rotates every round
(benchmarks/_timing.py); the table gives per-step minimum and median and the ratios of both.
Also: the peak memory of a wide-net step (tracemalloc sees NumPy's allocations, not PyTorch's),
``bp.fit``'s overhead over the bare step loop (MNIST-sized net), and on the CPU the cost of
SoftmaxCrossEntropyLoss's per-call label check (spiral- and MNIST-sized). ``--write`` puts the output
into ``benchmarks/cpu-results.md`` (``gpu-results.md`` with ``--device cuda``), in a section per
thread count, keeping the other sections. Compare ratios, not seconds.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import timeit
import tracemalloc

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # the repository
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "benchmarks"))

import _timing  # noqa: E402

import backends  # noqa: E402
import bpcore as bp  # noqa: E402
from backends._numpy import column_sums_by_matvec, ones_for  # noqa: E402

NETS = {   # name: sizes, activation, batch; binary cross-entropy for one output, else softmax CE
    "spiral": ([2, 16, 8, 1], "tanh", 400),
    "moons": ([2, 8, 8, 1], "relu", 320),
    "mnist": ([784, 256, 256, 10], "relu", 128),
    "wide": ([784, 1024, 1024, 1024, 10], "relu", 512),
    "deep": ([64] * 20 + [10], "relu", 64),
}
STEPS = {"spiral": 200, "moons": 200, "mnist": 20, "wide": 2, "deep": 40}    # per round: tens of ms each
LR = 0.01                 # small enough that thousands of steps on one batch stay finite


def make_data(sizes, batch, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = (rng.integers(0, 2, (batch, 1)).astype(np.float32) if sizes[-1] == 1
         else rng.integers(0, sizes[-1], batch))
    return X, y


# -- 1. bpcore ---------------------------------------------------------------------------------
def bpcore_model(sizes, activation):
    return bp.mlp(sizes, activation=activation, seed=0)


def bpcore_step(model, be, X, y, check_targets=None):
    model = model.to(be)
    X, y = be.asarray(X), be.asarray(y)
    loss_fn = bp.SoftmaxCrossEntropyLoss() if model.layers[-1].n_out > 1 else bp.BCEWithLogitsLoss()
    loss_fn.check(y)                  # values once, where the data enter; no sync per step
    loss_fn.check_targets = check_targets   # None, the default: labels checked per call where that is free
    opt = bp.optim.SGD(model.parameters(), lr=LR)

    def step():
        opt.zero_grad()
        loss_fn.forward(model(X), y)
        model.backward_params(loss_fn.backward())     # dL/dX of the data is not needed
        opt.step()
    return step


# -- 2. by hand, every buffer allocated once ------------------------------------------------------
def handwritten_step(xp, weights, activation, X, y):
    """The baseline: the same net written out, in place wherever ``out=`` exists.

    weights: [(W (n_in, n_out), b (n_out,))] as host arrays, copied. In place: every matmul
    (``out=``), the bias add, tanh / maximum, the loss's arithmetic, the gradients, the bias
    gradients (``out=``) and the SGD update. Reductions are the ones bpcore's NumPy namespace
    makes: the ufuncs' own ``reduce`` (NumPy's ``x.sum()`` and ``x.max()`` add a wrapper of about
    1.5 us each), and a narrow batch's column sums as ``ones @ g`` (backends/_numpy.py). Allocated
    per step: only the 0-d loss value.
    """
    Ws = [xp.asarray(W.copy()) for W, _ in weights]
    bs = [xp.asarray(b.copy()) for _, b in weights]
    X = xp.asarray(X)
    add_reduce = xp.add.reduce if xp is np else xp.sum               # CuPy: its sum takes out= too
    max_reduce = xp.maximum.reduce if xp is np else xp.max

    def column_sums(rows, out):        # the bias gradients, as bpcore's NumPy namespace sums columns
        if xp is np and column_sums_by_matvec(rows):
            np.matmul(ones_for(rows.shape[0], rows.dtype), rows, out=out)
        else:
            add_reduce(rows, axis=0, out=out)
    n, layers, relu = X.shape[0], len(Ws), activation == "relu"
    multiclass = Ws[-1].shape[1] > 1
    target = xp.asarray(np.eye(Ws[-1].shape[1], dtype=np.float32)[y] if multiclass else y)
    z = [xp.empty((n, W.shape[1]), dtype=xp.float32) for W in Ws]          # pre-activations
    a = [X] + [xp.empty_like(zi) for zi in z[:-1]]                          # layer inputs
    g = [xp.empty_like(zi) for zi in z]                                     # dL/dz per layer
    dW = [xp.empty_like(W) for W in Ws]
    db = [xp.empty_like(b) for b in bs]
    mask = [xp.empty_like(zi) for zi in z[:-1]]
    work, row = xp.empty_like(z[-1]), xp.empty((n, 1), dtype=xp.float32)
    lr = np.float32(LR)

    def step():
        for i in range(layers):
            xp.matmul(a[i], Ws[i], out=z[i])
            z[i] += bs[i]
            if i < layers - 1:
                if relu:
                    xp.maximum(z[i], 0, out=a[i + 1])
                else:
                    xp.tanh(z[i], out=a[i + 1])
        out, grad = z[-1], g[-1]
        if multiclass:                                  # softmax cross-entropy, stable
            out -= max_reduce(out, axis=1, keepdims=True)
            xp.exp(out, out=grad)
            add_reduce(grad, axis=1, keepdims=True, out=row)
            grad /= row
            xp.log(row, out=row)
            xp.subtract(out, row, out=work)             # log-probabilities
            xp.multiply(work, target, out=work)
            loss = -add_reduce(work, axis=None) / n
            grad -= target
        else:                                           # BCE with logits, stable
            xp.abs(out, out=work)
            xp.negative(work, out=work)
            xp.exp(work, out=work)                      # e = exp(-|z|)
            xp.add(work, 1, out=grad)                   # 1 + e
            xp.log(grad, out=row)                       # the loss per sample: log(1 + e) + max(z, 0) - z y
            xp.add(row, xp.maximum(out, 0), out=row)
            xp.subtract(row, out * target, out=row)
            loss = add_reduce(row, axis=None) / n
            xp.divide(xp.where(out >= 0, 1, work), grad, out=grad)             # sigmoid(z)
            grad -= target
        grad /= n
        for i in range(layers - 1, -1, -1):
            xp.matmul(a[i].T, g[i], out=dW[i])
            column_sums(g[i], db[i])
            if i > 0:
                xp.matmul(g[i], Ws[i].T, out=g[i - 1])
                if relu:
                    xp.greater(a[i], 0, out=mask[i - 1])
                else:                                   # tanh' = 1 - a^2
                    xp.multiply(a[i], a[i], out=mask[i - 1])
                    xp.subtract(1, mask[i - 1], out=mask[i - 1])
                g[i - 1] *= mask[i - 1]
            dW[i] *= lr
            Ws[i] -= dW[i]
            db[i] *= lr
            bs[i] -= db[i]
        return loss
    step.weights = Ws                  # for the test that this baseline trains the same net
    return step


# -- 3. PyTorch eager ---------------------------------------------------------------------------
def torch_step(torch, device, weights, activation, X, y):
    layers = []
    for i, (W, b) in enumerate(weights):
        linear = torch.nn.Linear(*W.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(W.T))
            linear.bias.copy_(torch.as_tensor(b))
        layers.append(linear)
        if i < len(weights) - 1:
            layers.append(torch.nn.ReLU() if activation == "relu" else torch.nn.Tanh())
    model = torch.nn.Sequential(*layers).to(device)
    X, y = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)
    loss_fn = torch.nn.CrossEntropyLoss() if weights[-1][0].shape[1] > 1 else torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def step():
        opt.zero_grad()
        loss_fn(model(X), y).backward()
        opt.step()
    return step


# -- measuring ----------------------------------------------------------------------------------
def peak_bytes(make_step):
    """The peak of NumPy allocations (tracemalloc) over two training steps, counting everything the
    step holds (weights, gradients, buffers, what layers keep for backward) and its transients.

    Tracing starts before the step is built, so what it holds is counted; the peak is reset after
    the build and a first step, so one-time transients of building (host-side weight draws) and
    of the first step (gradients made on first use) are not.
    """
    tracemalloc.start()
    try:
        step = make_step()
        step()
        tracemalloc.reset_peak()
        step()
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class EpochClock(bp.Callback):
    """The wall time of every epoch inside fit: from one epoch's start to the next one's (or to
    the end of training), so everything fit does per epoch is in it."""

    def __init__(self, be):
        super().__init__()
        self.be, self.seconds, self._last_start = be, [], None

    def on_epoch_begin(self, epoch, logs=None):
        self._lap()

    def on_train_end(self, logs=None):
        self._lap()

    def _lap(self):
        self.be.synchronize()
        now = time.perf_counter()
        if self._last_start is not None:
            self.seconds.append(now - self._last_start)
        self._last_start = now


def fit_overhead(be, rounds, epochs=3):
    """(fit's seconds per epoch, the bare loop's seconds per epoch, fit's once-per-call seconds).

    The goal is per epoch, so fit's epochs are timed from inside (``EpochClock``), and the rest of
    the call is the once-per-call part (the checks of X and y where they enter, the probe forward,
    the history). The loop takes the same shuffled batches with ``xp.take`` and runs the README's
    step. Minimum over every epoch of every round, interleaved.
    """
    sizes, activation, batch = NETS["mnist"]
    X, y = make_data(sizes, batch * 40, seed=1)
    loss_fn = bp.SoftmaxCrossEntropyLoss()
    fit_epochs, loop_epochs, once = [], [], []
    for _ in range(rounds):
        model = bpcore_model(sizes, activation).to(be)
        opt = bp.optim.SGD(model.parameters(), lr=LR)
        clock = EpochClock(be)
        start = time.perf_counter()
        bp.fit(model, loss_fn, opt, X, y, epochs=epochs, batch_size=batch, seed=0, progress=False,
               callbacks=[clock])
        be.synchronize()
        fit_epochs += clock.seconds
        once.append(time.perf_counter() - start - sum(clock.seconds))

        model = bpcore_model(sizes, activation).to(be)
        opt = bp.optim.SGD(model.parameters(), lr=LR)
        Xd, yd = be.asarray(X), be.asarray(y)
        loss_fn.check(yd)
        rng = np.random.default_rng(0)
        for _ in range(epochs):
            start = time.perf_counter()
            order = be.asarray(rng.permutation(len(X)))
            for first in range(0, len(X), batch):
                rows = order[first:first + batch]
                x_batch, y_batch = be.xp.take(Xd, rows, axis=0), be.xp.take(yd, rows, axis=0)
                opt.zero_grad()
                loss_fn.forward(model(x_batch), y_batch)
                model.backward_params(loss_fn.backward())
                opt.step()
            be.synchronize()
            loop_epochs.append(time.perf_counter() - start)
    return min(fit_epochs), min(loop_epochs), min(once)


def hand_namespace(be):
    """(namespace, synchronize) of the hand-written step, on bpcore's device: NumPy on a CPU, CuPy on
    a GPU. For ``torch:cuda`` that is CuPy on the same GPU when CuPy is usable here (PyTorch has no
    ``out=`` for every line of the step; its own column is PyTorch eager); (None, None) without it."""
    if be.kind != "cuda":
        return np, lambda: None
    if be.name == "cupy":
        return be.cupy, be.synchronize
    try:
        gpu = backends.get(f"cupy:{getattr(be.device, 'index', None) or 0}")
    except (backends.BackendUnavailableError, ValueError):
        return None, None
    return gpu.cupy, gpu.synchronize


def torch_device_of(be) -> str:
    """The PyTorch column's device: bpcore's own for the torch backend, the same GPU for CuPy."""
    if be.name == "torch":
        return str(be.device)
    return f"cuda:{be.device.id}" if be.kind == "cuda" else "cpu"


def label_check_cost(be, rounds, number=200, repeats=25) -> list[str]:
    """What SoftmaxCrossEntropyLoss's per-call label check adds to a step where it costs no sync
    (``check_targets`` None, the default, on the CPU backends; False skips it), on a spiral-sized
    net with a 2-class softmax head and on the MNIST-sized net. The check runs inside the loss's
    forward, so that call is timed both ways (taking turns, minimum over many short repeats: robust
    on a busy machine) and the difference set against the whole step (interleaved rounds)."""
    lines = ["per-call label check of SoftmaxCrossEntropyLoss (check_targets None, the default, vs False):"]
    for name, (sizes, activation, batch) in (("spiral", ([2, 16, 8, 2], "tanh", 400)), ("mnist", NETS["mnist"])):
        X, y = make_data(sizes, batch)
        model = bpcore_model(sizes, activation).to(be)
        logits, labels = model(be.asarray(X)), be.asarray(y)
        calls = {}
        for check in (None, False):
            loss_fn = bp.SoftmaxCrossEntropyLoss()
            loss_fn.check_targets = check
            calls[check] = timeit.Timer(lambda loss_fn=loss_fn, z=logits, t=labels: loss_fn.forward(z, t))
        forward = {check: math.inf for check in calls}
        for _ in range(repeats):                  # the two take turns, as the steps do
            for check, timer in calls.items():
                forward[check] = min(forward[check], timer.timeit(number) / number)
        step = bpcore_step(bpcore_model(sizes, activation), be, X, y)
        times = _timing.interleaved({"step": step}, be.synchronize, rounds, STEPS[name])
        check_s, step_s = forward[None] - forward[False], min(times["wall"]["step"])
        lines.append(f"  {name}-sized {'-'.join(map(str, sizes))}, batch {batch}: loss forward "
                     f"{forward[False] * 1e6:.1f} us unchecked, {forward[None] * 1e6:.1f} us checked: the check "
                     f"{check_s * 1e6:+.1f} us of a {step_s * 1e6:.0f} us step ({100 * check_s / step_s:+.1f}%)")
    return lines


def run(args) -> list[str]:
    try:
        import torch
    except ImportError:
        torch = None
    with _timing.pinned_threads(args.threads, torch) as threads:
        return _run(args, torch, threads)


def _run(args, torch, threads) -> list[str]:
    be = backends.get(args.device)
    hand_xp, hand_sync = hand_namespace(be)      # the hand-written step on the same device
    torch_device = torch_device_of(be)
    if be.kind == "cuda" and torch is not None and not torch.cuda.is_available():
        torch = None                              # a CPU build of torch beside CuPy: no PyTorch column
    names = [n.strip() for n in args.nets.split(",") if n.strip()]
    unknown = [n for n in names if n not in NETS]
    if unknown or not names:
        raise SystemExit(f"--nets: unknown {unknown or names}; choose from {', '.join(NETS)}")
    out = [threads] + _timing.machine_lines(be.spec, bp.__version__, torch)
    out.append(f"{args.rounds} rounds per net, each contender's steps in a row, interleaved, order rotated each "
               f"round; per-step wall-clock min / median; ratios min-based / median-based, by the wall clock "
               f"and by CPU time" + ("" if hand_xp is not None else "; no hand-written column (it needs CuPy on "
                                    "this GPU)"))
    header = (f"{'net':<7}{'sizes':<24}{'batch':>5}{'steps':>6}{'hand':>20}{'bpcore':>20}{'torch':>20}"
              f"{'bp/hand':>13}{'bp/torch':>13}{'bp/hand cpu':>13}{'bp/torch cpu':>13}")
    out.append(header)
    print("\n".join(out), flush=True)
    nan = (math.nan, math.nan)
    for name in names:
        sizes, activation, batch = NETS[name]
        X, y = make_data(sizes, batch)
        model = bpcore_model(sizes, activation)
        weights = [(layer.W.data.copy(), layer.b.data.copy()) for layer in model.layers
                   if isinstance(layer, bp.Linear)]
        steps = {} if hand_xp is None else {"hand": handwritten_step(hand_xp, weights, activation, X, y)}
        steps["bpcore"] = bpcore_step(model, be, X, y)
        if torch is not None:
            steps["torch"] = torch_step(torch, torch_device, weights, activation, X, y)

        def sync():                               # every library that queued work on the device
            be.synchronize()
            if hand_sync is not None:
                hand_sync()
            if torch is not None and be.kind == "cuda":
                torch.cuda.synchronize()
        count = args.steps or STEPS[name]
        times = _timing.interleaved(steps, sync, args.rounds, count)
        stats, cpu = _timing.summary(times["wall"]), _timing.summary(times["cpu"])
        label = "-".join(map(str, sizes)) if len(sizes) < 8 else f"{sizes[0]}x{len(sizes) - 1} layers"
        cells = "".join(f"{_timing.fmt_time(stats.get(k, nan)[0]) + ' / ' + _timing.fmt_time(stats.get(k, nan)[1]):>20}"
                        for k in ("hand", "bpcore", "torch"))
        line = (f"{name:<7}{label:<24}{batch:>5}{count:>6}{cells}{_timing.ratio_text(stats, 'bpcore', 'hand', 13)}"
                f"{_timing.ratio_text(stats, 'bpcore', 'torch', 13)}{_timing.ratio_text(cpu, 'bpcore', 'hand', 13)}"
                f"{_timing.ratio_text(cpu, 'bpcore', 'torch', 13)}")
        out.append(line)
        print(line, flush=True)
    if be.kind == "cpu" and "wide" in names:
        sizes, activation, batch = NETS["wide"]
        X, y = make_data(sizes, batch)
        weights = [(layer.W.data.copy(), layer.b.data.copy()) for layer in bpcore_model(sizes, activation).layers
                   if isinstance(layer, bp.Linear)]
        hand = peak_bytes(lambda: handwritten_step(np, weights, activation, X, y))
        ours = peak_bytes(lambda: bpcore_step(bpcore_model(sizes, activation), be, X, y))
        out.append(f"peak memory of a wide-net step, weights and buffers included (tracemalloc): "
                   f"hand-written {hand / 2**20:.1f} MiB, bpcore {ours / 2**20:.1f} MiB, ratio {ours / hand:.2f}")
        print(out[-1], flush=True)
    if args.label_check and be.sync_free:
        out += label_check_cost(be, args.rounds)
        print("\n".join(out[-3:]), flush=True)
    if args.fit:
        fit_s, loop_s, once_s = fit_overhead(be, max(2, args.rounds // 2))
        out.append(f"fit over the bare step loop, MNIST-sized net, per epoch of 40 batches of 128 (minimum over "
                   f"epochs): fit {fit_s * 1e3:.1f} ms, loop {loop_s * 1e3:.1f} ms, overhead "
                   f"{100 * (fit_s / loop_s - 1):+.1f}%; once per fit call (checks where X and y enter): "
                   f"{once_s * 1e3:.1f} ms")
        print(out[-1], flush=True)
    return out


def profile(be, name, steps=3000, top=16) -> list[str]:
    """Where bpcore's step on net ``name`` spends its CPU time (cProfile, benchmarks/_timing.py)."""
    sizes, activation, batch = NETS[name]
    X, y = make_data(sizes, batch)
    step = bpcore_step(bpcore_model(sizes, activation), be, X, y)
    for _ in range(100):
        step()
    return _timing.profile(step, steps, top, f"profile of the bpcore step, {name} net")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu (numpy), cuda (CuPy; PyTorch on CUDA beside it), torch, "
                                                   "torch:cuda, or any backend spec")
    p.add_argument("--nets", default=",".join(NETS), help=f"comma-separated, from {', '.join(NETS)}")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"steps per contender per round (default per net: {STEPS})")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for NumPy's BLAS and for PyTorch alike (default: the machine's cores)")
    p.add_argument("--no-fit", dest="fit", action="store_false", help="skip fit's overhead measurement")
    p.add_argument("--no-label-check", dest="label_check", action="store_false",
                   help="skip the cost of SoftmaxCrossEntropyLoss's per-call label check")
    p.add_argument("--write", action="store_true", help="write the results file (keeps its other sections)")
    p.add_argument("--profile", metavar="NET", choices=list(NETS),
                   help="instead of timing: where bpcore's step on NET spends its time (cProfile)")
    args = p.parse_args(argv)
    if args.rounds < 1 or (args.steps is not None and args.steps < 1) or args.threads < 1:
        p.error("--rounds, --steps and --threads must be at least 1")
    if args.profile:
        with _timing.pinned_threads(args.threads) as threads:
            lines = [threads] + profile(backends.get(args.device), args.profile)
        print("\n".join(lines))
        return lines
    lines = run(args)
    if args.write:
        _timing.write_results(backends.get(args.device).kind, "bench_step.py", f"bench_step threads={args.threads}",
                              "Training step", args.threads, argv, lines)
    return lines


if __name__ == "__main__":
    main()
