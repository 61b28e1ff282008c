"""Forged checkpoint files: what a deliberate forger would write, with the checksums recomputed.

A checkpoint is MAGIC, the header's length (8 bytes, little-endian), the JSON header, the payload
and a SHA-256 trailer over everything before it. These helpers edit a valid file and make its
length prefix and checksums match again, so that what a test reaches is the checking behind the
checksum (the checkpoint tests, and the layer tests that forge a huge layer).
"""
from __future__ import annotations

import hashlib
import json
import struct

from bpcore.io import MAGIC


def split(raw: bytes):
    """(header dict, payload bytes) of a valid file (the 32-byte SHA-256 trailer dropped)."""
    (length,) = struct.unpack("<Q", raw[8:16])
    return json.loads(raw[16:16 + length].decode("utf-8")), raw[16 + length:-32]


def header_length(raw: bytes) -> int:
    return struct.unpack("<Q", raw[8:16])[0]


def with_checksum(body: bytes) -> bytes:
    """Append the SHA-256 trailer, so a deliberately edited file gets past the checksum."""
    return body + hashlib.sha256(body).digest()


def forge_text(header_text: bytes, payload: bytes) -> bytes:
    """A file from raw header bytes: the length prefix and the SHA-256 trailer made to match."""
    return with_checksum(MAGIC + struct.pack("<Q", len(header_text)) + header_text + payload)


def assemble(header: dict, payload: bytes) -> bytes:
    """A file from an edited header, with the right length prefix and a matching SHA-256 trailer:
    what a deliberate forger would do, so the checks behind the checksum are what is tested.
    The header's payload_bytes and payload_sha256 are left as they are (``forge`` recomputes them)."""
    return forge_text(json.dumps(header).encode("utf-8"), payload)


def forge(header: dict, payload: bytes) -> bytes:
    """A file from an edited header and payload, with payload_bytes, payload_sha256 and the
    trailer recomputed: what a deliberate forger would do."""
    header = dict(header, payload_bytes=len(payload), payload_sha256=hashlib.sha256(payload).hexdigest())
    return forge_text(json.dumps(header).encode("utf-8"), payload)


def edited(good, change):
    header, payload = split(good)
    result = change(header, payload)
    return forge(header, result if isinstance(result, bytes) else payload)


def edited_text(good, old: bytes, new: bytes) -> bytes:
    (length,) = struct.unpack("<Q", good[8:16])
    text = good[16:16 + length]
    assert old in text
    return forge_text(text.replace(old, new, 1), good[16 + length:-32])
