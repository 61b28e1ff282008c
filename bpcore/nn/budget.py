"""A limit on what building layers may allocate, for rebuilding a model from a file.

A checkpoint holds a model's architecture (layer types and their ``config()``) and its numbers.
Rebuilding a layer from a config the file made up could allocate far more than the file holds
(``Linear(10**6, 10**6)`` from a 1 kB file). So the loader builds the model inside
``with budget.limit(numbers_in_the_file):`` and every parameter and buffer a layer makes is
counted here (``Layer.parameter``, ``Layer.register_buffer``); the weight initialisers of
``bpcore.nn.init`` ask *before* they draw. A layer that would go over the file's numbers is
refused with :class:`BudgetExceeded` before its memory is taken (or, for a layer that draws its
own host arrays, right after). Outside a ``limit`` nothing is counted.
"""
from __future__ import annotations

import contextlib
import contextvars

# At most this many layers may be made while rebuilding one file: each costs memory, even a ReLU.
MAX_LAYERS = 10_000


class BudgetExceeded(ValueError):
    """Building layers would make more numbers (or layers) than the file being loaded holds.

    Attributes: ``count``, the numbers one allocation asked for; ``left``, what the budget had left.
    """

    def __init__(self, message: str, count: int = 0, left: int = 0):
        super().__init__(message)
        self.count, self.left = count, left


class _Budget:
    def __init__(self, numbers: int):
        self.numbers_left = numbers
        self.layers_left = MAX_LAYERS


_CURRENT: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("bpcore_build_budget", default=None)


@contextlib.contextmanager
def limit(numbers: int):
    """Count what layers built inside the block allocate; allow at most ``numbers`` numbers."""
    token = _CURRENT.set(_Budget(int(numbers)))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def afford(count: int, owner: str) -> None:
    """Raise :class:`BudgetExceeded` if ``count`` more numbers would go over the budget (spends nothing)."""
    current = _CURRENT.get()
    if current is not None and count > current.numbers_left:
        left = max(current.numbers_left, 0)
        raise BudgetExceeded(f"{owner} would create {count} or more numbers, more than the {left} that the "
                             f"file still holds", count, left)


def spend(count: int, owner: str) -> None:
    """Count ``count`` numbers made by ``owner``; raise :class:`BudgetExceeded` past the budget."""
    current = _CURRENT.get()
    if current is not None:
        afford(count, owner)
        current.numbers_left -= count


def count_layer(owner: str) -> None:
    """Count one layer made; raise :class:`BudgetExceeded` past :data:`MAX_LAYERS`."""
    current = _CURRENT.get()
    if current is not None:
        current.layers_left -= 1
        if current.layers_left < 0:
            raise BudgetExceeded(f"building {owner} would make more than {MAX_LAYERS:,} layers")
