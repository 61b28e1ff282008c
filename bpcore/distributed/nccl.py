"""All-reduce between GPUs with NCCL (CuPy's ``cupy.cuda.nccl``), as ChainerMN's pure-NCCL communicator.

MPI sets the run up: rank 0 makes NCCL's unique id and broadcasts it over MPI, then every rank
joins one NCCL communicator on its own GPU (rank -> ``cuda:local_rank``, see
``Communicator.device``). The flat gradient buffer is then summed in place on the devices, on the
current CuPy stream, with no host copy. This is the one module of bpcore that calls CuPy by name:
NCCL is not part of the Array API. Written by construction; it runs only where CuPy sees GPUs.
"""
from __future__ import annotations


class NcclReducer:
    """Sums flat CuPy buffers over the ranks with ncclAllReduce; made on first use (a collective)."""

    def __init__(self, comm, backend):
        try:
            from cupy.cuda import nccl
        except ImportError as error:
            raise ImportError(f"bp.distributed: the cupy backend all-reduces through NCCL, but "
                              f"cupy.cuda.nccl cannot be imported ({error}); install CuPy with NCCL "
                              f"(pip install cupy-cuda12x; python -m cupyx.tools.install_library "
                              f"--library nccl --cuda 12.x)") from None
        self.nccl = nccl
        unique_id = nccl.get_unique_id() if comm.is_root else None
        unique_id = comm.bcast_object(unique_id, root=0)
        with backend.activate():
            self.communicator = nccl.NcclCommunicator(comm.size, unique_id, comm.rank)
        self._types = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
                       "float64": nccl.NCCL_FLOAT64}

    def sum(self, flat, backend):
        import cupy

        dtype = str(flat.dtype).rpartition(".")[2]       # "float32" (and from a stand-in's dtype too)
        if dtype not in self._types:
            raise TypeError(f"bp.distributed (NCCL): cannot all-reduce {dtype} gradients; "
                            f"expected one of {sorted(self._types)}")
        flat = cupy.ascontiguousarray(flat)
        stream = cupy.cuda.get_current_stream()
        self.communicator.allReduce(flat.data.ptr, flat.data.ptr, flat.size, self._types[dtype],
                                    self.nccl.NCCL_SUM, stream.ptr)
        return flat
