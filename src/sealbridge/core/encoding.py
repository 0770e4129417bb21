"""Canonical encoding.

Every message in sealbridge is a frozen :class:`msgspec.Struct`. Its canonical bytes are
its msgpack encoding, with struct fields and dict keys in sorted order, which is
deterministic: the same value always encodes to the same bytes. The
same bytes are hashed, signed and sent on the wire.

Decoding validates types; anything that does not match becomes an
:class:`~sealbridge.core.errors.EncodingError`.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, TypeVar

import msgspec

from sealbridge.core.errors import EncodingError


class Message(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base class of every canonical message."""


T = TypeVar("T")

_ENCODER = msgspec.msgpack.Encoder(order="sorted")
_JSON_ENCODER = msgspec.json.Encoder(order="sorted")


def encode(value: Any) -> bytes:
    """Return the canonical bytes of ``value`` (a Struct, or plain msgpack data)."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodingError(f"cannot encode {type(value).__name__}: {exc}") from exc


def _name(kind: Any) -> str:
    return str(getattr(kind, "__name__", kind))


# levels of arrays and maps any decoded message may have (a contract value has at most
# 64, inside a few levels of messages): checked before decoding, whatever recursion
# limit the process runs with (some libraries raise it, and the C stack then overflows)
MAX_DECODE_NESTING = 128


def decode(data: bytes, kind: type[T]) -> T:
    """Decode canonical bytes into ``kind``; raise EncodingError on any mismatch."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EncodingError(f"expected bytes to decode {_name(kind)}, got {type(data).__name__}")
    try:
        check_nesting(data, MAX_DECODE_NESTING)
    except EncodingError as exc:
        raise EncodingError(f"malformed {_name(kind)}: nested too deeply ({exc})") from exc
    try:
        return msgspec.msgpack.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise EncodingError(f"malformed {_name(kind)}: {exc}") from exc
    except RecursionError as exc:
        raise EncodingError(f"malformed {_name(kind)}: nested too deeply") from exc


# msgpack first bytes: how many bytes follow the marker before the next item, for the
# fixed-size kinds; containers and variable-size kinds are handled by check_nesting
_FIXED_FOLLOW = {
    0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17,
}  # fmt: skip
_SIZED = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}  # bin8..32, str8..32
_EXT = {0xC7: 1, 0xC8: 2, 0xC9: 4}
_ARRAYS = {0xDC: 2, 0xDD: 4}
_MAPS = {0xDE: 2, 0xDF: 4}
# every byte that is not a container marker: deleting them leaves at most one byte per
# array or map in the data (plus look-alikes inside strings and integers)
_NOT_CONTAINER = bytes(b for b in range(256) if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF))


def check_nesting(data: bytes, limit: int) -> None:
    """Refuse msgpack ``data`` whose arrays and maps nest deeper than ``limit``, before any
    decoder recurses into it (iterative: a hostile depth costs a loop, not the stack).
    Truncated data is left for the decoder to refuse."""
    if len(bytes(data).translate(None, _NOT_CONTAINER)) <= limit:
        return  # fewer container markers than levels: it cannot nest that deep
    view = memoryview(data)
    end = len(view)
    pos = 0
    pending: list[int] = []  # items still to read at each open level
    while pos < end:
        marker = view[pos]
        pos += 1
        items = -1
        if marker <= 0x7F or marker >= 0xE0:
            pass
        elif 0x80 <= marker <= 0x8F:
            items = 2 * (marker & 0x0F)
        elif 0x90 <= marker <= 0x9F:
            items = marker & 0x0F
        elif 0xA0 <= marker <= 0xBF:
            pos += marker & 0x1F
        elif marker in _FIXED_FOLLOW:
            pos += _FIXED_FOLLOW[marker]
        elif marker in _SIZED:
            width = _SIZED[marker]
            pos += width + int.from_bytes(view[pos : pos + width], "big")
        elif marker in _EXT:
            width = _EXT[marker]
            pos += width + 1 + int.from_bytes(view[pos : pos + width], "big")
        elif marker in _ARRAYS or marker in _MAPS:
            width = _ARRAYS.get(marker) or _MAPS[marker]
            count = int.from_bytes(view[pos : pos + width], "big")
            pos += width
            items = count if marker in _ARRAYS else 2 * count
        else:
            return  # 0xC1 (never used): the decoder refuses it
        if items > 0:
            if len(pending) >= limit:
                raise EncodingError(f"data nests deeper than {limit} levels")
            if pending:
                pending[-1] -= 1
            pending.append(items)
            continue
        if pending:
            pending[-1] -= 1
        while pending and pending[-1] == 0:
            pending.pop()


def is_canonical(data: bytes, kind: type[Any]) -> bool:
    """True when ``data`` decodes to ``kind`` and re-encodes to the same bytes."""
    try:
        return encode(decode(data, kind)) == bytes(data)
    except EncodingError:
        return False


def decode_canonical(data: bytes, kind: type[T]) -> T:
    """Decode and insist the bytes are the canonical encoding (no alternative forms)."""
    value = decode(data, kind)
    if encode(value) != bytes(data):
        raise EncodingError(f"{_name(kind)} is not canonically encoded")
    return value


def to_json(value: Any, *, indent: int | None = None) -> str:
    """Deterministic JSON for humans and scripts; bytes are rendered as 0x-hex."""
    return json.dumps(to_builtins(value), sort_keys=True, indent=indent)


def to_builtins(value: Any) -> Any:
    """Plain JSON-able Python data: Structs become dicts, bytes become 0x-hex strings."""
    if isinstance(value, msgspec.Struct):
        return {f: to_builtins(getattr(value, f)) for f in value.__struct_fields__}
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): to_builtins(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_builtins(v) for v in value]
    if isinstance(value, Enum):
        return to_builtins(value.value)
    return value
