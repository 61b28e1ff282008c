"""Run under ``mpiexec -n N``: every case of tests/test_distributed.py, results pickled per rank.

    mpiexec -n 2 python tests/distributed_cases.py OUT_DIR [backend ...]

Each rank writes OUT_DIR/rank<R>.pkl: {case name: value}. The single-process references are
computed by the test itself with ``reference_fit`` below (the same function, no communicator).
"""
from __future__ import annotations

import os
import pickle
import shutil
import signal
import sys

import numpy as np

import backends
import bpcore as bp

N_SAMPLES, BATCH, EPOCHS = 49, 16, 3          # 3 full batches and a last one of 1: empty shards on ranks 1, 2
OPTIMIZERS = {
    "sgd": lambda params: bp.optim.SGD(params, lr=0.2),
    "momentum": lambda params: bp.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda params: bp.optim.Adam(params, lr=0.02),
}


def data(n=N_SAMPLES):
    X, y = bp.data.moons(n, noise=0.2, seed=3)
    return X.astype("float64"), y


def make(spec, optimizer, seed=0, hidden=6):
    model = bp.mlp([2, hidden, 1], activation="tanh", seed=seed).astype("float64").to(spec)
    return model, OPTIMIZERS[optimizer](model.parameters())


def reference_fit(spec, optimizer, epochs=EPOCHS, distributed=None, seed=0, **kwargs):
    """(parameters as host arrays, history loss, history accuracy) of one fit."""
    model, opt = make(spec, optimizer, seed=seed)
    X, y = data()
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), opt, X, y, epochs=epochs, batch_size=BATCH, seed=7,
                  metrics=["accuracy"], progress=False, distributed=distributed, **kwargs)
    return [p.backend.to_numpy(p.data) for p in model.parameters()], hist["loss"], hist["accuracy"]


def expect_error(function, *args, **kwargs):
    try:
        function(*args, **kwargs)
    except Exception as error:          # noqa: BLE001 (the test reads the type and message)
        return f"{type(error).__name__}: {error}"
    return "no error"


def main(out_dir, specs):
    comm = bp.distributed.init()
    results = {"size": comm.size, "rank": comm.rank}
    for spec in specs:
        for optimizer in OPTIMIZERS:
            results[f"fit/{spec}/{optimizer}"] = reference_fit(spec, optimizer, distributed=comm, seed=comm.rank)

    # A checkpoint written during a distributed run (epoch 2 of 4), resumed by the same ranks.
    path = os.path.join(out_dir, "run.bpc")
    reference_fit("numpy", "adam", epochs=2, distributed=comm, checkpoint=path)
    if comm.is_root:
        shutil.copy(path, os.path.join(out_dir, "epoch2.bpc"))    # the test resumes it in one process
    results["resumed"] = reference_fit("numpy", "adam", epochs=4, distributed=comm, resume=path, checkpoint=path)

    # A checkpoint only rank 0 can read, and it is corrupt: rank 0 says why, the others that rank 0 failed.
    bad = os.path.join(out_dir, "corrupt.bpc")
    if comm.is_root:
        with open(bad, "wb") as stream:
            stream.write(b"not a checkpoint")
    results["corrupt"] = expect_error(reference_fit, "numpy", "sgd", distributed=comm, resume=bad)

    # broadcast_parameters + DistributedOptimizer in a hand-written loop (equal shards of 12).
    model, opt = make("numpy", "momentum", seed=10 + comm.rank)
    bp.distributed.broadcast_parameters(model, comm, optimizer=opt)
    results["broadcast"] = [p.data.copy() for p in model.parameters()]
    opt = bp.distributed.DistributedOptimizer(opt, comm)
    X, y = data(12 * comm.size)
    loss_fn = bp.BCEWithLogitsLoss()
    for _ in range(3):
        opt.zero_grad()
        mine = slice(12 * comm.rank, 12 * comm.rank + 12)
        loss_fn.forward(model(X[mine]), y[mine])
        model.backward(loss_fn.backward())
        opt.step()
    results["loop"] = [p.data.copy() for p in model.parameters()]

    # Small buckets (64 bytes: several all-reduces) give the same sums as one flat buffer.
    for bucket_bytes in (64, None):
        model, _ = make("numpy", "sgd")
        for i, p in enumerate(model.parameters()):
            p.grad = np.full(p.shape, float(comm.rank + 1) * (i + 1))
        calls = comm.reduce_calls
        comm.allreduce_gradients(model, bucket_bytes=bucket_bytes)
        results[f"buckets/{bucket_bytes}"] = ([p.grad.copy() for p in model.parameters()], comm.reduce_calls - calls)

    # Early stopping asked by one rank only, and Ctrl-C pressed on the last rank only.
    class StopOnRoot(bp.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if comm.is_root and epoch == 1:
                self.model.stop_training = True

    class CtrlCOnLast(bp.Callback):
        def on_batch_end(self, batch, logs=None):
            if comm.rank == comm.size - 1 and len(self.history.epochs) == 1 and batch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    for name, callback in (("early", StopOnRoot()), ("ctrl_c", CtrlCOnLast())):
        model, opt = make("numpy", "sgd")
        log = bp.CSVLogger(os.path.join(out_dir, f"{name}-rank{comm.rank}.csv"))   # written by rank 0 only
        saved = os.path.join(out_dir, f"{name}.bpc")     # an interrupted run rolls back on every rank
        hist = bp.fit(model, bp.BCEWithLogitsLoss(), opt, *data(), epochs=5, batch_size=BATCH, progress=False,
                      callbacks=[callback, log], distributed=comm, checkpoint=saved)
        results[name] = (len(hist.epochs), hist.interrupted, [p.data.copy() for p in model.parameters()])
    results["diverged"] = expect_error(bp.fit, *_diverging(), epochs=10, batch_size=BATCH, progress=False,
                                       distributed=comm)

    # Ranks that disagree: every rank must raise the same clear error, none may hang.
    X, y = data()
    mismatches = {
        "architecture": dict(hidden=6 + comm.rank), "batch_size": dict(batch_size=BATCH + comm.rank),
        "feature": dict(width=2 + comm.rank), "seed": dict(seed=comm.rank), "data": dict(shift=0.5 * comm.rank),
    }
    for name, change in mismatches.items():
        model, opt = make("numpy", "sgd", hidden=change.get("hidden", 6))
        Xr = np.concatenate([X, X[:, :change["width"] - 2]], axis=1) if "width" in change else X
        Xr = Xr + change.get("shift", 0.0)
        results[f"mismatch/{name}"] = expect_error(
            bp.fit, model, bp.BCEWithLogitsLoss(), opt, Xr, y, epochs=2, batch_size=change.get("batch_size", BATCH),
            seed=change.get("seed", 0), progress=False, distributed=comm)
    if comm.size == 2:
        results["nccl"] = nccl_dry_run(comm)
    with open(os.path.join(out_dir, f"rank{comm.rank}.pkl"), "wb") as stream:
        pickle.dump(results, stream)


def nccl_dry_run(comm):
    """fit's NCCL path (bpcore/distributed/nccl.py) with rank r on the simulated GPU device{r+1} and a
    stand-in for cupy.cuda.nccl that sums over MPI and checks each call (tests/nccl_standin.py)."""
    import nccl_standin
    from bpcore.distributed.nccl import NcclReducer

    backend = backends.get(nccl_standin.rank_device(comm.local_rank))
    stand_in = nccl_standin.install(backend, comm.mpi)
    try:
        comm._reducers[backend.spec] = NcclReducer(comm, backend)   # what the cupy backend gets
        calls = comm.reduce_calls
        params, losses, accuracy = reference_fit(backend.spec, "adam", distributed=comm, seed=comm.rank)
        return {"params": params, "losses": losses, "accuracy": accuracy, "calls": stand_in.calls,
                "problems": stand_in.problems, "reduce_calls": comm.reduce_calls - calls, "device": backend.spec}
    finally:
        del sys.modules["cupy"], sys.modules["cupy.cuda"]


def _diverging():
    model = bp.mlp([2, 1], seed=0).astype("float64")                 # linear: nothing saturates
    X, y = data()
    return model, bp.MSELoss(), bp.optim.SGD(model.parameters(), lr=1e10), X, y * 1e3


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["numpy"])
