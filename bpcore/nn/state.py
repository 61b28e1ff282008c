"""Loading a state dict in two steps: check everything (changing nothing), then write.

``Layer.load_state_dict`` runs both; checkpoints run the check for the whole file first and
write only when every part of the file has passed.
"""
from __future__ import annotations

from typing import NamedTuple

import backends

from .parameter import Parameter, checked_host_cast, own_parameters


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` returns, as PyTorch's: the model's names the dict lacked
    (``missing_keys``) and the dict's names the model has no place for (``unexpected_keys``).
    Both are empty after a strict load."""

    missing_keys: list
    unexpected_keys: list


def load_state(model, state_dict, strict: bool = True) -> IncompatibleKeys:
    """``Layer.load_state_dict``: check everything, then write; return the names that did not match.

    With ``strict=True`` a missing or unexpected name is a KeyError and nothing changes; with
    ``strict=False`` (PyTorch's habit for loading part of a model) the names present in both are
    loaded, the rest are left as they are and listed in the result. Shapes and values are checked
    either way, before anything is written.
    """
    if not isinstance(strict, bool):
        raise TypeError(f"load_state_dict: strict must be True or False, got {strict!r}")
    checked = check_state(model, state_dict, strict=strict)
    write_state(model, checked)
    return IncompatibleKeys(*_mismatch(_slots(model), state_dict))


def _slots(model) -> dict:
    """full name -> (layer path, attribute, layer, current array), for every parameter and buffer."""
    slots = {}
    for path, layer in model.named_modules():
        prefix = f"{path}." if path else ""
        for name, p in own_parameters(layer):
            slots[prefix + name] = (path, name, layer, p.data)
        for name in layer._buffer_names:
            slots[prefix + name] = (path, name, layer, getattr(layer, name))
    return slots


def _mismatch(slots, state_dict):
    """(missing, unexpected) names, in the model's and the dict's order."""
    missing = [k for k in slots if k not in state_dict]
    unexpected = [k for k in state_dict.keys() if k not in slots]
    return missing, unexpected


def check_state(model, state_dict, strict: bool = True) -> dict:
    """{(layer path, attribute): host array as it will be stored}, after every check of
    ``Layer.load_state_dict`` (names unless ``strict=False``, shapes, numbers, finite, within
    the layer's dtype); changes nothing."""
    if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
        raise TypeError(f"load_state_dict expects a dict of arrays, got {type(state_dict).__name__}")
    slots = _slots(model)
    missing, unexpected = _mismatch(slots, state_dict)
    if strict and (missing or unexpected):
        raise KeyError(f"state_dict does not fit {type(model).__name__}: missing {missing[:20]}, "
                       f"unexpected {[str(k)[:60] for k in unexpected[:20]]} (strict=False loads the "
                       f"names that match and returns the others)")
    checked = {}
    for name, (path, attribute, layer, current) in slots.items():
        if name not in state_dict:                 # strict=False: left as it is
            continue
        try:
            value = backends.to_host(state_dict[name])
        except TypeError:
            raise TypeError(f"state_dict[{name!r}] must be an array, "
                            f"got {type(state_dict[name]).__name__}") from None
        if tuple(value.shape) != tuple(current.shape):
            raise ValueError(f"state_dict[{name!r}] has shape {tuple(value.shape)}, "
                             f"the model expects {tuple(current.shape)}")
        floating = layer.xp.isdtype(current.dtype, "real floating")
        checked[(path, attribute)] = checked_host_cast(value, layer._dtype if floating else None,
                                                       f"state_dict[{name!r}]")
    return checked


def write_state(model, checked: dict) -> None:
    """Store values that :func:`check_state` gave (on each layer's device)."""
    layers = dict(model.named_modules())
    for (path, attribute), value in checked.items():
        layer = layers[path]
        array = layer._backend.asarray(value, dtype=str(value.dtype), copy=True)
        current = getattr(layer, attribute)
        if isinstance(current, Parameter):
            current.data = array
        else:
            setattr(layer, attribute, array)
