"""Ed25519 and Ethereum-style secp256k1 signatures, cross-checked against eth_account."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_keys.datatypes import Signature as EthKeysSignature
from hypothesis import given, settings
from hypothesis import strategies as st

from sealbridge.core.errors import ConfigError, CryptoError, InvalidSignature
from sealbridge.core.ids import keccak
from sealbridge.crypto import signing as s

SEED = bytes(range(1, 33))
DIGEST = keccak(b"sealbridge test message")


# --- Ed25519 -------------------------------------------------------------------------------


def test_ed25519_round_trip_and_rfc8032_vector() -> None:
    # RFC 8032, section 7.1, TEST 1 (empty message).
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    private, public = s.ed25519_keypair(seed)
    assert private == seed
    assert public.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    signature = s.ed25519_sign(private, b"")
    assert signature.hex().startswith("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065")
    s.ed25519_verify(public, b"", signature)
    assert s.is_valid_ed25519(public, b"", signature)


def test_ed25519_rejections() -> None:
    private, public = s.ed25519_keypair()
    assert s.ed25519_public(private) == public
    signature = s.ed25519_sign(private, b"msg")
    assert len(signature) == 64
    with pytest.raises(InvalidSignature):
        s.ed25519_verify(public, b"other", signature)
    _, other_public = s.ed25519_keypair(SEED)
    with pytest.raises(InvalidSignature):
        s.ed25519_verify(other_public, b"msg", signature)
    bad = bytearray(signature)
    bad[10] ^= 1
    assert not s.is_valid_ed25519(public, b"msg", bytes(bad))
    for key, sig in ((public[:31], signature), (public, signature[:63]), (b"", b"")):
        with pytest.raises(InvalidSignature):
            s.ed25519_verify(key, b"msg", sig)
    with pytest.raises(ConfigError):
        s.ed25519_sign(b"short", b"msg")


# --- secp256k1 -----------------------------------------------------------------------------


L = 2**252 + 27742317777372353535851937790883648493  # the order of Ed25519's base point


def test_ed25519_refuses_malleable_and_small_order_signatures() -> None:
    """The verifier (libsodium) refuses what an honest signer never makes: S not reduced
    mod L (a second encoding of a valid signature), the neutral point as public key (a
    key every signature "verifies" under with R = [S]B), and a small-order R."""
    private, public = s.ed25519_keypair(SEED)
    signature = s.ed25519_sign(private, b"msg")
    s.ed25519_verify(public, b"msg", signature)
    r, scalar = signature[:32], int.from_bytes(signature[32:], "little")
    with pytest.raises(InvalidSignature):
        s.ed25519_verify(public, b"msg", r + (scalar + L).to_bytes(32, "little"))
    neutral = (1).to_bytes(32, "little")  # the encoding of the point (0, 1)
    with pytest.raises(InvalidSignature):
        s.ed25519_verify(neutral, b"msg", neutral + bytes(32))
    with pytest.raises(InvalidSignature):
        s.ed25519_verify(public, b"msg", neutral + signature[32:])


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=300), st.integers(0, 511))
def test_ed25519_verifier_agrees_with_openssl(seed: bytes, message: bytes, flip: int) -> None:
    """Signatures made with ``cryptography`` (OpenSSL) verify, and any flipped bit of the
    signature is refused by both libraries."""
    from cryptography.exceptions import InvalidSignature as OpenSslInvalid
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    private, public = s.ed25519_keypair(seed)
    signature = s.ed25519_sign(private, message)
    assert s.is_valid_ed25519(public, message, signature)
    tampered = bytearray(signature)
    tampered[flip // 8] ^= 1 << (flip % 8)
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(bytes(tampered), message)
        openssl_ok = True
    except OpenSslInvalid:
        openssl_ok = False
    assert s.is_valid_ed25519(public, message, bytes(tampered)) == openssl_ok


def test_secp256k1_keypair() -> None:
    private, public = s.secp256k1_keypair(SEED)
    assert private == SEED and len(public) == 33 and public[0] in (2, 3)
    uncompressed = s.secp256k1_public(private, compressed=False)
    assert len(uncompressed) == 65 and uncompressed[0] == 4
    assert s.eth_address(public) == s.eth_address(uncompressed) == s.eth_address(uncompressed[1:])
    random_private, random_public = s.secp256k1_keypair()
    assert s.secp256k1_public(random_private) == random_public
    for bad in (b"\x00" * 32, s.SECP256K1_ORDER.to_bytes(32, "big"), b"\x01" * 31):
        with pytest.raises(ConfigError):
            s.secp256k1_keypair(bad)


@settings(max_examples=25, deadline=None)
@given(private=st.integers(1, s.SECP256K1_ORDER - 1), digest=st.binary(min_size=32, max_size=32))
def test_secp256k1_matches_eth_account(private: int, digest: bytes) -> None:
    key = private.to_bytes(32, "big")
    signature = s.secp256k1_sign_hash(key, digest)
    assert len(signature) == 65 and signature[64] in (27, 28)
    assert int.from_bytes(signature[32:64], "big") <= s.SECP256K1_ORDER // 2
    address = s.secp256k1_recover_address(digest, signature)
    expected = Account.from_key(key).address
    assert s.to_checksum_address(address) == expected
    assert address == s.eth_address(s.secp256k1_public(key))
    # eth_keys recovers the same signer from (r, s, v - 27).
    theirs = EthKeysSignature(signature_bytes=signature[:64] + bytes([signature[64] - 27]))
    assert theirs.recover_public_key_from_msg_hash(digest).to_checksum_address() == expected
    assert Account._recover_hash(digest, signature=signature) == expected
    s.secp256k1_verify(s.secp256k1_public(key), digest, signature)
    s.secp256k1_verify(s.secp256k1_public(key, compressed=False), digest, signature[:64])


def test_secp256k1_rejections() -> None:
    private, public = s.secp256k1_keypair(SEED)
    signature = s.secp256k1_sign_hash(private, DIGEST)
    _, other_public = s.secp256k1_keypair(b"\x02" * 32)
    with pytest.raises(InvalidSignature):
        s.secp256k1_verify(other_public, DIGEST, signature)
    with pytest.raises(InvalidSignature):
        s.secp256k1_verify(public, keccak(b"other"), signature)
    with pytest.raises(InvalidSignature):
        s.secp256k1_verify(other_public, DIGEST, signature[:64])
    # A recovered address for another digest is someone else (or nobody).
    try:
        assert s.secp256k1_recover_address(keccak(b"x"), signature) != s.eth_address(public)
    except InvalidSignature:
        pass
    # v outside {27, 28}, wrong lengths, high s (the malleable twin) are refused.
    flipped_v = signature[:64] + bytes([signature[64] ^ 0x03 if signature[64] == 27 else 1])
    r, low_s = signature[:32], int.from_bytes(signature[32:64], "big")
    high_s = r + (s.SECP256K1_ORDER - low_s).to_bytes(32, "big") + bytes([55 - signature[64]])
    for bad in (flipped_v, signature[:64], signature + b"\x00", high_s, bytes(65)):
        with pytest.raises(InvalidSignature):
            s.secp256k1_recover_address(DIGEST, bad)
    with pytest.raises(InvalidSignature):
        s.secp256k1_verify(public, DIGEST, high_s)
    with pytest.raises(InvalidSignature):
        s.secp256k1_verify(public[:32], DIGEST, signature)
    with pytest.raises(InvalidSignature):
        s.secp256k1_verify(b"\x02" + b"\xff" * 32, DIGEST, signature)
    with pytest.raises(ConfigError):
        s.secp256k1_sign_hash(private, b"not 32 bytes")
    with pytest.raises(CryptoError):
        s.eth_address(b"\x05" + bytes(32))


def test_checksum_address_eip55_vectors() -> None:
    for text in (
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ):
        assert s.to_checksum_address(bytes.fromhex(text[2:])) == text
    with pytest.raises(ConfigError):
        s.to_checksum_address(b"\x00" * 19)
