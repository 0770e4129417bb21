"""AES-256-GCM sealing and HKDF key derivation."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealbridge.core.errors import ConfigError, DecryptionError
from sealbridge.crypto import aead
from sealbridge.crypto.kdf import derive_key

KEY = bytes(range(32))


@given(plaintext=st.binary(max_size=512), aad=st.binary(max_size=64))
def test_round_trip(plaintext: bytes, aad: bytes) -> None:
    blob = aead.seal(KEY, plaintext, aad)
    assert len(blob) == aead.NONCE_SIZE + len(plaintext) + aead.TAG_SIZE
    assert aead.open_sealed(KEY, blob, aad) == plaintext


def test_random_nonce_and_explicit_nonce() -> None:
    assert aead.seal(KEY, b"x") != aead.seal(KEY, b"x")
    nonce = b"\x01" * aead.NONCE_SIZE
    blob = aead.seal(KEY, b"x", nonce=nonce)
    assert blob == aead.seal(KEY, b"x", nonce=nonce)
    assert blob[: aead.NONCE_SIZE] == nonce


def test_wrong_key_aad_tamper_short() -> None:
    blob = aead.seal(KEY, b"secret payload", b"ctx")
    with pytest.raises(DecryptionError):
        aead.open_sealed(bytes(32), blob, b"ctx")
    with pytest.raises(DecryptionError):
        aead.open_sealed(KEY, blob, b"other")
    for position in (0, aead.NONCE_SIZE, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[position] ^= 1
        with pytest.raises(DecryptionError):
            aead.open_sealed(KEY, bytes(tampered), b"ctx")
    with pytest.raises(DecryptionError):
        aead.open_sealed(KEY, blob[: aead.NONCE_SIZE + aead.TAG_SIZE - 1], b"ctx")
    with pytest.raises(DecryptionError):
        aead.open_sealed(KEY, blob[:-1], b"ctx")


def test_bad_sizes_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        aead.seal(b"short", b"x")
    with pytest.raises(ConfigError):
        aead.open_sealed(bytes(16), bytes(40))
    with pytest.raises(ConfigError):
        aead.seal(KEY, b"x", nonce=b"123")


def test_derive_key_rfc5869_case_3() -> None:
    # RFC 5869 test case 3: SHA-256, empty salt and info.
    okm = derive_key(bytes.fromhex("0b" * 22), "", length=42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_derive_key_matches_hmac_construction() -> None:
    ikm, salt = b"\x0b" * 22, bytes(range(13))
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    expected = hmac.new(prk, b"purpose/x\x01", hashlib.sha256).digest()
    assert derive_key(ikm, "purpose/x", salt=salt) == expected


def test_derive_key_separates_purposes_and_lengths() -> None:
    a = derive_key(b"ikm", "a")
    assert a != derive_key(b"ikm", "b")
    assert a != derive_key(b"ikm", "a", salt=b"salt")
    assert len(derive_key(b"ikm", "a", length=64)) == 64
    assert derive_key(b"ikm", "a", length=64)[:32] == a
    with pytest.raises(ConfigError):
        derive_key(b"ikm", "a", length=0)
    with pytest.raises(ConfigError):
        derive_key(b"ikm", "a", length=255 * 32 + 1)
