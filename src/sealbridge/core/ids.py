"""Identifiers and hashes.

Hashes are SHA-256 over a domain-separation tag and the canonical bytes, so that a value
hashed for one purpose can never be confused with one hashed for another. Ethereum-facing
values use Keccak-256 (``keccak``). Ids are 32 bytes, rendered as 0x-hex.
"""

from __future__ import annotations

import hashlib
from typing import Any

from eth_hash.auto import keccak as _keccak

from sealbridge.core.encoding import encode
from sealbridge.core.errors import EncodingError

HASH_SIZE = 32


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def keccak(data: bytes) -> bytes:
    """Keccak-256, the hash Ethereum and the EVM use."""
    return bytes(_keccak(data))


def tagged_hash(tag: str, data: bytes) -> bytes:
    """SHA-256 of a length-prefixed domain tag followed by ``data``."""
    t = tag.encode()
    return hashlib.sha256(len(t).to_bytes(2, "big") + t + data).digest()


def hash_message(tag: str, value: Any) -> bytes:
    """Domain-separated hash of a value's canonical encoding."""
    return tagged_hash(tag, encode(value))


def to_hex(data: bytes) -> str:
    return "0x" + data.hex()


def from_hex(text: str, *, size: int | None = None, what: str = "value") -> bytes:
    """Parse 0x-hex (or bare hex); check the length when ``size`` is given."""
    body = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        raw = bytes.fromhex(body)
    except ValueError as exc:
        raise EncodingError(f"{what} is not valid hex: {text[:20]!r}") from exc
    if size is not None and len(raw) != size:
        raise EncodingError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def short(data: bytes, n: int = 6) -> str:
    """A short 0x-hex prefix for human output."""
    return "0x" + data[:n].hex() + "…"
