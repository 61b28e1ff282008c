"""Probes of an installed library's API, for code that cannot run here (no GPU): tests/test_gpu_api.py.

``Probe(real_module, "cupy", log, fakes)`` stands in for a module: every attribute bpcore reads
must exist on the real one, every call must bind to the real function's signature (positional
count, keyword names; for compiled functions the signature in their docstring, with its C types
checked), and is logged. What a call returns comes from ``fakes`` (by dotted path): "live" calls
the real function (those that need no GPU), a callable makes a stand-in. Classes are handed over
as they are (``isinstance(x, cupy.ndarray)``), constants too (``nccl.NCCL_SUM``).
"""
from __future__ import annotations

import inspect
import re
import types

# C types in Cython signatures -> the Python values they take
_C_TYPES = {"int": int, "size_t": int, "intptr_t": int, "bytes": bytes, "double": float, "bint": bool}
LIVE = "live"


def _split(text: str) -> list[str]:
    """Top-level comma-separated parts of a parameter list."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part.strip() for part in parts + [current] if part.strip()]


def signature_of(function) -> tuple[inspect.Signature, dict]:
    """(signature, {parameter: C type name}) of a Python or compiled function or class."""
    try:
        return inspect.signature(function), {}
    except (TypeError, ValueError):
        pass
    doc = (getattr(function, "__doc__", None) or "").strip()
    match = re.match(r"^[\w.]*\((.*?)\)(\s*->.*)?$", doc.splitlines()[0] if doc else "")
    if match is None:
        raise AssertionError(f"{function!r}: no signature, and none in its docstring ({doc[:80]!r})")
    params, c_types = [], {}
    for part in _split(match.group(1).replace("\\*", "*")):
        if part in ("/", "*") or part.startswith("*"):
            params.append(part)
            continue
        declared, _, default = part.partition("=")
        words = declared.split()
        name = words[-1]
        if len(words) > 1:
            c_types[name] = words[-2]
        params.append(f"{name}=None" if default else name)
    namespace = {}
    exec(f"def _signature({', '.join(params)}): pass", namespace)      # noqa: S102 (names from a docstring)
    return inspect.signature(namespace["_signature"]), c_types


def check_call(function, path: str, args, kwargs) -> None:
    """AssertionError unless ``function(*args, **kwargs)`` binds to its signature and C types."""
    signature, c_types = signature_of(function)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        raise AssertionError(f"{path}{signature}: bpcore calls it with {len(args)} positional arguments and "
                             f"keywords {sorted(kwargs)}: {error}") from None
    for name, value in bound.arguments.items():
        expected = _C_TYPES.get(c_types.get(name, ""))
        if expected is not None and (not isinstance(value, expected) or isinstance(value, bool) != (expected is bool)):
            raise AssertionError(f"{path}: {name} is declared {c_types[name]}, bpcore passes a {type(value).__name__}")


class Probe:
    """A module, function or class of the real library, watched (see the module docstring)."""

    def __init__(self, real, path: str, log: list, fakes: dict):
        self._real, self._path, self._log, self._fakes = real, path, log, fakes

    def __getattr__(self, name):
        path = f"{self._path}.{name}"
        try:
            real = getattr(self._real, name)
        except AttributeError:
            raise AssertionError(f"{path} does not exist in the installed library") from None
        if isinstance(real, type) and path not in self._fakes:
            return real                                   # isinstance(x, cupy.ndarray)
        if callable(real) or isinstance(real, types.ModuleType):
            return Probe(real, path, self._log, self._fakes)
        return real                                       # a constant

    def __call__(self, *args, **kwargs):
        fake = self._fakes.get(self._path)
        self._log.append((self._path, args, kwargs))
        if fake == LIVE:                                  # the real function checks its own arguments
            return self._real(*args, **kwargs)
        check_call(self._real, self._path, args, kwargs)
        if callable(fake):
            return fake(*args, **kwargs)
        return fake


class Instance:
    """An object of a real class that cannot be made here: its methods are probed (with ``self``),
    its ``with`` block checked to exist, its attributes given."""

    def __init__(self, real_class, path: str, log: list, fakes: dict, **attributes):
        self._real, self._path, self._log, self._fakes = real_class, path, log, fakes
        self.__dict__.update(attributes)

    def __getattr__(self, name):
        method = getattr(self._real, name, None)
        if method is None:
            raise AssertionError(f"{self._path}.{name} does not exist in the installed library")
        probe = Probe(method, f"{self._path}.{name}", self._log, self._fakes)
        return lambda *args, **kwargs: probe(self, *args, **kwargs)

    def __enter__(self):
        assert hasattr(self._real, "__enter__"), f"{self._path} is not a context manager"
        self._log.append((f"{self._path}.__enter__", (), {}))
        return self

    def __exit__(self, *exc):
        self._log.append((f"{self._path}.__exit__", (), {}))
        return False
