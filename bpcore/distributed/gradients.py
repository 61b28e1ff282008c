"""Gradient averaging over flat buffers, parameter broadcast, and DistributedOptimizer.

Horovod and PyTorch DDP do not all-reduce each parameter on its own: the gradients are copied
into a few flat buffers ("buckets") and each bucket is summed over the ranks in one call, because
one large message costs far less than many small ones. Here the buckets follow
``parameters()`` order and hold at most ``bucket_bytes`` each; a model smaller than a bucket
(every model in the examples) is one all-reduce per step.

    grad_p  <-  sum over ranks r of  weight_r * grad_p(r)

With ``weight_r = 1/size`` that is the mean; fit uses ``weight_r = n_r / n`` (the rank's share
of the global batch), which turns the mean losses of the shards into the global batch's mean.
"""
from __future__ import annotations

import math
import time

from .._checks import check_int
from ..nn.module import Layer, Parameter
from ..optim import Optimizer
from .collectives import Collectives


def _parameters_of(owner, what):
    """The Parameter list of a Layer, an Optimizer or a list of Parameters."""
    if isinstance(owner, Layer):
        return owner.parameters()
    if isinstance(owner, Optimizer):
        return list(owner.params)
    try:
        params = list(owner)
    except TypeError:
        raise TypeError(f"{what}: expected a model, an optimizer or a list of Parameters, "
                        f"got {type(owner).__name__}") from None
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{what}: item {i} is a {type(p).__name__}, not a Parameter")
    return params


def _check_comm(comm, what):
    if not isinstance(comm, Collectives):
        raise TypeError(f"{what}: comm must come from bp.distributed.init(), got {type(comm).__name__}")


def _buckets(params, bucket_bytes):
    """Consecutive groups of parameters, each at most ``bucket_bytes`` (a bigger parameter alone)."""
    groups, current, size = [], [], 0
    for p in params:
        nbytes = _numel(p.data) * _itemsize(p.backend.xp, p.data.dtype)
        if current and size + nbytes > bucket_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(p)
        size += nbytes
    if current:
        groups.append(current)
    return groups


def _numel(array) -> int:
    """Number of elements (``array.size`` is a method on torch tensors, so from the shape)."""
    return math.prod(array.shape)


def _itemsize(xp, dtype) -> int:
    """Bytes per element from the standard's finfo (dtype.itemsize is not in the Array API)."""
    return xp.finfo(dtype).bits // 8


def _reducer(comm, backend):
    """The object that sums a flat device buffer over the ranks: NCCL for CuPy, MPI on the host else."""
    reducer = comm._reducers.get(backend.spec)
    if reducer is None:
        if comm.size > 1 and backend.name == "cupy":
            from .nccl import NcclReducer

            reducer = NcclReducer(comm, backend)
        else:
            reducer = _HostReducer(comm)
        comm._reducers[backend.spec] = reducer
    return reducer


class _HostReducer:
    """Device buffer -> host NumPy -> MPI_Allreduce(SUM) in place -> back to the device.

    The reference path (NumPy, array_api_strict, torch on the CPU, torch on CUDA via host copies).
    The host buffers are kept from step to step: MPI (UCX) registers a buffer's memory the first
    time it sees it, and a fresh allocation every step pays that again.
    """

    def __init__(self, comm):
        self.comm = comm
        self._host = {}          # (bucket length, dtype) -> the host buffer reused for it

    def sum(self, flat, backend):
        if self.comm.size == 1:
            return flat
        values = backend.to_numpy(flat)
        key = (values.shape[0], str(values.dtype))
        host = self._host.get(key)
        if host is None:
            host = self._host[key] = values
        else:
            host[...] = values
        self.comm.sum_host(host)
        return backend.asarray(host, copy=True)     # the gradients must not alias the reused buffer


def allreduce_gradients(comm, model, weight=None, bucket_bytes=None, extra=None):
    """See :meth:`Communicator.allreduce_gradients`. ``extra``: floats summed in the first bucket
    at no extra call (fit sends its stop flag this way); returns their sums (a list)."""
    _check_comm(comm, "allreduce_gradients")
    params = _parameters_of(model, "allreduce_gradients")
    weight = 1.0 / comm.size if weight is None else float(weight)
    bucket_bytes = comm.bucket_bytes if bucket_bytes is None else check_int(
        "allreduce_gradients", "bucket_bytes", bucket_bytes)
    extra = [float(v) for v in (extra or [])]
    if not params:
        return extra
    backend = params[0].backend
    xp = backend.xp
    reducer = _reducer(comm, backend)
    sums = extra
    started = time.perf_counter()
    with backend.activate():
        for index, bucket in enumerate(_buckets(params, bucket_bytes)):
            pieces = [xp.reshape(p.grad, (-1,)) for p in bucket]
            dtype, device = pieces[0].dtype, pieces[0].device
            n_grads = sum(_numel(p.data) for p in bucket)
            if index == 0 and extra:
                pieces.append(xp.zeros((len(extra),), dtype=dtype, device=device))
            flat = xp.concat(pieces) if len(pieces) > 1 else xp.asarray(pieces[0], copy=True)
            if weight != 1.0:
                flat = flat * weight                     # a new array: the gradients are not touched
            if index == 0 and extra:
                flat[n_grads:] = xp.asarray(extra, dtype=dtype, device=device)   # unweighted
            flat = reducer.sum(flat, backend)
            comm.reduce_calls += 1
            comm.bytes_reduced += _numel(flat) * _itemsize(xp, dtype)
            offset = 0
            for p in bucket:
                p.grad = xp.reshape(flat[offset:offset + _numel(p.data)], p.data.shape)
                offset += _numel(p.data)
            if index == 0 and extra:
                sums = [float(v) for v in backend.to_numpy(flat[offset:]).tolist()]
    comm.reduce_seconds += time.perf_counter() - started    # flatten, copies and the all-reduce itself
    return sums


def broadcast_parameters(model, comm, root: int = 0, optimizer=None) -> None:
    """Copy the parameters and buffers of rank ``root`` (and ``optimizer``'s state) to every rank.

    Call it once after building the model, so every rank starts from the same weights whatever
    its seed (fit does it itself). The values travel as host NumPy, bit for bit.
    """
    _check_comm(comm, "broadcast_parameters")
    if not isinstance(model, Layer):
        raise TypeError(f"broadcast_parameters: model must be a bpcore Layer, got {type(model).__name__}")
    state = comm.bcast_object(model.state_dict() if comm.rank == root else None, root=root)
    if comm.rank != root:
        model.load_state_dict(state)
    if optimizer is not None:
        broadcast_optimizer_state(optimizer, comm, root=root)


def broadcast_optimizer_state(optimizer, comm, root: int = 0) -> None:
    """Copy rank ``root``'s optimizer state (hyper-parameters, momentum, Adam's moments) to every rank."""
    _check_comm(comm, "broadcast_optimizer_state")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"broadcast_optimizer_state: expected a bpcore optimizer, got {type(optimizer).__name__}")
    state = comm.bcast_object(optimizer.state_dict() if comm.rank == root else None, root=root)
    if comm.rank != root:
        optimizer.load_state_dict(state)


class DistributedOptimizer(Optimizer):
    """An optimizer whose ``step()`` first averages the gradients over the ranks (Horovod's shape).

        opt = bp.distributed.DistributedOptimizer(bp.optim.Adam(model.parameters()), comm)
        loss_fn.forward(model(x_local), y_local); model.backward(loss_fn.backward()); opt.step()

    Everything else (``lr``, ``zero_grad``, ``state_dict``, schedules) is the wrapped optimizer's.
    The mean over ranks equals the global batch's gradient when every rank has the same local
    batch size; ``bp.fit(..., distributed=comm)`` weights uneven shards itself and takes the
    plain optimizer (given this one, it uses the wrapped one).
    """

    def __init__(self, optimizer, comm, bucket_bytes=None):
        if not isinstance(optimizer, Optimizer) or isinstance(optimizer, DistributedOptimizer):
            raise TypeError(f"DistributedOptimizer: expected a bpcore optimizer such as bp.optim.SGD, "
                            f"got {type(optimizer).__name__}")
        _check_comm(comm, "DistributedOptimizer")
        if bucket_bytes is not None:
            check_int("DistributedOptimizer", "bucket_bytes", bucket_bytes)
        object.__setattr__(self, "optimizer", optimizer)
        object.__setattr__(self, "comm", comm)
        object.__setattr__(self, "bucket_bytes", bucket_bytes)

    def step(self):
        """Average every gradient over the ranks (one all-reduce per bucket), then update."""
        self.comm.allreduce_gradients(self.optimizer.params, bucket_bytes=self.bucket_bytes)
        self.optimizer.step()

    # Everything else is the wrapped optimizer's: reads and writes (lr, state) go through to it.
    def __getattr__(self, name):
        return getattr(object.__getattribute__(self, "optimizer"), name)

    def __setattr__(self, name, value):
        setattr(self.optimizer, name, value)

    def zero_grad(self):
        self.optimizer.zero_grad()

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.optimizer.load_state_dict(state_dict)

    def _snapshot_state(self) -> dict:
        return self.optimizer._snapshot_state()

    def __repr__(self):
        return f"DistributedOptimizer({self.optimizer!r}, {self.comm!r})"
