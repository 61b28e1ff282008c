"""Floor 4: the checkpoint file format and rebuilding a model from its architecture.

    format.py        the bytes on disk: magic, JSON header, payload, SHA-256; atomic writes
    architecture.py  a model <-> plain data, through the layer registry of bpcore.nn
    api.py           save, load, save_checkpoint, read_checkpoint

It knows no training code: histories are stored as plain data, and ``bpcore.training``
turns them back into a ``History``.
"""
from __future__ import annotations

from ..nn.module import register_layer
from .api import CheckpointWarning, load, read_checkpoint, save, save_checkpoint
from .architecture import architecture, build
from .format import MAGIC, CheckpointError, read_file, write_file

__all__ = ["CheckpointError", "CheckpointWarning", "MAGIC", "architecture", "build", "load", "read_checkpoint",
           "read_file", "register_layer", "save", "save_checkpoint", "write_file"]
