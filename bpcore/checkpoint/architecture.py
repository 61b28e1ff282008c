"""A model's architecture as plain data, and a model rebuilt from it.

``architecture(model)`` gives {"type": "Linear", "config": {...}} for a layer, with "layers" for a
Sequential and "block" for a Residual. ``build`` turns that back into layers, looking the type up
in the layer registry of ``bpcore.nn`` (every built-in layer joins it when defined; user layers
through ``bp.io.register_layer``), so no layer module is imported by name and no code from a file runs.
"""
from __future__ import annotations


from ..nn.containers import Residual, Sequential
from ..nn.module import Layer, layer_types
from .format import CheckpointError, cap, quote


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
        raise CheckpointError(f"{path}: malformed architecture entry {quote(spec)}")
    kind = spec["type"]
    if kind == "Sequential":
        if not isinstance(spec.get("layers"), list):
            raise CheckpointError(f"{path}: Sequential without a list of layers")
        return Sequential(*[build(item, path) for item in spec["layers"]])
    if kind == "Residual":
        return Residual(build(spec.get("block"), path))
    types = layer_types()
    if kind not in types:
        raise CheckpointError(f"{path}: unknown layer type {quote(kind)} (known: {', '.join(sorted(types))}); "
                              f"a custom layer must be registered with bp.io.register_layer first")
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the config of {kind} is not a mapping")
    try:
        return types[kind](**config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot rebuild {kind} from {quote(config)}: {cap(str(error))}") from None


_MAX_LAYERS = 10_000             # layers a file may describe: each costs memory to build, even a ReLU


def _check_architecture(spec, state, path):
    """Every layer type known and every layer backed by the numbers the file holds, before building.

    A layer that needs more numbers (``Layer._saved_numbers_needed``: n_in * n_out for a
    Linear, n for a BatchNorm1d) than the file saves for its place ("1.W", "1.b", ...) would
    only allocate memory before the shape check refuses the file. So what building a model
    allocates is bounded by a small multiple of the payload.
    """
    held = {}                                   # layer path -> numbers the file saves for it
    for name, value in state.items():
        owner = name.rpartition(".")[0]
        held[owner] = held.get(owner, 0) + value.size
    types = layer_types()
    pending, seen = [("", spec)], 0
    while pending:
        where, item = pending.pop()
        seen += 1
        if seen > _MAX_LAYERS:
            raise CheckpointError(f"{path}: the architecture describes more than {_MAX_LAYERS} layers")
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise CheckpointError(f"{path}: malformed architecture entry {quote(item)}")
        kind = item["type"]
        inside = f"{where}." if where else ""
        if kind == "Sequential":
            layers = item.get("layers")
            if not isinstance(layers, list):
                place = f"the Sequential at '{where}'" if where else "the model's Sequential"
                raise CheckpointError(f"{path}: {place} has layers {quote(layers)}, not a list of layer entries")
            pending.extend((f"{inside}{i}", layer) for i, layer in enumerate(layers))
            continue
        if kind == "Residual":
            pending.append((f"{inside}block", item.get("block")))
            continue
        if kind not in types:
            raise CheckpointError(f"{path}: unknown layer type {quote(kind)} (known: {', '.join(sorted(types))}); "
                                  f"a custom layer must be registered with bp.io.register_layer first")
        config = item.get("config", {})
        if not isinstance(config, dict):
            raise CheckpointError(f"{path}: the config of {kind} is not a mapping")
        needed = types[kind]._saved_numbers_needed(config)
        if needed > held.get(where, 0):
            raise CheckpointError(f"{path}: layer {kind} {quote(config)} at '{where}' would create "
                                  f"{needed} or more numbers, but the file saves {held.get(where, 0)} for it")


def _comparable(spec):
    """The architecture without settings that do not change a trained model (init, seed)."""
    if isinstance(spec, dict):
        return {k: _comparable(v) for k, v in spec.items() if k not in ("init", "seed")}
    if isinstance(spec, list):
        return [_comparable(v) for v in spec]
    return spec
