"""fit: the training loop, written once for every backend (evaluate and predict: evaluate.py).

The data move to the model's device once per fit. Each epoch draws a seeded
permutation on the host (one small index transfer), and minibatches are taken
on the device with ``xp.take``. Per-batch losses, metric counts and the
per-parameter norms stay on the device until the end of the epoch, where one
transfer brings them to the host: nothing else syncs a GPU inside the loop.
"""
from __future__ import annotations

import math
import signal
import threading

from .._checks import check_int, output_path
from ..checkpoint import save_checkpoint
from ..nn import init as _init
from ..optim import Optimizer, ReduceLROnPlateau
from .callbacks import Callback
from .gradient_health import blew_up_first
from .evaluate import _evaluate_prepared
from .history import DivergenceError, History
from .inputs import _check_common, _prepare
from .metrics import _resolve_metrics
from .plan import OneProcess
from .resume import _resume


class _InterruptFlag:
    """Turns Ctrl-C into a flag checked after each batch (a second Ctrl-C stops at once)."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def fit(model, loss_fn, optimizer, X, y, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
        seed=0, validation_data=None, metrics=None, callbacks=None, progress: bool = True,
        scheduler=None, checkpoint=None, checkpoint_every: int = 1, resume=None, distributed=None) -> History:
    """Train ``model`` with minibatches; returns a :class:`History`.

    Args:
        X: inputs (n, features), host NumPy or on the model's device; y: targets for ``loss_fn``.
        epochs: the total number of passes over the data (with ``resume``, counted from the start).
        batch_size: samples per step (the last batch may be smaller).
        shuffle, seed: a new seeded permutation each epoch; the same seed gives the same history.
        validation_data: (X_val, y_val), evaluated after each epoch ("val_loss", "val_accuracy").
        metrics: e.g. ["accuracy"] (binary or multi-class, chosen from the loss).
        callbacks: :class:`Callback` objects, e.g. ``EarlyStopping``.
        progress: show a tqdm bar (one step per epoch, with loss, metrics and time).
        scheduler: a schedule from ``bp.optim`` stepped after each epoch (ReduceLROnPlateau is
            given val_loss, or loss without validation data).
        checkpoint: a path; every ``checkpoint_every`` epochs (and after the last) the model,
            optimizer, epoch, history, shuffling RNG and scheduler are saved there atomically.
        resume: a checkpoint path to continue from (its epoch up to ``epochs``); the result is
            bitwise the same as one uninterrupted run on the same backend. A missing file
            starts from epoch 0, so ``checkpoint=p, resume=p`` is one command for both.
        distributed: a communicator from ``bp.distributed.init()``: data-parallel training over its
            ranks, ``batch_size`` being the global batch, with the same result as one process
            (every rank passes the same model, data and settings; see ``bpcore.distributed``).
    Raises:
        DivergenceError: the loss became NaN or infinite; the model is put back to its
            parameters (and the optimizer to its state) at the start of that epoch.
    Ctrl-C stops after the current batch and returns the history of the completed epochs;
    with ``checkpoint`` the partial epoch is rolled back and a final checkpoint is written.
    """
    if distributed is not None and not hasattr(distributed, "_fit_plan"):
        raise TypeError(f"distributed must be a communicator from bp.distributed.init(), "
                        f"got {type(distributed).__name__}")
    plan = OneProcess() if distributed is None else distributed._fit_plan()
    optimizer = plan.local_optimizer(optimizer)
    setup_error = None
    try:     # with several ranks, an error here must reach the others (plan.begin), or they would hang
        _check_common(model, loss_fn, batch_size)
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a bpcore optimizer, got {type(optimizer).__name__}")
        check_int("fit", "epochs", epochs)
        check_int("fit", "checkpoint_every", checkpoint_every)
        callbacks = list(callbacks or [])
        for i, callback in enumerate(callbacks):
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks[{i}] must be a bp.Callback, got {type(callback).__name__}")
        if checkpoint is not None:
            checkpoint = output_path("fit: checkpoint", checkpoint)    # the folder made now, not after an epoch
        _check_binding(model, optimizer, scheduler)
        X, y = _prepare(model, loss_fn, X, y, "fit")
        _check_batches(model, X.shape[0], batch_size)
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            validation = _prepare(model, loss_fn, *validation_data, "validation_data")
        counters = _resolve_metrics(metrics, loss_fn)
        rng = _init.host_rng(seed)
    except Exception as error:  # noqa: BLE001 (re-raised by plan.begin, on this rank and the others)
        setup_error = error
    plan.begin(setup_error, model, optimizer, X, {"epochs": epochs, "batch_size": batch_size, "seed": seed,
                                                  "shuffle": shuffle, "checkpoint_every": checkpoint_every})
    history, start_epoch = plan.resume(lambda: _resume(resume, model, optimizer, scheduler, rng, epochs),
                                       model, optimizer, scheduler, rng)
    if not plan.is_root:       # only the root writes files (checkpoints, CSV logs)
        callbacks = [c for c in callbacks if not getattr(c, "root_only", False)]

    def save(completed_epochs):
        if plan.is_root:
            save_checkpoint(checkpoint, model=model, optimizer=optimizer, epoch=completed_epochs,
                            history=history, rng_state=rng.bit_generator.state, scheduler=scheduler)

    for callback in callbacks:
        callback.set_context(model, optimizer, history, loss_fn)
    bar = _progress_bar(epochs, progress and plan.is_root, start_epoch)
    write, held = _notice_writer(bar)
    for callback in callbacks:
        callback._write = write
    # y was checked once above; the loss still checks the first batch's predictions (BCELoss: a
    # logits model gives values outside [0, 1]), then _run_epoch turns its per-call checks off
    checked_targets, loss_fn.check_targets = loss_fn.check_targets, True     # the first batch: one sync
    model.stop_training = False
    model.train()
    named = model.named_parameters()
    last_good = _LastGoodState(model, optimizer)
    try:
        with _InterruptFlag() as interrupt, model.device.activate(), model.device.quiet_floating_point():
            for callback in callbacks:
                callback.on_train_begin()
            for epoch in range(start_epoch, epochs):
                for callback in callbacks:
                    callback.on_epoch_begin(epoch)
                rng_at_start = rng.bit_generator.state
                logs, grad_norms, weight_norms = _run_epoch(model, loss_fn, optimizer, X, y, batch_size,
                                                            rng if shuffle else None, counters, callbacks,
                                                            interrupt, epoch, history, named, last_good, plan)
                if logs is None:                       # interrupted: the partial epoch is not recorded
                    history.interrupted = True
                    if checkpoint is not None:         # roll back to the epoch boundary, then save it
                        last_good.restore()
                        rng.bit_generator.state = rng_at_start
                        save(epoch)
                    break
                if validation is not None:
                    scores = _evaluate_prepared(model, loss_fn, *validation, 1024, counters)
                    logs.update({f"val_{k}": v for k, v in scores.items()})
                logs["lr"] = optimizer.lr
                history._record(epoch, logs, grad_norms, weight_norms)
                if scheduler is not None:
                    _step_scheduler(scheduler, logs)
                interrupted = plan.any(interrupt.raised)
                if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs
                                               or interrupted):
                    save(epoch + 1)
                for callback in callbacks:
                    callback.on_epoch_end(epoch, logs)
                notes = [callback._progress_note for callback in callbacks if callback._progress_note]
                if notes:
                    bar.set_description_str(notes[-1], refresh=False)
                    for callback in callbacks:
                        callback._progress_note = None
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
                bar.update(1)
                if plan.any(model.stop_training) or interrupted:
                    history.interrupted = interrupted
                    break
            for callback in callbacks:
                callback.on_train_end()
    finally:
        loss_fn.check_targets = checked_targets
        bar.close()
        for callback in callbacks:
            callback._write = None
        for text in held:                      # notices held back while a bar without a terminal drew
            print(text)
    if history.interrupted and plan.is_root:
        print(f"fit: interrupted; returning the history of {len(history.epochs)} completed epochs"
              + (f" (saved to {checkpoint})" if checkpoint is not None else ""))
    return history


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


def _run_epoch(model, loss_fn, optimizer, X, y, batch_size, rng, counters, callbacks, interrupt,
               epoch, history, named, last_good, plan):
    xp = model.xp
    n = X.shape[0]
    order = model.device.asarray(rng.permutation(n)) if rng is not None else None
    last_good.take()
    weighted_losses, counts = [], {name: [] for name in counters}
    items = dict.fromkeys(counters, 0)
    zero = xp.zeros((), dtype=optimizer.params[0].data.dtype, device=model.device.device)
    for batch, global_start in enumerate(range(0, n, batch_size)):
        global_stop = min(n, global_start + batch_size)
        start, stop = plan.shard(global_start, global_stop)    # this rank's part (all of it when alone)
        if order is None:
            x_batch, y_batch = X[start:stop, ...], y[start:stop, ...]
        else:
            index = order[start:stop]
            x_batch, y_batch = xp.take(X, index, axis=0), xp.take(y, index, axis=0)
        for callback in callbacks:
            callback.on_batch_begin(batch)
        optimizer.zero_grad()
        loss = zero                                     # an empty shard adds zero gradient and zero loss
        if stop > start:
            out = model.forward(x_batch)
            loss = loss_fn.forward(out, y_batch)
            loss_fn.check_targets = False               # one checked batch is enough (no sync per step)
            model.backward_params(loss_fn.backward())   # parameter gradients; dL/dX is not needed
        stop_now = plan.reduce_gradients(optimizer.params, stop - start, global_stop - global_start,
                                         interrupt.raised)
        optimizer.step()
        weighted_losses.append(loss * (stop - start))
        for name, count in counters.items():
            correct, total = count(xp, out, y_batch) if stop > start else (zero, 0)
            counts[name].append(correct)
            items[name] += total
        for callback in callbacks:
            callback.on_batch_end(batch, {"loss": loss})
        if stop_now or (plan.alone and interrupt.raised):   # ranks stop at the batch whose all-reduce said so
            return None, None, None
    # One device-to-host transfer for everything this epoch measured: first the sums that add
    # over ranks (losses, metric counts and totals; one small all-reduce), then the norms.
    values = weighted_losses + [c for name in counters for c in counts[name]]
    values += [xp.asarray(float(items[name]), dtype=zero.dtype, device=model.device.device) for name in counters]
    n_summed = len(values)
    values += [_squared_norm(xp, p.grad) for _, p in named] + [_squared_norm(xp, p.data) for _, p in named]
    extras = [callback._epoch_device_values(X, y, epoch) for callback in callbacks]   # GradientHealth's
    for extra in extras:                                      # (per rank, not summed)
        values.extend(extra)
    host = model.device.to_numpy(xp.stack(values)).astype("float64")     # all 0-d, in the model's dtype
    host[:n_summed] = plan.sum_over_ranks(host[:n_summed])
    n_batches, n_params = len(weighted_losses), len(named)
    losses = host[:n_batches]
    names = [name for name, _ in named]
    norms = host[n_summed:n_summed + 2 * n_params] ** 0.5
    if not all(math.isfinite(v) for v in losses):
        _diverged(optimizer, epoch, losses, batch_size, n, last_good, history,
                  dict(zip(names, norms[:n_params].tolist())))
    logs = {"loss": float(losses.sum()) / n}
    totals = host[n_summed - len(counters):n_summed]
    for i, name in enumerate(counters):
        offset = n_batches * (i + 1)
        logs[name] = float(host[offset:offset + n_batches].sum()) / float(totals[i])
    offset = n_summed + 2 * n_params
    for callback, extra in zip(callbacks, extras):
        callback._epoch_host_values(host[offset:offset + len(extra)].tolist())
        offset += len(extra)
    return logs, dict(zip(names, norms[:n_params].tolist())), dict(zip(names, norms[n_params:].tolist()))


def _squared_norm(xp, array):
    """sum of squares as one dot product of the flattened array (a 0-d array, no sync)."""
    flat = xp.reshape(array, (-1,))
    return flat @ flat


def _diverged(optimizer, epoch, weighted_losses, batch_size, n, last_good, history, grad_norms):
    bad = next(i for i, v in enumerate(weighted_losses) if not math.isfinite(v))
    last_finite = None
    if bad > 0:
        size = min(batch_size, n - (bad - 1) * batch_size)
        last_finite = f"{weighted_losses[bad - 1] / size:.6g} at batch {bad}"
    elif history.history.get("loss"):
        last_finite = f"{history['loss'][-1]:.6g} (mean of epoch {epoch})"
    last_good.restore()
    culprit = blew_up_first(history, grad_norms)
    raise DivergenceError(
        f"training diverged: the loss became {weighted_losses[bad]} at epoch {epoch + 1}, batch {bad + 1}; "
        f"last finite loss: {last_finite or 'none'}. The model keeps its parameters from the start of "
        f"epoch {epoch + 1}, the last ones known to be finite. Hint: "
        f"{culprit + '; ' if culprit else ''}lower the learning rate "
        f"(now {optimizer.lr:g}) or clip gradients (bp.optim.clip_grad_norm_).", history)


class _LastGoodState:
    """The model's parameters and buffers (``Layer._snapshot``) and the optimizer's state, as
    device copies taken at each epoch start: what divergence and Ctrl-C roll back to."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer

    def take(self):
        self.model_state = self.model._snapshot()
        self.optimizer_state = self.optimizer._snapshot_state()

    def restore(self):
        self.model._restore(self.model_state)
        self.optimizer.state = self.optimizer_state


def _step_scheduler(scheduler, logs):
    if isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(logs.get("val_loss", logs["loss"]))
    else:
        scheduler.step()


class _NoProgress:
    """Stands in for the bar when progress=False (tqdm is not even imported)."""

    def set_postfix(self, *args, **kwargs):
        pass

    def update(self, n=1):
        pass

    def set_description_str(self, *args, **kwargs):
        pass

    def close(self):
        pass


def _notice_writer(bar):
    """(write, held): where callbacks' notices go while the bar is drawn.

    Without a bar: print. On a terminal: tqdm's write, which clears the bar, prints the line and
    draws the bar again below it. Without a terminal (a log file, CI, a pipe) the bar's line has
    no end until it closes, so a notice printed then would be glued to it: the notices are held
    and printed after the bar's last line.
    """
    if isinstance(bar, _NoProgress):
        return print, []
    stream = getattr(bar, "fp", None)
    try:
        terminal = bool(stream.isatty())
    except (AttributeError, ValueError):       # no isatty, or a closed stream
        terminal = False
    if terminal:
        return bar.write, []
    held = []
    return held.append, held


def _progress_bar(epochs, enabled, start=0):
    if not enabled:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=epochs, initial=start, unit="epoch", dynamic_ncols=True)
