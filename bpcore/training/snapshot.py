"""Device copies of a model's parameters and buffers, and putting them back.

What fit rolls back to when the loss diverges or Ctrl-C stops an epoch, and what
EarlyStopping(restore_best_weights=True) keeps of the best epoch. The copies stay on the
model's device (no host transfer); restoring writes new arrays into the same Parameter
objects, so an optimizer built on ``model.parameters()`` keeps updating them.
"""
from __future__ import annotations


def snapshot(model) -> dict:
    """{name: device copy} of every parameter ("0.W") and buffer ("1.running_mean") of ``model``.

    Names are those of ``model.named_parameters()`` and ``model.named_buffers()``.
    """
    copies = {}
    with model.device.activate():              # CuPy copies onto the current GPU
        for name, p in model.named_parameters():
            copies[name] = p.backend.xp.asarray(p.data, copy=True)
        for name, layer, attribute in _buffer_slots(model):
            copies[name] = layer.xp.asarray(getattr(layer, attribute), copy=True)
    return copies


def restore(model, copies: dict) -> None:
    """Put back the values :func:`snapshot` took from this model (same device and dtype).

    Each value is copied again, so one snapshot can be restored more than once.

    Raises:
        KeyError: the names or shapes of ``copies`` are not this model's (it came from another model);
            nothing is changed then.
    """
    parameters = model.named_parameters()
    buffers = _buffer_slots(model)
    current = {name: p.data for name, p in parameters}
    current.update((name, getattr(layer, attribute)) for name, layer, attribute in buffers)
    differ = sorted(set(copies) ^ set(current))
    differ += [name for name in current if name in copies and tuple(copies[name].shape) != tuple(current[name].shape)]
    if differ:
        raise KeyError(f"restore: the snapshot does not fit this model ({', '.join(differ[:5])} differ); it was "
                       f"taken of another model")
    with model.device.activate():
        for name, p in parameters:
            p.data = p.backend.xp.asarray(copies[name], copy=True)
        for name, layer, attribute in buffers:
            setattr(layer, attribute, layer.xp.asarray(copies[name], copy=True))


def _buffer_slots(model):
    """[(dotted name, layer, attribute)] of every buffer, in ``named_buffers()`` order."""
    return [(f"{path}.{name}" if path else name, layer, name)
            for path, layer in model.named_modules() for name in layer._buffer_names]
