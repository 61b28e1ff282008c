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

from .module import Layer

MAGIC = b"BPCORE\x00\x01"
FORMAT = "bpcore-checkpoint"
FORMAT_VERSION = 1
_DTYPES = {"float32": "<f4", "float64": "<f8", "int64": "<i8", "int32": "<i4", "uint8": "u1", "bool": "|b1"}
_MAX_HEADER = 64 * 1024 * 1024
_DIGEST = 32                     # bytes of the SHA-256 trailer


class CheckpointError(ValueError):
    """A file that is not a valid bpcore checkpoint; the message names the file and the fault."""


# -- architecture as data ----------------------------------------------------------
def _layer_types() -> dict:
    from . import dropout, layers, module, normalization

    found = {}
    for source in (layers, normalization, dropout, module):
        for name in dir(source):
            value = getattr(source, name)
            if isinstance(value, type) and issubclass(value, Layer) and not name.startswith("_") \
                    and value is not Layer:
                found[name] = value
    found.update(_USER_TYPES)
    return found


_USER_TYPES: dict[str, type] = {}


def register_layer(cls: type) -> type:
    """Let checkpoints rebuild a user-defined layer (its ``config()`` must give its constructor's arguments)."""
    if not isinstance(cls, type) or not issubclass(cls, Layer):
        raise TypeError(f"register_layer expects a Layer subclass, got {cls!r}")
    _USER_TYPES[cls.__name__] = cls
    return cls


def architecture(model: Layer) -> dict:
    """The model as data: {"type": ..., "config": {...}} with "layers" or "block" for containers."""
    from .module import Residual, Sequential

    if isinstance(model, Sequential):
        return {"type": "Sequential", "layers": [architecture(layer) for layer in model.layers]}
    if isinstance(model, Residual):
        return {"type": "Residual", "block": architecture(model.block)}
    name = type(model).__name__
    if name not in _layer_types():
        raise TypeError(f"cannot save layer type {name}: register it with bp.io.register_layer")
    return {"type": name, "config": model.config()}


def build(spec, path="") -> Layer:
    """Rebuild a model from :func:`architecture` data (on the CPU, float32, fresh weights)."""
    from .module import Residual, Sequential

    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise CheckpointError(f"{path}: malformed architecture entry {spec!r}")
    kind = spec["type"]
    if kind == "Sequential":
        if not isinstance(spec.get("layers"), list):
            raise CheckpointError(f"{path}: Sequential without a list of layers")
        return Sequential(*[build(item, path) for item in spec["layers"]])
    if kind == "Residual":
        return Residual(build(spec.get("block"), path))
    types = _layer_types()
    if kind not in types:
        raise CheckpointError(f"{path}: unknown layer type {kind!r} (known: {', '.join(sorted(types))}); "
                              f"a custom layer must be registered with bp.io.register_layer first")
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the config of {kind} is not a mapping")
    try:
        return types[kind](**config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot rebuild {kind} from {config}: {error}") from None


# -- writing -------------------------------------------------------------------------
def write_file(path, arrays: dict, meta: dict) -> None:
    """Atomically write ``arrays`` (name -> host array) and ``meta`` (JSON-able) to ``path``.

    Written to a temporary file in the same directory, flushed and fsynced, moved over
    ``path`` with os.replace, then the directory is fsynced: a crash at any moment leaves
    either the old file or the new one. Temporary files of writers that died are removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
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
    from . import __version__

    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "bpcore_version": __version__,
              "tensors": entries, "payload_bytes": len(payload),
              "payload_sha256": hashlib.sha256(payload).hexdigest(), **meta}
    header_bytes = json.dumps(header, allow_nan=True).encode("utf-8")
    _remove_stale_temporaries(path)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=_temporary_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            body = MAGIC + struct.pack("<Q", len(header_bytes)) + header_bytes + payload
            stream.write(body + hashlib.sha256(body).digest())
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


# -- the public API ------------------------------------------------------------------
def save(model: Layer, path) -> None:
    """Save a model (architecture, parameters, buffers) to ``path`` atomically."""
    save_checkpoint(path, model=model)


def load(path, device="cpu") -> Layer:
    """Rebuild the model saved in ``path`` (by ``model.save`` or ``save_checkpoint``) on ``device``."""
    return load_checkpoint(path, device=device)["model"]


def save_checkpoint(path, model: Layer, optimizer=None, epoch=None, history=None, rng_state=None,
                    scheduler=None) -> None:
    """Save everything needed to resume training, atomically.

    Args:
        model: its architecture, parameters and buffers.
        optimizer: its hyper-parameters and buffers (momentum, Adam moments).
        epoch: epochs completed. history: a :class:`History` (or None).
        rng_state: the shuffling Generator's ``bit_generator.state`` (JSON-able).
        scheduler: a schedule's ``state_dict()``.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"save_checkpoint: model must be a bpcore Layer, got {type(model).__name__}")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0):
        raise ValueError(f"save_checkpoint: epoch must be an int >= 0, got {epoch!r}")
    arrays = {f"model/{name}": value for name, value in model.state_dict().items()}
    streams = {path: layer.random_state() for path, layer in model._layers_by_path().items()
               if hasattr(layer, "random_state") and layer.random_state() is not None}
    meta = {"architecture": architecture(model), "dtype": model.dtype, "epoch": epoch, "random_streams": streams,
            "rng_state": rng_state, "scheduler": scheduler.state_dict() if scheduler is not None else None}
    if optimizer is not None:
        state = optimizer.state_dict()
        scalars = {}
        for index, buffers in state["state"].items():
            for key, value in buffers.items():
                if hasattr(value, "shape"):
                    arrays[f"optimizer/{index}/{key}"] = value
                else:
                    scalars.setdefault(str(index), {})[key] = value
        meta["optimizer"] = {"type": state["type"], "hyper": state["hyper"], "scalars": scalars}
    if history is not None:
        meta["history"] = {"history": history.history, "grad_norms": history.grad_norms,
                           "weight_norms": history.weight_norms, "epochs": history.epochs}
    write_file(path, arrays, meta)


def load_checkpoint(path, model: Layer | None = None, optimizer=None, device=None) -> dict:
    """Read a checkpoint; returns {"model", "epoch", "history", "rng_state", "scheduler", "optimizer"}.

    With ``model`` given, its parameters are replaced (after every check: a refused file
    changes nothing); otherwise the model is rebuilt from the file's architecture, on
    ``device`` (default "cpu"). With ``optimizer`` given, its state is restored too.
    """
    from .train import History

    arrays, header = read_file(path)
    state = {name[len("model/"):]: value for name, value in arrays.items() if name.startswith("model/")}
    _check_architecture(header.get("architecture"), state, path)
    if model is not None and _comparable(architecture(model)) != _comparable(header.get("architecture")):
        raise CheckpointError(f"{path}: holds a different architecture than this model:\n  file:  "
                              f"{_comparable(header.get('architecture'))}\n  model: {_comparable(architecture(model))}")
    if model is None:
        model = build(header.get("architecture"), path)
        model.astype(header.get("dtype", "float32") if header.get("dtype") in ("float32", "float64") else "float32")
        model.to(device or "cpu")
    elif device is not None:
        raise ValueError("load_checkpoint: give either model= (loaded in place, on its device) or device=")
    optimizer_state = None
    if header.get("optimizer") is not None:
        optimizer_state = _optimizer_state(path, header["optimizer"], arrays)
    if optimizer is not None and optimizer_state is None:
        raise CheckpointError(f"{path}: holds no optimizer state to load")
    before = model._snapshot()
    try:
        model.load_state_dict(state)      # checks names and shapes before writing
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: does not fit this model: {error}") from None
    if optimizer is not None:
        try:
            optimizer.load_state_dict(optimizer_state)
        except (KeyError, ValueError, TypeError) as error:
            model._restore(before)        # all or nothing
            raise CheckpointError(f"{path}: does not fit this optimizer: {error}") from None
    _set_random_streams(model, header.get("random_streams") or {})
    history = None
    if header.get("history") is not None:
        history = History()
        saved = header["history"]
        history.history, history.grad_norms = saved["history"], saved["grad_norms"]
        history.weight_norms, history.epochs = saved["weight_norms"], saved["epochs"]
    return {"model": model, "epoch": header.get("epoch"), "history": history,
            "rng_state": header.get("rng_state"), "scheduler": header.get("scheduler"),
            "optimizer": optimizer_state}


_SIZE_KEYS = ("n_in", "n_out", "n")


def _check_architecture(spec, state, path):
    """Every layer type known and every layer size plausible for the saved arrays, before building.

    A size no saved array has as a dimension, or a Linear with more weights than the file
    holds numbers, would only allocate memory before the shape check refuses the file.
    """
    largest_dim = max((d for value in state.values() for d in value.shape), default=0)
    total = sum(value.size for value in state.values())
    types = _layer_types()
    pending = [spec]
    while pending:
        item = pending.pop()
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise CheckpointError(f"{path}: malformed architecture entry {str(item)[:80]}")
        kind = item["type"]
        if kind == "Sequential":
            pending.extend(item.get("layers") if isinstance(item.get("layers"), list) else [None])
            continue
        if kind == "Residual":
            pending.append(item.get("block"))
            continue
        if kind not in types:
            raise CheckpointError(f"{path}: unknown layer type {kind!r} (known: {', '.join(sorted(types))}); "
                                  f"a custom layer must be registered with bp.io.register_layer first")
        config = item.get("config", {})
        sizes = [config.get(key) for key in _SIZE_KEYS if isinstance(config, dict) and key in config]
        if any(isinstance(n, int) and n > max(largest_dim, 1) for n in sizes) or (
                kind == "Linear" and all(isinstance(n, int) for n in sizes) and math.prod(sizes) > total):
            raise CheckpointError(f"{path}: layer {kind} {config} is larger than any array the file holds")


def _comparable(spec):
    """The architecture without settings that do not change a trained model (init, seed)."""
    if isinstance(spec, dict):
        return {k: _comparable(v) for k, v in spec.items() if k not in ("init", "seed")}
    if isinstance(spec, list):
        return [_comparable(v) for v in spec]
    return spec


def _set_random_streams(model, streams):
    """Put Dropout (and any layer with set_random_state) back at its saved position.

    Streams are per library: a state saved on another kind of backend cannot be used, and
    that layer's stream restarts from its seed (only exact resumes need the position).
    """
    layers = model._layers_by_path()
    for layer_path, state in streams.items():
        layer = layers.get(layer_path)
        if layer is not None and hasattr(layer, "set_random_state"):
            try:
                layer.set_random_state(state)
            except ValueError:
                layer.set_random_state(None)


def _optimizer_state(path, saved, arrays):
    state = {}
    for name, value in arrays.items():
        if name.startswith("optimizer/"):
            _, index, key = name.split("/", 2)
            state.setdefault(int(index), {})[key] = value
    for index, scalars in saved.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(scalars)
    hyper = dict(saved.get("hyper", {}))
    if isinstance(hyper.get("betas"), list):
        hyper["betas"] = tuple(hyper["betas"])
    return {"type": saved.get("type"), "hyper": hyper, "state": state}

