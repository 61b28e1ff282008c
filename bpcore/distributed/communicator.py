"""The communicator: which process this is (``rank``) among how many (``size``), and the MPI calls.

``init()`` wraps MPI's world communicator (mpi4py) when one exists. Without mpi4py, or run as a
plain ``python script.py``, it returns a size-1 communicator whose collectives are the identity,
so the same script runs alone. Every collective here is one MPI call that all ranks make in the
same order; a rank that skips one leaves the others waiting, which is why fit never branches on
the rank around a collective.
"""
from __future__ import annotations

import os
import sys

from .._checks import check_int

# What launchers put in each process's environment: (size variable, rank on this node variable).
_LAUNCHERS = (
    ("PMI_SIZE", "MPI_LOCALRANKID"),                          # MPICH (hydra), Intel MPI
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),   # Open MPI
    ("PMIX_SIZE", "PMIX_LOCAL_RANK"),
    ("SLURM_NTASKS", "SLURM_LOCALID"),                        # srun
)

DEFAULT_BUCKET_BYTES = 25 * 2**20   # PyTorch DDP's bucket_cap_mb=25


class DistributedError(RuntimeError):
    """Ranks disagree (model, data, settings) or MPI is needed but missing; raised on every rank."""


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
        mpi_comm.Abort(1)
    hook._bpcore_aborts = True
    return hook


class Communicator:
    """``rank``, ``size``, ``is_root`` and the collectives bpcore needs, over an mpi4py communicator.

    ``mpi_comm=None`` is the size-1 communicator (no MPI at all). ``local_rank`` is the rank among
    the processes on this node: rank -> GPU ``cuda:local_rank`` (see :meth:`device`).
    """

    def __init__(self, mpi_comm=None, bucket_bytes: int = DEFAULT_BUCKET_BYTES):
        self.mpi = mpi_comm
        self.bucket_bytes = check_int("Communicator", "bucket_bytes", bucket_bytes, minimum=1)
        self.rank = mpi_comm.Get_rank() if mpi_comm is not None else 0
        self.size = mpi_comm.Get_size() if mpi_comm is not None else 1
        self.local_rank = self._local_rank()
        self._reducers = {}          # backend spec -> the object that sums flat buffers (host MPI or NCCL)
        self.bytes_reduced = 0       # gradient bytes this rank sent into all-reduces (the benchmark reads it)
        self.reduce_calls = 0
        self.reduce_seconds = 0.0    # wall time inside allreduce_gradients (on a GPU: until the host read)

    @property
    def is_root(self) -> bool:
        """True on rank 0: the process that writes checkpoints, prints progress and saves figures."""
        return self.rank == 0

    def _local_rank(self) -> int:
        if self.mpi is None:
            return 0
        from mpi4py import MPI

        node = self.mpi.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        local = node.Get_rank()
        node.Free()
        return local

    def device(self, kind: str = "cpu") -> str:
        """The device spec this rank should use: "cpu", or "cuda:<local_rank>" (one GPU per rank)."""
        if not isinstance(kind, str):
            raise TypeError(f"Communicator.device: kind must be a device string, got {type(kind).__name__}")
        if kind in ("cuda", "cupy", "torch:cuda"):
            return f"{kind}:{self.local_rank}"
        return kind

    # -- collectives on Python objects (small: settings, state dicts, flags) -----------------------
    def bcast_object(self, value, root: int = 0):
        """``value`` from rank ``root`` on every rank (pickled; for state dicts and settings)."""
        check_int("bcast_object", "root", root, minimum=0)
        if root >= self.size:
            raise ValueError(f"bcast_object: root {root} is not a rank of a communicator of size {self.size}")
        return value if self.mpi is None else self.mpi.bcast(value, root=root)

    def allgather_object(self, value) -> list:
        """[value of rank 0, value of rank 1, ...] on every rank."""
        return [value] if self.mpi is None else self.mpi.allgather(value)

    def any(self, flag) -> bool:
        """True on every rank if ``flag`` is true on any rank (stop together: Ctrl-C, early stopping)."""
        if self.mpi is None:
            return bool(flag)
        from mpi4py import MPI

        return bool(self.mpi.allreduce(bool(flag), op=MPI.LOR))

    def sum_host(self, host):
        """Elementwise sum over ranks of a host NumPy array, in place; returns it."""
        if self.mpi is not None:
            from mpi4py import MPI

            self.mpi.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        return host

    def barrier(self) -> None:
        if self.mpi is not None:
            self.mpi.Barrier()

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
        from .gradients import allreduce_gradients

        allreduce_gradients(self, model, weight=weight, bucket_bytes=bucket_bytes)

    def _fit_plan(self):
        """What ``bp.fit(..., distributed=comm)`` calls: sharding, reductions, agreement (fit_plan.py)."""
        from .fit_plan import FitPlan

        return FitPlan(self)

    def __repr__(self):
        kind = "MPI" if self.mpi is not None else "single process"
        return f"Communicator(rank={self.rank}, size={self.size}, {kind})"
