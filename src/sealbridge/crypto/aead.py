"""Authenticated encryption: AES-256-GCM from ``cryptography``.

A sealed blob is ``nonce (12) || ciphertext || tag (16)``. The nonce is random unless
the caller supplies one (for reproducible tests and simulations; never reuse a nonce
under the same key). Any failure to open a blob is a :class:`DecryptionError`.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealbridge.core.errors import ConfigError, DecryptionError

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16


def _cipher(key: bytes) -> AESGCM:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
        raise ConfigError(f"AES-256-GCM key must be {KEY_SIZE} bytes, got {size}")
    return AESGCM(bytes(key))


def seal(key: bytes, plaintext: bytes, aad: bytes = b"", *, nonce: bytes | None = None) -> bytes:
    """Encrypt and authenticate ``plaintext`` (and ``aad``); return ``nonce || ct || tag``."""
    cipher = _cipher(key)
    if nonce is None:
        nonce = os.urandom(NONCE_SIZE)
    elif len(nonce) != NONCE_SIZE:
        raise ConfigError(f"AES-GCM nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    return bytes(nonce) + cipher.encrypt(bytes(nonce), bytes(plaintext), bytes(aad))


def open_sealed(key: bytes, blob: bytes, aad: bytes = b"") -> bytes:
    """Authenticate and decrypt a blob made by :func:`seal`; DecryptionError on any failure."""
    cipher = _cipher(key)
    if not isinstance(blob, bytes | bytearray) or len(blob) < NONCE_SIZE + TAG_SIZE:
        raise DecryptionError("sealed blob is too short")
    nonce, body = bytes(blob[:NONCE_SIZE]), bytes(blob[NONCE_SIZE:])
    try:
        return cipher.decrypt(nonce, body, bytes(aad))
    except InvalidTag as exc:
        raise DecryptionError("sealed blob failed authentication") from exc
