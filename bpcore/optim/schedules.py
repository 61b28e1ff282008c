"""Learning-rate schedules, stepped once per epoch, with ``torch.optim.lr_scheduler``'s values.

    opt = bp.optim.SGD(model.parameters(), lr=0.1)
    sched = bp.optim.StepLR(opt, step_size=30, gamma=0.1)
    for epoch in range(100):
        ...train one epoch...
        sched.step()                     # sets opt.lr for the next epoch

``bp.fit(..., scheduler=sched)`` does the stepping for you (ReduceLROnPlateau gets
the validation loss when there is one, else the training loss).
"""
from __future__ import annotations

import math

from .._checks import check_int, check_number


def _number(name, *bounds, **open_ends):
    return lambda self, value: check_number(type(self).__name__, name, value, *bounds, **open_ends)


def _int(name, minimum=1):
    return lambda self, value: check_int(type(self).__name__, name, value, minimum=minimum)


class _CheckedSettings:
    """Settings checked on every assignment: the constructor's checks hold for ``sched.gamma = ...``
    after construction too, and for a loaded state (``_check_state``), so a schedule never holds a
    value that would fail later inside ``step()`` (a str gamma, a step_size of 0)."""

    # setting name -> rule(schedule, value) giving the checked value or raising ValueError
    _rules: dict = {}

    def __setattr__(self, name, value):
        rule = self._rules.get(name)
        if rule is not None:
            value = rule(self, value)
        object.__setattr__(self, name, value)


class LRScheduler(_CheckedSettings):
    """Base class: ``lr_at(epoch)`` gives the learning rate for an epoch count."""

    _rules = {"base_lr": _number("base_lr"), "last_epoch": _int("last_epoch", minimum=0)}

    def __init__(self, optimizer):
        if not hasattr(optimizer, "lr") or not hasattr(optimizer, "step"):
            raise TypeError(f"{type(self).__name__}: expected a bpcore optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_epoch = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr

    def step(self):
        """Advance one epoch and set the optimizer's lr."""
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def get_last_lr(self) -> list:
        """[the current learning rate] (a list, as in PyTorch)."""
        return [self.optimizer.lr]

    def state_dict(self) -> dict:
        """{"type": class name, and every setting and counter} (the optimizer is not included)."""
        return {"type": type(self).__name__, **{k: v for k, v in vars(self).items() if k != "optimizer"}}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` gave; a state of another schedule class, with other
        entries or values of the wrong type is refused and changes nothing."""
        self._write_state(self._check_state(state))

    def _check_state(self, state) -> dict:
        name = type(self).__name__
        if not isinstance(state, dict):
            raise TypeError(f"{name}.load_state_dict expects the dict made by state_dict(), "
                            f"got {type(state).__name__}")
        saved_type = state.get("type", name)
        if saved_type != name:
            raise ValueError(f"{name}.load_state_dict: the state is of a {str(saved_type)[:60]}, not a {name}")
        values = {k: v for k, v in state.items() if k != "type"}
        own = {k: v for k, v in vars(self).items() if k != "optimizer"}
        if set(values) != set(own):
            raise KeyError(f"{name}.load_state_dict: entries {sorted(map(str, values))[:20]} do not match "
                           f"a {name}'s {sorted(own)}")
        for key, value in values.items():
            current = own[key]
            if isinstance(current, bool) or isinstance(current, str) or current is None:
                fits = type(value) is type(current) or (current is None and value is None)
            elif isinstance(current, int):
                fits = isinstance(value, int) and not isinstance(value, bool) and (key != "last_epoch" or value >= 0)
            else:                                  # float settings (inf allowed: best before any epoch)
                fits = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
            if not fits:
                raise ValueError(f"{name}.load_state_dict: {key} must be like {current!r} "
                                 f"({type(current).__name__}), got {str(value)[:40]}")
            rule = self._rules.get(key)
            if rule is not None:
                try:
                    rule(self, value)                # the constructor's rule, on the loaded value
                except ValueError as error:
                    raise ValueError(f"{name}.load_state_dict: {error}") from None
        return values

    def _write_state(self, values: dict) -> None:
        for key, value in values.items():
            setattr(self, key, value)


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    _rules = {**LRScheduler._rules, "step_size": _int("step_size"), "gamma": _number("gamma")}

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = step_size           # each assignment is checked (_rules)
        self.gamma = gamma
        super().__init__(optimizer)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """lr = base_lr * gamma ** epoch."""

    _rules = {**LRScheduler._rules, "gamma": _number("gamma")}

    def __init__(self, optimizer, gamma: float):
        self.gamma = gamma
        super().__init__(optimizer)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** epoch


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2."""

    _rules = {**LRScheduler._rules, "T_max": _int("T_max"), "eta_min": _number("eta_min")}

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer)

    def lr_at(self, epoch):
        # the weight (1 + cos) / 2 in [0, 1] first: (base_lr - eta_min) * 2 could overflow to inf for
        # a huge eta_min; halving is exact, so the values are PyTorch's order's, bit for bit
        weight = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return self.eta_min + (self.base_lr - self.eta_min) * weight


class LinearLR(LRScheduler):
    """Linear warm-up: the factor goes from start_factor to end_factor over total_iters epochs.

    lr = base_lr * (start_factor + (end_factor - start_factor) * min(epoch, total_iters) / total_iters)
    """

    def _start_factor_rule(self, value):
        value = check_number("LinearLR", "start_factor", value, 0.0, 1.0)
        if value == 0:
            raise ValueError("LinearLR: start_factor must be > 0 (as in PyTorch)")
        return value

    _rules = {**LRScheduler._rules, "start_factor": _start_factor_rule, "end_factor": _number("end_factor", 0.0, 1.0),
              "total_iters": _int("total_iters")}

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5):
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer)

    def lr_at(self, epoch):
        progress = min(epoch, self.total_iters) / self.total_iters
        return self.base_lr * (self.start_factor + (self.end_factor - self.start_factor) * progress)


def _choice(name, choices):
    def rule(self, value):
        if value not in choices:
            raise ValueError(f"{type(self).__name__}: {name} must be {' or '.join(map(repr, choices))}, got {value!r}")
        return value
    return rule


def _factor_rule(self, value):
    value = check_number("ReduceLROnPlateau", "factor", value, 0.0, 1.0)
    if value == 1.0:
        raise ValueError("ReduceLROnPlateau: factor must be < 1")
    return value


class ReduceLROnPlateau(_CheckedSettings):
    """Multiply the lr by ``factor`` when a metric stops improving for ``patience`` epochs (as PyTorch).

    ``step(metric)`` once per epoch. Improvement means metric < best * (1 - threshold) in
    mode "min" with threshold_mode "rel" (mode "max" and "abs" as in PyTorch). After a
    reduction, ``cooldown`` epochs pass before counting again; lr never goes below min_lr.
    """

    _rules = {"mode": _choice("mode", ("min", "max")), "threshold_mode": _choice("threshold_mode", ("rel", "abs")),
              "factor": _factor_rule, "patience": _int("patience", minimum=0),
              "cooldown": _int("cooldown", minimum=0), "threshold": _number("threshold"),
              "min_lr": _number("min_lr"), "eps": _number("eps"),
              "num_bad_epochs": _int("num_bad_epochs", minimum=0),
              "cooldown_counter": _int("cooldown_counter", minimum=0), "last_epoch": _int("last_epoch", minimum=0)}

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float = 0.0, eps: float = 1e-8):
        self.mode = mode                     # each assignment is checked (_rules)
        self.threshold_mode = threshold_mode
        self.factor = factor
        self.patience, self.cooldown = patience, cooldown
        self.optimizer = optimizer
        self.threshold = threshold
        self.min_lr = min_lr
        self.eps = eps
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def _is_better(self, value):
        if self.mode == "min":
            bound = self.best * (1 - self.threshold) if self.threshold_mode == "rel" else self.best - self.threshold
            return value < bound
        bound = self.best * (1 + self.threshold) if self.threshold_mode == "rel" else self.best + self.threshold
        return value > bound

    def step(self, metric):
        """Record this epoch's metric (a number or 0-d array) and reduce the lr if it plateaued."""
        value = float(metric)
        if not math.isfinite(value):
            raise ValueError(f"ReduceLROnPlateau: the metric is {value}")
        self.last_epoch += 1
        if self._is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new_lr = max(self.optimizer.lr * self.factor, self.min_lr)
            if self.optimizer.lr - new_lr > self.eps:
                self.optimizer.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def get_last_lr(self) -> list:
        return [self.optimizer.lr]

    state_dict = LRScheduler.state_dict
    load_state_dict = LRScheduler.load_state_dict
    _check_state = LRScheduler._check_state
    _write_state = LRScheduler._write_state
