"""The communicator: ``init()``, and the Communicator it returns.

``init()`` wraps MPI's world communicator (mpi4py) when one exists. Without mpi4py, or run as a
plain ``python script.py``, it returns a size-1 communicator whose collectives are the identity,
so the same script runs alone. A Communicator is the MPI calls of ``collectives.py`` plus the
gradient all-reduce (``gradients.py``) and the plan ``bp.fit(..., distributed=comm)`` follows
(``fit_plan.py``): the top of the package, importing the other three.
"""
from __future__ import annotations

import os
import sys
import time

from .._checks import check_int
from .collectives import DEFAULT_BUCKET_BYTES, Collectives, DistributedError
from .fit_plan import FitPlan
from .gradients import allreduce_gradients

__all__ = ["DEFAULT_BUCKET_BYTES", "Communicator", "DistributedError", "init"]

# What launchers put in each process's environment: (size variable, rank on this node variable).
_LAUNCHERS = (
    ("PMI_SIZE", "MPI_LOCALRANKID"),                          # MPICH (hydra), Intel MPI
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),   # Open MPI
    ("PMIX_SIZE", "PMIX_LOCAL_RANK"),
    ("SLURM_NTASKS", "SLURM_LOCALID"),                        # srun
)


def _launcher_size() -> int | None:
    """How many processes the launcher started, from its environment (None: not launched)."""
    for size_name, _ in _LAUNCHERS:
        value = os.environ.get(size_name, "")
        if value.isdigit():
            return int(value)
    return None


def init(bucket_bytes: int = DEFAULT_BUCKET_BYTES, abort_on_error: bool = True) -> "Communicator":
    """The communicator of every process of this run (MPI's world), or a size-1 one when alone.

    Args:
        bucket_bytes: gradients are all-reduced as flat buffers of at most this many bytes
            (default 25 MiB, PyTorch DDP's bucket; a small model fits one buffer: one call per step).
        abort_on_error: with several ranks, an exception that ends one rank's script calls
            MPI_Abort after printing its traceback, so the other ranks do not wait for it forever
            in their next collective (what ``python -m mpi4py script.py`` does).
    Raises:
        DistributedError: the launcher started several processes (``mpiexec -n 2``, ``srun``) but
            mpi4py is not installed, so each would silently train alone.
    """
    check_int("init", "bucket_bytes", bucket_bytes, minimum=1)
    try:
        from mpi4py import MPI
    except ImportError as error:
        asked = _launcher_size()
        if asked is not None and asked > 1:
            raise DistributedError(
                f"bp.distributed.init: started as one of {asked} processes, but mpi4py cannot be "
                f"imported ({error}); install it with pip install 'bpcore[mpi]' (mpi4py and mpich)") from None
        return Communicator(None, bucket_bytes)
    comm = Communicator(MPI.COMM_WORLD, bucket_bytes)
    if abort_on_error and comm.size > 1 and not getattr(sys.excepthook, "_bpcore_aborts", False):
        sys.excepthook = _aborting_hook(sys.excepthook, comm.mpi)
    return comm


def _aborting_hook(previous, mpi_comm):
    """sys.excepthook: print the traceback as before, then end every rank with MPI_Abort."""
    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        sys.stderr.flush()
        # MPI_Abort ends the launcher's output forwarding too: give it a moment to pass the
        # traceback on, or the user sees only "MPI_Abort" and not why (seen under load).
        time.sleep(1.0)
        mpi_comm.Abort(1)
    hook._bpcore_aborts = True
    return hook


class Communicator(Collectives):
    """``rank``, ``size``, ``is_root``, the collectives (``collectives.py``), and the gradient
    all-reduce; ``mpi_comm=None`` is the size-1 communicator (no MPI at all).
    """

    # -- gradients -------------------------------------------------------------------------------
    def allreduce_gradients(self, model, weight=None, bucket_bytes=None):
        """Replace every parameter's ``.grad`` by the sum over ranks of ``weight * grad``.

        Args:
            model: a Layer, an optimizer, or a list of Parameters (the same order on every rank).
            weight: this rank's factor; default ``1/size``, the mean over ranks (equal local batches).
                fit passes local_batch/global_batch, so the sum is the global batch's mean gradient.
            bucket_bytes: flat buffer size (default: the communicator's, 25 MiB).
        The gradients travel as flat buffers, one all-reduce per bucket (one for a small model).
        """
        allreduce_gradients(self, model, weight=weight, bucket_bytes=bucket_bytes)

    def _fit_plan(self):
        """What ``bp.fit(..., distributed=comm)`` calls: sharding, reductions, agreement (fit_plan.py)."""
        return FitPlan(self)
