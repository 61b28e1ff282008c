"""Floor 6: data-parallel training over MPI (mpi4py), with NCCL between GPUs.

    comm = bp.distributed.init()                 # .rank, .size, .is_root; size 1 without mpiexec
    bp.fit(model, loss_fn, opt, X, y, batch_size=256, distributed=comm)   # 256 = the global batch

    collectives.py   rank, size and the MPI calls (objects, host arrays), DistributedError
    gradients.py     allreduce_gradients over flat buckets, broadcast_parameters, DistributedOptimizer
    fit_plan.py      what fit(distributed=comm) does: shards, weights, agreement between ranks
    communicator.py  init, Communicator (the collectives, the gradient all-reduce, fit's plan)
    nccl.py          the CuPy/NCCL all-reduce between GPUs (unique id sent over MPI)

Imports go one way, in that order upwards (nccl.py is reached from gradients.py only).
"""
from __future__ import annotations

from .communicator import DEFAULT_BUCKET_BYTES, Communicator, DistributedError, init
from .gradients import DistributedOptimizer, allreduce_gradients, broadcast_optimizer_state, broadcast_parameters

__all__ = ["DEFAULT_BUCKET_BYTES", "Communicator", "DistributedError", "DistributedOptimizer", "allreduce_gradients",
           "broadcast_optimizer_state", "broadcast_parameters", "init"]
