"""Public-key encryption to an X25519 key (ECIES: X25519 + HKDF-SHA256 + AES-256-GCM).

The sender makes an ephemeral X25519 key pair, computes the shared secret with the
recipient's public key, and derives an AES-256 key and a GCM nonce from it with HKDF; the
HKDF info binds both the ephemeral and the recipient public key (as HPKE's key schedule
does). The blob is ``ephemeral_pub (32) || nonce (12) || ciphertext || tag (16)``.

With ``ephemeral_seed`` the whole ciphertext is deterministic (for reproducible tests and
simulations). Like any ephemeral key, a seed must never be used twice.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sealbridge.core.errors import ConfigError, DecryptionError
from sealbridge.crypto import aead
from sealbridge.crypto.kdf import derive_key

KEY_SIZE = 32
OVERHEAD = KEY_SIZE + aead.NONCE_SIZE + aead.TAG_SIZE
_INFO = "sealbridge/ecies/x25519-hkdf-sha256-aes256gcm/v1"


def _private(private_key: bytes, what: str = "X25519 private key") -> X25519PrivateKey:
    if not isinstance(private_key, bytes | bytearray) or len(private_key) != KEY_SIZE:
        raise ConfigError(f"{what} must be {KEY_SIZE} bytes")
    return X25519PrivateKey.from_private_bytes(bytes(private_key))


def x25519_keypair(seed: bytes | None = None) -> tuple[bytes, bytes]:
    """Return ``(private, public)``; the private key is ``seed`` itself when given."""
    key = X25519PrivateKey.generate() if seed is None else _private(seed, "X25519 seed")
    return key.private_bytes_raw(), key.public_key().public_bytes_raw()


def x25519_public(private_key: bytes) -> bytes:
    """The 32-byte public key of an X25519 private key."""
    return _private(private_key).public_key().public_bytes_raw()


def _key_and_nonce(
    shared: bytes, ephemeral_pub: bytes, recipient_pub: bytes
) -> tuple[bytes, bytes]:
    info = f"{_INFO}/{ephemeral_pub.hex()}/{recipient_pub.hex()}"
    okm = derive_key(shared, info, length=aead.KEY_SIZE + aead.NONCE_SIZE)
    return okm[: aead.KEY_SIZE], okm[aead.KEY_SIZE :]


def encrypt_to(
    public_key: bytes,
    plaintext: bytes,
    aad: bytes = b"",
    *,
    ephemeral_seed: bytes | None = None,
) -> bytes:
    """Encrypt ``plaintext`` so that only the holder of ``public_key``'s private key reads it."""
    if not isinstance(public_key, bytes | bytearray) or len(public_key) != KEY_SIZE:
        raise ConfigError(f"X25519 public key must be {KEY_SIZE} bytes")
    recipient_pub = bytes(public_key)
    if ephemeral_seed is None:
        ephemeral = X25519PrivateKey.generate()
    else:
        ephemeral = _private(ephemeral_seed, "ephemeral seed")
    ephemeral_pub = ephemeral.public_key().public_bytes_raw()
    try:
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_pub))
    except ValueError as exc:  # all-zero shared secret: a low-order public key
        raise ConfigError("X25519 public key is a low-order point") from exc
    key, nonce = _key_and_nonce(shared, ephemeral_pub, recipient_pub)
    return ephemeral_pub + aead.seal(key, plaintext, aad, nonce=nonce)


class Recipient:
    """A parsed X25519 private key, for decrypting many blobs without re-parsing it."""

    def __init__(self, private_key: bytes) -> None:
        self._key = _private(private_key)
        self.public_key = self._key.public_key().public_bytes_raw()

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        """Decrypt a blob made by :func:`encrypt_to`; DecryptionError on any failure."""
        if not isinstance(blob, bytes | bytearray) or len(blob) < OVERHEAD:
            raise DecryptionError("ECIES blob is too short")
        blob = bytes(blob)
        ephemeral_pub = blob[:KEY_SIZE]
        try:
            shared = self._key.exchange(X25519PublicKey.from_public_bytes(ephemeral_pub))
        except ValueError as exc:
            raise DecryptionError("ECIES ephemeral key is a low-order point") from exc
        key, nonce = _key_and_nonce(shared, ephemeral_pub, self.public_key)
        if blob[KEY_SIZE : KEY_SIZE + aead.NONCE_SIZE] != nonce:
            raise DecryptionError("ECIES nonce does not match the key schedule")
        return aead.open_sealed(key, blob[KEY_SIZE:], aad)


def decrypt_with(private_key: bytes, blob: bytes, aad: bytes = b"") -> bytes:
    """Decrypt a blob made by :func:`encrypt_to`; DecryptionError on any failure."""
    return Recipient(private_key).decrypt(blob, aad)
