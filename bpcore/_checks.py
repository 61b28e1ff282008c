"""The two argument checks every public constructor and function shares.

Each raises ValueError naming the owner (layer, optimizer, function), the argument,
what was expected and what was received.
"""
from __future__ import annotations

import errno
import math
import numbers
import os


def _prefix(owner: str) -> str:
    return f"{owner}: " if owner else ""


def check_int(owner: str, name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """An int >= ``minimum`` (and <= ``maximum`` when given; NumPy integers accepted, as PyTorch does);
    bools and floats refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum \
            or (maximum is not None and value > maximum):
        expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        if maximum is not None:
            expected += f" and <= {maximum}"
        raise ValueError(f"{_prefix(owner)}{name} must be {expected}, got {value!r}")
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
        raise ValueError(f"{_prefix(owner)}{name} must be a finite number{' ' + interval if interval else ''}, "
                         f"got {value!r}")
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
