"""Fast paths: a backend's own, faster function for one hot spot of a layer.

The layers' Array API lines are the reference and run everywhere. Where a library can do one
operation better than the standard allows (NumPy's ``as_strided`` makes the windows of a
convolution as one view, where the standard needs a strided slice per kernel offset), its
adapter registers a function under the operation's name, and the layer asks its backend:

    fast = backend.fast_path("sliding_windows")
    windows = fast(x, ...) if fast is not None else <the portable lines>

A fast path must give what the portable lines give (tests/test_fast_paths.py compares each with
them); ``portable_only()`` turns every fast path off, for those tests and for benchmarks.
"""
from __future__ import annotations

import contextlib
from typing import Callable

# (backend name, operation) -> make(backend) -> the function, made once per backend object.
_MAKERS: dict[tuple[str, str], Callable] = {}
_STATE = {"version": 0, "portable_only": 0}      # version: bumped by every (un)registration


def register_fast_path(backend_name: str, op: str, make: Callable, replace: bool = False) -> None:
    """Give the backends called ``backend_name`` a faster function for the operation ``op``.

    Args:
        backend_name: a registered backend's name ("numpy", "cupy", or one of yours).
        op: the operation's name, as the layer asks for it (``"sliding_windows"``, ``"route_max"``;
            bpcore/nn/windows.py documents what each one takes and returns).
        make: ``make(backend)`` returns the function (called once per backend object, so it can
            bind the backend's library, such as CuPy's module).
        replace: allow replacing a fast path already registered for this backend and operation.
    """
    for what, value in (("backend_name", backend_name), ("op", op)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"register_fast_path: {what} must be a non-empty string, got {value!r}")
    if not callable(make):
        raise TypeError(f"register_fast_path: make must be callable (make(backend) -> function), "
                        f"got {type(make).__name__}")
    if (backend_name, op) in _MAKERS and not replace:
        raise ValueError(f"a fast path for {op!r} on {backend_name!r} is already registered "
                         f"(pass replace=True to replace it)")
    _MAKERS[(backend_name, op)] = make
    _STATE["version"] += 1


def unregister_fast_path(backend_name: str, op: str) -> None:
    """Remove a fast path added with :func:`register_fast_path`: the layers run their portable lines."""
    if (backend_name, op) not in _MAKERS:
        raise ValueError(f"no fast path for {op!r} is registered on {backend_name!r}; registered: "
                         f"{sorted(_MAKERS)}")
    del _MAKERS[(backend_name, op)]
    _STATE["version"] += 1


def fast_path_names(backend_name: str) -> list[str]:
    """The operations that backends called ``backend_name`` have a fast path for."""
    return sorted(op for name, op in _MAKERS if name == backend_name)


@contextlib.contextmanager
def portable_only():
    """While the block runs, every layer runs its portable Array API lines (no fast path anywhere).
    For tests that compare the two, and for benchmarks that time both; not thread-local."""
    _STATE["portable_only"] += 1
    try:
        yield
    finally:
        _STATE["portable_only"] -= 1


def make_fast_path(backend, op: str):
    """The function registered for ``op`` on ``backend``'s library, made for ``backend``, or None."""
    make = _MAKERS.get((backend.name, op))
    return None if make is None else make(backend)
