"""fit: the training loop, written once for every backend (evaluate and predict: evaluate.py).

The data move to the model's device once per fit. Each epoch draws a seeded
permutation on the host (one small index transfer), and minibatches are taken
on the device with ``xp.take``. Per-batch losses, metric counts and the
per-parameter norms stay on the device until the end of the epoch, where one
transfer brings them to the host: nothing else syncs a GPU inside the loop.

Read top to bottom: ``fit`` checks its arguments (``_check_arguments``, one record of what the
loop reads), resumes, then ``_Loop`` trains epoch by epoch; ``_CtrlC`` (interrupt.py) is
everything fit does about Ctrl-C, ``_EpochSums`` the device values one epoch adds up under their names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..checkpoint import save_checkpoint
from ..optim import ReduceLROnPlateau
from .evaluate import _evaluate_prepared
from .fit_arguments import _Arguments, _check_arguments, _Run
from .gradient_health import blew_up_first
from .history import DivergenceError, History
from .inputs import _FirstBatchChecks
from .interrupt import _CtrlC
from .plan import OneProcess
from .resume import _resume
from .snapshot import restore, snapshot


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
    given = _Arguments(model, loss_fn, optimizer, X, y, epochs, batch_size, shuffle, seed, validation_data,
                       metrics, callbacks, scheduler, checkpoint, checkpoint_every)
    run, setup_error = None, None
    try:     # with several ranks, an error here must reach the others (plan.begin), or they would hang
        run = _check_arguments(given)
    except Exception as error:  # noqa: BLE001 (re-raised by plan.begin, on this rank and the others)
        setup_error = error
    plan.begin(setup_error, model, optimizer, run.X if run is not None else X, given.settings())
    history, start_epoch = plan.resume(lambda: _resume(resume, model, optimizer, scheduler, run.rng, run.epochs),
                                       model, optimizer, scheduler, run.rng)
    loop = _Loop(run, plan, history)
    bar = _progress_bar(run.epochs, progress and plan.is_root, start_epoch)
    write, held = _notice_writer(bar)
    for callback in loop.callbacks:
        callback._write = write
    model.stop_training = False
    model.train()
    try:
        # y was checked once where it entered; the loss still checks the first batch's predictions
        # (BCELoss: a logits model gives values outside [0, 1]), then no value checks per step
        with _CtrlC() as ctrl_c, _FirstBatchChecks(loss_fn) as checks, model.device.activate(), \
                model.device.quiet_floating_point():
            loop.train(start_epoch, ctrl_c, checks, bar)
    finally:
        bar.close()
        for callback in loop.callbacks:
            callback._write = None
        for text in held:                      # notices held back while a bar without a terminal drew
            print(text)
    ctrl_c.report(history, run.checkpoint, plan.is_root)
    return history


# -- the loop -----------------------------------------------------------------------------------
class _Loop:
    """One fit call's training: epochs of batches, what each epoch records, the rollbacks."""

    def __init__(self, run: _Run, plan, history: History):
        self.run, self.plan, self.history = run, plan, history
        # only the root writes files (checkpoints, CSV logs)
        self.callbacks = [c for c in run.callbacks if plan.is_root or not getattr(c, "root_only", False)]
        for callback in self.callbacks:
            callback.set_context(run.model, run.optimizer, history, run.loss_fn)
        self.named = run.model.named_parameters()
        self.last_good = _LastGoodState(run.model, run.optimizer)

    def train(self, start_epoch, ctrl_c, checks, bar):
        """Epochs from ``start_epoch`` until ``epochs``, an early stop, or Ctrl-C."""
        for callback in self.callbacks:
            callback.on_train_begin()
        for epoch in range(start_epoch, self.run.epochs):
            for callback in self.callbacks:
                callback.on_epoch_begin(epoch)
            rng_at_start = self.run.rng.bit_generator.state
            record = self._epoch(epoch, ctrl_c, checks)
            if record is None:
                ctrl_c.drop_epoch(self, epoch, rng_at_start)
                break
            if self._finish_epoch(epoch, record, ctrl_c, bar):
                break
        for callback in self.callbacks:
            callback.on_train_end()

    def save(self, completed_epochs):
        """Write fit's checkpoint (the root alone writes files)."""
        run = self.run
        if self.plan.is_root:
            save_checkpoint(run.checkpoint, model=run.model, optimizer=run.optimizer, epoch=completed_epochs,
                            history=self.history, rng_state=run.rng.bit_generator.state, scheduler=run.scheduler)

    def _epoch(self, epoch, ctrl_c, checks):
        """Train one epoch; its :class:`_EpochRecord`, or None when Ctrl-C stopped it midway."""
        run, plan, callbacks = self.run, self.plan, self.callbacks
        model, loss_fn, optimizer, X, y, batch_size = (run.model, run.loss_fn, run.optimizer, run.X, run.y,
                                                       run.batch_size)
        xp, n = model.xp, X.shape[0]
        order = model.device.asarray(run.rng.permutation(n)) if run.shuffle else None
        self.last_good.take()
        sums = _EpochSums(xp, run.counters, xp.zeros((), dtype=optimizer.params[0].data.dtype,
                                                     device=model.device.device))
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
            out, loss = None, sums.zero                 # an empty shard adds zero gradient and zero loss
            if stop > start:
                out = model.forward(x_batch)
                loss = loss_fn.forward(out, y_batch)
                if not checks.done:
                    checks.first_batch_done()
                model.backward_params(loss_fn.backward())   # parameter gradients; dL/dX is not needed
            agreed_stop = plan.reduce_gradients(optimizer.params, stop - start, global_stop - global_start,
                                                ctrl_c.pressed)
            optimizer.step()
            sums.add_batch(loss, stop - start, out, y_batch)
            for callback in callbacks:
                callback.on_batch_end(batch, {"loss": loss})
            if ctrl_c.stops_batches(plan, agreed_stop):
                return None
        return self._epoch_record(epoch, sums)

    def _epoch_record(self, epoch, sums):
        """The epoch's numbers on the host (one transfer); a DivergenceError if the loss was not finite."""
        run = self.run
        n = run.X.shape[0]
        extras = [callback._epoch_device_values(run.X, run.y, epoch) for callback in self.callbacks]
        host = sums.to_host(run.model.device, self.plan, self.named, extras)   # GradientHealth's extras
        names = [name for name, _ in self.named]
        grad_norms = dict(zip(names, (host["grad_squares"] ** 0.5).tolist()))
        if not all(math.isfinite(v) for v in host["weighted_losses"]):
            self._diverged(epoch, host["weighted_losses"], grad_norms)
        logs = {"loss": float(host["weighted_losses"].sum()) / n}
        for i, name in enumerate(run.counters):
            logs[name] = float(host[f"correct {name}"].sum()) / float(host["metric items"][i])
        for i, callback in enumerate(self.callbacks):
            callback._epoch_host_values(host[f"callback {i}"].tolist())
        return _EpochRecord(logs, grad_norms, dict(zip(names, (host["weight_squares"] ** 0.5).tolist())))

    def _finish_epoch(self, epoch, record, ctrl_c, bar) -> bool:
        """Validation, the History, the scheduler, the checkpoint, callbacks, the bar; True: stop now."""
        run, logs = self.run, record.logs
        if run.validation is not None:
            scores = _evaluate_prepared(run.model, run.loss_fn, *run.validation, 1024, run.counters)
            logs.update({f"val_{k}": v for k, v in scores.items()})
        logs["lr"] = run.optimizer.lr
        self.history._record(epoch, logs, record.grad_norms, record.weight_norms)
        if run.scheduler is not None:
            _step_scheduler(run.scheduler, logs)
        interrupted = ctrl_c.stops_after_epoch(self.plan)
        if run.checkpoint is not None and ((epoch + 1) % run.checkpoint_every == 0 or epoch + 1 == run.epochs
                                           or interrupted):
            self.save(epoch + 1)
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)
        notes = [callback._progress_note for callback in self.callbacks if callback._progress_note]
        if notes:
            bar.set_description_str(notes[-1], refresh=False)
            for callback in self.callbacks:
                callback._progress_note = None
        bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
        bar.update(1)
        if self.plan.any(run.model.stop_training) or interrupted:
            self.history.interrupted = interrupted
            return True
        return False

    def _diverged(self, epoch, weighted_losses, grad_norms):
        run, history = self.run, self.history
        n, batch_size = run.X.shape[0], run.batch_size
        bad = next(i for i, v in enumerate(weighted_losses) if not math.isfinite(v))
        last_finite = None
        if bad > 0:
            size = min(batch_size, n - (bad - 1) * batch_size)
            last_finite = f"{weighted_losses[bad - 1] / size:.6g} at batch {bad}"
        elif history.history.get("loss"):
            last_finite = f"{history['loss'][-1]:.6g} (mean of epoch {epoch})"
        self.last_good.restore()
        culprit = blew_up_first(history, grad_norms)
        raise DivergenceError(
            f"training diverged: the loss became {weighted_losses[bad]} at epoch {epoch + 1}, batch {bad + 1}; "
            f"last finite loss: {last_finite or 'none'}. The model keeps its parameters from the start of "
            f"epoch {epoch + 1}, the last ones known to be finite. Hint: "
            f"{culprit + '; ' if culprit else ''}lower the learning rate "
            f"(now {run.optimizer.lr:g}) or clip gradients (bp.optim.clip_grad_norm_).", history)


@dataclass
class _EpochRecord:
    """What one epoch adds to the History."""

    logs: dict              # "loss", each metric (validation and "lr" are added after)
    grad_norms: dict        # parameter name -> L2 norm of its gradient after the last batch
    weight_norms: dict      # parameter name -> L2 norm of its values


class _EpochSums:
    """The device values one epoch adds up, kept under their names until the epoch's one transfer.

    Per batch: the batch loss times its size, and for each metric the count of correct items
    (0-d device arrays) and the number of items (a host int).
    """

    def __init__(self, xp, counters, zero):
        self.xp, self.counters, self.zero = xp, counters, zero
        self.weighted_losses = []
        self.correct = {name: [] for name in counters}
        self.items = dict.fromkeys(counters, 0)

    def add_batch(self, loss, size, out, target):
        self.weighted_losses.append(loss * size)
        for name, count in self.counters.items():
            correct, items = count(self.xp, out, target) if size else (self.zero, 0)
            self.correct[name].append(correct)
            self.items[name] += items

    def to_host(self, device, plan, named, extras) -> dict:
        """{name: float64 host array} of the sums (added over ranks by ``plan``), the parameters'
        squared norms ("grad_squares", "weight_squares") and each callback's extras ("callback i").

        One device-to-host transfer and one small all-reduce (the sums) for the whole epoch.
        """
        xp, zero = self.xp, self.zero
        summed = {"weighted_losses": self.weighted_losses,
                  **{f"correct {name}": values for name, values in self.correct.items()},
                  "metric items": [xp.asarray(float(n), dtype=zero.dtype, device=device.device)
                                   for n in self.items.values()]}
        apart = {"grad_squares": [_squared_norm(xp, p.grad) for _, p in named],
                 "weight_squares": [_squared_norm(xp, p.data) for _, p in named],
                 **{f"callback {i}": list(extra) for i, extra in enumerate(extras)}}   # per rank
        groups = {**summed, **apart}
        host = device.to_numpy(xp.stack([v for values in groups.values() for v in values])).astype("float64")
        n_summed = sum(len(values) for values in summed.values())
        host[:n_summed] = plan.sum_over_ranks(host[:n_summed])
        found, start = {}, 0
        for name, values in groups.items():
            found[name] = host[start:start + len(values)]
            start += len(values)
        return found


def _squared_norm(xp, array):
    """sum of squares as one dot product of the flattened array (a 0-d array, no sync)."""
    flat = xp.reshape(array, (-1,))
    return flat @ flat


class _LastGoodState:
    """The model's parameters and buffers (:func:`snapshot`) and the optimizer's state, as
    device copies taken at each epoch start: what divergence and Ctrl-C roll back to."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer

    def take(self):
        self.model_state = snapshot(self.model)
        self.optimizer_state = self.optimizer._snapshot_state()

    def restore(self):
        restore(self.model, self.model_state)
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
