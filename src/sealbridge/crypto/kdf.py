"""Key derivation: HKDF-SHA256 (RFC 5869) from ``cryptography``.

``derive_key`` turns input keying material into a key bound to a purpose string
(``info``), so that keys derived for different purposes are independent.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealbridge.core.errors import ConfigError

_HASH_SIZE = 32
MAX_LENGTH = 255 * _HASH_SIZE


def derive_key(ikm: bytes, info: str, *, salt: bytes = b"", length: int = 32) -> bytes:
    """HKDF-SHA256 of ``ikm`` for the purpose ``info``; ``length`` bytes of output."""
    if not isinstance(ikm, bytes | bytearray):
        raise ConfigError(f"ikm must be bytes, got {type(ikm).__name__}")
    if not isinstance(info, str):
        raise ConfigError(f"info must be str, got {type(info).__name__}")
    if not 1 <= length <= MAX_LENGTH:
        raise ConfigError(f"HKDF-SHA256 output length must be 1..{MAX_LENGTH}, got {length}")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=length,
        salt=bytes(salt) if salt else None,
        info=info.encode(),
    )
    return hkdf.derive(bytes(ikm))
