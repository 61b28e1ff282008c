"""fit's arguments: the record of what the caller gave, and the one function that checks them all.

``_check_arguments`` runs every check of ``bp.fit`` before anything trains (types, the data where
they enter, the batch rules of the layers, the optimizer's and scheduler's binding to the model)
and returns ``_Run``, the record the training loop in fit.py reads.
"""
from __future__ import annotations

from dataclasses import dataclass

from .._checks import check_int, output_path
from ..nn import init as _init
from ..optim import Optimizer
from .callbacks import Callback
from .inputs import _check_common, _prepare
from .metrics import _resolve_metrics


@dataclass
class _Arguments:
    """fit's arguments as the caller gave them; :func:`_check_arguments` checks them."""

    model: object
    loss_fn: object
    optimizer: object
    X: object
    y: object
    epochs: object
    batch_size: object
    shuffle: object
    seed: object
    validation_data: object
    metrics: object
    callbacks: object
    scheduler: object
    checkpoint: object
    checkpoint_every: object

    def settings(self) -> dict:
        """The settings every rank of a distributed run must share (its plan compares them)."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "seed": self.seed,
                "shuffle": self.shuffle, "checkpoint_every": self.checkpoint_every}


@dataclass
class _Run:
    """fit's arguments after every check, as the training loop reads them."""

    model: object
    loss_fn: object
    optimizer: Optimizer
    X: object                  # on the model's device, in its dtype
    y: object                  # shaped and typed for the loss, values checked
    validation: tuple | None   # (X_val, y_val), prepared as X and y
    epochs: int
    batch_size: int
    shuffle: bool
    rng: object                # the shuffling Generator (host NumPy), seeded from ``seed``
    counters: dict             # metric name -> count(xp, out, target), see metrics.py
    callbacks: list
    scheduler: object
    checkpoint: str | None     # the path, its folder already made
    checkpoint_every: int


def _check_arguments(given: _Arguments) -> _Run:
    """Every check of fit's arguments, before anything trains; the record the loop reads."""
    model, loss_fn, optimizer = given.model, given.loss_fn, given.optimizer
    _check_common(model, loss_fn, given.batch_size, "fit")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a bpcore optimizer, got {type(optimizer).__name__}")
    epochs = check_int("fit", "epochs", given.epochs)
    checkpoint_every = check_int("fit", "checkpoint_every", given.checkpoint_every)
    callbacks = list(given.callbacks or [])
    for i, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks[{i}] must be a bp.Callback, got {type(callback).__name__}")
    checkpoint = given.checkpoint
    if checkpoint is not None:
        checkpoint = output_path("fit: checkpoint", checkpoint)    # the folder made now, not after an epoch
    _check_binding(model, optimizer, given.scheduler)
    X, y = _prepare(model, loss_fn, given.X, given.y, "fit")
    _check_batches(model, X.shape[0], given.batch_size)
    validation = None
    if given.validation_data is not None:
        if not isinstance(given.validation_data, (tuple, list)) or len(given.validation_data) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        validation = _prepare(model, loss_fn, *given.validation_data, "validation_data")
    counters = _resolve_metrics(given.metrics, loss_fn)
    rng = _init.host_rng(given.seed)
    return _Run(model, loss_fn, optimizer, X, y, validation, epochs, int(given.batch_size), bool(given.shuffle),
                rng, counters, callbacks, given.scheduler, checkpoint, checkpoint_every)


def _check_binding(model, optimizer, scheduler):
    """The optimizer updates this model's parameters, and the scheduler drives this optimizer.

    An optimizer built on another model's parameters would train nothing here (and AdamW
    would decay the other model); a scheduler of another optimizer would set the wrong lr.
    """
    own = {id(p) for p in model.parameters()}
    foreign = [i for i, p in enumerate(optimizer.params) if id(p) not in own]
    if foreign:
        raise ValueError(f"fit: the optimizer holds {len(foreign)} of {len(optimizer.params)} parameters that do "
                         f"not belong to this model (params[{foreign[0]}] first); build it on "
                         f"model.parameters() of the model being trained")
    if scheduler is not None and getattr(scheduler, "optimizer", optimizer) is not optimizer:
        raise ValueError(f"fit: the scheduler ({type(scheduler).__name__}) drives another optimizer, not the one "
                         f"given to fit; build it on this optimizer")


def _check_batches(model, n, batch_size):
    """Every training batch is large enough for the layers that need several samples (BatchNorm1d).

    Checked before training: a last batch of one would otherwise fail mid-epoch, after steps.
    """
    needs = max((layer._min_training_batch, layer._name()) for layer in model.modules())
    smallest = min(batch_size, n) if n % batch_size == 0 else n % batch_size
    if smallest < needs[0]:
        raise ValueError(f"fit: {needs[1]} needs at least {needs[0]} samples per training batch, but with "
                         f"{n} samples and batch_size={batch_size} a batch holds {smallest}; choose a "
                         f"batch_size that leaves no batch of {smallest} (n % batch_size == 0 or >= {needs[0]}), "
                         f"or drop {smallest} sample{'s' if smallest != 1 else ''}")
