"""Continuing from a checkpoint: bp.load_checkpoint and fit's resume=.

The checkpoint floor stores the history as plain data; this is where it becomes a
:class:`History` again.
"""
from __future__ import annotations

import os

from ..checkpoint import CheckpointError, read_checkpoint, read_file
from .history import History


def load_checkpoint(path, model=None, optimizer=None, device=None) -> dict:
    """Read a checkpoint; returns {"model", "epoch", "history", "rng_state", "scheduler", "optimizer"}.

    With ``model`` given, its parameters are replaced (after every check: a refused file
    changes nothing); otherwise the model is rebuilt from the file's architecture, on
    ``device`` (default "cpu"). With ``optimizer`` given, its state is restored too.
    "history" is a :class:`History` (None if the file holds none).
    """
    saved = read_checkpoint(path, model=model, optimizer=optimizer, device=device)
    if saved["history"] is not None:
        saved["history"] = History.from_state_dict(saved["history"])
    return saved


def _resume(path, model, optimizer, scheduler, rng, epochs):
    """(history, first epoch to run): fresh, or restored from the checkpoint at ``path``."""
    if path is None:
        return History(), 0
    if not os.path.exists(path):
        print(f"fit: no checkpoint at {path} yet; starting from epoch 0")
        return History(), 0
    start = read_file(path)[1].get("epoch") or 0       # checked before anything is loaded
    if start > epochs:
        raise ValueError(f"fit: {path} already holds {start} epochs, more than epochs={epochs} "
                         f"(epochs is the total, counted from the start)")
    saved = load_checkpoint(path, model=model, optimizer=optimizer)
    if saved["rng_state"] is not None:
        try:
            rng.bit_generator.state = saved["rng_state"]
        except (TypeError, ValueError, KeyError) as error:
            raise CheckpointError(f"{path}: unusable shuffling RNG state ({error})") from None
    if scheduler is not None and saved["scheduler"] is not None:
        scheduler.load_state_dict(saved["scheduler"])
    return saved["history"] or History(), start
