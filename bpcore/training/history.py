"""History (what fit records, epoch by epoch) and DivergenceError (the loss became NaN/Inf)."""
from __future__ import annotations

import math

from ..checkpoint.api import check_history_data


class DivergenceError(FloatingPointError):
    """The loss became NaN or infinite; ``.history`` holds the epochs completed before it."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


class History:
    """What ``fit`` records, one value per completed epoch.

    ``hist["loss"]``, ``hist["val_loss"]``, ``hist["accuracy"]``, ``hist["val_accuracy"]``,
    ``hist["lr"]`` (the rate used during that epoch); before the first epoch ends every key
    gives []. Every list is aligned with ``hist.epochs``: ``hist[key][i]`` belongs to epoch
    ``hist.epochs[i]``, and an epoch where a value was not measured holds NaN (a run resumed
    with validation data that the first run did not have: NaN for the earlier epochs).
    ``hist.grad_norms[name]`` and
    ``hist.weight_norms[name]`` give each parameter's L2 norm ("0.W", ...) after the last
    batch of each epoch: the numbers that show vanishing gradients layer by layer.
    ``hist.health`` holds what a ``bp.GradientHealth`` callback measured ({} without one).
    """

    def __init__(self):
        self.history: dict[str, list] = {}
        self.grad_norms: dict[str, list] = {}
        self.weight_norms: dict[str, list] = {}
        self.epochs: list[int] = []
        self.health: dict = {}
        self.interrupted = False

    def __getitem__(self, key):
        if not self.epochs and key not in self.history:
            return []          # no epoch finished (a run that diverged at once): nothing recorded yet
        try:
            return self.history[key]
        except KeyError:
            raise KeyError(f"History has no {key!r}; it has {sorted(self.history)}") from None

    def __contains__(self, key):
        return key in self.history

    def keys(self):
        return self.history.keys()

    def state_dict(self) -> dict:
        """The recorded values as plain data (lists of numbers), as a checkpoint stores them."""
        return {"history": self.history, "grad_norms": self.grad_norms,
                "weight_norms": self.weight_norms, "epochs": self.epochs, "health": self.health}

    @classmethod
    def from_state_dict(cls, state: dict) -> "History":
        """A History holding what :meth:`state_dict` gave, after checking its types.

        A list shorter than the epochs (written by a bpcore before the lists were aligned, when
        a run resumed with a metric the first run did not measure) gets NaN in front, for the
        epochs before its first value.

        Raises:
            TypeError / ValueError: not the four sections, epochs that are not increasing ints
                >= 0, or a record that is not a list of numbers (at most one per epoch).
        """
        check_history_data(state)
        history = cls()
        n = len(state["epochs"])
        history.history = {k: _aligned(v, n) for k, v in state["history"].items()}
        history.grad_norms = {k: _aligned(v, n) for k, v in state["grad_norms"].items()}
        history.weight_norms = {k: _aligned(v, n) for k, v in state["weight_norms"].items()}
        history.epochs = list(state["epochs"])
        history.health = state.get("health", {})          # absent in checkpoints from before GradientHealth
        return history

    def _record(self, epoch, logs, grad_norms, weight_norms):
        """Add one epoch: every list grows by one value, NaN for a key this epoch did not measure,
        and a key seen for the first time gets NaN for the epochs before."""
        self.epochs.append(epoch)
        n = len(self.epochs)
        for record, values in ((self.history, logs), (self.grad_norms, grad_norms),
                               (self.weight_norms, weight_norms)):
            for key in values:
                record.setdefault(key, [])
            for key, series in record.items():
                series[:0] = [math.nan] * (n - 1 - len(series))
                series.append(values.get(key, math.nan))

    def __repr__(self):
        return f"History({len(self.epochs)} epochs: {', '.join(self.history)})"


def _aligned(values, n):
    """``values`` as a list of ``n``: NaN in front for the epochs before the first value."""
    return [math.nan] * (n - len(values)) + list(values)
