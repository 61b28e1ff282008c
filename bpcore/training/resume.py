"""Continuing from a checkpoint: bp.load_checkpoint and fit's resume=.

The checkpoint floor stores the history as plain data; this is where it becomes a
:class:`History` again. Both functions check the whole file (through
``checkpoint.api.prepare_load``) and the parts only training knows (the History, the
shuffling RNG state, the scheduler) before anything is written: a refused file changes
nothing.
"""
from __future__ import annotations

import os

from ..checkpoint import CheckpointError
from ..checkpoint.api import prepare_load
from ..checkpoint.format import cap
from .history import History


def load_checkpoint(path, model=None, optimizer=None, device=None) -> dict:
    """Read a checkpoint; returns {"model", "epoch", "history", "rng_state", "scheduler", "optimizer"}.

    With ``model`` given, its parameters are replaced (after every check: a refused file
    changes nothing); otherwise the model is rebuilt from the file's architecture, on
    ``device`` (default "cpu"). With ``optimizer`` given, its state is restored too.
    "history" is a :class:`History` (None if the file holds none).
    """
    prepared = prepare_load(path, model=model, optimizer=optimizer, device=device)
    history = _history(prepared.history)
    saved = prepared.apply()
    saved["history"] = history
    return saved


def _history(plain):
    """A History from the plain data that prepare_load checked (None stays None)."""
    return None if plain is None else History.from_state_dict(plain)


def _resume(path, model, optimizer, scheduler, rng, epochs):
    """(history, first epoch to run): fresh, or restored from the checkpoint at ``path``."""
    if path is None:
        return History(), 0
    if not os.path.exists(path):
        print(f"fit: no checkpoint at {path} yet; starting from epoch 0")
        return History(), 0
    prepared = prepare_load(path, model=model, optimizer=optimizer)     # checks the epoch's type too
    start = prepared.epoch or 0
    if start > epochs:
        raise ValueError(f"fit: {path} already holds {start} epochs, more than epochs={epochs} "
                         f"(epochs is the total, counted from the start)")
    history = _history(prepared.history) or History()
    if prepared.rng_state is not None:
        probe = type(rng.bit_generator)()          # a throwaway bit generator of the same kind
        try:
            probe.state = prepared.rng_state
        except (TypeError, ValueError, KeyError, OverflowError, AttributeError) as error:
            raise CheckpointError(f"{path}: unusable shuffling RNG state ({cap(str(error))})") from None
    scheduler_state = None
    if scheduler is not None and prepared.scheduler is not None:
        try:
            scheduler_state = scheduler._check_state(prepared.scheduler)
        except (TypeError, ValueError, KeyError) as error:
            raise CheckpointError(f"{path}: does not fit this scheduler: {cap(str(error), 300)}") from None
    # Everything checked: now write.
    prepared.apply()
    if prepared.rng_state is not None:
        rng.bit_generator.state = prepared.rng_state
    if scheduler_state is not None:
        scheduler._write_state(scheduler_state)
    return history, start
