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

Loading reads the magic and the header length first (a pickle, a zip/.npz, /dev/zero or
any other file is refused by name after 16 bytes; a header over 64 MiB is refused before it
is read), streams the file once for its SHA-256, then checks the header, the format version, that every array lies
inside the payload with the size its dtype and shape imply, the payload's length, the
file's SHA-256, that every layer type is known and its sizes are plausible for the arrays
(before any layer is built), and, when loading into an existing model, that the file
describes the same architecture. Arrays are read straight from the file into arrays of a
fixed list of numeric dtypes (memory: the payload once), so no code from the file ever runs.
Any fault met while parsing (deep nesting, huge numbers, values of the wrong JSON type)
becomes one ``CheckpointError`` naming the file (``file_faults``), quoting at most a few
dozen characters of the file.

Why not safetensors: it would be a standard and equally safe container, but it stores no
checksum and its header metadata is flat strings; bpcore needs the architecture, the
optimizer state and the history in the same file and a SHA-256 over the payload, which
this small format gives in ~250 lines with no dependency.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import reprlib
import stat
import struct

import numpy as np

from .._checks import output_path
from .._version import __version__
from .atomic import replace_atomically

MAGIC = b"BPCORE\x00\x01"
FORMAT = "bpcore-checkpoint"
FORMAT_VERSION = 1
_DTYPES = {"float32": "<f4", "float64": "<f8", "int64": "<i8", "int32": "<i4", "uint8": "u1", "bool": "|b1"}
_MAX_HEADER = 64 * 1024 * 1024   # bytes of JSON header a file may hold, on reading and on saving
_MAX_DIMS = 32
_DIGEST = 32                     # bytes of the SHA-256 trailer
_CHUNK = 1 << 20                 # bytes hashed at a time
# What parsing a forged file can raise; file_faults turns each into a CheckpointError.
_PARSE_FAULTS = (RecursionError, ValueError, TypeError, AttributeError, OverflowError, KeyError, IndexError)


class CheckpointError(ValueError):
    """A file that is not a valid bpcore checkpoint; the message names the file and the fault."""


_QUOTER = reprlib.Repr()
_QUOTER.maxstring, _QUOTER.maxother, _QUOTER.maxlevel = 60, 60, 3
_QUOTER.maxdict = _QUOTER.maxlist = _QUOTER.maxtuple = 6


def quote(value, limit: int = 120) -> str:
    """A short repr of content read from a file (a forged file may hold megabytes in one field)."""
    text = _QUOTER.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def cap(text: str, limit: int = 300) -> str:
    """An error message shortened to ``limit`` characters (it may quote a forged file)."""
    return text if len(text) <= limit else f"{text[:limit]}..."


@contextlib.contextmanager
def file_faults(path):
    """The one place where any fault met while reading ``path`` becomes a CheckpointError."""
    try:
        yield
    except CheckpointError:
        raise
    except _PARSE_FAULTS as error:
        raise CheckpointError(f"{path}: malformed checkpoint ({type(error).__name__}: "
                              f"{cap(str(error))})") from None


# -- writing -------------------------------------------------------------------------
def write_file(path, arrays: dict, meta: dict) -> None:
    """Atomically write ``arrays`` (name -> host array) and ``meta`` (JSON-able) to ``path``.

    The folder is created if missing. A header that :func:`read_file` would refuse (over
    64 MiB) is refused here, before the old file is touched. Arrays are written one after
    another (no copy of the whole payload); see ``atomic.py`` for the replacement itself.
    """
    path = output_path("save", path)
    entries, blobs, offset = [], [], 0
    payload_digest = hashlib.sha256()
    for name, array in arrays.items():
        array = np.asarray(array)
        dtype = str(array.dtype)
        if dtype not in _DTYPES:
            raise TypeError(f"cannot save {name!r}: dtype {dtype} is not one of {', '.join(_DTYPES)}")
        blob = np.ascontiguousarray(array, dtype=_DTYPES[dtype]).reshape(-1).view(np.uint8)
        payload_digest.update(blob)
        entries.append({"name": name, "dtype": dtype, "shape": list(array.shape),
                        "offset": offset, "nbytes": blob.size})
        blobs.append(blob)
        offset += blob.size
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "bpcore_version": __version__,
              "tensors": entries, "payload_bytes": offset, "payload_sha256": payload_digest.hexdigest(), **meta}
    header_bytes = json.dumps(header, allow_nan=True).encode("utf-8")
    if len(header_bytes) > _MAX_HEADER:
        sizes = sorted(((len(json.dumps(v, allow_nan=True)), k) for k, v in header.items()), reverse=True)[:3]
        raise ValueError(f"cannot save {path}: its header would be {len(header_bytes)} bytes, more than the "
                         f"{_MAX_HEADER} (64 MiB) a bpcore file may hold, so bp.load would refuse it; the old "
                         f"file is left as it was. Largest entries: "
                         + ", ".join(f"{k} ({n} bytes)" for n, k in sizes))

    def write(stream):
        digest = hashlib.sha256()
        for part in (MAGIC, struct.pack("<Q", len(header_bytes)), header_bytes, *blobs):
            digest.update(part)
            stream.write(part)
        stream.write(digest.digest())

    replace_atomically(path, write)


# -- reading -------------------------------------------------------------------------
def read_file(path):
    """(arrays: name -> host NumPy array, header: dict) from a bpcore file, after every check.

    Memory: the header (at most 64 MiB) and the arrays (the payload's bytes), nothing more.
    """
    path = os.fspath(path)
    with file_faults(path):
        try:
            stream = open(path, "rb")
        except FileNotFoundError:
            raise FileNotFoundError(f"no checkpoint at {path}") from None
        with stream:
            return _read_stream(path, stream)


def _read_stream(path, stream):
    info = os.fstat(stream.fileno())
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{path}: not a bpcore checkpoint (it is not a regular file but a device, "
                              f"pipe or socket)")
    start = stream.read(16)
    if not start.startswith(MAGIC):
        raise CheckpointError(f"{path}: not a bpcore checkpoint ({_describe(start)}); bpcore never loads "
                              f"pickles or .npz archives")
    size = info.st_size
    if size < 16 + _DIGEST:
        raise CheckpointError(f"{path}: truncated: {size} bytes is too short for a checkpoint")
    (header_length,) = struct.unpack("<Q", start[8:16])
    if header_length > _MAX_HEADER:
        raise CheckpointError(f"{path}: the header claims {header_length} bytes, more than the {_MAX_HEADER} "
                              f"(64 MiB) a bpcore header may hold; refused before reading it")
    body_end = size - _DIGEST
    header_fits = header_length <= body_end - 16
    digest = hashlib.sha256(start)
    header_bytes = stream.read(header_length) if header_fits else b""
    digest.update(header_bytes)
    _hash_until(stream, digest, body_end, path)
    if digest.digest() != stream.read(_DIGEST):
        raise CheckpointError(f"{path}: the file's SHA-256 does not match: it is truncated or corrupt")
    if not header_fits:
        raise CheckpointError(f"{path}: truncated or corrupt: the header claims {header_length} bytes, "
                              f"the file has {body_end - 16} after the magic")
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: the header is not valid JSON ({cap(str(error))})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: the header does not describe a {FORMAT}")
    _check_version(path, header)
    payload_start = 16 + header_length
    payload_size = body_end - payload_start
    if header.get("payload_bytes") != payload_size:
        raise CheckpointError(f"{path}: truncated or padded: the header promises a payload of "
                              f"{quote(header.get('payload_bytes'))} bytes, the file holds {payload_size}")
    layout = _layout(path, header, payload_size)
    stream.seek(payload_start)
    arrays, payload_digest = {}, hashlib.sha256()
    for name, dtype, shape, count in layout:
        flat = np.empty(count, dtype=_DTYPES[dtype])           # backed by bytes the file holds
        _read_into(stream, memoryview(flat).cast("B"), payload_digest, path)
        arrays[name] = flat.reshape(shape).astype(dtype, copy=False)   # native byte order
    if payload_digest.hexdigest() != header.get("payload_sha256"):
        raise CheckpointError(f"{path}: the payload's SHA-256 does not match the header: the file is corrupt")
    return arrays, header


def _check_version(path, header):
    """The header's format version is a whole number this bpcore reads; each fault named as it is."""
    if "format_version" not in header:
        raise CheckpointError(f"{path}: the header states no format version, so this is not a bpcore format "
                              f"version (every bpcore file states one; this bpcore reads version {FORMAT_VERSION}): "
                              f"the file is damaged or forged")
    version = header["format_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path}: format version {quote(version)} is not a bpcore format version: it is a "
                              f"{type(version).__name__}, where bpcore writes a whole number (this bpcore reads "
                              f"version {FORMAT_VERSION})")
    if version < 1:
        raise CheckpointError(f"{path}: format version {version} is not a bpcore format version (they start "
                              f"at 1; this bpcore reads version {FORMAT_VERSION})")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version} is newer than version {FORMAT_VERSION}, "
                              f"the newest this bpcore reads; upgrade bpcore (the file says it was written "
                              f"by bpcore {quote(header.get('bpcore_version'))})")


def _hash_until(stream, digest, end, path):
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    while stream.tell() < end:
        n = stream.readinto(view[:min(_CHUNK, end - stream.tell())])
        if not n:
            raise CheckpointError(f"{path}: truncated: the file ended while it was read")
        digest.update(view[:n])


def _read_into(stream, view, digest, path):
    done = 0
    while done < len(view):
        n = stream.readinto(view[done:])
        if not n:
            raise CheckpointError(f"{path}: truncated: the file ended while it was read")
        done += n
    digest.update(view)


def _layout(path, header, payload_size):
    """[(name, dtype, shape, element count)] after checking every entry against the payload."""
    entries = header.get("tensors")
    if not isinstance(entries, list):
        raise CheckpointError(f"{path}: the header has no list of tensors")
    layout, names, end = [], set(), 0
    for entry in entries:
        if not isinstance(entry, dict) or not {"name", "dtype", "shape", "offset", "nbytes"} <= set(entry):
            raise CheckpointError(f"{path}: malformed tensor entry {quote(entry)}")
        name, dtype, shape = entry["name"], entry["dtype"], entry["shape"]
        offset, nbytes = entry["offset"], entry["nbytes"]
        if not isinstance(name, str):
            raise CheckpointError(f"{path}: tensor name {quote(name)} is a {type(name).__name__}, not a str")
        if name in names:
            raise CheckpointError(f"{path}: two tensor entries are named {quote(name)}; each name may "
                                  f"appear once (the file is damaged or forged)")
        names.add(name)
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {quote(name)} has dtype {quote(dtype)}, "
                                  f"not one of {', '.join(_DTYPES)}")
        # no dimension may be larger than the payload: not even beside a 0 ([0, 2**62])
        if not (isinstance(shape, list) and len(shape) <= _MAX_DIMS and all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= max(payload_size, 1)
                for n in shape)):
            raise CheckpointError(f"{path}: tensor {quote(name)} has an invalid shape {quote(shape)} (a list "
                                  f"of at most {_MAX_DIMS} ints, each from 0 to the payload's {payload_size} bytes)")
        count = math.prod(shape)                       # Python ints: no overflow
        expected = count * np.dtype(_DTYPES[dtype]).itemsize
        if not (isinstance(offset, int) and isinstance(nbytes, int)) or nbytes != expected \
                or offset != end or offset + nbytes > payload_size:
            raise CheckpointError(f"{path}: the header lies about tensor {quote(name)}: {quote(nbytes)} bytes at "
                                  f"offset {quote(offset)} for shape {shape} {dtype} ({expected} bytes expected "
                                  f"at {end}, payload {payload_size} bytes)")
        layout.append((name, dtype, shape, count))
        end = offset + nbytes
    if end != payload_size:
        raise CheckpointError(f"{path}: {payload_size - end} payload bytes belong to no tensor")
    return layout


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
