"""Ctrl-C during fit: the one place that decides what an interrupted run keeps.

A first Ctrl-C asks fit to stop after the current batch, and fit returns the history of the
epochs it completed (a checkpoint holds the same); a second Ctrl-C stops at once.
"""
from __future__ import annotations

import signal
import threading


class _CtrlC:
    """Everything fit does about Ctrl-C.

    The first Ctrl-C sets a flag that is read after each batch (a second one raises
    KeyboardInterrupt at once). Seen inside an epoch, the epoch stops and is not recorded; with a
    checkpoint, the model, optimizer and shuffling RNG go back to the epoch's start and that is
    saved. Seen after an epoch's last batch, that epoch is kept (and saved). Either way the history
    is marked ``interrupted`` and one line says what fit returns. With several ranks, the flag
    travels in the gradient all-reduce, so every rank stops at the same batch.
    """

    def __init__(self):
        self.pressed = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True

    def __exit__(self, *exc):
        if self._previous is not None:       # the handler found (SIG_IGN in a background run too)
            signal.signal(signal.SIGINT, self._previous)

    def stops_batches(self, plan, agreed_stop) -> bool:
        """After a batch: stop the epoch here? (ranks stop at the batch whose all-reduce said so)"""
        return agreed_stop or (plan.alone and self.pressed)

    def stops_after_epoch(self, plan) -> bool:
        """After a completed epoch: stop (every rank agrees)? That epoch is recorded and saved."""
        return plan.any(self.pressed)

    def drop_epoch(self, loop, epoch, rng_at_start):
        """The epoch stopped midway is not recorded; with a checkpoint, roll back to its start and save."""
        loop.history.interrupted = True
        if loop.run.checkpoint is not None:
            loop.last_good.restore()
            loop.run.rng.bit_generator.state = rng_at_start
            loop.save(epoch)

    def report(self, history, checkpoint, is_root):
        if history.interrupted and is_root:
            print(f"fit: interrupted; returning the history of {len(history.epochs)} completed epochs"
                  + (f" (saved to {checkpoint})" if checkpoint is not None else ""))
