"""Which process this is (``rank``) among how many (``size``), and the MPI calls bpcore makes.

Every collective here is one MPI call that all ranks make in the same order; a rank that skips
one leaves the others waiting, which is why fit never branches on the rank around a collective.
The bottom of the package: ``gradients.py`` and ``fit_plan.py`` build on it, and
``communicator.py`` puts them together (so no two modules import each other).
"""
from __future__ import annotations

from .._checks import check_int

DEFAULT_BUCKET_BYTES = 25 * 2**20   # PyTorch DDP's bucket_cap_mb=25


class DistributedError(RuntimeError):
    """Ranks disagree (model, data, settings) or MPI is needed but missing; raised on every rank."""


class Collectives:
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

    def __repr__(self):
        kind = "MPI" if self.mpi is not None else "single process"
        return f"{type(self).__name__}(rank={self.rank}, size={self.size}, {kind})"
