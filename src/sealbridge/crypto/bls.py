"""BLS signatures on BLS12-381 and threshold BLS.

Ciphersuite ``BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`` (IETF draft-irtf-cfrg-bls-
signature): public keys in G1 (48 bytes compressed), signatures in G2 (96 bytes
compressed), messages hashed to G2 with the IETF ``hash_to_curve`` and the ciphersuite as
DST. Byte formats are those of py_ecc, blspy and the EVM's EIP-2537 tooling.

Libraries do the curve work: ``py_arkworks_bls12381`` for group arithmetic, hashing to
the curve and the multi-exponentiation that combines partial signatures; ``blspy`` for
fast (aggregate) verification. Verification never raises on bad bytes: it returns False.

Threshold BLS: a dealer Shamir-shares a secret key (:func:`deal_threshold_key`); holder
``i`` signs with its share (:func:`partial_sign`), anyone checks a partial against the
public share ``i`` (:func:`is_valid_partial`), and any ``threshold`` partials combine by
Lagrange interpolation in the exponent (:func:`combine`) into the ordinary signature of the
group key -- identical to ``sign(group_secret, message)``.

Aggregation assumes keys with a proof of possession (:func:`pop_prove`,
:func:`pop_verify`), as the POP ciphersuite requires, against rogue-key attacks.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence

import blspy
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from py_arkworks_bls12381 import G1Point, G2Point, Scalar

from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError, InvalidSignature
from sealbridge.crypto.shamir import (
    BLS_SCALAR_ORDER,
    ThresholdError,
    lagrange_coefficients,
    scalar_from_bytes,
    scalar_to_bytes,
    split_secret,
)

__all__ = [
    "CIPHERSUITE",
    "POP_CIPHERSUITE",
    "SECRET_KEY_SIZE",
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "KeyShare",
    "PartialSignature",
    "ThresholdError",
    "ThresholdKeySet",
    "aggregate",
    "aggregate_verify",
    "combine",
    "deal_threshold_key",
    "fast_aggregate_verify",
    "is_valid_partial",
    "keygen",
    "partial_sign",
    "pop_prove",
    "pop_verify",
    "public_key",
    "sign",
    "verify",
]

CIPHERSUITE = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
POP_CIPHERSUITE = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
SECRET_KEY_SIZE = 32
PUBLIC_KEY_SIZE = 48
SIGNATURE_SIZE = 96
UNCOMPRESSED_SIGNATURE_SIZE = 192  # G2 point as big-endian x || y (no square root to load)
_KEYGEN_SALT = b"BLS-SIG-KEYGEN-SALT-"
_KEYGEN_L = 48  # ceil(3 * ceil(log2(r)) / 16)
_IDENTITY_G1 = G1Point.identity().to_compressed_bytes()
_VERIFY_ERRORS = (ValueError, TypeError, RuntimeError)


class KeyShare(Message, frozen=True):
    """Share ``index`` of a threshold secret key: a 32-byte big-endian scalar."""

    index: int
    secret: bytes


class ThresholdKeySet(Message, frozen=True):
    """What a dealer hands out; ``public_shares[i - 1]`` is the public key of share ``i``."""

    threshold: int
    group_public_key: bytes
    public_shares: list[bytes]
    shares: list[KeyShare]


class PartialSignature(Message, frozen=True):
    """Holder ``index``'s signature with its key share."""

    index: int
    signature: bytes


# --- keys ----------------------------------------------------------------------------------


def _secret_scalar(secret_key: bytes) -> int:
    if not isinstance(secret_key, bytes | bytearray) or len(secret_key) != SECRET_KEY_SIZE:
        raise ConfigError(f"BLS secret key must be {SECRET_KEY_SIZE} bytes big-endian")
    value = int.from_bytes(secret_key, "big")
    if not 0 < value < BLS_SCALAR_ORDER:
        raise ConfigError("BLS secret key must be in [1, r)")
    return value


def _ietf_keygen(ikm: bytes, key_info: bytes = b"") -> int:
    """IETF KeyGen (draft-irtf-cfrg-bls-signature-05, section 2.3)."""
    salt = _KEYGEN_SALT
    value = 0
    while value == 0:
        salt = hashlib.sha256(salt).digest()
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=_KEYGEN_L,
            salt=salt,
            info=key_info + _KEYGEN_L.to_bytes(2, "big"),
        )
        value = int.from_bytes(hkdf.derive(ikm + b"\x00"), "big") % BLS_SCALAR_ORDER
    return value


def keygen(seed: bytes | None = None) -> tuple[bytes, bytes]:
    """Return ``(secret (32), public (48))``; IETF KeyGen from ``seed`` (>= 32 bytes) if given."""
    if seed is None:
        seed = os.urandom(32)
    if not isinstance(seed, bytes | bytearray) or len(seed) < 32:
        raise ConfigError("BLS key seed must be at least 32 bytes")
    secret = scalar_to_bytes(_ietf_keygen(bytes(seed)))
    return secret, public_key(secret)


def _public_from_scalar(value: int) -> bytes:
    return (G1Point() * Scalar(value)).to_compressed_bytes()


def public_key(secret_key: bytes) -> bytes:
    """The 48-byte compressed G1 public key of a secret key."""
    return _public_from_scalar(_secret_scalar(secret_key))


# --- single signatures ---------------------------------------------------------------------


def _sign_scalar(value: int, message: bytes) -> bytes:
    """The compressed signature ``value * H(message)``: signed by blst (blspy), about
    twice as fast as hashing and multiplying with arkworks; the zero scalar (which blst
    refuses as a key) gives the identity, as the arithmetic does."""
    if value % BLS_SCALAR_ORDER == 0:
        return bytes(G2Point.identity().to_compressed_bytes())
    secret = blspy.PrivateKey.from_bytes((value % BLS_SCALAR_ORDER).to_bytes(32, "big"))
    return bytes(blspy.PopSchemeMPL.sign(secret, bytes(message)))


def sign(secret_key: bytes, message: bytes) -> bytes:
    """The 96-byte signature of ``message``."""
    return _sign_scalar(_secret_scalar(secret_key), message)


def _g1(data: bytes) -> blspy.G1Element | None:
    """A public key decoded and validated (canonical, in G1, not the identity), or None."""
    if not isinstance(data, bytes | bytearray) or len(data) != PUBLIC_KEY_SIZE:
        return None
    if bytes(data) == _IDENTITY_G1:
        return None
    try:
        return blspy.G1Element.from_bytes(bytes(data))
    except _VERIFY_ERRORS:
        return None


def compress_signature(signature: bytes) -> bytes:
    """The 96-byte form of a signature given uncompressed (192 bytes; checked to lie in
    G2), or the signature itself when it is already compressed."""
    if isinstance(signature, bytes | bytearray) and len(signature) == UNCOMPRESSED_SIGNATURE_SIZE:
        try:
            point = G2Point.from_xy_bytes_be(bytes(signature))
        except _VERIFY_ERRORS as exc:
            raise InvalidSignature("uncompressed signature is not a point of G2") from exc
        return bytes(point.to_compressed_bytes())
    return bytes(signature)


def _g2(data: bytes) -> blspy.G2Element | None:
    """A signature decoded and validated (canonical, in G2), or None; an uncompressed
    (192-byte) signature is accepted too."""
    if isinstance(data, bytes | bytearray) and len(data) == UNCOMPRESSED_SIGNATURE_SIZE:
        try:
            data = compress_signature(data)
        except InvalidSignature:
            return None
    if not isinstance(data, bytes | bytearray) or len(data) != SIGNATURE_SIZE:
        return None
    try:
        return blspy.G2Element.from_bytes(bytes(data))
    except _VERIFY_ERRORS:
        return None


def _messages_ok(messages: Sequence[bytes]) -> bool:
    return all(isinstance(m, bytes | bytearray) for m in messages)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is valid for ``message`` under ``public_key``."""
    pk, sig = _g1(public_key), _g2(signature)
    if pk is None or sig is None or not _messages_ok([message]):
        return False
    try:
        return bool(blspy.PopSchemeMPL.verify(pk, bytes(message), sig))
    except _VERIFY_ERRORS:
        return False


# --- aggregation ---------------------------------------------------------------------------


def aggregate(signatures: Sequence[bytes]) -> bytes:
    """Aggregate signatures into one 96-byte signature."""
    if not signatures:
        raise ConfigError("cannot aggregate an empty list of signatures")
    points = []
    for position, signature in enumerate(signatures):
        point = _g2(signature)
        if point is None:
            raise InvalidSignature(f"signature {position} is not a valid G2 point")
        points.append(point)
    return bytes(blspy.PopSchemeMPL.aggregate(points))


def aggregate_verify(
    public_keys: Sequence[bytes], messages: Sequence[bytes], signature: bytes
) -> bool:
    """True when ``signature`` aggregates signatures of ``messages[i]`` by ``public_keys[i]``.

    The messages must be pairwise distinct (as IETF's basic-scheme AggregateVerify demands);
    use :func:`fast_aggregate_verify` when every signer signed the same message.
    """
    if not public_keys or len(public_keys) != len(messages) or not _messages_ok(messages):
        return False
    if len({bytes(m) for m in messages}) != len(messages):
        return False
    sig = _g2(signature)
    pks = [_g1(pk) for pk in public_keys]
    if sig is None or any(pk is None for pk in pks):
        return False
    try:
        return bool(blspy.PopSchemeMPL.aggregate_verify(pks, [bytes(m) for m in messages], sig))
    except _VERIFY_ERRORS:
        return False


def fast_aggregate_verify(public_keys: Sequence[bytes], message: bytes, signature: bytes) -> bool:
    """True when ``signature`` aggregates signatures of one ``message`` by all ``public_keys``."""
    if not public_keys or not _messages_ok([message]):
        return False
    sig = _g2(signature)
    pks = [_g1(pk) for pk in public_keys]
    if sig is None or any(pk is None for pk in pks):
        return False
    try:
        return bool(blspy.PopSchemeMPL.fast_aggregate_verify(pks, bytes(message), sig))
    except _VERIFY_ERRORS:
        return False


def pop_prove(secret_key: bytes) -> bytes:
    """A proof of possession of ``secret_key`` (the POP ciphersuite's PopProve)."""
    pk = public_key(secret_key)
    point = G2Point.hash_to_curve(pk, POP_CIPHERSUITE) * Scalar(_secret_scalar(secret_key))
    return point.to_compressed_bytes()


def pop_verify(public_key: bytes, proof: bytes) -> bool:
    """True when ``proof`` proves possession of ``public_key``'s secret key."""
    pk, sig = _g1(public_key), _g2(proof)
    if pk is None or sig is None:
        return False
    try:
        return bool(blspy.PopSchemeMPL.pop_verify(pk, sig))
    except _VERIFY_ERRORS:
        return False


# --- threshold BLS -------------------------------------------------------------------------


def deal_threshold_key(
    threshold: int,
    count: int,
    *,
    secret: bytes | None = None,
    randomness: bytes | None = None,
) -> ThresholdKeySet:
    """Make (or take) a group secret key and Shamir-share it, ``threshold`` of ``count``.

    With ``randomness`` (and no ``secret``) the whole key set is deterministic.
    """
    if secret is None:
        if randomness is None:
            secret, _ = keygen()
        else:
            secret, _ = keygen(hashlib.sha256(b"sealbridge/bls/dealer/v1" + randomness).digest())
    group_secret = _secret_scalar(secret)
    shares = split_secret(group_secret, threshold, count, randomness=randomness)
    key_shares = [KeyShare(index=share.index, secret=share.value) for share in shares]
    return ThresholdKeySet(
        threshold=threshold,
        group_public_key=_public_from_scalar(group_secret),
        public_shares=[_public_from_scalar(share.int_value) for share in shares],
        shares=key_shares,
    )


def partial_sign(
    share: KeyShare, message: bytes, *, uncompressed: bool = False
) -> PartialSignature:
    """Sign ``message`` with a key share. ``uncompressed``: the 192-byte form, which a
    combiner loads without a square root (for partials sent to a collector)."""
    if not isinstance(share.index, int) or share.index < 1:
        raise ConfigError(f"key share index must be >= 1, got {share.index!r}")
    signature = _sign_scalar(scalar_from_bytes(share.secret), message)
    if uncompressed:
        # blst's output lies in G2: loading it skips only a check that cannot fail
        signature = bytes(G2Point.from_compressed_bytes_unchecked(signature).to_xy_bytes_be())
    return PartialSignature(index=share.index, signature=signature)


def is_valid_partial(public_share: bytes, message: bytes, partial: PartialSignature) -> bool:
    """True when ``partial`` is a valid signature of ``message`` under ``public_share``."""
    return verify(public_share, message, partial.signature)


def combine(
    partials: Sequence[PartialSignature], threshold: int, *, check_subgroup: bool = True
) -> bytes:
    """Combine the first ``threshold`` distinct-index partials into the group signature.

    Partials are not verified here: check each with :func:`is_valid_partial` first (or
    verify the result), or one bad partial spoils the combination. With
    ``check_subgroup=False`` the partials' points skip the (costly) subgroup check when
    decompressed -- for a caller that verifies the combined signature anyway, which is
    then either the group's unique signature or rejected (a collector's optimistic
    combine).
    """
    if not isinstance(threshold, int) or threshold < 1:
        raise ConfigError(f"threshold must be a positive int, got {threshold!r}")
    chosen: dict[int, bytes] = {}
    for partial in partials:
        if len(chosen) == threshold:
            break
        if not isinstance(partial.index, int) or not 0 < partial.index < BLS_SCALAR_ORDER:
            raise InvalidSignature(f"partial signature index out of range: {partial.index!r}")
        chosen.setdefault(partial.index, partial.signature)
    if len(chosen) < threshold:
        raise ThresholdError(f"need {threshold} distinct partial signatures, got {len(chosen)}")
    points = []
    for index, signature in chosen.items():
        points.append(_load_partial(index, signature, check_subgroup))
    pairs = sorted(zip(chosen, points, strict=True), key=lambda pair: pair[0])
    coefficients = _get_lagrange_scalars(tuple(index for index, _ in pairs))
    combined = G2Point.multiexp_unchecked([point for _, point in pairs], list(coefficients))
    return combined.to_compressed_bytes()


def _load_partial(index: int, signature: bytes, check_subgroup: bool) -> G2Point:
    """A partial's point, from its compressed (96) or uncompressed (192-byte) form."""
    if not isinstance(signature, bytes | bytearray):
        raise InvalidSignature(f"partial signature {index} is not bytes")
    data = bytes(signature)
    try:
        if len(data) == UNCOMPRESSED_SIGNATURE_SIZE:
            if check_subgroup:
                point = G2Point.from_xy_bytes_be(data)
            else:
                point = G2Point.from_xy_bytes_unchecked_be(data)
            canonical = point.to_xy_bytes_be()
        elif len(data) == SIGNATURE_SIZE:
            if check_subgroup:
                point = G2Point.from_compressed_bytes(data)
            else:
                point = G2Point.from_compressed_bytes_unchecked(data)
            canonical = point.to_compressed_bytes()
        else:
            raise InvalidSignature(
                f"partial signature {index} must be {SIGNATURE_SIZE} or "
                f"{UNCOMPRESSED_SIGNATURE_SIZE} bytes"
            )
    except _VERIFY_ERRORS as exc:
        raise InvalidSignature(f"partial signature {index} is not a G2 point") from exc
    if bytes(canonical) != data:
        raise InvalidSignature(f"partial signature {index} is not canonically encoded")
    return point


@functools.lru_cache(maxsize=64)
def _get_lagrange_scalars(indices: tuple[int, ...]) -> tuple[Scalar, ...]:
    """Lagrange coefficients at 0 for a signer set, kept for the sets seen recently: a
    collector that combines every round mostly sees the same fastest signers again."""
    return tuple(Scalar(c) for c in lagrange_coefficients(list(indices)))
