"""What the benchmarks share: pinned threads, interleaved and rotated rounds, min and median ratios,
machine lines, and writing one script's section of a results file.

How a comparison is kept honest on a shared, noisy machine:

- every contender runs the same number of threads (``pinned_threads``: NumPy's BLAS through
  threadpoolctl, PyTorch through ``torch.set_num_threads``), printed with the results;
- the contenders take turns round by round, and the order rotates every round (round r starts
  with contender r mod k), so neither a slow spell nor a warm cache favours one of them;
- each round times ``steps`` steps of one contender back to back; the table gives the per-step
  minimum and median over the rounds, and ratios of both: the minimum is the least disturbed run,
  the median what a typical round gave; a large gap between them says the machine was busy;
- each round is also timed in CPU time, which a busy machine's other programs do not inflate
  (with one thread, the steadier ratio of the work each contender does).
"""
from __future__ import annotations

import contextlib
import datetime
import os
import platform
import statistics
import sys
import time

import numpy as np


@contextlib.contextmanager
def pinned_threads(threads: int, torch=None):
    """While the block runs, NumPy's BLAS/OpenMP pools and PyTorch use ``threads`` threads; yields
    a line that says so (printed with the results). Both are put back afterwards."""
    notes, limits = [], None
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(limits=threads)
        notes.append(f"NumPy's BLAS/OpenMP pools limited to {threads}")
    except ImportError:
        notes.append("threadpoolctl missing: NumPy's BLAS threads NOT pinned (pip install threadpoolctl)")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
        notes.append(f"torch.set_num_threads({threads})")
    try:
        yield "threads: " + "; ".join(notes)
    finally:
        if limits is not None:
            limits.restore_original_limits()
        if torch is not None:
            torch.set_num_threads(before)


def interleaved(steps_by_name: dict, sync, rounds: int, steps: int, warmup: int = 3) -> dict:
    """{"wall": {name: [seconds per step, one per round]}, "cpu": {...}}: the contenders take turns,
    in a rotated order; each round is timed by the wall clock and by this process's CPU time.

    Args:
        steps_by_name: {name: step()}; ``step`` runs one training step.
        sync: waits for queued device work (a no-op on the CPU); called before each clock read.
        rounds, steps: rounds of ``steps`` steps per contender.
        warmup: untimed steps per contender first (allocator, caches, kernels).

    CPU time leaves out the time a busy machine's other programs took the cores, so with one
    thread it is the steadier measure of the work a step does; with more threads it adds up every
    thread, spinning ones included, so there it measures work, not waiting.
    """
    names = list(steps_by_name)
    for name in names:
        for _ in range(warmup):
            steps_by_name[name]()
    sync()
    times = {"wall": {name: [] for name in names}, "cpu": {name: [] for name in names}}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            step = steps_by_name[name]
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step()
            sync()
            times["wall"][name].append((time.perf_counter() - wall) / steps)
            times["cpu"][name].append((time.process_time() - cpu) / steps)
    return times


def summary(times: dict) -> dict:
    """{name: (min, median)} seconds per step, from {name: [seconds, ...]}."""
    return {name: (min(values), statistics.median(values)) for name, values in times.items()}


def ratio_text(stats: dict, ours: str, theirs: str, width: int = 12) -> str:
    """"1.23 / 1.31": ours/theirs of the minima, then of the medians (nan when either is missing)."""
    if ours not in stats or theirs not in stats:
        return f"{'nan / nan':>{width}}"
    (our_min, our_med), (their_min, their_med) = stats[ours], stats[theirs]
    return f"{our_min / their_min:.2f} / {our_med / their_med:.2f}".rjust(width)


def profile(step, steps: int, top: int, title: str) -> list[str]:
    """Where ``step`` spends its time: cProfile's functions by own CPU time (process time, so other
    programs on a busy machine do not count), as lines "share of the step, calls per step, function".
    The profiler's own cost inflates each Python call: read the shares, not the microseconds."""
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(lambda: [step() for _ in range(steps)])
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:top]
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    lines = [f"{title}, {steps} steps: share of the step's CPU time, calls per step, function"]
    for (path, line, function), (_, calls, own_seconds, _, _) in rows:
        where = f"{os.path.relpath(path, repository)}:{line}" if path.startswith(repository) else os.path.basename(path)
        lines.append(f"  {100 * own_seconds / total:5.1f}%  {calls / steps:5.1f}  {function} ({where})")
    return lines


def fmt_time(seconds: float) -> str:
    if seconds != seconds:
        return "nan"
    return f"{seconds * 1e3:.2f}ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f}us"


def machine_lines(spec: str, version: str, torch=None) -> list[str]:
    """The date, versions, CPU, BLAS and threads: what a reader needs to weigh the numbers."""
    lines = [f"date {datetime.date.today().isoformat()} | bpcore {version} on {spec} | numpy {np.__version__} | "
             f"python {platform.python_version()} | {platform.machine()}"]
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
        lines.append(f"CPU {model}, {os.cpu_count()} logical cores")
    except (OSError, StopIteration):
        lines.append(f"CPU {platform.processor() or 'unknown'}, {os.cpu_count()} logical cores")
    try:
        lines.append(f"load average {os.getloadavg()[0]:.1f} (1 min) when the run started")
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                lines.append(f"BLAS {pool.get('internal_api')} {pool.get('version')} "
                             f"({pool.get('architecture')} kernel, {pool.get('num_threads')} threads)")
    except ImportError:
        lines.append("BLAS: unknown (pip install threadpoolctl to see it)")
    if torch is not None:
        lines.append(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    return lines


def write_section(path: str, name: str, title: str, lines: list[str]) -> None:
    """Put ``lines`` into ``path`` between this script's markers, keeping every other section."""
    start, end = f"<!-- {name}: start -->", f"<!-- {name}: end -->"
    section = "\n".join([start, f"## {title}", "", "```text", *lines, "```", end])
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    if start in old and end in old:
        new = old[:old.index(start)] + section + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as stream:
        stream.write(new)
    print(f"wrote {path}")


def write_results(kind: str, script: str, name: str, title: str, threads: int, argv, lines: list[str]) -> None:
    """Write ``lines`` as section ``name`` of benchmarks/cpu-results.md (gpu-results.md when the device
    ``kind`` is "cuda"), headed "``title``, N thread(s): `python benchmarks/<script> <arguments>`", the
    command that printed them (``argv``: the arguments given, None for the command line's)."""
    command = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu-results.md" if kind == "cuda"
                        else "cpu-results.md")
    write_section(path, name, f"{title}, {threads} thread(s): `{command}`", lines)
