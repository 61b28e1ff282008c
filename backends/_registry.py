"""The registry: names -> factories, device strings -> cached Backends."""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from ._base import Backend, BackendUnavailableError, is_host_array

# name -> factory(device or None) -> Backend; raises BackendUnavailableError.
_FACTORIES: dict[str, Callable[[str | None], Backend]] = {}
# name -> the specs available()/status() probe for it, e.g. ["torch", "torch:cuda"].
_CANDIDATES: dict[str, list[str]] = {}
# names of backends that only record the forward pass (register(..., trains=False)).
_INFERENCE_ONLY: set[str] = set()
# canonical spec ("torch:cpu") and asked-for spec ("torch") -> the one Backend.
_CACHE: dict[str, Backend] = {}
# name -> spec_of(array): the spec of the backend holding an array of that library ("cupy:1"), or None.
_SPEC_OF: dict[str, Callable[[object], "str | None"]] = {}
# Device strings that are not backend names.
_ALIASES = {"cpu": "numpy", "cuda": "cupy"}


def register(name: str, factory: Callable[[str | None], Backend], *,
             candidates: list[str] | None = None, replace: bool = False, trains: bool = True,
             spec_of: Callable[[object], "str | None"] | None = None) -> None:
    """Add a backend to the registry without touching bpcore.

    Args:
        name: the name users type (``get(name)`` or ``get(name + ":" + device)``).
        factory: ``factory(device)`` returns a :class:`Backend`; ``device`` is the
            text after the first ":" or None. It raises
            :class:`BackendUnavailableError` (saying why and how to fix it) when
            the library or the device is missing here.
        candidates: the specs ``available()`` tries for this name (default ``[name]``).
        replace: allow replacing an already registered name.
        trains: False for a backend that only records or runs the forward pass (onnx), so that
            ``available(trains=True)`` (what the test suite trains on) leaves it out.
        spec_of: ``spec_of(array)`` gives the spec of the backend that holds ``array`` (such as
            "cupy:1") or None when it is not this library's; lets :func:`backend_of` find arrays
            on devices that ``candidates`` does not list (every GPU but the first).
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"backend name must be a non-empty string without ':', got {name!r}")
    if name in _ALIASES:
        raise ValueError(f"backend name {name!r} is reserved as a device alias")
    if not callable(factory):
        raise TypeError(f"factory for backend {name!r} must be callable, got {type(factory).__name__}")
    if name in _FACTORIES and not replace:
        raise ValueError(f"backend {name!r} is already registered (pass replace=True to replace it)")
    if spec_of is not None and not callable(spec_of):
        raise TypeError(f"spec_of for backend {name!r} must be callable, got {type(spec_of).__name__}")
    _FACTORIES[name] = factory
    _SPEC_OF.pop(name, None)
    if spec_of is not None:
        _SPEC_OF[name] = spec_of
    _CANDIDATES[name] = list(candidates) if candidates is not None else [name]
    _INFERENCE_ONLY.discard(name)
    if not trains:
        _INFERENCE_ONLY.add(name)
    _CACHE.clear()          # aliases such as "cpu" may point at the replaced backend


def unregister(name: str) -> None:
    """Remove a backend added with :func:`register` (and forget its cached instances)."""
    if name not in _FACTORIES:
        raise ValueError(f"backend {name!r} is not registered; known names: {', '.join(known())}")
    del _FACTORIES[name], _CANDIDATES[name]
    _INFERENCE_ONLY.discard(name)
    _SPEC_OF.pop(name, None)
    for spec in [s for s, be in _CACHE.items() if s == name or s.startswith(name + ":") or be.name == name]:
        del _CACHE[spec]


def known() -> list[str]:
    """Every registered backend name and device alias, usable here or not."""
    return sorted(_ALIASES) + sorted(_FACTORIES)


def _parse(spec: str) -> tuple[str, str | None]:
    text = spec.strip().lower()
    head, _, device = text.partition(":")
    if head in _ALIASES:
        if head == "cpu" and device not in ("", "0"):
            raise ValueError(f"unknown device {spec!r}: the CPU device is just 'cpu'")
        return _ALIASES[head], (device or None) if head == "cuda" else None
    if head not in _FACTORIES:
        raise ValueError(
            f"unknown device or backend {spec!r}; known names: {', '.join(known())} "
            f"(a backend may be followed by ':device', as in 'torch:cuda:0' or 'cupy:1')")
    return head, device or None


def get(spec: "str | Backend" = "cpu") -> Backend:
    """The backend for a device string such as "cpu", "cuda:1" or "torch:cuda".

    Raises:
        ValueError: the name is unknown (the message lists the known ones).
        BackendUnavailableError: the backend is known but cannot run here; the
            message names what is missing and the pip command that installs it.
    """
    if isinstance(spec, Backend):
        return spec
    if not isinstance(spec, str):
        spec = _spec_of_device_object(spec)
    cached = _CACHE.get(spec)
    if cached is not None:
        return cached
    name, device = _parse(spec)
    if name in _hidden():
        raise BackendUnavailableError(f"backend {name!r} is hidden for this run by "
                                      f"BPCORE_HIDE_BACKENDS={os.environ['BPCORE_HIDE_BACKENDS']}")
    try:
        backend = _FACTORIES[name](device)
    except BackendUnavailableError as error:      # name what was asked for: 'cuda:1', 'torch:cuda'
        raise BackendUnavailableError(f"{spec!r} cannot be used here: {error}") from None
    backend = _CACHE.setdefault(backend.spec, backend)   # one object per device
    _CACHE[spec] = backend
    return backend


def _hidden() -> set[str]:
    """Backend names listed in BPCORE_HIDE_BACKENDS ("torch,cupy"): treated as unusable, so a run
    can leave out a library that happens to be installed (``BPCORE_TORCH=none bash ci/test.sh``)."""
    return {name.strip() for name in os.environ.get("BPCORE_HIDE_BACKENDS", "").split(",") if name.strip()}


def _spec_of_device_object(device) -> str:
    """The spec for a library's device object: torch.device("cuda", 1) -> "torch:cuda:1",
    cupy.cuda.Device(1) -> "cupy:1", so PyTorch and CuPy habits (``model.to(torch.device(...))``) work."""
    module = type(device).__module__.partition(".")[0]
    if module == "torch" and isinstance(getattr(device, "type", None), str):
        index = getattr(device, "index", None)
        return f"torch:{device.type}" + (f":{index}" if index is not None else "")
    if module == "cupy" and isinstance(getattr(device, "id", None), int):
        return f"cupy:{device.id}"
    raise TypeError(f"device must be a string such as 'cpu' or 'cuda' (or a torch.device or "
                    f"cupy.cuda.Device), got {type(device).__name__}")


def status(trains: bool | None = None) -> dict[str, str | None]:
    """Every candidate spec -> None when usable here, else the reason it is not.

    ``trains=True`` keeps only backends that can train (leaving out onnx, which records the
    forward pass for export), ``trains=False`` only those that cannot; None keeps all.
    """
    reasons: dict[str, str | None] = {}
    for name in _FACTORIES:
        if trains is not None and (name not in _INFERENCE_ONLY) != trains:
            continue
        for spec in _CANDIDATES[name]:
            try:
                get(spec)
                reasons[spec] = None
            except BackendUnavailableError as error:
                reasons[spec] = str(error)
    return reasons


def available(trains: bool | None = None) -> list[str]:
    """The backend specs that import and have a usable device on this machine
    (``trains=True``: only those that can train, see :func:`status`)."""
    return [spec for spec, reason in status(trains).items() if reason is None]


def backend_of(array) -> Backend:
    """The backend whose library and device hold ``array``.

    Raises:
        TypeError: no registered backend recognizes the object.
    """
    for backend in _CACHE.values():
        if backend.owns(array):
            return backend
    for spec in available():
        backend = get(spec)
        if backend.owns(array):
            return backend
    for name, spec_of in _SPEC_OF.items():       # a device available() does not probe: "cupy:1"
        spec = spec_of(array) if name not in _hidden() else None
        if spec is not None:
            try:
                backend = get(spec)
            except (BackendUnavailableError, ValueError):
                continue
            if backend.owns(array):
                return backend
    raise TypeError(f"{type(array).__module__}.{type(array).__name__} is not an array of any "
                    f"usable backend ({', '.join(available())})")


def accept_array(backend: Backend, value, owner, what: str = "input", against: str = "the layer", dtype=None):
    """Sort an incoming array for a layer or a loss on ``backend``; the one place that says what is wrong.

    - a host NumPy array (even on the numpy backend): must hold real numbers; moved to ``backend``
      (cast to ``dtype`` when given);
    - an array of ``backend``: returned as it is (the caller checks its dtype);
    - an array of another backend, or not an array at all: TypeError naming both places.

    Args:
        owner: the name used in messages ("Linear(2, 16) (layer '0')"), or a callable giving it,
            so that building the name costs nothing when the array is fine.
        what: what the array is ("input", "target", "grad_out").
        against: what it is compared with in the other-backend message ("the layer", "pred").
    """
    if is_host_array(value):             # first: on the numpy backend a host array is also its own
        if value.dtype.kind not in "fiub":
            name = owner() if callable(owner) else owner
            raise TypeError(f"{name}: {what} must be a real-valued array, got dtype {value.dtype}")
        return backend.asarray(value, dtype=dtype)
    if backend.owns(value):
        return value
    name = owner() if callable(owner) else owner
    try:
        other = backend_of(value).spec
    except TypeError:
        raise TypeError(f"{name}: {what} must be an array (host NumPy, or an array of {backend.spec}), "
                        f"got {type(value).__name__}") from None
    raise TypeError(f"{name}: {what} is on backend {other!r} but {against} is on {backend.spec!r}; move one "
                    f"of them (model.to({other!r}), or backends.get({backend.spec!r}).asarray(...) for data)")


def to_host(obj) -> np.ndarray:
    """Any backend's array, or a host NumPy array -> a host NumPy array.

    Raises:
        TypeError: ``obj`` is not an array of NumPy or of a usable backend.
    """
    if is_host_array(obj):
        return np.asarray(obj)
    return backend_of(obj).to_numpy(obj)


Backend._find_by_spec = staticmethod(get)      # see Backend.__reduce__
