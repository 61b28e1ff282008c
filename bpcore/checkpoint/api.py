"""Saving and loading models and training state: the public side of the checkpoint format.

``save``/``load`` handle a model alone; ``save_checkpoint``/``read_checkpoint`` add the
optimizer, the epoch, the history, the shuffling RNG and the scheduler.

Loading is two steps: :func:`prepare_load` reads and checks the whole file (weights,
optimizer state, epoch, history, random streams) and changes nothing; ``.apply()`` then
writes it all. ``bp.load_checkpoint`` and ``fit(resume=)`` check the rest (the History, the
shuffling RNG, the scheduler) between the two, so a refused file changes nothing at all.
"""
from __future__ import annotations

import json
import warnings

import numpy as np

import backends

from ..nn.module import _MODEL_WRITER, Layer
from ..nn.state import check_state, write_state
from .architecture import _comparable, architecture, build, check_rebuilds, check_spec
from .format import CheckpointError, cap, file_faults, quote, read_file, write_file

_HISTORY_SECTIONS = ("history", "grad_norms", "weight_norms")
_OLD_STREAM_KINDS = ("host", "torch", "cupy")   # the per-library mask streams, before the counter-based one


class CheckpointWarning(UserWarning):
    """A checkpoint loaded, but not all of it could be used (an older file's random stream)."""


def save(model: Layer, path) -> None:
    """Save a model (architecture, parameters, buffers) to ``path`` atomically."""
    save_checkpoint(path, model=model)


def load(path, device="cpu") -> Layer:
    """Rebuild the model saved in ``path`` (by ``model.save`` or ``save_checkpoint``) on ``device``."""
    return read_checkpoint(path, device=device)["model"]


def save_checkpoint(path, model: Layer, optimizer=None, epoch=None, history=None, rng_state=None,
                    scheduler=None) -> None:
    """Save everything needed to resume training, atomically (the folder is created if missing).

    Args:
        model: its architecture, parameters and buffers.
        optimizer: its hyper-parameters and buffers (momentum, Adam moments).
        epoch: epochs completed.
        history: a ``bp.History`` (or None); its numbers go into the payload as float64
            arrays, so the header does not grow with the number of epochs.
        rng_state: the shuffling Generator's ``bit_generator.state`` (JSON-able).
        scheduler: a schedule's ``state_dict()``.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"save_checkpoint: model must be a bpcore Layer, got {type(model).__name__}")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0):
        raise ValueError(f"save_checkpoint: epoch must be an int >= 0, got {epoch!r}")
    check_rebuilds(model)          # a file its loader could not rebuild is never written
    arrays = {f"model/{name}": value for name, value in model.state_dict().items()}
    streams = {path: layer.random_state() for path, layer in model.named_modules()
               if hasattr(layer, "random_state") and layer.random_state() is not None}
    meta = {"architecture": architecture(model), "dtype": model.dtype, "epoch": epoch, "random_streams": streams,
            "rng_state": rng_state, "scheduler": scheduler.state_dict() if scheduler is not None else None}
    if optimizer is not None:
        state = optimizer.state_dict()
        scalars = {}
        for index, buffers in state["state"].items():
            for key, value in buffers.items():
                if hasattr(value, "shape"):
                    arrays[f"optimizer/{index}/{key}"] = value
                else:
                    scalars.setdefault(str(index), {})[key] = value
        meta["optimizer"] = {"type": state["type"], "hyper": state["hyper"], "scalars": scalars}
    if history is not None:
        if not callable(getattr(history, "state_dict", None)):
            raise TypeError(f"save_checkpoint: history must be a bp.History, got {type(history).__name__}")
        recorded = history.state_dict()
        try:                                 # the loader's rule, on the values as they are (before any cast)
            check_history_data(recorded)
        except (TypeError, ValueError) as error:
            raise ValueError(f"save_checkpoint: not written, since load_checkpoint would refuse the file: "
                             f"unusable history: {cap(str(error), 300)}") from None
        arrays["history/epochs"] = np.asarray(recorded["epochs"], dtype=np.int64)
        keys = {}
        for section in _HISTORY_SECTIONS:
            keys[section] = list(recorded[section])
            for index, key in enumerate(keys[section]):
                arrays[f"history/{section}/{index}"] = np.asarray(recorded[section][key], dtype=np.float64)
        meta["history"] = {"in_payload": keys}
        if recorded.get("health"):          # bp.GradientHealth's record: small, kept as JSON
            meta["history"]["health"] = recorded["health"]
    _check_loadable(path, arrays, meta, model, optimizer)
    write_file(path, arrays, meta)


def _check_loadable(path, arrays, meta, model, optimizer) -> None:
    """Run the loader's own checks on what is about to be written, so that a save never writes a
    file that ``load_checkpoint`` would refuse (a History with more values than epochs, NaN
    weights, an optimizer state or a shuffling RNG state the loader cannot use).

    Raises:
        ValueError: naming what the loader would refuse; nothing is written.
    """
    header = json.loads(json.dumps(meta, allow_nan=True))     # as the file will give it back
    try:
        with file_faults(path):
            _prepare(path, arrays, header, model, optimizer, None)
            _check_rng_state(path, meta.get("rng_state"))
    except CheckpointError as error:
        raise ValueError(f"save_checkpoint: not written, since load_checkpoint would refuse the file: "
                         f"{cap(str(error), 500)}") from None


def _check_rng_state(path, state) -> None:
    """A shuffling RNG state that NumPy's bit generator of its name accepts (None: none saved)."""
    if state is None:
        return
    name = state.get("bit_generator") if isinstance(state, dict) else None
    maker = getattr(np.random, name, None) if isinstance(name, str) else None
    if not (isinstance(maker, type) and issubclass(maker, np.random.BitGenerator)):
        raise CheckpointError(f"{path}: the shuffling RNG state names no NumPy bit generator: {quote(state)}")
    try:
        maker().state = state
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise CheckpointError(f"{path}: unusable shuffling RNG state ({cap(str(error))})") from None


def read_checkpoint(path, model: Layer | None = None, optimizer=None, device=None) -> dict:
    """Read a checkpoint; returns {"model", "epoch", "history", "rng_state", "scheduler", "optimizer"}.

    With ``model`` given, its parameters are replaced (after every check: a refused file
    changes nothing); otherwise the model is rebuilt from the file's architecture, on
    ``device`` (default "cpu"). With ``optimizer`` given, its state is restored too.
    "history" is plain data here (``bp.load_checkpoint`` turns it into a ``bp.History``).
    """
    return prepare_load(path, model=model, optimizer=optimizer, device=device).apply()


class PreparedLoad:
    """A checkpoint read and checked, not yet written into the model and optimizer."""

    def __init__(self, path, model, optimizer, header, model_state, optimizer_state, streams):
        self.path, self.model, self.optimizer = path, model, optimizer
        self.epoch, self.rng_state = header.get("epoch"), header.get("rng_state")
        self.scheduler, self.history = header.get("scheduler"), header.get("history")
        self._model_state, self._optimizer_state, self._streams = model_state, optimizer_state, streams
        self.optimizer_state = optimizer_state[2] if optimizer_state is not None else None

    def apply(self) -> dict:
        """Write the checked state; returns what :func:`read_checkpoint` returns."""
        write_state(self.model, self._model_state)
        if self.optimizer is not None:
            self.optimizer._write_state(self._optimizer_state[:2])
        layers = dict(self.model.named_modules())
        for layer_path, state in self._streams.items():
            layers[layer_path].set_random_state(state)
        return {"model": self.model, "epoch": self.epoch, "history": self.history,
                "rng_state": self.rng_state, "scheduler": self.scheduler, "optimizer": self.optimizer_state}


def prepare_load(path, model: Layer | None = None, optimizer=None, device=None) -> PreparedLoad:
    """Read ``path`` and check everything in it against ``model``/``optimizer``; changes nothing."""
    if model is not None and device is not None:
        raise ValueError("load_checkpoint: give either model= (loaded in place, on its device) or device=")
    if model is not None and not isinstance(model, Layer):
        raise TypeError(f"load_checkpoint: model must be a bpcore Layer, got {type(model).__name__}")
    if device is not None:
        device = _target_device(device)           # before the file: a wrong name is not the file's fault
    arrays, header = read_file(path)
    with file_faults(path):
        return _prepare(path, arrays, header, model, optimizer, device)


def _prepare(path, arrays, header, model, optimizer, device):
    state = {name[len("model/"):]: value for name, value in arrays.items() if name.startswith("model/")}
    spec = header.get("architecture")
    check_spec(spec, path)
    epoch = header.get("epoch")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0):
        raise CheckpointError(f"{path}: the epoch must be an int >= 0 (or null), got {quote(epoch)}")
    dtype = header.get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        raise CheckpointError(f"{path}: the model dtype must be 'float32' or 'float64', got {quote(dtype)}")
    if model is not None and _comparable(architecture(model)) != _comparable(spec):
        raise CheckpointError(f"{path}: holds a different architecture than this model: "
                              f"{_difference(_comparable(spec), _comparable(architecture(model)))}")
    optimizer_state = None
    if header.get("optimizer") is not None:
        optimizer_state = _optimizer_state(path, header["optimizer"], arrays)
    if optimizer is not None and optimizer_state is None:
        raise CheckpointError(f"{path}: holds no optimizer state to load")
    history = _history(path, header.get("history"), arrays)
    if history is not None:
        try:
            check_history_data(history)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: unusable history: {cap(str(error), 200)}") from None
    header = dict(header, history=history)
    if model is None:
        model = build(spec, path, numbers=sum(value.size for value in state.values()))
        model.astype(dtype)
        model.to(device or "cpu")
    try:
        model_state = check_state(model, state)     # names, shapes, finite, fits the dtype
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: does not fit this model: {cap(str(error), 400)}") from None
    checked_optimizer = None
    if optimizer is not None:
        try:
            checked_optimizer = (*optimizer._check_state(optimizer_state), optimizer_state)
        except (KeyError, ValueError, TypeError) as error:
            raise CheckpointError(f"{path}: does not fit this optimizer: {cap(str(error), 400)}") from None
    elif optimizer_state is not None:
        checked_optimizer = (None, None, optimizer_state)
    streams = _random_streams(path, model, header.get("random_streams") or {})
    return PreparedLoad(path, model, optimizer, header, model_state, checked_optimizer, streams)


def _target_device(device):
    """The backend ``device`` names (checked before the file is read)."""
    try:
        return backends.get(device)
    except ValueError as error:
        raise ValueError(f"load: device {quote(device)} is not a device name ({error}); the file was not "
                         f"read") from None


def _difference(file_spec, model_spec, where="architecture"):
    """Where two architectures first differ: "architecture.layers[0].config.n_out: file 6, model 4"."""
    if isinstance(file_spec, dict) and isinstance(model_spec, dict) and file_spec.get("type") != model_spec.get("type"):
        return (f"at {where}, the file has a {quote(file_spec.get('type'))} layer where the model has a "
                f"{quote(model_spec.get('type'))}: the architectures differ")
    if isinstance(file_spec, dict) and isinstance(model_spec, dict):
        for key in sorted(set(file_spec) | set(model_spec), key=str):
            a, b = file_spec.get(key), model_spec.get(key)
            if a != b and isinstance(a, (dict, list)) and type(a) is type(b):
                return _difference(a, b, f"{where}.{str(key)[:40]}")
            if a != b:
                return f"at {where}, the file has {quote(key)}: {quote(a)}, the model {quote(key)}: {quote(b)}"
    if isinstance(file_spec, list) and isinstance(model_spec, list):
        for index, (a, b) in enumerate(zip(file_spec, model_spec)):
            if a != b:
                return _difference(a, b, f"{where}[{index}]")
        return f"{where}: file has {len(file_spec)} entries, model {len(model_spec)}"
    return f"{where}: file {quote(file_spec)}, model {quote(model_spec)}"


def _random_streams(path, model, streams):
    """{layer path: state to set} for Dropout (and any layer with set_random_state), checked.

    A state is a position of the counter-based generator (``backends/_random.py``), the same on
    every backend, so it resumes anywhere. Files from before that generator hold per-library
    states ({"kind": "host" | "torch" | "cupy", ...}) that cannot be continued: the file loads, the
    layer's masks restart from its seed, and a warning says so. Any other fault is the file's.
    """
    if not isinstance(streams, dict):
        raise CheckpointError(f"{path}: random_streams must be a mapping, got {quote(streams)}")
    layers, checked = dict(model.named_modules()), {}
    for layer_path, state in streams.items():
        layer = layers.get(layer_path)
        if layer is None or not hasattr(layer, "set_random_state"):
            continue
        if isinstance(state, dict) and state.get("kind") in _OLD_STREAM_KINDS and "generator" not in state:
            warnings.warn(f"{path}: layer {quote(layer_path)} saved its random masks' position in the "
                          f"per-library format of an older bpcore ({quote(state.get('kind'))}), which the "
                          f"counter-based generator cannot continue: its masks restart from its seed, so a "
                          f"run resumed from this file draws other masks than the original run",
                          CheckpointWarning, stacklevel=2)
            continue
        try:
            checked[layer_path] = backends.checked_random_state(state)
        except ValueError as error:
            raise CheckpointError(f"{path}: layer {quote(layer_path)}: {cap(str(error), 200)}") from None
    return checked


_FLOAT64_MAX = float(np.finfo(np.float64).max)     # history values are stored as float64: an int above overflows


def check_history_data(state) -> None:
    """Raise TypeError/ValueError unless ``state`` is what ``History.state_dict()`` gives:
    the four sections, increasing epochs (ints >= 0), records that are lists of at most
    one number per epoch."""
    if not isinstance(state, dict) or not {*_HISTORY_SECTIONS, "epochs"} <= set(state):
        raise TypeError("a history must be the dict made by History.state_dict() "
                        "(history, grad_norms, weight_norms, epochs)")
    epochs = state["epochs"]
    if not isinstance(epochs, list) or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 0
                                               for e in epochs) or any(a >= b for a, b in zip(epochs, epochs[1:])):
        raise ValueError(f"the history's epochs must be a list of increasing ints >= 0, got {quote(epochs)}")
    if not isinstance(state.get("health", {}), dict):
        raise TypeError(f"the history's health record must be a dict, got {type(state['health']).__name__}")
    for section in _HISTORY_SECTIONS:
        records = state[section]
        if not isinstance(records, dict):
            raise TypeError(f"the history's {section} must be a dict of lists, got {type(records).__name__}")
        for key, values in records.items():
            if not isinstance(key, str) or not isinstance(values, list) or len(values) > len(epochs) \
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               and (isinstance(v, float) or abs(v) <= _FLOAT64_MAX) for v in values):
                raise ValueError(f"the history's {section}[{quote(key)}] must be a list of at most "
                                 f"{len(epochs)} numbers (one per epoch), got {quote(values)}")


def _history(path, saved, arrays):
    """The history as plain data (lists), from the payload (or a header of an older file)."""
    if saved is None or not (isinstance(saved, dict) and "in_payload" in saved):
        return saved                                # None, or plain data: checked by History
    keys = saved["in_payload"]
    if not isinstance(keys, dict):
        raise CheckpointError(f"{path}: malformed history entry {quote(saved)}")
    if "history/epochs" not in arrays:
        raise CheckpointError(f"{path}: the history's epochs are missing from the payload")
    plain = {"epochs": arrays["history/epochs"].tolist()}
    for section in _HISTORY_SECTIONS:
        names = keys.get(section)
        if not isinstance(names, list):
            raise CheckpointError(f"{path}: the history has no list of {section} keys")
        plain[section] = {}
        for index, key in enumerate(names):
            values = arrays.get(f"history/{section}/{index}")
            if values is None or values.ndim != 1:
                raise CheckpointError(f"{path}: the history's {section} {quote(key)} is missing from the payload")
            plain[section][key] = values.tolist()
    health = saved.get("health", {})
    if not isinstance(health, dict):
        raise CheckpointError(f"{path}: the history's health record is not a mapping: {quote(health)}")
    plain["health"] = health
    return plain


def _optimizer_state(path, saved, arrays):
    if not isinstance(saved, dict) or not isinstance(saved.get("scalars", {}), dict) \
            or not isinstance(saved.get("hyper", {}), dict):
        raise CheckpointError(f"{path}: malformed optimizer section {quote(saved)}")
    state = {}
    for name, value in arrays.items():
        if name.startswith("optimizer/"):
            _, index, key = name.split("/", 2)
            state.setdefault(_index(path, index), {})[key] = value
    for index, scalars in saved.get("scalars", {}).items():
        if not isinstance(scalars, dict):
            raise CheckpointError(f"{path}: the optimizer scalars of parameter {quote(index)} are not a mapping")
        state.setdefault(_index(path, index), {}).update(scalars)
    hyper = dict(saved.get("hyper", {}))
    if isinstance(hyper.get("betas"), list):
        hyper["betas"] = tuple(hyper["betas"])
    return {"type": saved.get("type"), "hyper": hyper, "state": state}


def _index(path, text):
    if not (isinstance(text, str) and text.isdigit() and len(text) < 10):
        raise CheckpointError(f"{path}: optimizer state for parameter {quote(text)}: not a parameter index")
    return int(text)


_MODEL_WRITER[0] = save          # Layer.save writes through this floor (nn cannot import it)
