"""Checkpoints: safe (no pickle, nothing executed), atomic, device-independent files.

A bpcore file is

    8 bytes   magic b"BPCORE\\x00\\x01"
    8 bytes   header length H, little-endian unsigned
    H bytes   JSON header, UTF-8: format name and version, bpcore version, the model's
              architecture as data (layer types and constructor arguments), and one entry
              per array (name, dtype, shape, byte offset, byte count), the payload's length
              and its SHA-256, plus JSON-able extras (epoch, history, optimizer settings)
    payload   the arrays' raw little-endian bytes, one after another
    32 bytes  SHA-256 of everything before it (magic, length, header and payload), so a
              flipped bit anywhere, in the architecture too, is caught

Loading checks everything before it changes anything: the magic (a pickle, a zip/.npz or
any other file is refused by name), the header, the format version, that every array lies
inside the payload with the size its dtype and shape imply, the payload's length, the
file's SHA-256, that every layer type is known and its sizes are plausible for the arrays
(before any layer is built), and, when loading into an existing model, that the file
describes the same architecture. Arrays are read with ``np.frombuffer`` from
a fixed list of numeric dtypes, so no code from the file ever runs.

Why not safetensors: it would be a standard and equally safe container, but it stores no
checksum and its header metadata is flat strings; bpcore needs the architecture, the
optimizer state and the history in the same file and a SHA-256 over the payload, which
this small format gives in ~250 lines with no dependency.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import tempfile

import numpy as np

from .._version import __version__

MAGIC = b"BPCORE\x00\x01"
FORMAT = "bpcore-checkpoint"
FORMAT_VERSION = 1
_DTYPES = {"float32": "<f4", "float64": "<f8", "int64": "<i8", "int32": "<i4", "uint8": "u1", "bool": "|b1"}
_MAX_HEADER = 64 * 1024 * 1024
_DIGEST = 32                     # bytes of the SHA-256 trailer


class CheckpointError(ValueError):
    """A file that is not a valid bpcore checkpoint; the message names the file and the fault."""


# -- writing -------------------------------------------------------------------------
def write_file(path, arrays: dict, meta: dict) -> None:
    """Atomically write ``arrays`` (name -> host array) and ``meta`` (JSON-able) to ``path``.

    Written to a temporary file in the same directory, flushed and fsynced, moved over
    ``path`` with os.replace, then the directory is fsynced: a crash at any moment leaves
    either the old file or the new one (:func:`write_bytes_atomically`).
    """
    path = os.fspath(path)
    entries, chunks, offset = [], [], 0
    for name, array in arrays.items():
        array = np.asarray(array)
        dtype = str(array.dtype)
        if dtype not in _DTYPES:
            raise TypeError(f"cannot save {name!r}: dtype {dtype} is not one of {', '.join(_DTYPES)}")
        data = np.ascontiguousarray(array, dtype=_DTYPES[dtype]).tobytes()
        entries.append({"name": name, "dtype": dtype, "shape": list(array.shape),
                        "offset": offset, "nbytes": len(data)})
        chunks.append(data)
        offset += len(data)
    payload = b"".join(chunks)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "bpcore_version": __version__,
              "tensors": entries, "payload_bytes": len(payload),
              "payload_sha256": hashlib.sha256(payload).hexdigest(), **meta}
    header_bytes = json.dumps(header, allow_nan=True).encode("utf-8")
    body = MAGIC + struct.pack("<Q", len(header_bytes)) + header_bytes + payload
    write_bytes_atomically(path, body + hashlib.sha256(body).digest())


def write_bytes_atomically(path, content: bytes, mode: int | None = None) -> None:
    """Write ``content`` to ``path`` so that a crash at any moment leaves the old file or the new one.

    Written to a temporary file in the same directory, flushed and fsynced, moved over ``path``
    with os.replace, then the directory is fsynced. A failed write removes its temporary file;
    temporary files of writers that died are removed. Shared by checkpoints and ONNX export.
    ``mode``: the new file's permission bits (None keeps the temporary file's owner-only 0o600).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(path)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=_temporary_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
            if mode is not None:
                os.fchmod(stream.fileno(), mode)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _temporary_prefix(path):
    return f".{os.path.basename(path)}.{os.getpid()}."


def _remove_stale_temporaries(path):
    """Delete temporary files left by writers of ``path`` whose process no longer exists."""
    directory = os.path.dirname(os.path.abspath(path))
    owner = f".{os.path.basename(path)}"
    for entry in os.listdir(directory):
        if not entry.endswith(".tmp"):
            continue
        # ".<name>.<pid>.<random>.tmp", read from the right: <name> itself may contain dots
        parts = entry[:-len(".tmp")].rsplit(".", 2)
        if len(parts) != 3 or parts[0] != owner or not parts[1].isdigit() or _process_alive(int(parts[1])):
            continue
        try:
            os.unlink(os.path.join(directory, entry))
        except FileNotFoundError:
            pass


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return                       # some systems cannot open directories; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- reading -------------------------------------------------------------------------
def read_file(path):
    """(arrays: name -> host NumPy array, header: dict) from a bpcore file, after every check."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as stream:
            content = stream.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}") from None
    if not content.startswith(MAGIC):
        raise CheckpointError(f"{path}: not a bpcore checkpoint ({_describe(content)}); bpcore never loads "
                              f"pickles or .npz archives")
    if len(content) < 16 + _DIGEST:
        raise CheckpointError(f"{path}: truncated: {len(content)} bytes is too short for a checkpoint")
    body, digest = content[:-_DIGEST], content[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{path}: the file's SHA-256 does not match: it is truncated or corrupt")
    content = body
    (header_length,) = struct.unpack("<Q", content[8:16])
    if header_length > min(_MAX_HEADER, len(content) - 16):
        raise CheckpointError(f"{path}: truncated or corrupt: the header claims {header_length} bytes, "
                              f"the file has {len(content) - 16} after the magic")
    try:
        header = json.loads(content[16:16 + header_length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: the header is not valid JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: the header does not describe a {FORMAT}")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version!r} is newer than this bpcore reads "
                              f"({FORMAT_VERSION}); upgrade bpcore (the file says it was written by "
                              f"bpcore {header.get('bpcore_version')})")
    payload = content[16 + header_length:]
    if header.get("payload_bytes") != len(payload):
        raise CheckpointError(f"{path}: truncated or padded: the header promises a payload of "
                              f"{header.get('payload_bytes')} bytes, the file holds {len(payload)}")
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise CheckpointError(f"{path}: the payload's SHA-256 does not match the header: the file is corrupt")
    return _arrays(path, header, payload), header


def _arrays(path, header, payload):
    entries = header.get("tensors")
    if not isinstance(entries, list):
        raise CheckpointError(f"{path}: the header has no list of tensors")
    arrays, end = {}, 0
    for entry in entries:
        try:
            name, dtype, shape = entry["name"], entry["dtype"], entry["shape"]
            offset, nbytes = entry["offset"], entry["nbytes"]
        except (KeyError, TypeError):
            raise CheckpointError(f"{path}: malformed tensor entry {entry!r}") from None
        if dtype not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype!r}, not one of {', '.join(_DTYPES)}")
        if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise CheckpointError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
        count = math.prod(shape)                       # Python ints: no overflow
        expected = count * np.dtype(_DTYPES[dtype]).itemsize
        if not (isinstance(offset, int) and isinstance(nbytes, int)) or nbytes != expected \
                or offset != end or offset + nbytes > len(payload):
            raise CheckpointError(f"{path}: the header lies about tensor {name!r}: {nbytes} bytes at offset "
                                  f"{offset} for shape {shape} {dtype} ({expected} bytes expected at {end}, "
                                  f"payload {len(payload)} bytes)")
        # astype copies into a native-order, writable array that owns its memory
        arrays[name] = np.frombuffer(payload, dtype=_DTYPES[dtype], count=count,
                                     offset=offset).reshape(shape).astype(dtype)
        end = offset + nbytes
    if end != len(payload):
        raise CheckpointError(f"{path}: {len(payload) - end} payload bytes belong to no tensor")
    return arrays


def _describe(content: bytes) -> str:
    if content[:1] == b"\x80":
        return "it looks like a Python pickle"
    if content[:2] == b"PK":
        return "it is a zip archive, such as a NumPy .npz file"
    if content[:6] == b"\x93NUMPY":
        return "it is a NumPy .npy file"
    if not content:
        return "it is empty"
    return f"it starts with {content[:8]!r}"
