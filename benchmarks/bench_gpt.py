"""A GPT training step, bpcore against PyTorch eager, in one run.

    python benchmarks/bench_gpt.py [--device cpu|cuda] [--layers 4] [--embed 128] [--heads 4]
                                   [--context 64] [--batch 32] [--vocab 65] [--rounds 7] [--steps 5]
                                   [--threads N] [--write] [--profile]

The step: zero_grad, forward (tokens (batch, context) -> logits), softmax cross-entropy on the next
tokens, backward, AdamW. The same model both ways (bp.gpt's starting weights copied into a torch
module of the same layout: nn.Embedding x 2, pre-LN blocks with nn.MultiheadAttention and a causal
mask, GELU(approximate="tanh"), LayerNorm, Linear head), the same batch; the first losses are
printed side by side to show it. bpcore runs on ``--device`` (NumPy on the CPU, CuPy with
``--device cuda``), torch on the CPU or CUDA to match.

Timing as in every benchmark here (benchmarks/_timing.py): both contenders use ``--threads``
threads (default: the machine's cores); they take turns round by round, the order rotated each
round, ``--steps`` steps each per round; the table gives the per-step minimum and median by the
wall clock and by CPU time, and the ratios (bpcore / torch: below 1 is faster than PyTorch eager)
of the minima and of the medians. ``--write`` puts the output into ``benchmarks/cpu-results.md``
(``gpu-results.md`` on a GPU), in a section per thread count, keeping the other sections.

Peak memory: each framework builds the model and runs three steps in a child process of its own.
On the CPU the figure is the growth of the process's peak resident memory during the steps over
its memory before them (Linux: /proc/self/clear_refs resets the peak); on a GPU, the peak of the
device memory in use during the steps (torch.cuda.max_memory_allocated; a CuPy memory-pool hook).

``--profile`` times bpcore's layers by type (forward + backward, cProfile's cumulative times) and
prints the shares: what dominates the step. Compare ratios, not seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # the repository
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "benchmarks"))

import _timing  # noqa: E402

import backends  # noqa: E402
import bpcore as bp  # noqa: E402

LR, WEIGHT_DECAY = 1e-3, 0.1


def make_batch(args):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, args.vocab, (args.batch, args.context + 1))
    return tokens[:, :-1].astype(np.int64), tokens[:, 1:].astype(np.int64)


def bpcore_model(args):
    return bp.gpt(args.vocab, args.context, args.embed, args.heads, args.layers, seed=0)


# -- bpcore --------------------------------------------------------------------------------------
def bpcore_step(args, be):
    model = bpcore_model(args).to(be)
    X, y = make_batch(args)
    X, y = be.asarray(X), be.asarray(y)
    loss_fn = bp.SoftmaxCrossEntropyLoss()
    loss_fn.check(y)                       # values once, where the data enter
    opt = bp.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    def step():
        opt.zero_grad()
        loss = loss_fn.forward(model(X), y)
        model.backward_params(loss_fn.backward())
        opt.step()
        return loss
    return step


# -- PyTorch eager -------------------------------------------------------------------------------
# bpcore's last name part -> torch's, within a block or the head; (torch name, transposed?)
_PARTS = {"W_qkv": ("attn.in_proj_weight", True), "b_qkv": ("attn.in_proj_bias", False),
          "W_out": ("attn.out_proj.weight", True), "b_out": ("attn.out_proj.bias", False),
          "W": ("weight", True), "b": ("bias", False), "weight": ("weight", False), "bias": ("bias", False)}


def torch_name(name, layers):
    """bp.gpt's parameter name -> (the torch module's name, whether the value is transposed):
    "0.token.W" -> token.weight, "2.attn.W_qkv" -> blocks.1.attn.in_proj_weight (W_qkv.T), ..."""
    index, _, rest = name.partition(".")
    index = int(index)
    if index == 0:                                   # the embeddings: (rows, E) both ways
        return rest.replace(".W", ".weight"), False
    *path, last = rest.split(".")
    torch_last, transpose = _PARTS[last]
    if index <= layers:                               # a block: ln_1.weight, attn.W_qkv, mlp.0.W, ...
        where = ".".join(part for part in path if part != "attn")
        return f"blocks.{index - 1}." + (f"{where}." if where else "") + torch_last, transpose
    return ("ln_f." if index == layers + 1 else "head.") + torch_last, transpose


def torch_model(torch, args, device):
    """The same GPT in torch.nn, holding bp.gpt's starting weights (2-D weights transposed)."""
    nn = torch.nn
    E, T = args.embed, args.context

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(E), nn.LayerNorm(E)
            self.attn = nn.MultiheadAttention(E, args.heads, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(E, 4 * E), nn.GELU(approximate="tanh"), nn.Linear(4 * E, E))

        def forward(self, x, mask):
            a = self.ln_1(x)
            x = x + self.attn(a, a, a, attn_mask=mask, need_weights=False)[0]
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.token, self.position = nn.Embedding(args.vocab, E), nn.Embedding(T, E)
            self.blocks = nn.ModuleList([Block() for _ in range(args.layers)])
            self.ln_f, self.head = nn.LayerNorm(E), nn.Linear(E, args.vocab)
            self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1))

        def forward(self, tokens):
            n = tokens.shape[1]
            x = self.token(tokens) + self.position(torch.arange(n, device=tokens.device))
            for block in self.blocks:
                x = block(x, self.mask[:n, :n])
            return self.head(self.ln_f(x))

    model = GPT()
    ours = bpcore_model(args)
    theirs = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in ours.named_parameters():
            target, transpose = torch_name(name, args.layers)
            value = ours.backend.to_numpy(p.data)
            theirs[target].copy_(torch.as_tensor(value.T if transpose else value))
    return model.to(device)


def torch_step(torch, args, device):
    model = torch_model(torch, args, device)
    X, y = make_batch(args)
    X, y = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    def step():
        opt.zero_grad()
        logits = model(X)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, args.vocab), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss.detach()
    return step


# -- measuring -----------------------------------------------------------------------------------
def _rss_kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def child_peak(args, which) -> dict:
    """Run in a child process: build ``which`` ("bpcore" or "torch"), run three steps, and report the
    memory the steps took (module docstring) as {"bytes": int or None, "how": str}."""
    be = backends.get(args.device)
    if which == "bpcore":
        step, sync = bpcore_step(args, be), be.synchronize
    else:
        import torch
        device = "cuda" if be.kind == "cuda" else "cpu"
        step, sync = torch_step(torch, args, device), (torch.cuda.synchronize if device == "cuda" else (lambda: None))
    if be.kind == "cuda":
        return _gpu_peak(be, which, step, sync)
    try:
        before = _rss_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")                          # reset VmHWM, the peak resident set
    except OSError:
        return {"bytes": None, "how": "needs Linux /proc"}
    for _ in range(3):
        step()
    return {"bytes": (_rss_kib("VmHWM") - before) * 1024, "how": "peak RSS growth during 3 steps"}


def _gpu_peak(be, which, step, sync):
    if which == "torch":
        import torch
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(3):
            step()
        sync()
        return {"bytes": torch.cuda.max_memory_allocated() - base, "how": "torch.cuda.max_memory_allocated"}
    from cupy.cuda import memory_hooks

    class Peak(memory_hooks.MemoryHook):
        """The pool's bytes in use, followed malloc by free; its peak."""
        name = "PeakHook"

        def __init__(self):
            self.sizes, self.now, self.peak = {}, 0, 0

        def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id):
            self.sizes[mem_ptr] = mem_size
            self.now += mem_size
            self.peak = max(self.peak, self.now)

        def free_postprocess(self, device_id, mem_size, mem_ptr, pmem_id):
            self.now -= self.sizes.pop(mem_ptr, mem_size)

    sync()
    hook = Peak()
    with hook:
        for _ in range(3):
            step()
        sync()
    return {"bytes": hook.peak, "how": "CuPy pool bytes in use, peak (a memory hook)"}


def peaks(args) -> dict:
    """{"bpcore": {...}, "torch": {...}}, each from a child process of its own."""
    found = {}
    for which in ("bpcore", "torch"):
        command = [sys.executable, os.path.abspath(__file__), "--child", which] + _forwarded(args)
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            found[which] = {"bytes": None, "how": f"child failed: {result.stderr.strip().splitlines()[-1:]}"}
        else:
            found[which] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def _forwarded(args):
    return ["--device", args.device, "--layers", str(args.layers), "--embed", str(args.embed), "--heads",
            str(args.heads), "--context", str(args.context), "--batch", str(args.batch), "--vocab", str(args.vocab)] + (
        ["--threads", str(args.threads)] if args.threads else [])


def profile(args, be, steps=5) -> list[str]:
    """bpcore's step time by layer type (forward + backward), from cProfile's cumulative times."""
    import cProfile
    import pstats

    step = bpcore_step(args, be)
    step()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    be.synchronize()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = sum(own for (_, _, own, _, _) in stats.values())
    rows = {}
    for (filename, _, function), (_, _, _, cumulative, _) in stats.items():
        module = os.path.basename(filename)
        # the leaf layers' forward/backward (cumulative: GELU's row blocks, the attention's pieces
        # inside), the loss and the optimizer's update
        if (function in ("forward", "backward") and module in _LEAF_FILES) or (
                module == "losses.py" and function in ("forward", "backward")) or (
                module == "optimizers.py" and function == "step"):
            rows[module] = rows.get(module, 0.0) + cumulative
    lines = [f"profile of {steps} bpcore steps (cumulative time in each file's layers; the rest is the "
             f"containers, checks and Python):"]
    for module, seconds in sorted(rows.items(), key=lambda item: -item[1]):
        lines.append(f"  {module:18s} {100 * seconds / total:5.1f} %   {_LEAF_FILES.get(module, '')}")
    return lines


_LEAF_FILES = {"linear.py": "Linear: the MLPs and the head (matrix products)",
               "attention.py": "MultiHeadAttention: projections, scores, softmax, weighted sums",
               "activations.py": "GELU", "normalization.py": "LayerNorm", "embedding.py": "Embedding",
               "losses.py": "softmax cross-entropy", "optimizers.py": "AdamW"}


def run(args) -> list[str]:
    import torch
    with _timing.pinned_threads(args.threads, torch) as threads:
        return _run(args, torch, threads)


def _run(args, torch, threads) -> list[str]:
    be = backends.get(args.device)
    if be.kind == "cuda" and be.name != "cupy":
        raise SystemExit("--device: the GPU comparison runs bpcore on CuPy (--device cuda); torch CUDA is "
                         "the PyTorch column there")
    device = "cuda" if be.kind == "cuda" else "cpu"
    ours, theirs = bpcore_step(args, be), torch_step(torch, args, device)
    first = (float(ours()), float(theirs()))
    sync = (lambda: (be.synchronize(), torch.cuda.synchronize())) if device == "cuda" else be.synchronize
    times = _timing.interleaved({"bpcore": ours, "torch": theirs}, sync, args.rounds, args.steps)
    wall, cpu = _timing.summary(times["wall"]), _timing.summary(times["cpu"])
    memory = peaks(args)
    tokens = args.batch * args.context
    lines = [threads] + _timing.machine_lines(be.spec, bp.__version__, torch)
    lines.append(f"GPT: {args.layers} layers, embed {args.embed}, {args.heads} heads, context {args.context}, "
                 f"batch {args.batch}, vocab {args.vocab}; "
                 f"{sum(int(np.prod(p.shape)) for p in bpcore_model(args).parameters()):,} parameters; AdamW")
    lines.append(f"first-step loss: bpcore {first[0]:.6f}, torch {first[1]:.6f} (the same model and batch)")
    lines.append(f"{args.rounds} rounds x {args.steps} steps per contender, interleaved, order rotated each round; "
                 f"per-step min / median; ratios min-based / median-based")
    lines.append(f"{'':8s}{'wall min / median':>22}{'CPU min / median':>22}{'tokens/s':>10}{'peak memory':>13}")
    for name in ("bpcore", "torch"):
        peak = memory[name]["bytes"]
        peak_text = "n/a" if peak is None else f"{peak / 2**20:.1f} MiB"
        lines.append(f"{name:8s}{_timing.fmt_time(wall[name][0]) + ' / ' + _timing.fmt_time(wall[name][1]):>22}"
                     f"{_timing.fmt_time(cpu[name][0]) + ' / ' + _timing.fmt_time(cpu[name][1]):>22}"
                     f"{tokens / wall[name][0]:10,.0f}{peak_text:>13}")
    lines.append(f"ratio bpcore / torch eager: wall {_timing.ratio_text(wall, 'bpcore', 'torch', 0)}, "
                 f"CPU time {_timing.ratio_text(cpu, 'bpcore', 'torch', 0)} (below 1 is faster)")
    lines.append(f"memory: {memory['bpcore']['how']}")
    if args.profile:
        lines += profile(args, be)
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (NumPy) or cuda (CuPy, against torch CUDA)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--embed", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--vocab", type=int, default=65, help="65: the characters of tiny Shakespeare")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    p.add_argument("--steps", type=int, default=5, help="steps per contender per round (default 5)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for NumPy's BLAS and for PyTorch alike (default: the machine's cores)")
    p.add_argument("--write", action="store_true", help="write the results file (keeps its other sections)")
    p.add_argument("--profile", action="store_true", help="also print what bpcore's step time goes to")
    p.add_argument("--child", choices=["bpcore", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.rounds, args.steps, args.threads) < 1:
        p.error("--rounds, --steps and --threads must be at least 1")
    if args.child:
        torch = None
        if args.child == "torch":
            import torch
        with _timing.pinned_threads(args.threads, torch):
            print(json.dumps(child_peak(args, args.child)))
        return None
    lines = run(args)
    print("\n".join(lines))
    if args.write:
        _timing.write_results(backends.get(args.device).kind, "bench_gpt.py", f"bench_gpt threads={args.threads}",
                              "GPT training step", args.threads, argv, lines)
    return lines


if __name__ == "__main__":
    main()
