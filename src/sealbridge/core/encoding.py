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


def decode(data: bytes, kind: type[T]) -> T:
    """Decode canonical bytes into ``kind``; raise EncodingError on any mismatch."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EncodingError(f"expected bytes to decode {_name(kind)}, got {type(data).__name__}")
    try:
        return msgspec.msgpack.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise EncodingError(f"malformed {_name(kind)}: {exc}") from exc


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
