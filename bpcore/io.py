"""``bp.io``: the checkpoint functions under their first name (a thin alias of bpcore.checkpoint).

``bp.io.register_layer``, ``bp.io.read_file``, ``bp.io.write_file``, ``bp.io.save``, ``bp.io.load``,
``bp.io.save_checkpoint`` and ``bp.io.load_checkpoint`` keep working; the code lives in
``bpcore/checkpoint/`` (and ``load_checkpoint``, which gives back a History, in ``bpcore/training``).
"""
from __future__ import annotations

from .checkpoint import (  # noqa: F401
    MAGIC, CheckpointError, architecture, build, load, read_checkpoint, read_file, register_layer, save,
    save_checkpoint, write_file,
)
from .training import load_checkpoint  # noqa: F401
