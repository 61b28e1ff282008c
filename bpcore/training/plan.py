"""What fit asks of the processes it trains in: the hook that ``bp.fit(..., distributed=comm)`` fills.

fit calls these methods at fixed points of every run. ``OneProcess`` is the plan of a plain run:
the whole batch is this process's, nothing is exchanged. ``bpcore.distributed`` (a floor above)
gives fit another object with the same methods through ``comm._fit_plan()``, so the training loop
is written once and never imports the distributed code.
"""
from __future__ import annotations


class OneProcess:
    """The plan of a single process: every method is the identity."""

    is_root = True          # this process writes checkpoints, shows progress, runs file-writing callbacks
    alone = True            # a Ctrl-C seen after the step may stop at once: no other rank to tell

    def local_optimizer(self, optimizer):
        """The optimizer whose ``step()`` fit calls (a DistributedOptimizer is unwrapped by the plan)."""
        return optimizer

    def begin(self, setup_error, model, optimizer, X, settings):
        """After fit's checks: raise ``setup_error``, or (several ranks) any disagreement between ranks."""
        if setup_error is not None:
            raise setup_error

    def resume(self, load, model, optimizer, scheduler, rng):
        """(history, first epoch): ``load()`` here; several ranks: on the root, then broadcast."""
        return load()

    def shard(self, start, stop):
        """This process's part [lo, hi) of the global batch [start, stop)."""
        return start, stop

    def reduce_gradients(self, params, local, total, stop):
        """Make ``.grad`` the global batch's gradient; returns ``stop`` agreed by every rank."""
        return stop

    def sum_over_ranks(self, host):
        """The epoch's host sums (weighted losses, metric counts), summed over the ranks."""
        return host

    def any(self, flag) -> bool:
        """True everywhere when ``flag`` is true on any rank: all ranks stop at the same epoch."""
        return bool(flag)
