"""``bp.fit(..., distributed=comm)``: the plan that turns fit's loop into data-parallel training.

Every rank holds the whole data set and draws the same permutation from ``seed``; each global
batch of ``batch_size`` samples is cut into ``size`` contiguous shards (sizes differ by at most
one; a rank may get an empty one in a short last batch). A shard's loss is its mean, so

    dL/dW (global batch) = sum over ranks r of (n_r / n) * dL_r/dW        (n = sum of n_r)

and one all-reduce of the weighted shard gradients gives every rank the full batch's gradient:
the same update as one process, up to the order of the float additions. The stop flag (Ctrl-C)
rides in that all-reduce; epoch sums (loss, metric counts) take one more small one.
"""
from __future__ import annotations

from ..checkpoint.architecture import architecture
from ..training import History
from .collectives import DistributedError
from .gradients import DistributedOptimizer, allreduce_gradients


def _describe(model, optimizer, X, settings) -> dict:
    """What must be equal on every rank, as plain comparable data."""
    try:
        arch = architecture(model)
    except TypeError:                      # an unregistered user layer: its repr stands in
        arch = repr(model)
    xp = model.xp
    with model.device.activate():            # the data's device: a rank on cuda:1 sums on GPU 1
        total = float(xp.sum(X))
    return {
        "architecture": arch,
        "parameters": [(name, tuple(p.shape), str(p.data.dtype)) for name, p in model.named_parameters()],
        "backend": model.device.name,
        "optimizer": optimizer.state_dict()["type"],
        **settings,
        "seed": settings["seed"] if settings["seed"] is None or isinstance(settings["seed"], int)
        else f"a {type(settings['seed']).__name__} (its state is broadcast from rank 0)",
        "number of samples": int(X.shape[0]),
        "feature shape": tuple(X.shape[1:]),
        "data dtype": str(X.dtype),
        # One host read at the start: the same data on every rank. Six digits, so that two GPUs
        # summing in different orders still agree.
        "sum of X": float(f"{total:.6g}"),
    }


class FitPlan:
    """The methods of ``bpcore.training.plan.OneProcess``, over a Communicator of several ranks."""

    def __init__(self, comm):
        self.comm = comm
        self.is_root = comm.is_root
        self.alone = False      # Ctrl-C stops at the batch whose all-reduce carried it, on every rank

    def local_optimizer(self, optimizer):
        # fit weights uneven shards itself; a DistributedOptimizer would average a second time.
        return optimizer.optimizer if isinstance(optimizer, DistributedOptimizer) else optimizer

    def begin(self, setup_error, model, optimizer, X, settings):
        """One all-gather of each rank's description (or its error); every rank raises the same error."""
        description = None
        if setup_error is None:
            try:
                description = _describe(model, optimizer, X, settings)
            except Exception as error:          # noqa: BLE001 (sent to the others, then raised here)
                setup_error = error
        failure = None if setup_error is None else f"{type(setup_error).__name__}: {setup_error}"
        gathered = self.comm.allgather_object((failure, description))
        failed = [f"rank {rank}: {error}" for rank, (error, _) in enumerate(gathered) if error is not None]
        if len(failed) == 1 and self.comm.size == 1:
            raise setup_error
        if failed:       # the same message on every rank; the rank that failed chains its own error
            raise DistributedError("fit(distributed=...): stopping every rank, because fit's checks failed on "
                                   + "; ".join(failed)) from setup_error
        reference = gathered[0][1]
        differences = [f"rank {rank} has {key} {theirs[key]!r} but rank 0 has {reference[key]!r}"
                       for rank, (_, theirs) in enumerate(gathered) for key in reference
                       if theirs[key] != reference[key]]
        if differences:
            raise DistributedError("fit(distributed=...): the ranks disagree (every rank must build the same "
                                   "model and call fit with the same data and settings): " + "; ".join(differences))

    def resume(self, load, model, optimizer, scheduler, rng):
        """Load (or start fresh) on the root, then broadcast everything: the ranks start identical."""
        payload = None
        if self.is_root:
            try:
                history, start = load()
            except Exception as error:
                self.comm.bcast_object({"error": f"{type(error).__name__}: {error}"})
                raise
            payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "history": history.state_dict(), "start": start, "rng": rng.bit_generator.state,
                       "scheduler": scheduler.state_dict() if scheduler is not None else None}
        payload = self.comm.bcast_object(payload)
        if "error" in payload:
            raise DistributedError(f"fit(distributed=...): rank 0 could not resume: {payload['error']}")
        if self.is_root:
            return history, start
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        rng.bit_generator.state = payload["rng"]
        if scheduler is not None and payload["scheduler"] is not None:
            scheduler.load_state_dict(payload["scheduler"])
        return History.from_state_dict(payload["history"]), payload["start"]

    def shard(self, start, stop):
        n_samples, size, rank = stop - start, self.comm.size, self.comm.rank
        base, extra = divmod(n_samples, size)          # the first `extra` ranks take one more
        lo = start + rank * base + min(rank, extra)
        return lo, lo + base + (1 if rank < extra else 0)

    def reduce_gradients(self, params, local, total, stop):
        sums = allreduce_gradients(self.comm, params, weight=local / total, extra=[1.0 if stop else 0.0])
        return sums[0] > 0.5

    def sum_over_ranks(self, host):
        return self.comm.sum_host(host)

    def any(self, flag) -> bool:
        return self.comm.any(flag)
