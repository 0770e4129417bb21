"""ECIES to X25519 keys: round trips, determinism, and every way decryption must fail."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from sealbridge.core.errors import ConfigError, DecryptionError
from sealbridge.crypto import ecies
from sealbridge.crypto.ecies import decrypt_with, encrypt_to, x25519_keypair, x25519_public
from sealbridge.crypto.kdf import derive_key

SEED = bytes(range(32))
# A low-order Curve25519 point (order 8); the shared secret with it is all zeros.
LOW_ORDER = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")


def test_keypair_is_deterministic_from_seed() -> None:
    private, public = x25519_keypair(SEED)
    assert private == SEED
    assert len(public) == 32
    assert x25519_public(private) == public
    assert x25519_keypair(SEED) == (private, public)
    other = X25519PrivateKey.from_private_bytes(SEED).public_key().public_bytes_raw()
    assert public == other
    random_private, random_public = x25519_keypair()
    assert random_private != SEED and x25519_public(random_private) == random_public
    with pytest.raises(ConfigError):
        x25519_keypair(b"short")


@settings(max_examples=30)
@given(plaintext=st.binary(max_size=300), aad=st.binary(max_size=40))
def test_round_trip(plaintext: bytes, aad: bytes) -> None:
    private, public = x25519_keypair(SEED)
    blob = encrypt_to(public, plaintext, aad)
    assert len(blob) == ecies.OVERHEAD + len(plaintext)
    assert decrypt_with(private, blob, aad) == plaintext


def test_ephemeral_seed_makes_ciphertext_deterministic() -> None:
    _, public = x25519_keypair(SEED)
    eph = b"\x07" * 32
    blob = encrypt_to(public, b"hello", ephemeral_seed=eph)
    assert blob == encrypt_to(public, b"hello", ephemeral_seed=eph)
    assert blob[:32] == x25519_public(eph)
    assert encrypt_to(public, b"hello") != encrypt_to(public, b"hello")


def test_wrong_key_wrong_aad_tampering() -> None:
    private, public = x25519_keypair(SEED)
    other_private, _ = x25519_keypair(b"\x01" * 32)
    blob = encrypt_to(public, b"the plaintext", b"aad")
    with pytest.raises(DecryptionError):
        decrypt_with(other_private, blob, b"aad")
    with pytest.raises(DecryptionError):
        decrypt_with(private, blob, b"AAD")
    for position in (0, 31, 32, 44, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(DecryptionError):
            decrypt_with(private, bytes(tampered), b"aad")


def test_key_schedule_binds_both_public_keys() -> None:
    # Recompute the documented construction independently: X25519, then HKDF-SHA256 with an
    # info naming the ephemeral and the recipient key, giving the AES key and the nonce.
    private, public = x25519_keypair(SEED)
    eph_seed = b"\x09" * 32
    blob = encrypt_to(public, b"m", b"a", ephemeral_seed=eph_seed)
    eph = X25519PrivateKey.from_private_bytes(eph_seed)
    eph_pub = eph.public_key().public_bytes_raw()
    shared = eph.exchange(X25519PublicKey.from_public_bytes(public))
    info = f"sealbridge/ecies/x25519-hkdf-sha256-aes256gcm/v1/{eph_pub.hex()}/{public.hex()}"
    okm = derive_key(shared, info, length=44)
    body = AESGCM(okm[:32]).encrypt(okm[32:], b"m", b"a")
    assert blob == eph_pub + okm[32:] + body
    assert decrypt_with(private, blob, b"a") == b"m"
    private_b, _ = x25519_keypair(b"\x02" * 32)
    with pytest.raises(DecryptionError):
        decrypt_with(private_b, blob, b"a")


def test_malformed_blobs() -> None:
    private, _ = x25519_keypair(SEED)
    for blob in (b"", b"\x00" * 10, b"\x01" * (ecies.OVERHEAD - 1)):
        with pytest.raises(DecryptionError):
            decrypt_with(private, blob)
    with pytest.raises(DecryptionError):
        decrypt_with(private, LOW_ORDER + bytes(40))
    with pytest.raises(DecryptionError):
        decrypt_with(private, bytes(32) + bytes(40))


def test_bad_recipient_keys() -> None:
    with pytest.raises(ConfigError):
        encrypt_to(LOW_ORDER, b"x")
    with pytest.raises(ConfigError):
        encrypt_to(b"\x01" * 31, b"x")
    with pytest.raises(ConfigError):
        decrypt_with(b"short", bytes(100))
