"""A model's architecture as plain data, and a model rebuilt from it.

``architecture(model)`` gives {"type": "Linear", "config": {...}} for a layer, with "layers" for a
Sequential and "block" for a Residual. ``build`` turns that back into layers, looking the type up
in the layer registry of ``bpcore.nn`` (every built-in layer joins it when defined; user layers
through ``bp.io.register_layer``), so no layer module is imported by name and no code from a file runs.
"""
from __future__ import annotations

import math

from ..nn.containers import Residual, Sequential
from ..nn.module import Layer, layer_types
from .format import CheckpointError


def architecture(model: Layer) -> dict:
    """The model as data: {"type": ..., "config": {...}} with "layers" or "block" for containers."""
    if isinstance(model, Sequential):
        return {"type": "Sequential", "layers": [architecture(layer) for layer in model.layers]}
    if isinstance(model, Residual):
        return {"type": "Residual", "block": architecture(model.block)}
    name = type(model).__name__
    if name not in layer_types():
        raise TypeError(f"cannot save layer type {name}: register it with bp.io.register_layer")
    return {"type": name, "config": model.config()}


def build(spec, path="") -> Layer:
    """Rebuild a model from :func:`architecture` data (on the CPU, float32, fresh weights)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise CheckpointError(f"{path}: malformed architecture entry {spec!r}")
    kind = spec["type"]
    if kind == "Sequential":
        if not isinstance(spec.get("layers"), list):
            raise CheckpointError(f"{path}: Sequential without a list of layers")
        return Sequential(*[build(item, path) for item in spec["layers"]])
    if kind == "Residual":
        return Residual(build(spec.get("block"), path))
    types = layer_types()
    if kind not in types:
        raise CheckpointError(f"{path}: unknown layer type {kind!r} (known: {', '.join(sorted(types))}); "
                              f"a custom layer must be registered with bp.io.register_layer first")
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the config of {kind} is not a mapping")
    try:
        return types[kind](**config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot rebuild {kind} from {config}: {error}") from None


_SIZE_KEYS = ("n_in", "n_out", "n", "in_channels", "out_channels", "num_features")


def _check_architecture(spec, state, path):
    """Every layer type known and every layer size plausible for the saved arrays, before building.

    A size no saved array has as a dimension, or a Linear with more weights than the file
    holds numbers, would only allocate memory before the shape check refuses the file.
    """
    largest_dim = max((d for value in state.values() for d in value.shape), default=0)
    total = sum(value.size for value in state.values())
    types = layer_types()
    pending = [spec]
    while pending:
        item = pending.pop()
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise CheckpointError(f"{path}: malformed architecture entry {str(item)[:80]}")
        kind = item["type"]
        if kind == "Sequential":
            pending.extend(item.get("layers") if isinstance(item.get("layers"), list) else [None])
            continue
        if kind == "Residual":
            pending.append(item.get("block"))
            continue
        if kind not in types:
            raise CheckpointError(f"{path}: unknown layer type {kind!r} (known: {', '.join(sorted(types))}); "
                                  f"a custom layer must be registered with bp.io.register_layer first")
        config = item.get("config", {})
        sizes = [config.get(key) for key in _SIZE_KEYS if isinstance(config, dict) and key in config]
        if any(isinstance(n, int) and n > max(largest_dim, 1) for n in sizes) or (
                kind == "Linear" and all(isinstance(n, int) for n in sizes) and math.prod(sizes) > total):
            raise CheckpointError(f"{path}: layer {kind} {config} is larger than any array the file holds")


def _comparable(spec):
    """The architecture without settings that do not change a trained model (init, seed)."""
    if isinstance(spec, dict):
        return {k: _comparable(v) for k, v in spec.items() if k not in ("init", "seed")}
    if isinstance(spec, list):
        return [_comparable(v) for v in spec]
    return spec
