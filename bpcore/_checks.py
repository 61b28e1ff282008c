"""The two argument checks every public constructor and function shares.

Each names the owner (layer, optimizer, function), the argument, what was expected and what was
received: ``ArgumentTypeError`` for a value of the wrong type (a str, a float where an int goes),
ValueError for one out of range.
"""
from __future__ import annotations

import errno
import math
import numbers
import os

import numpy as np


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (``Linear(2, "4")``, ``lr="fast"``): a TypeError, as Python and
    PyTorch raise for one, and a ValueError too, which is what bpcore raised for these before."""


class Setting:
    """A setting checked on every assignment by the rule its constructor applies, so that
    ``dropout.p = 1.5`` fails as ``Dropout(p=1.5)`` does (the optimizers do the same with their
    ``_rules``). ``rule(obj, value)`` returns the value to keep, or raises naming what is wrong::

        class Dropout(Layer):
            p = Setting(lambda self, p: check_number("Dropout", "p", p, 0.0, 1.0, high_open=True))
    """

    def __init__(self, rule):
        self.rule = rule

    def __set_name__(self, owner, name):
        self.name, self.slot = name, self.slot_of(name)

    @staticmethod
    def slot_of(name: str) -> str:
        """Where an object keeps the value of its setting ``name`` (in its ``__dict__``)."""
        return f"_{name}_setting"

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        try:
            return obj.__dict__[self.slot]
        except KeyError:                     # not set yet: what any missing attribute raises
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r}") from None

    def __set__(self, obj, value):
        obj.__dict__[self.slot] = self.rule(obj, value)


def _prefix(owner: str) -> str:
    return f"{owner}: " if owner else ""


def check_int(owner: str, name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """An int >= ``minimum`` (and <= ``maximum`` when given; NumPy integers accepted, as PyTorch does);
    bools and floats refused."""
    wrong_type = isinstance(value, bool) or not isinstance(value, numbers.Integral)
    if wrong_type or value < minimum or (maximum is not None and value > maximum):
        expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        if maximum is not None:
            expected += f" and <= {maximum}"
        error = ArgumentTypeError if wrong_type else ValueError
        raise error(f"{_prefix(owner)}{name} must be {expected}, got {value!r}"
                    + (f" (a {type(value).__name__})" if wrong_type else ""))
    return int(value)


def check_number(owner: str, name: str, value, low: float = 0.0, high: float = math.inf,
                 low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number in the interval from ``low`` to ``high`` (open ends as asked); bools refused."""
    inside = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
              and (value > low if low_open else value >= low) and (value < high if high_open else value <= high))
    if not inside:
        if high == math.inf and low == -math.inf:
            interval = ""
        elif high == math.inf:
            interval = f"> {low:g}" if low_open else f">= {low:g}"
        else:
            interval = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        wrong_type = isinstance(value, bool) or not isinstance(value, numbers.Real)
        kind = f" (a {type(value).__name__})" if wrong_type else ""
        error = ArgumentTypeError if wrong_type else ValueError
        raise error(f"{_prefix(owner)}{name} must be a finite number{' ' + interval if interval else ''}, "
                    f"got {value!r}{kind}")
    return float(value)


def output_path(owner: str, path) -> str:
    """``path`` as a str, ready for writing a file: its folder is created if missing.

    The one rule of every writer (model.save, checkpoints, figures, the Flow page), applied
    before any work is done, so a run never trains for an hour and then fails to save.

    Raises:
        TypeError: ``path`` is not a str or os.PathLike.
        IsADirectoryError: ``path`` names a folder.
        PermissionError / OSError: the folder cannot be made or written to (read-only: EROFS).
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{_prefix(owner)}a file path must be a str or os.PathLike, "
                        f"got {type(path).__name__}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path or path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise IsADirectoryError(f"{_prefix(owner)}{path!r} is a folder, not a file name")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if not os.access(folder, os.W_OK | os.X_OK):
        if hasattr(os, "statvfs") and os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1):
            raise OSError(errno.EROFS, f"{_prefix(owner)}cannot write into {folder}: it is on a read-only "
                                       f"file system")
        raise PermissionError(f"{_prefix(owner)}cannot write into {folder}: permission denied")
    return path


# The largest finite float32: a float64 above it becomes inf when cast to float32.
FLOAT32_MAX = float.fromhex("0x1.fffffep+127")
INT64_MAX = 2**63 - 1


def check_cast_range(value, dtype: str, what: str) -> None:
    """Refuse a host array that a cast to ``dtype`` would change without a word.

    Finite floats beyond float32's range become inf in a cast to "float32"; unsigned integers
    beyond int64's range wrap to negative numbers in a cast to "int64" (uint64 2**63 becomes
    -2**63). Checked before the cast, naming the value the user gave. Reads the array's largest
    and smallest value (no copy), and when NaN or inf is among them, the finite values (a copy,
    only then); NaN and infinite values themselves are left to the finiteness checks.

    Raises:
        ValueError: naming ``what``, the value, and the largest the dtype holds.
    """
    if not value.size:
        return
    kind, itemsize = value.dtype.kind, value.dtype.itemsize
    if dtype == "float32" and kind == "f" and itemsize > 4:
        largest = max(abs(float(value.min())), abs(float(value.max())))
        if not math.isfinite(largest):          # NaN or inf beside them: look at the finite values
            finite = value[np.isfinite(value)]
            largest = float(np.abs(finite).max()) if finite.size else 0.0
        if largest > FLOAT32_MAX:
            raise ValueError(f"{what} holds values up to {largest:.6g} in magnitude, which overflow float32 "
                             f"(its largest is {FLOAT32_MAX:.6g}): cast to float32 they would become inf. "
                             f"Scale the data, or use a float64 model (model.astype('float64'))")
    elif dtype == "int64" and kind == "u" and itemsize >= 8:
        largest = int(value.max())
        if largest > INT64_MAX:
            raise ValueError(f"{what} holds {largest}, beyond the largest int64 ({INT64_MAX}): cast to int64 "
                             f"it would wrap to a negative number")


def check_finite(xp, array, what: str, hint: str = "") -> None:
    """Raise ValueError unless every value of the floating ``array`` is finite, saying how many are
    NaN and how many infinite. One host read when all is well (``xp.all``); more only to explain."""
    if bool(xp.all(xp.isfinite(array))):
        return
    n_nan = int(xp.sum(xp.astype(xp.isnan(array), xp.int64)))
    n_inf = int(xp.sum(xp.astype(xp.isinf(array), xp.int64)))
    found = " and ".join(part for part in (f"{n_nan} NaN" if n_nan else "",
                                           f"{n_inf} infinite" if n_inf else "") if part)
    raise ValueError(f"{what} contains NaN or infinite values ({found} of {math.prod(array.shape)})"
                     + (f"; {hint}" if hint else ""))
