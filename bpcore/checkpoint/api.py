"""Saving and loading models and training state: the public side of the checkpoint format.

``save``/``load`` handle a model alone; ``save_checkpoint``/``read_checkpoint`` add the
optimizer, the epoch, the history (as plain data), the shuffling RNG and the scheduler.
Every check runs before anything is changed (see ``format.py`` for the file itself).
"""
from __future__ import annotations

from ..nn.module import _MODEL_WRITER, Layer
from .architecture import _check_architecture, _comparable, architecture, build
from .format import CheckpointError, read_file, write_file


def save(model: Layer, path) -> None:
    """Save a model (architecture, parameters, buffers) to ``path`` atomically."""
    save_checkpoint(path, model=model)


def load(path, device="cpu") -> Layer:
    """Rebuild the model saved in ``path`` (by ``model.save`` or ``save_checkpoint``) on ``device``."""
    return read_checkpoint(path, device=device)["model"]


def save_checkpoint(path, model: Layer, optimizer=None, epoch=None, history=None, rng_state=None,
                    scheduler=None) -> None:
    """Save everything needed to resume training, atomically.

    Args:
        model: its architecture, parameters and buffers.
        optimizer: its hyper-parameters and buffers (momentum, Adam moments).
        epoch: epochs completed.
        history: a ``bp.History`` (or None); stored as the plain data its ``state_dict()`` gives.
        rng_state: the shuffling Generator's ``bit_generator.state`` (JSON-able).
        scheduler: a schedule's ``state_dict()``.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"save_checkpoint: model must be a bpcore Layer, got {type(model).__name__}")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0):
        raise ValueError(f"save_checkpoint: epoch must be an int >= 0, got {epoch!r}")
    arrays = {f"model/{name}": value for name, value in model.state_dict().items()}
    streams = {path: layer.random_state() for path, layer in model._layers_by_path().items()
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
        meta["history"] = history.state_dict()
    write_file(path, arrays, meta)


def read_checkpoint(path, model: Layer | None = None, optimizer=None, device=None) -> dict:
    """Read a checkpoint; returns {"model", "epoch", "history", "rng_state", "scheduler", "optimizer"}.

    With ``model`` given, its parameters are replaced (after every check: a refused file
    changes nothing); otherwise the model is rebuilt from the file's architecture, on
    ``device`` (default "cpu"). With ``optimizer`` given, its state is restored too.
    "history" is plain data here (``bp.load_checkpoint`` turns it into a ``bp.History``).
    """
    arrays, header = read_file(path)
    state = {name[len("model/"):]: value for name, value in arrays.items() if name.startswith("model/")}
    _check_architecture(header.get("architecture"), state, path)
    if model is not None and _comparable(architecture(model)) != _comparable(header.get("architecture")):
        raise CheckpointError(f"{path}: holds a different architecture than this model:\n  file:  "
                              f"{_comparable(header.get('architecture'))}\n  model: {_comparable(architecture(model))}")
    if model is None:
        model = build(header.get("architecture"), path)
        model.astype(header.get("dtype", "float32") if header.get("dtype") in ("float32", "float64") else "float32")
        model.to(device or "cpu")
    elif device is not None:
        raise ValueError("load_checkpoint: give either model= (loaded in place, on its device) or device=")
    optimizer_state = None
    if header.get("optimizer") is not None:
        optimizer_state = _optimizer_state(path, header["optimizer"], arrays)
    if optimizer is not None and optimizer_state is None:
        raise CheckpointError(f"{path}: holds no optimizer state to load")
    before = model._snapshot()
    try:
        model.load_state_dict(state)      # checks names and shapes before writing
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: does not fit this model: {error}") from None
    if optimizer is not None:
        try:
            optimizer.load_state_dict(optimizer_state)
        except (KeyError, ValueError, TypeError) as error:
            model._restore(before)        # all or nothing
            raise CheckpointError(f"{path}: does not fit this optimizer: {error}") from None
    _set_random_streams(model, header.get("random_streams") or {})
    return {"model": model, "epoch": header.get("epoch"), "history": header.get("history"),
            "rng_state": header.get("rng_state"), "scheduler": header.get("scheduler"),
            "optimizer": optimizer_state}


def _set_random_streams(model, streams):
    """Put Dropout (and any layer with set_random_state) back at its saved position.

    Streams are per library: a state saved on another kind of backend cannot be used, and
    that layer's stream restarts from its seed (only exact resumes need the position).
    """
    layers = model._layers_by_path()
    for layer_path, state in streams.items():
        layer = layers.get(layer_path)
        if layer is not None and hasattr(layer, "set_random_state"):
            try:
                layer.set_random_state(state)
            except ValueError:
                layer.set_random_state(None)


def _optimizer_state(path, saved, arrays):
    state = {}
    for name, value in arrays.items():
        if name.startswith("optimizer/"):
            _, index, key = name.split("/", 2)
            state.setdefault(int(index), {})[key] = value
    for index, scalars in saved.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(scalars)
    hyper = dict(saved.get("hyper", {}))
    if isinstance(hyper.get("betas"), list):
        hyper["betas"] = tuple(hyper["betas"])
    return {"type": saved.get("type"), "hyper": hyper, "state": state}


_MODEL_WRITER[0] = save          # Layer.save writes through this floor (nn cannot import it)
