"""Callbacks: code that ``bp.fit`` calls at the start and end of training, epochs and batches.

Subclass :class:`Callback` and override the hooks you need. Inside a hook,
``self.model``, ``self.optimizer``, ``self.history`` and ``self.loss_fn`` are
the ones being trained; set ``self.model.stop_training = True`` to stop after this epoch.
``logs`` at the end of an epoch holds plain floats: "loss", each metric,
"val_loss" and "val_<metric>" when there is validation data, and "lr".
"""
from __future__ import annotations

import math
import os

from .._checks import check_int, check_number
from ..checkpoint import save_checkpoint


class Callback:
    """Base class with empty hooks."""

    model = None
    optimizer = None
    history = None
    loss_fn = None

    def set_context(self, model, optimizer, history, loss_fn=None):
        self.model, self.optimizer, self.history, self.loss_fn = model, optimizer, history, loss_fn

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        """``logs["loss"]`` is the batch loss as a 0-d device array (reading it syncs a GPU)."""


class _Monitor:
    """Tracks the best value of one epoch log entry ("val_loss", "accuracy", ...)."""

    def __init__(self, owner: str, monitor: str, mode: str, min_delta: float = 0.0):
        if not isinstance(monitor, str):
            raise TypeError(f"{owner}: monitor must be a string, got {type(monitor).__name__}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.owner, self.monitor, self.min_delta = owner, monitor, min_delta
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.reset()

    def reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf

    def improved(self, logs) -> bool:
        """Read the monitored value from ``logs``; True (and remember it) when it is a new best."""
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"{self.owner}: monitor {self.monitor!r} is not among this fit's values "
                             f"{sorted(logs)} (val_* needs validation_data)")
        value = logs[self.monitor]
        better = (value < self.best - self.min_delta if self.mode == "min"
                  else value > self.best + self.min_delta)
        if better:
            self.best = value
        return better


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Args:
        monitor: a key of the epoch logs ("val_loss", "loss", "val_accuracy", ...).
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        mode: "min", "max", or "auto" (max for accuracy-like names, else min).
        restore_best_weights: at the end of training, put back the parameters of the
            best epoch (kept as device copies, no host transfer).
    Attributes after training: ``best``, ``best_epoch``, ``stopped_epoch`` (None if it never stopped).
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 10, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False):
        patience = check_int("EarlyStopping", "patience", patience, minimum=0)
        min_delta = check_number("EarlyStopping", "min_delta", min_delta)
        self._monitor = _Monitor("EarlyStopping", monitor, mode, min_delta)
        self.monitor, self.mode, self.patience = monitor, self._monitor.mode, patience
        self.restore_best_weights = bool(restore_best_weights)

    @property
    def best(self):
        return self._monitor.best

    def on_train_begin(self, logs=None):
        self._monitor.reset()
        self.best_epoch = None
        self.stopped_epoch = None
        self.wait = 0
        self._best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        if self._monitor.improved(logs):
            self.best_epoch, self.wait = epoch, 0
            if self.restore_best_weights:
                self._best_weights = self.model._snapshot()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self._best_weights is not None:
            self.model._restore(self._best_weights)


class ModelCheckpoint(Callback):
    """Save a checkpoint (model, optimizer, epoch, history) to ``path`` at the end of epochs.

    With ``save_best_only`` only when ``monitor`` reaches a new best (mode as in
    EarlyStopping); otherwise every epoch. Writes are atomic; ``bp.load(path)`` gives the
    model back and ``bp.load_checkpoint(path)`` everything.
    """

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False, mode: str = "auto"):
        self.path = os.fspath(path)
        self.save_best_only = bool(save_best_only)
        self._monitor = _Monitor("ModelCheckpoint", monitor, mode)
        self.monitor = monitor
        self.saved_epochs: list[int] = []

    def on_train_begin(self, logs=None):
        self._monitor.reset()

    def on_epoch_end(self, epoch, logs=None):
        if self.save_best_only and not self._monitor.improved(logs):
            return
        save_checkpoint(self.path, model=self.model, optimizer=self.optimizer, epoch=epoch + 1,
                        history=self.history)
        self.saved_epochs.append(epoch)
