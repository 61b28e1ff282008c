"""A stand-in for CuPy's NCCL on the simulated devices: bp.distributed's NCCL path without a GPU.

Rank r's "GPU" is the simulated device ``array_api_strict:device{r+1}`` (two exist: device1 and
device2), which refuses work outside ``backend.activate()`` as CuPy on a second GPU does. The
stand-in answers the calls ``bpcore/distributed/nccl.py`` makes, with the arguments it passes, and
checks what real NCCL needs, recording a failure instead of raising (so that a rank never leaves
the others waiting in MPI):

- ``nccl.get_unique_id()`` is called on rank 0 only, and every rank joins with that id;
- ``NcclCommunicator(size, unique_id, rank)`` is made while the rank's own device is current;
- ``allReduce(send, recv, count, dtype, op, stream)`` gets the pointer of a contiguous buffer that
  lives on the rank's own device, with that device current and that device's stream, and sums it
  in place over the ranks (through MPI on the host, where NCCL would use NVLink or the network).

``install(backend, mpi_comm)`` puts the stand-in in ``sys.modules`` as ``cupy`` / ``cupy.cuda``.
"""
from __future__ import annotations

import sys
import types

import numpy as np

from backends import _strict


def rank_device(rank: int) -> str:
    """The simulated GPU of a rank."""
    return f"array_api_strict:device{rank + 1}"


def _current_device():
    """The simulated device entered now (backend.activate()), or None: CuPy's current device."""
    for name in sorted(_strict._WATCHED):
        if _strict._entered(name):
            return name
    return None


class StandIn:
    """What the fake NCCL saw: ``calls`` (name, details) and ``problems`` (sentences)."""

    def __init__(self, backend, mpi_comm=None):
        self.backend, self.mpi = backend, mpi_comm
        self.device = backend.device._device           # "device1"
        self.calls, self.problems, self._buffers = [], [], {}
        self.array_type = backend._array_type
        self.buffer_type = type("DeviceBuffer", (self.array_type,), {})     # an Array with a .data.ptr
        self.nccl = self._nccl()
        self.cuda = types.ModuleType("cupy.cuda")
        self.cuda.nccl = self.nccl
        self.cuda.get_current_stream = self._current_stream
        self.cupy = types.ModuleType("cupy")
        self.cupy.cuda, self.cupy.ascontiguousarray = self.cuda, self._ascontiguousarray

    def _check(self, condition: bool, sentence: str) -> None:
        if not condition:
            self.problems.append(sentence)

    def _current_stream(self):
        current = _current_device()
        return types.SimpleNamespace(ptr=0 if current is None else 1000 + int(current[-1]))

    def _ascontiguousarray(self, array):
        """The array itself (its NumPy memory shared), with CuPy's ``.data.ptr``."""
        self._check(isinstance(array, self.array_type), f"ascontiguousarray got a {type(array).__name__}")
        buffer = self.buffer_type._new(np.ascontiguousarray(array._array), device=array._device)
        buffer.data = types.SimpleNamespace(ptr=id(buffer))
        self._buffers[id(buffer)] = buffer
        return buffer

    def _nccl(self):
        stand_in = self

        class NcclCommunicator:
            def __init__(self, size, unique_id, rank):
                stand_in.calls.append(("NcclCommunicator", size, unique_id, rank))
                stand_in._check(_current_device() == stand_in.device,
                                f"NcclCommunicator made with {_current_device()} current, not {stand_in.device}")
                expected = (size, rank) if stand_in.mpi is None else (stand_in.mpi.Get_size(), stand_in.mpi.Get_rank())
                stand_in._check((size, rank) == expected, f"NcclCommunicator(size={size}, rank={rank}), "
                                                          f"expected {expected}")

            def allReduce(self, send, receive, count, dtype, op, stream):  # noqa: N802 (NCCL's name)
                stand_in._all_reduce(send, receive, count, dtype, op, stream)

        def get_unique_id():
            stand_in.calls.append(("get_unique_id",))
            rank = 0 if stand_in.mpi is None else stand_in.mpi.Get_rank()
            stand_in._check(rank == 0, f"get_unique_id called on rank {rank}: only rank 0 makes the id")
            return bytes(range(7, 135))                # NCCL's id: 128 bytes (a tuple of ints before CuPy 14)

        return types.SimpleNamespace(get_unique_id=get_unique_id, NcclCommunicator=NcclCommunicator,
                                     NCCL_SUM="sum", NCCL_FLOAT16="f16", NCCL_FLOAT32="f32", NCCL_FLOAT64="f64")

    def _all_reduce(self, send, receive, count, dtype, op, stream):
        self.calls.append(("allReduce", count, dtype, op))
        buffer = self._buffers.get(send)
        self._check(buffer is not None and send == receive, "allReduce: not the in-place sum of a buffer "
                                                            "made by cupy.ascontiguousarray")
        if buffer is None:
            return
        self._check(buffer._device._device == self.device, f"allReduce: the buffer is on "
                                                            f"{buffer._device._device}, not {self.device}")
        self._check(_current_device() == self.device, f"allReduce with {_current_device()} current, "
                                                       f"not {self.device}")
        self._check(stream == 1000 + int(self.device[-1]), f"allReduce on stream {stream}: not the "
                                                            f"current stream of {self.device}")
        self._check(count == buffer.size and op == "sum", f"allReduce(count={count}, op={op}) for a buffer "
                                                          f"of {buffer.size}")
        self._check(dtype == {"float16": "f16", "float32": "f32", "float64": "f64"}[str(buffer._array.dtype)],
                    f"allReduce: dtype {dtype} for a {buffer._array.dtype} buffer")
        if self.mpi is not None:
            from mpi4py import MPI

            self.mpi.Allreduce(MPI.IN_PLACE, buffer._array, op=MPI.SUM)       # written in place, as NCCL


def install(backend, mpi_comm=None, modules=None) -> StandIn:
    """Put a stand-in for ``cupy`` and ``cupy.cuda`` (with ``nccl``) into ``modules`` (default sys.modules)."""
    stand_in = StandIn(backend, mpi_comm)
    target = sys.modules if modules is None else modules
    target["cupy"], target["cupy.cuda"] = stand_in.cupy, stand_in.cuda
    return stand_in
