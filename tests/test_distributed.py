"""bp.distributed: N processes under mpiexec give the parameters of one process, to float64 rounding.

The cases run in one ``mpiexec -n 2`` and one ``mpiexec -n 3`` launch of tests/distributed_cases.py
(process start-up is the slow part); each rank pickles what it found and the tests here compare
it with single-process runs of the same functions. A launch that does not end within its timeout
is a hang, and fails the test. Skipped with the reason when mpi4py or mpiexec is missing.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

import backends
import bpcore as bp

sys.path.insert(0, os.path.dirname(__file__))
import distributed_cases as cases  # noqa: E402
import nccl_standin  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
try:
    import mpi4py  # noqa: F401  (the package only: MPI itself starts in the launched processes)
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False
needs_mpi = pytest.mark.skipif(not (HAVE_MPI4PY and MPIEXEC),
                               reason="mpi4py or mpiexec not installed (pip install 'bpcore[mpi]')")
# array_api_strict:device1, the simulated second device: every collective and check must run there
SPECS = [spec for spec in ("numpy", "array_api_strict", "array_api_strict:device1", "torch")
         if spec in backends.available()]
SIZES = (2, 3)
TOL = 1e-10
LAUNCH_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """{size: (out folder, [results of rank 0, rank 1, ...])}, one mpiexec launch per size."""
    found = {}
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for size in SIZES:
        out = tmp_path_factory.mktemp(f"mpi{size}")
        command = [MPIEXEC, "-n", str(size), sys.executable, os.path.join(HERE, "distributed_cases.py"), str(out),
                   *SPECS]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired as timeout:
            pytest.fail(f"mpiexec -n {size} hung (no end after {LAUNCH_TIMEOUT_S} s): {timeout.stderr!r}")
        assert done.returncode == 0, f"mpiexec -n {size} failed:\n{done.stdout}\n{done.stderr}"
        ranks = []
        for rank in range(size):
            with open(out / f"rank{rank}.pkl", "rb") as stream:
                ranks.append(pickle.load(stream))
        found[size] = (out, ranks)
    return found


def assert_close(actual, expected, what):
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        np.testing.assert_allclose(a, e, rtol=TOL, atol=TOL, err_msg=f"{what}: parameter {i}")


def assert_ranks_identical(ranks, key, pick=lambda value: value):
    first = pick(ranks[0][key])
    for rank, result in enumerate(ranks[1:], start=1):
        for a, b in zip(first, pick(result[key]), strict=True):
            assert np.array_equal(a, b), f"{key}: rank {rank} differs bitwise from rank 0"


@needs_mpi
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("optimizer", list(cases.OPTIMIZERS))
@pytest.mark.parametrize("spec", SPECS)
def test_n_ranks_give_the_parameters_of_one_process(launched, size, spec, optimizer):
    _, ranks = launched[size]
    assert [r["size"] for r in ranks] == [size] * size and [r["rank"] for r in ranks] == list(range(size))
    params, losses, accuracy = cases.reference_fit(spec, optimizer)
    got_params, got_losses, got_accuracy = ranks[0][f"fit/{spec}/{optimizer}"]
    assert_close(got_params, params, f"{spec} {optimizer} on {size} ranks")
    np.testing.assert_allclose(got_losses, losses, rtol=TOL, atol=TOL)      # history: averaged over ranks
    np.testing.assert_allclose(got_accuracy, accuracy, rtol=1e-12)
    assert_ranks_identical(ranks, f"fit/{spec}/{optimizer}", pick=lambda value: value[0])
    for result in ranks[1:]:
        assert result[f"fit/{spec}/{optimizer}"][1:] == ranks[0][f"fit/{spec}/{optimizer}"][1:]


def test_the_last_batch_leaves_some_ranks_an_empty_shard():
    # 49 samples in batches of 16: the last batch has 1 sample, so ranks 1 and 2 get none of it.
    assert cases.N_SAMPLES % cases.BATCH == 1


@needs_mpi
@pytest.mark.parametrize("size", SIZES)
def test_a_distributed_checkpoint_resumes_identically_in_n_and_in_one_process(launched, size, tmp_path):
    out, ranks = launched[size]
    full, losses, _ = cases.reference_fit("numpy", "adam", epochs=4)
    assert_close(ranks[0]["resumed"][0], full, f"resumed on {size} ranks")
    np.testing.assert_allclose(ranks[0]["resumed"][1], losses, rtol=TOL, atol=TOL)
    assert_ranks_identical(ranks, "resumed", pick=lambda value: value[0])
    copy = tmp_path / "epoch2.bpc"
    shutil.copy(out / "epoch2.bpc", copy)
    alone, alone_losses, _ = cases.reference_fit("numpy", "adam", epochs=4, resume=str(copy))
    assert_close(alone, full, f"checkpoint of {size} ranks resumed in one process")
    np.testing.assert_allclose(alone_losses, losses, rtol=TOL, atol=TOL)


@needs_mpi
@pytest.mark.parametrize("size", SIZES)
def test_broadcast_and_distributed_optimizer_in_a_hand_written_loop(launched, size):
    _, ranks = launched[size]
    model, opt = cases.make("numpy", "momentum", seed=10)           # rank 0's seed: what every rank got
    for result in ranks:
        assert_close(result["broadcast"], [p.data for p in model.parameters()], "broadcast_parameters")
    X, y = cases.data(12 * size)
    loss_fn = bp.BCEWithLogitsLoss()
    for _ in range(3):                                               # one process, the whole batch
        opt.zero_grad()
        loss_fn.forward(model(X), y)
        model.backward(loss_fn.backward())
        opt.step()
    assert_close(ranks[0]["loop"], [p.data for p in model.parameters()], "DistributedOptimizer loop")
    assert_ranks_identical(ranks, "loop")


@needs_mpi
@pytest.mark.parametrize("size", SIZES)
def test_small_buckets_sum_like_one_flat_buffer(launched, size):
    _, ranks = launched[size]
    small, calls_small = ranks[0]["buckets/64"]
    flat, calls_flat = ranks[0]["buckets/None"]
    assert calls_flat == 1 and calls_small > 1                      # one all-reduce per bucket
    total = sum(rank + 1 for rank in range(size))
    for i, (a, b) in enumerate(zip(small, flat, strict=True)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, total * (i + 1) / size)        # the mean over ranks of (rank+1)*(i+1)


@needs_mpi
@pytest.mark.parametrize("size", SIZES)
def test_early_stopping_ctrl_c_and_divergence_stop_every_rank_together(launched, size):
    out, ranks = launched[size]
    for result in ranks:
        assert result["early"][:2] == (2, False)      # asked by rank 0 alone after epoch 2
        assert result["ctrl_c"][:2] == (1, True)      # pressed on the last rank alone during epoch 2
        assert result["diverged"].startswith("DivergenceError: training diverged")
        assert result["diverged"] == ranks[0]["diverged"]
    for key in ("early", "ctrl_c"):
        assert_ranks_identical(ranks, key, pick=lambda value: value[2])
        # Only the root runs file-writing callbacks (CSVLogger, ModelCheckpoint) and writes checkpoints.
        assert (out / f"{key}-rank0.csv").exists()
        assert not any((out / f"{key}-rank{rank}.csv").exists() for rank in range(1, size))
    assert len((out / "early-rank0.csv").read_text().splitlines()) == 1 + 2       # header + 2 epochs
    # Ctrl-C during epoch 2 with a checkpoint: every rank rolled back to the end of epoch 1, as saved.
    saved = bp.load_checkpoint(str(out / "ctrl_c.bpc"))
    assert saved["epoch"] == 1
    for a, b in zip(ranks[0]["ctrl_c"][2], saved["model"].parameters(), strict=True):
        assert np.array_equal(a, b.data)


@needs_mpi
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("what, words", [("architecture", "rank 1 has architecture"),
                                         ("batch_size", "rank 1 has batch_size 17 but rank 0 has 16"),
                                         ("feature", "fit's checks failed on rank 1"),
                                         ("seed", "rank 1 has seed 1 but rank 0 has 0"),
                                         ("data", "rank 1 has sum of X")])
def test_ranks_that_disagree_all_raise_the_same_clear_error(launched, size, what, words):
    _, ranks = launched[size]
    message = ranks[0][f"mismatch/{what}"]
    assert message.startswith("DistributedError: fit(distributed=...)") and words in message, message
    assert all(result[f"mismatch/{what}"] == message for result in ranks)


@needs_mpi
@pytest.mark.parametrize("size", SIZES)
def test_a_checkpoint_rank_0_cannot_read_stops_every_rank(launched, size):
    _, ranks = launched[size]
    assert ranks[0]["corrupt"].startswith("CheckpointError"), ranks[0]["corrupt"]
    for result in ranks[1:]:
        assert result["corrupt"] == "DistributedError: fit(distributed=...): rank 0 could not resume: " + \
            ranks[0]["corrupt"]


# -- in this process: the size-1 communicator and the checks -----------------------------------
def test_alone_the_communicator_has_size_one_and_fit_is_unchanged():
    comm = bp.distributed.init()
    assert (comm.rank, comm.size, comm.is_root, comm.local_rank) == (0, 1, True, 0)
    assert comm.device("cuda") == "cuda:0" and comm.device("cpu") == "cpu"
    for spec in SPECS:                         # device1 too: the checks and sums run on the data's device
        plain = cases.reference_fit(spec, "adam")
        alone = cases.reference_fit(spec, "adam", distributed=comm)
        for a, b in zip(plain[0], alone[0], strict=True):
            assert np.array_equal(a, b), spec
        assert plain[1:] == alone[1:]


def test_several_processes_asked_without_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)                 # import mpi4py now fails
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(bp.distributed.DistributedError, match=r"one of 2 processes.*pip install 'bpcore\[mpi\]'"):
        bp.distributed.init()
    monkeypatch.setenv("PMI_SIZE", "1")
    assert bp.distributed.init().size == 1


def test_bad_arguments_are_refused():
    comm = bp.distributed.init()
    model, opt = cases.make("numpy", "sgd")
    with pytest.raises(TypeError, match="DistributedOptimizer: expected a bpcore optimizer"):
        bp.distributed.DistributedOptimizer("sgd", comm)
    with pytest.raises(TypeError, match="comm must come from bp.distributed.init"):
        bp.distributed.DistributedOptimizer(opt, "world")
    with pytest.raises(TypeError, match="expected a model, an optimizer or a list of Parameters"):
        comm.allreduce_gradients(3)
    with pytest.raises(ValueError, match="bucket_bytes must be a positive int"):
        comm.allreduce_gradients(model, bucket_bytes=0)
    with pytest.raises(TypeError, match="broadcast_parameters: model must be a bpcore Layer"):
        bp.distributed.broadcast_parameters([1], comm)
    with pytest.raises(TypeError, match="distributed must be a communicator"):
        bp.fit(model, bp.BCEWithLogitsLoss(), opt, *cases.data(), distributed="mpi", progress=False)


def test_distributed_optimizer_alone_is_the_wrapped_optimizer():
    comm = bp.distributed.init()
    plain_model, plain = cases.make("numpy", "adam")
    model, inner = cases.make("numpy", "adam")
    opt = bp.distributed.DistributedOptimizer(inner, comm)
    opt.lr = 0.05                                                    # schedules set lr: it reaches the wrapped one
    plain.lr = 0.05
    X, y = cases.data()
    loss_fn = bp.BCEWithLogitsLoss()
    for m, o in ((plain_model, plain), (model, opt)):
        for _ in range(2):
            o.zero_grad()
            loss_fn.forward(m(X), y)
            m.backward(loss_fn.backward())
            o.step()
    assert inner.lr == 0.05 and opt.state_dict()["type"] == "Adam"
    for a, b in zip(plain_model.parameters(), model.parameters(), strict=True):
        assert np.array_equal(a.data, b.data)


@needs_mpi
def test_the_example_under_mpiexec_reports_once_and_matches_one_process(tmp_path):
    example = os.path.join(os.path.dirname(HERE), "examples", "distributed.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    runs = {}
    for size in (1, 2):
        out = tmp_path / f"n{size}"
        try:
            done = subprocess.run([MPIEXEC, "-n", str(size), sys.executable, example, "--epochs", "4", "--out",
                                   str(out)], capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            pytest.fail(f"examples/distributed.py under mpiexec -n {size} hung")
        assert done.returncode == 0, done.stderr
        reports = [line for line in done.stdout.splitlines() if line.startswith("rank 0 of")]
        assert len(reports) == 1, done.stdout                       # only the root prints
        runs[size] = reports[0].split(":", 1)[1]                     # "training loss ...; test ..."
        if importlib.util.find_spec("matplotlib") is not None:
            assert [p.name for p in out.iterdir()] == ["moons_distributed.png"]
    assert runs[1] == runs[2]                                        # the same numbers, to 4 decimals


def test_fit_takes_a_distributed_optimizer_and_uses_the_wrapped_one():
    comm = bp.distributed.init()
    plain = cases.reference_fit("numpy", "momentum")
    model, inner = cases.make("numpy", "momentum")
    X, y = cases.data()
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), bp.distributed.DistributedOptimizer(inner, comm), X, y,
                  epochs=cases.EPOCHS, batch_size=cases.BATCH, seed=7, metrics=["accuracy"], progress=False,
                  distributed=comm)
    for a, p in zip(plain[0], model.parameters(), strict=True):
        assert np.array_equal(a, p.data)
    assert hist["loss"] == plain[1]


@needs_mpi
def test_an_error_on_one_rank_mid_training_ends_every_rank():
    # Rank 1 fails inside fit while rank 0 waits in the all-reduce: init()'s hook calls MPI_Abort.
    script = (
        "import bpcore as bp\n"
        "import distributed_cases as cases\n"
        "comm = bp.distributed.init()\n"
        "class Fail(bp.Callback):\n"
        "    def on_batch_end(self, batch, logs=None):\n"
        "        if comm.rank == 1 and batch == 2:\n"
        "            raise RuntimeError('planted failure on rank 1')\n"
        "model, opt = cases.make('numpy', 'sgd')\n"
        "bp.fit(model, bp.BCEWithLogitsLoss(), opt, *cases.data(), epochs=50, batch_size=8, progress=False,\n"
        "       callbacks=[Fail()], distributed=comm)\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    try:
        done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=LAUNCH_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("rank 0 was left waiting after rank 1 failed")
    assert done.returncode != 0
    assert "planted failure on rank 1" in done.stderr and "MPI_Abort" in done.stderr, done.stderr


def nccl_on_a_stand_in(monkeypatch, spec):
    """A stand-in for cupy.cuda.nccl (tests/nccl_standin.py), a size-1 communicator whose all-reduce
    goes through NcclReducer on ``spec``, and the stand-in (its calls and the problems it saw)."""
    from bpcore.distributed.nccl import NcclReducer

    backend = backends.get(spec)
    modules = {}
    stand_in = nccl_standin.install(backend, modules=modules)
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    comm = bp.distributed.init()
    comm._reducers[backend.spec] = NcclReducer(comm, backend)
    return comm, stand_in


@pytest.mark.skipif("array_api_strict:device1" not in backends.available(), reason="array_api_strict not installed")
def test_the_nccl_reducer_on_a_stand_in_keeps_each_buffer_on_its_device(monkeypatch):
    """No GPU here: fit's NCCL path on the simulated second device, every call checked by the stand-in."""
    spec = nccl_standin.rank_device(0)
    comm, stand_in = nccl_on_a_stand_in(monkeypatch, spec)
    alone = cases.reference_fit(spec, "adam")
    found = cases.reference_fit(spec, "adam", distributed=comm)
    for a, b in zip(alone[0], found[0], strict=True):
        assert np.array_equal(a, b)                   # one rank: NCCL's sum is the identity
    assert stand_in.problems == []
    steps = cases.EPOCHS * -(-cases.N_SAMPLES // cases.BATCH)
    assert stand_in.calls[:2] == [("get_unique_id",), ("NcclCommunicator", 1, bytes(range(7, 135)), 0)]
    assert stand_in.calls[2:] == [("allReduce", 6 * 2 + 6 + 6 + 1 + 1, "f64", "sum")] * steps   # grads + stop flag


@pytest.mark.skipif("array_api_strict:device1" not in backends.available(), reason="array_api_strict not installed")
def test_the_nccl_stand_in_catches_a_buffer_off_its_device(monkeypatch):
    """The premise of the test above: the stand-in notices the mistakes it is there to catch."""
    spec = nccl_standin.rank_device(0)
    comm, stand_in = nccl_on_a_stand_in(monkeypatch, spec)
    reducer, backend = comm._reducers[spec], backends.get(spec)
    flat = backend.asarray(np.ones(4))
    reducer.sum(flat, backend)                          # outside activate(): another device is current
    assert any("allReduce with None current" in p for p in stand_in.problems), stand_in.problems
    stand_in.problems.clear()
    other = backends.get(nccl_standin.rank_device(1)).asarray(np.ones(4))
    with backend.activate():
        reducer.sum(other, backend)                     # a buffer on rank 1's device, given to rank 0
    assert any("the buffer is on device2, not device1" in p for p in stand_in.problems), stand_in.problems
    with pytest.raises(TypeError, match="cannot all-reduce int32 gradients"):
        reducer.sum(backend.asarray(np.ones(4, dtype=np.int32)), backend)


@needs_mpi
def test_the_nccl_path_on_two_ranks_gives_the_parameters_of_one_process(launched):
    """mpiexec -n 2: rank r on the simulated device{r+1}, NCCL played by the stand-in over MPI."""
    _, ranks = launched[2]
    params, losses, _ = cases.reference_fit("numpy", "adam")
    for rank, result in enumerate(ranks):
        found = result["nccl"]
        assert found["device"] == nccl_standin.rank_device(rank)
        assert found["problems"] == [], f"rank {rank}: {found['problems']}"
        assert_close(found["params"], params, f"NCCL dry run, rank {rank}")
        np.testing.assert_allclose(found["losses"], losses, rtol=TOL, atol=TOL)
        assert [c[0] for c in found["calls"]].count("get_unique_id") == (1 if rank == 0 else 0)
        joined = [c for c in found["calls"] if c[0] == "NcclCommunicator"]
        assert joined == [("NcclCommunicator", 2, bytes(range(7, 135)), rank)]
        assert [c[0] for c in found["calls"]].count("allReduce") == found["reduce_calls"] > 0
    assert_ranks_identical([r["nccl"] for r in ranks], "params")
