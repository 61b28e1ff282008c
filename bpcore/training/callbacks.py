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

from .._checks import Setting, check_int, check_number, output_path
from ..checkpoint import save_checkpoint
from .snapshot import restore, snapshot


class Callback:
    """Base class with empty hooks."""

    model = None
    optimizer = None
    history = None
    loss_fn = None
    root_only = False   # True: writes files, so fit(distributed=comm) runs it on rank 0 only

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

    # Private hooks (GradientHealth uses them): 0-d device arrays that fit moves to the host in
    # its one transfer per epoch, and those values back as floats, before the epoch is recorded.
    # ``_progress_note``, when set, becomes the progress bar's description.
    _progress_note = None

    def _epoch_device_values(self, X, y, epoch):
        return []

    # A one-line notice to the user (EarlyStopping's). fit points ``_write`` at its progress bar,
    # so that the notice never lands on the bar's own line; outside fit it is print.
    _write = None

    def _notice(self, text):
        (self._write or print)(text)

    def _epoch_host_values(self, values):
        pass


class _Monitor:
    """Tracks the best value of one epoch log entry ("val_loss", "accuracy", ...)."""

    def __init__(self, owner: str, monitor: str, mode: str, min_delta: float = 0.0):
        if not isinstance(monitor, str):
            raise TypeError(f"{owner}: monitor must be a string, got {type(monitor).__name__}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.owner, self.monitor, self.min_delta, self.given_mode = owner, monitor, min_delta, mode
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
        verbose: say when and why training stopped, as Keras does
            ("epoch 67: early stopping (best val_loss 0.0123 at epoch 47)"); epochs count from 1.
    Attributes after training: ``best``, ``best_epoch``, ``stopped_epoch`` (0-based, as fit's
    epoch indices; None if it never stopped).
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 10, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False, verbose: bool = True):
        self.patience = patience
        self._monitor = _Monitor("EarlyStopping", monitor, mode,
                                 check_number("EarlyStopping", "min_delta", min_delta))
        self.restore_best_weights = bool(restore_best_weights)
        self.verbose = bool(verbose)

    # Each is checked on every assignment, as in the constructor. A new monitor or mode starts from no
    # best value (the old one measured something else); a new min_delta keeps the best so far.
    patience = Setting(lambda self, patience: check_int("EarlyStopping", "patience", patience, minimum=0))

    @property
    def monitor(self) -> str:
        return self._monitor.monitor

    @monitor.setter
    def monitor(self, value):
        self._monitor = _Monitor("EarlyStopping", value, self._monitor.given_mode, self._monitor.min_delta)

    @property
    def mode(self) -> str:
        """"min" or "max" ("auto" is resolved from the monitor's name when set)."""
        return self._monitor.mode

    @mode.setter
    def mode(self, value):
        self._monitor = _Monitor("EarlyStopping", self._monitor.monitor, value, self._monitor.min_delta)

    @property
    def min_delta(self) -> float:
        return self._monitor.min_delta

    @min_delta.setter
    def min_delta(self, value):
        self._monitor.min_delta = check_number("EarlyStopping", "min_delta", value)

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
                self._best_weights = snapshot(self.model)
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.verbose:
                restored = "; restoring its weights" if self.restore_best_weights else ""
                self._notice(f"epoch {epoch + 1}: early stopping (best {self.monitor} {self.best:.4g} at epoch "
                             f"{self.best_epoch + 1 if self.best_epoch is not None else 'none'}{restored})")

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self._best_weights is not None:
            restore(self.model, self._best_weights)


class ModelCheckpoint(Callback):
    """Save a checkpoint (model, optimizer, epoch, history) to ``path`` at the end of epochs.

    With ``save_best_only`` only when ``monitor`` reaches a new best (mode as in
    EarlyStopping); otherwise every epoch. Writes are atomic; ``bp.load(path)`` gives the
    model back and ``bp.load_checkpoint(path)`` everything.
    """

    root_only = True

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False, mode: str = "auto"):
        self.path = os.fspath(path)
        self.save_best_only = bool(save_best_only)
        self._monitor = _Monitor("ModelCheckpoint", monitor, mode)
        self.monitor = monitor
        self.saved_epochs: list[int] = []

    def on_train_begin(self, logs=None):
        self.path = output_path("ModelCheckpoint", self.path)     # folder made before the first epoch
        self._monitor.reset()

    def on_epoch_end(self, epoch, logs=None):
        if self.save_best_only and not self._monitor.improved(logs):
            return
        save_checkpoint(self.path, model=self.model, optimizer=self.optimizer, epoch=epoch + 1,
                        history=self.history)
        self.saved_epochs.append(epoch)


class CSVLogger(Callback):
    """Write one row per epoch to a CSV file, as Keras's ``CSVLogger``: "epoch", then every log entry.

    The first column counts epochs from 1; the columns are set by the first epoch written
    ("loss", metrics, "val_*", "lr"); each row is flushed as it is written, so the file can be
    read while training runs and survives a crash. A value not measured in an epoch is "nan"
    (as in the History); a value that appears later (a resumed run with validation data, with
    ``append=True``) adds its column, "nan" in the rows before.

    Args:
        path: the CSV file; a missing folder is created when training begins (as every writer does).
        separator: the field separator (default ",").
        append: add to an existing file (for example when resuming) instead of starting anew.
    """

    root_only = True

    def __init__(self, path, separator: str = ",", append: bool = False):
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character, got {separator!r}")
        self.path = os.fspath(path)
        self.separator, self.append = separator, bool(append)
        self._stream = None
        self._columns = None

    def on_train_begin(self, logs=None):
        import csv

        self.path = output_path("CSVLogger", self.path)           # folder made before the first epoch
        existing = self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0
        self._stream = open(self.path, "a" if self.append else "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._stream, delimiter=self.separator)
        self._columns = None
        if existing:
            with open(self.path, newline="", encoding="utf-8") as previous:
                header = next(csv.reader(previous, delimiter=self.separator), None)
            self._columns = header[1:] if header else None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._columns is None:
            self._columns = list(logs)
            self._writer.writerow(["epoch", *self._columns])
        new = [key for key in logs if key not in self._columns]
        if new:                  # a value the earlier rows lack (val_loss after resuming with validation data)
            self._widen(new)
        self._writer.writerow([epoch + 1, *(_csv_value(logs.get(key, math.nan)) for key in self._columns)])
        self._stream.flush()

    def _widen(self, new):
        """Add columns: the file is rewritten with the wider header, "nan" in the rows before."""
        import csv

        self._stream.close()
        with open(self.path, newline="", encoding="utf-8") as previous:
            rows = list(csv.reader(previous, delimiter=self.separator))
        self._columns = self._columns + new
        rows[0] = ["epoch", *self._columns]
        rows[1:] = [row + ["nan"] * (len(rows[0]) - len(row)) for row in rows[1:]]
        with open(self.path, "w", newline="", encoding="utf-8") as stream:
            csv.writer(stream, delimiter=self.separator).writerows(rows)
        self._stream = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._stream, delimiter=self.separator)

    def on_train_end(self, logs=None):
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def _csv_value(value):
    return repr(value) if isinstance(value, float) else value
