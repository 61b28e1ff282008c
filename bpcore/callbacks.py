"""Callbacks: code that ``bp.fit`` calls at the start and end of training, epochs and batches.

Subclass :class:`Callback` and override the hooks you need. Inside a hook,
``self.model``, ``self.optimizer`` and ``self.history`` are the ones being
trained; set ``self.model.stop_training = True`` to stop after this epoch.
``logs`` at the end of an epoch holds plain floats: "loss", each metric,
"val_loss" and "val_<metric>" when there is validation data, and "lr".
"""
from __future__ import annotations

import math


class Callback:
    """Base class with empty hooks."""

    model = None
    optimizer = None
    history = None

    def set_context(self, model, optimizer, history):
        self.model, self.optimizer, self.history = model, optimizer, history

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
        if not isinstance(monitor, str):
            raise TypeError(f"EarlyStopping: monitor must be a string, got {type(monitor).__name__}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ValueError(f"EarlyStopping: min_delta must be a number >= 0, got {min_delta!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, float(min_delta), mode
        self.restore_best_weights = bool(restore_best_weights)

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.stopped_epoch = None
        self.wait = 0
        self._best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping: monitor {self.monitor!r} is not among this fit's values "
                             f"{sorted(logs)} (val_* needs validation_data)")
        value = logs[self.monitor]
        better = (value < self.best - self.min_delta if self.mode == "min"
                  else value > self.best + self.min_delta)
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
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
