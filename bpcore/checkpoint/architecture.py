"""A model's architecture as plain data, and a model rebuilt from it.

``architecture(model)`` gives {"type": "Linear", "config": {...}} for a layer, with "layers" for a
Sequential and "block" for a Residual. ``build`` turns that back into layers, looking the type up
in the layer registry of ``bpcore.nn`` (every built-in layer joins it when defined; user layers
through ``bp.register_layer``), so no layer module is imported by name and no code from a file runs.

A layer is judged by what it holds, never by the names in its config: ``check_rebuilds`` (run by
every save before it writes) builds each layer again from its ``config()`` and compares the
parameters and buffers it gets with the layer's own; ``build`` (run by every load) counts what
the rebuilt layers allocate against the numbers the file holds (``bpcore.nn.budget``).
"""
from __future__ import annotations

import json
import math

from ..nn import budget
from ..nn.containers import Residual, Sequential
from ..nn.module import Layer, layer_types
from .format import CheckpointError, cap, quote

# What rebuilding may allocate beyond the numbers a file holds: small arrays a layer makes and the
# file does not keep (none of bpcore's own; a user layer may have a few).
_SLACK = 65_536


def architecture(model: Layer) -> dict:
    """The model as data: {"type": ..., "config": {...}} with "layers" or "block" for containers."""
    if isinstance(model, Sequential):
        return {"type": "Sequential", "layers": [architecture(layer) for layer in model.layers]}
    if isinstance(model, Residual):
        return {"type": "Residual", "block": architecture(model.block)}
    name = type(model).__name__
    if layer_types().get(name) is not type(model):
        raise TypeError(f"cannot save layer type {name}: register it with bp.register_layer (a class decorator), "
                        f"so that a checkpoint can rebuild it from its config()")
    return {"type": name, "config": model.config()}


def _rebuilt_nodes(model: Layer, path: str = ""):
    """(path, layer) for every layer that a checkpoint rebuilds from its config (not a container)."""
    if isinstance(model, Sequential):
        return [node for i, layer in enumerate(model.layers)
                for node in _rebuilt_nodes(layer, f"{path}.{i}" if path else str(i))]
    if isinstance(model, Residual):
        return _rebuilt_nodes(model.block, f"{path}.block" if path else "block")
    return [(path, model)]


def _holdings(layer: Layer) -> list:
    """[(name, shape)] of every parameter and buffer of ``layer``, in state_dict order."""
    return [(name, tuple(p.data.shape)) for name, p in layer.named_parameters()] + \
           [(name, tuple(buffer.shape)) for name, buffer in layer.named_buffers()]


_VERIFIED: dict = {}          # (class, config as JSON) -> holdings, for layers already rebuilt once


def check_rebuilds(model: Layer) -> None:
    """Refuse (before anything is written) a model that a checkpoint could not rebuild: for each
    layer, ``type(layer)(**layer.config())`` must build and hold parameters and buffers of the
    same names and shapes as the layer itself.

    Raises:
        TypeError: a layer type is not registered, or its config() does not fit its constructor.
        ValueError: the rebuilt layer holds something else.
    """
    for path, layer in _rebuilt_nodes(model):
        architecture(layer)                              # registered?
        kind, config = type(layer).__name__, layer.config()
        where = f" at '{path}'" if path else ""
        try:
            key = (type(layer), json.dumps(config, sort_keys=True))
        except (TypeError, ValueError):
            raise TypeError(f"cannot save {kind}{where}: its config() {quote(config)} is not plain data "
                            f"(numbers, strings, lists, dicts); return the constructor's arguments") from None
        holds = _holdings(layer)
        if _VERIFIED.get(key) == holds:
            continue
        numbers = sum(math.prod(shape) for _, shape in holds)
        try:
            with budget.limit(numbers + _SLACK):
                rebuilt = type(layer)(**config)
        except Exception as error:           # whatever the user's constructor raises, said at save time
            raise TypeError(f"cannot save {kind}{where}: {kind}(**config()) fails with {type(error).__name__}: "
                            f"{cap(str(error), 300)}. config() must return the constructor's arguments "
                            f"(here {quote(config)}), so that loading can rebuild the layer") from None
        if _holdings(rebuilt) != holds:
            raise ValueError(f"cannot save {kind}{where}: rebuilt from its config() {quote(config)} it holds "
                             f"{_holdings(rebuilt)}, but the layer holds {holds}. config() must return every "
                             f"constructor argument that shapes the layer")
        if len(_VERIFIED) > 1000:
            _VERIFIED.clear()
        _VERIFIED[key] = holds


def build(spec, path="", numbers=None) -> Layer:
    """Rebuild a model from :func:`architecture` data (on the CPU, float32, fresh weights).

    With ``numbers`` (what the file holds), every parameter and buffer the rebuilt layers make is
    counted against it, and a layer that would go past it is refused before its memory is taken
    (``bpcore.nn.budget``).
    """
    check_spec(spec, path)
    if numbers is None:
        return _build(spec, path, "")
    with budget.limit(numbers + _SLACK):
        return _build(spec, path, "")


def _build(spec, path, where) -> Layer:
    kind = spec["type"]
    inside = f"{where}." if where else ""
    if kind == "Sequential":
        return Sequential(*[_build(item, path, f"{inside}{i}") for i, item in enumerate(spec["layers"])])
    if kind == "Residual":
        return Residual(_build(spec.get("block"), path, f"{inside}block"))
    config = spec.get("config", {})
    try:
        return layer_types()[kind](**config)
    except budget.BudgetExceeded as error:
        raise CheckpointError(f"{path}: layer {kind} {quote(config)} at '{where}' would create {error.count} or "
                              f"more numbers, but the file holds only {error.left} more: {cap(str(error))}") from None
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot rebuild {kind} from {quote(config)}: {cap(str(error))}") from None


def check_spec(spec, path) -> None:
    """Every entry well formed, every layer type known and at most ``budget.MAX_LAYERS`` entries,
    before anything is built."""
    types = layer_types()
    pending, seen = [spec], 0
    while pending:
        item = pending.pop()
        seen += 1
        if seen > budget.MAX_LAYERS:
            raise CheckpointError(f"{path}: the architecture describes more than {budget.MAX_LAYERS} layers")
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise CheckpointError(f"{path}: malformed architecture entry {quote(item)}")
        kind = item["type"]
        if kind == "Sequential":
            if not isinstance(item.get("layers"), list):
                raise CheckpointError(f"{path}: Sequential without a list of layers")
            pending.extend(item["layers"])
            continue
        if kind == "Residual":
            pending.append(item.get("block"))
            continue
        if kind not in types:
            raise CheckpointError(f"{path}: unknown layer type {quote(kind)} (known: {', '.join(sorted(types))}); "
                                  f"a custom layer must be registered with bp.register_layer first")
        if not isinstance(item.get("config", {}), dict):
            raise CheckpointError(f"{path}: the config of {kind} is not a mapping")


def _comparable(spec):
    """The architecture without settings that do not change a trained model (init, seed)."""
    if isinstance(spec, dict):
        return {k: _comparable(v) for k, v in spec.items() if k not in ("init", "seed")}
    if isinstance(spec, list):
        return [_comparable(v) for v in spec]
    return spec
