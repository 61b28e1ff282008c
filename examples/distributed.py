"""Data-parallel training
======================

The two moons on every process of an MPI run, the same result as one.

.. code-block:: bash

    mpiexec -n 2 python examples/distributed.py [--device cpu|cuda|torch|...] [--epochs 300] [--seed 0] [--out DIR]
    python examples/distributed.py                  # alone: a size-1 communicator, the same numbers

Every rank builds the same [2, 16, 16, 1] ReLU net and holds the whole data set; fit cuts each
global batch of 64 into one contiguous shard per rank and all-reduces the weighted gradients, so
the parameters after training equal a single process's (to float rounding). Only rank 0 prints
the progress, the test accuracy and writes moons_distributed.png. ``--device cuda`` gives rank r
the GPU cuda:<local rank> (NCCL all-reduce between the GPUs). Needs pip install 'bpcore[mpi]'.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpcore as bp  # noqa: E402
from _common import PrintEvery, parser, resolve_device, save_figure  # noqa: E402


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0], epochs=300, draws=True).parse_args(argv)
    comm = bp.distributed.init()
    device = resolve_device(comm.device(args.device)) if comm.is_root else _quiet(comm.device(args.device))
    X, y = bp.data.moons(1000, noise=0.15, seed=args.seed)
    X_train, X_test, y_train, y_test = bp.data.train_test_split(X, y, test_size=0.2, seed=args.seed)
    model = bp.mlp([2, 16, 16, 1], activation="relu", init="he", seed=args.seed).to(device)
    loss_fn = bp.BCEWithLogitsLoss()
    optimizer = bp.optim.Adam(model.parameters(), lr=0.01)
    if comm.is_root:
        print(f"two moons on {comm.size} process(es): global batch 64, each rank about {64 // comm.size} "
              f"samples a step; [2, 16, 16, 1] ReLU on {device}")
    hist = bp.fit(model, loss_fn, optimizer, X_train, y_train, epochs=args.epochs, batch_size=64, seed=args.seed,
                  metrics=["accuracy"], callbacks=[PrintEvery(max(1, args.epochs // 5), args.epochs)] if comm.is_root
                  else [], progress=False, distributed=comm)
    test = bp.evaluate(model, loss_fn, X_test, y_test, metrics=["accuracy"])
    if comm.is_root:        # every rank holds the same parameters, so one of them reports and draws
        print(f"rank 0 of {comm.size}: training loss {hist['loss'][-1]:.4f}; "
              f"test loss {test['loss']:.4f}, test accuracy {test['accuracy']:.4f}")
        save_figure(lambda path: bp.viz.decision_boundary(
            model, X_test, y_test, title=f"two moons on {comm.size} ranks: test accuracy {test['accuracy']:.3f}",
            path=path), args.out, "moons_distributed.png")
    return {"loss": test["loss"], "accuracy": test["accuracy"], "size": comm.size, "rank": comm.rank,
            "parameters": [model.device.to_numpy(p.data) for p in model.parameters()]}


def _quiet(spec):
    """The backend on ranks other than 0 (rank 0 prints the run's conditions once)."""
    import backends

    try:
        return backends.get(spec)
    except (backends.BackendUnavailableError, ValueError, TypeError) as error:
        print(f"error: --device {spec}: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
