"""Fast paths: a backend's own function for an operation bpcore also writes portably.

DESIGN.md: "a backend may register a faster path for a hot spot ... but tests compare every fast
path against the portable one". bpcore names the operation and its signature (``"scatter_add_rows"``:
see ``bpcore.nn.scatter``; ``"sliding_windows"``, ``"route_max"``, ``"conv_input_grad"``: see
``bpcore.nn.windows``); ``Backend.fast_path(operation)`` finds what is registered for its name.
This module imports nothing from the package, so ``_base`` can read it without an import circle.
"""
from __future__ import annotations

import contextlib
from typing import Callable

# (backend name, operation) -> the function
_FAST_PATHS: dict[tuple[str, str], Callable] = {}
_PORTABLE_ONLY = [0]      # depth of portable_only() blocks now running


def register_fast_path(name: str, operation: str, function: Callable, *, replace: bool = False) -> None:
    """Let backend ``name`` run ``operation`` with ``function`` instead of bpcore's portable code.

    The operations and their signatures are bpcore's (for example "scatter_add_rows", see
    ``bpcore.nn.scatter``); a fast path must return what the portable reference returns, and
    bpcore's tests compare the two on every backend. Registering for a name not (yet) registered
    as a backend is allowed, so an adapter's fast paths can be registered with it.

    Raises:
        ValueError: the pair is already registered and ``replace`` is False; bad names.
        TypeError: ``function`` is not callable.
    """
    for what, value in (("backend name", name), ("operation", operation)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"register_fast_path: {what} must be a non-empty string, got {value!r}")
    if not callable(function):
        raise TypeError(f"register_fast_path: the function for {operation!r} on {name!r} must be callable, "
                        f"got {type(function).__name__}")
    if (name, operation) in _FAST_PATHS and not replace:
        raise ValueError(f"register_fast_path: {name!r} already has a fast path for {operation!r} "
                         f"(pass replace=True to replace it)")
    _FAST_PATHS[(name, operation)] = function


def unregister_fast_path(name: str, operation: str) -> None:
    """Remove a fast path added with :func:`register_fast_path` (the portable code runs again)."""
    if _FAST_PATHS.pop((name, operation), None) is None:
        raise ValueError(f"backend {name!r} has no fast path for {operation!r}")


def fast_path(name: str, operation: str) -> Callable | None:
    """The function registered for ``operation`` on backend ``name``, or None (always None inside
    :func:`portable_only`)."""
    if _PORTABLE_ONLY[0]:
        return None
    return _FAST_PATHS.get((name, operation))


@contextlib.contextmanager
def portable_only():
    """While the block runs, every fast path is off: bpcore runs its portable Array API references
    everywhere. For the tests that compare the two, and for benchmarks that time both (not per
    thread: it turns them off for the whole process)."""
    _PORTABLE_ONLY[0] += 1
    try:
        yield
    finally:
        _PORTABLE_ONLY[0] -= 1


def fast_paths() -> dict[tuple[str, str], Callable]:
    """{(backend name, operation): function} of every registered fast path."""
    return dict(_FAST_PATHS)
