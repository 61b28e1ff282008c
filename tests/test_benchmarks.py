"""The step benchmark runs (a tiny round; no time is asserted: speed lives in benchmarks/)."""
from __future__ import annotations

import importlib.util
import os

import types

import numpy as np
import pytest

import backends
import bpcore as bp

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench(name="bench_step"):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_step_benchmark_runs_a_tiny_round():
    lines = _bench().main(["--nets", "spiral,moons", "--rounds", "1", "--steps", "1", "--no-fit", "--threads", "1"])
    rows = [line for line in lines if line.startswith(("spiral", "moons"))]
    assert len(rows) == 2 and all("us" in row for row in rows)
    assert all(row.count(" / ") == 7 for row in rows)     # min / median of 3 contenders, 2 wall and 2 CPU ratios
    assert any(line.startswith("BLAS") or line.startswith("CPU") for line in lines)
    assert lines[0].startswith("threads:") and "limited to 1" in lines[0]


def test_the_cnn_benchmark_runs_a_tiny_round_with_the_portable_lines_beside_it():
    lines = _bench("bench_cnn").main(["--cases", "digits", "--rounds", "1", "--steps", "1", "--threads", "1"])
    rows = [line for line in lines if line.startswith("digits")]
    assert len(rows) == 1 and rows[0].count(" / ") == 6
    assert "portable" in lines[-2] and "torch" in lines[-2]


def test_rounds_rotate_the_order_and_pinned_threads_are_put_back():
    timing = _bench("_timing")
    order = []
    steps = {name: (lambda name=name: order.append(name)) for name in "abc"}
    times = timing.interleaved(steps, lambda: None, rounds=3, steps=1, warmup=0)
    assert order == list("abc" "bca" "cab")
    assert all(len(values) == 3 for clock in ("wall", "cpu") for values in times[clock].values())
    stats = timing.summary({"a": [2.0, 1.0, 9.0], "b": [1.0, 1.0, 3.0]})
    assert stats["a"] == (1.0, 2.0) and timing.ratio_text(stats, "a", "b").strip() == "1.00 / 2.00"
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [pool["num_threads"] for pool in threadpoolctl.threadpool_info()]
    with timing.pinned_threads(1) as note:
        assert "limited to 1" in note
        assert all(pool["num_threads"] == 1 for pool in threadpoolctl.threadpool_info())
    assert [pool["num_threads"] for pool in threadpoolctl.threadpool_info()] == before


def test_write_section_keeps_the_other_sections(tmp_path):
    timing = _bench("_timing")
    path = tmp_path / "results.md"
    path.write_text("# Results\n\nintro\n")
    timing.write_section(str(path), "one", "First", ["a 1"])
    timing.write_section(str(path), "two", "Second", ["b 2"])
    timing.write_section(str(path), "one", "First again", ["a 3"])
    text = path.read_text()
    assert "intro" in text and "b 2" in text and "a 3" in text and "a 1" not in text
    assert text.index("First again") < text.index("Second")


def test_write_results_picks_the_file_by_device_and_heads_the_section_with_the_command(monkeypatch):
    timing = _bench("_timing")
    written = []
    monkeypatch.setattr(timing, "write_section", lambda *args: written.append(args))
    timing.write_results("cpu", "bench_step.py", "bench_step threads=1", "Training step", 1, ["--threads", "1"], ["x"])
    timing.write_results("cuda", "bench_cnn.py", "bench_cnn threads=2", "CNN training steps", 2, [], ["y"])
    (cpu_path, name, title, lines), (gpu_path, *_) = written
    assert os.path.basename(cpu_path) == "cpu-results.md" and os.path.basename(gpu_path) == "gpu-results.md"
    assert os.path.dirname(cpu_path) == os.path.join(HERE, "benchmarks")
    assert (name, title, lines) == ("bench_step threads=1",
                                    "Training step, 1 thread(s): `python benchmarks/bench_step.py --threads 1`", ["x"])


def test_the_hand_written_baseline_computes_the_same_step_as_bpcore():
    """The baseline is only a fair one if it trains the same net: three steps, same weights."""
    bench = _bench()
    for name in ("spiral", "moons", "mnist", "deep"):
        sizes, activation, batch = bench.NETS[name]
        X, y = bench.make_data(sizes, batch)
        model = bench.bpcore_model(sizes, activation)
        linears = [layer for layer in model.layers if isinstance(layer, bp.Linear)]
        weights = [(layer.W.data.copy(), layer.b.data.copy()) for layer in linears]
        hand, ours = bench.handwritten_step(np, weights, activation, X, y), bench.bpcore_step(model, model.device, X, y)
        for _ in range(3):
            hand()
            ours()
        hand_weights = hand.weights
        for W, layer in zip(hand_weights, linears):
            np.testing.assert_allclose(W, layer.W.data, rtol=1e-5, atol=1e-6)


def test_the_epoch_clock_times_every_epoch_of_fit():
    """fit's per-epoch overhead is measured from inside fit: one lap per epoch, none lost."""
    bench = _bench()
    model = bp.mlp([2, 4, 1], seed=0)
    X, y = np.random.default_rng(0).standard_normal((64, 2)).astype("float32"), np.zeros((64, 1), "float32")
    clock = bench.EpochClock(model.device)
    bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=0.1), X, y, epochs=3,
           batch_size=16, progress=False, callbacks=[clock])
    assert len(clock.seconds) == 3 and all(seconds > 0 for seconds in clock.seconds)


def test_the_profile_lists_where_the_step_spends_its_time():
    bench = _bench()
    # top 12, not 5: on a busy machine the order of the small entries shifts (linear.py once fell to 6th)
    lines = bench.profile(bp.mlp([2, 4, 1]).device, "spiral", steps=20, top=12)
    assert lines[0].startswith("profile of the bpcore step, spiral net") and len(lines) == 13
    cnn = _bench("bench_cnn").main(["--profile", "digits", "--threads", "1"])
    assert cnn[0].startswith("threads:") and cnn[1].startswith("profile of the bpcore step, digits CNN")
    assert any("conv.py" in line for line in cnn[2:])
    assert any("linear.py" in line for line in lines[1:])


@pytest.mark.skipif("torch" not in backends.available(), reason="torch is not installed")
def test_the_step_benchmark_runs_bpcore_on_torch():
    lines = _bench().main(["--device", "torch", "--nets", "spiral", "--rounds", "1", "--steps", "1", "--no-fit",
                           "--threads", "1"])
    assert any(line.startswith("spiral") for line in lines)
    assert lines[0].startswith("threads:") and "on torch:cpu" in lines[1]


def test_on_torch_cuda_the_hand_written_step_runs_on_cupy_or_is_left_out():
    """No GPU here: a torch:cuda backend as bench_step sees it (kind, name, device index)."""
    bench = _bench()
    torch_cuda = types.SimpleNamespace(kind="cuda", name="torch", device=types.SimpleNamespace(index=0, type="cuda"))
    xp, sync = bench.hand_namespace(torch_cuda)
    try:
        gpu = backends.get("cupy:0")
    except backends.BackendUnavailableError:
        assert (xp, sync) == (None, None)               # no CuPy GPU here: no hand-written column
    else:
        assert xp is gpu.cupy
    assert bench.hand_namespace(backends.get("numpy"))[0] is np
    cupy_1 = types.SimpleNamespace(kind="cuda", name="cupy", device=types.SimpleNamespace(id=1))
    assert bench.torch_device_of(cupy_1) == "cuda:1"


@pytest.mark.parametrize("page", [os.path.join("docs", "guide", "speed.md"), "README.md"])
def test_every_figure_the_speed_guide_quotes_is_in_the_results_file(page):
    """docs/guide/speed.md and the README's Speed section quote only what the scripts printed
    (benchmarks/cpu-results.md, which only `--write` writes); a goal ("1.25x") is not a measurement."""
    import re

    guide = open(os.path.join(HERE, page), encoding="utf-8").read()
    if page == "README.md":
        guide = guide[guide.index("## Speed"):guide.index("## Documentation")]
    results = open(os.path.join(HERE, "benchmarks", "cpu-results.md"), encoding="utf-8").read()
    pairs = re.findall(r"\d+\.\d\d / \d+\.\d\d", guide)            # a row's min / median ratios
    assert len(pairs) > (10 if page != "README.md" else 6)
    missing = sorted({pair for pair in pairs if pair not in results})
    figures = re.findall(r"(?<![\d.])(\d+\.\d+)(?![\d.]*x\b)", guide)
    missing += sorted({figure for figure in figures if not re.search(rf"(?<![\d.]){re.escape(figure)}(?!\d)", results)})
    assert not missing, f"{page} quotes figures no script printed: {missing}"


def _bench_gpt():
    spec = importlib.util.spec_from_file_location("bench_gpt", os.path.join(HERE, "benchmarks", "bench_gpt.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpt_benchmark_runs_a_tiny_round_on_the_same_model():
    pytest.importorskip("torch")
    tiny = ["--layers", "1", "--embed", "8", "--heads", "2", "--context", "6", "--batch", "3", "--vocab", "11",
            "--rounds", "1", "--steps", "1", "--threads", "1", "--profile"]
    lines = _bench_gpt().main(tiny)
    first = next(line for line in lines if line.startswith("first-step loss"))
    ours, theirs = (float(word.rstrip(",")) for word in first.split()[3:6:2])
    assert abs(ours - theirs) < 1e-5                    # torch holds bp.gpt's weights: the same model
    assert any(line.startswith("ratio bpcore / torch eager") for line in lines)
    assert any("MiB" in line for line in lines if line.startswith("bpcore")) or "n/a" in "".join(lines)
    assert any("attention.py" in line for line in lines)
