"""Contract keys from a threshold PRF: the unique BLS signature of the contract id.

Theory of operation
-------------------
The gatekeepers hold Shamir shares ``s_i`` of a BLS secret ``s`` that no one ever
assembles (see :mod:`sealbridge.crypto.dkg`). The contract key of contract ``cid`` is

    key(cid) = HKDF-SHA256(ikm = s·H(m), salt = cid, info = "sealbridge/contract-key/v2")

with ``m = PRF_TAG || cid`` and ``H`` the IETF hash to G2 of the POP ciphersuite, so
``s·H(m)`` is the ordinary BLS signature of ``m`` under the group public key ``s·G1``.
BLS signatures are unique (one valid signature per key and message), so this is a PRF of
the contract id keyed by ``s``, and any ``t`` holders can evaluate it jointly:

1. holder ``i`` computes the partial ``s_i·H(m)`` (:func:`compute_partial`);
2. the requester checks each partial against the public share ``s_i·G1``
   (:func:`is_valid_contract_partial`), interpolates ``t`` of them in the exponent
   (:func:`sealbridge.crypto.bls.combine`) and checks the result against the group public
   key -- by uniqueness a result that verifies *is* ``s·H(m)``, whoever sent what;
3. it derives the key with :func:`derive_contract_key_from_signature`.

:func:`combine_contract_key` does 2 and 3. It never returns a key whose signature failed
verification. Partials that fail their check are named (:class:`BadPartial`): the
requester raises on them, or with ``drop_bad=True`` skips them and goes on while enough
good ones remain. With ``optimistic=True`` it combines first and verifies only the
combined signature (one pairing check instead of ``t``), falling back to checking every
partial when that fails; uniqueness makes the optimistic result just as correct.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sealbridge.core.errors import ConfigError, InvalidSignature
from sealbridge.crypto import bls
from sealbridge.crypto.bls import KeyShare, PartialSignature
from sealbridge.crypto.kdf import derive_key
from sealbridge.crypto.shamir import ThresholdError

__all__ = [
    "CONTRACT_KEY_INFO",
    "PRF_TAG",
    "BadPartial",
    "CombinedSignatureInvalid",
    "combine_contract_key",
    "combine_contract_signature",
    "compute_partial",
    "compute_prf_message",
    "derive_contract_key_from_signature",
    "is_valid_contract_partial",
    "is_valid_contract_signature",
]

PRF_TAG = b"sealbridge/contract-key-prf/v1"
CONTRACT_KEY_INFO = "sealbridge/contract-key/v2"


class BadPartial(InvalidSignature):
    """A partial signature that does not verify under its holder's public share."""

    code = "bad_partial"

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"partial signature from holder {index!r} is bad: {reason}")
        self.index = index
        self.reason = reason


class CombinedSignatureInvalid(InvalidSignature):
    """The combined signature does not verify under the group public key.

    With every partial verified first this means the public shares are not shares of the
    group public key (a wrong key set), not a misbehaving holder.
    """

    code = "combined_signature_invalid"


def _check_contract_id(contract_id: bytes) -> bytes:
    if not isinstance(contract_id, bytes | bytearray) or not contract_id:
        raise ConfigError("contract id must be non-empty bytes")
    return bytes(contract_id)


def compute_prf_message(contract_id: bytes) -> bytes:
    """The message whose unique signature keys contract ``contract_id``."""
    return PRF_TAG + _check_contract_id(contract_id)


def derive_contract_key_from_signature(contract_id: bytes, signature: bytes) -> bytes:
    """The 32-byte contract key: HKDF-SHA256 of the 96-byte unique signature."""
    cid = _check_contract_id(contract_id)
    if not isinstance(signature, bytes | bytearray) or len(signature) != bls.SIGNATURE_SIZE:
        raise ConfigError(f"the PRF signature must be {bls.SIGNATURE_SIZE} bytes")
    return derive_key(bytes(signature), CONTRACT_KEY_INFO, salt=cid)


def compute_partial(share: KeyShare, contract_id: bytes) -> PartialSignature:
    """Holder ``share.index``'s partial evaluation of the PRF at ``contract_id``."""
    return bls.partial_sign(share, compute_prf_message(contract_id))


def is_valid_contract_partial(
    public_share: bytes, contract_id: bytes, partial: PartialSignature
) -> bool:
    """True when ``partial`` is the holder's signature of this contract's PRF message."""
    return bls.is_valid_partial(public_share, compute_prf_message(contract_id), partial)


def is_valid_contract_signature(
    group_public_key: bytes, contract_id: bytes, signature: bytes
) -> bool:
    """True when ``signature`` is the (unique) PRF signature of ``contract_id``."""
    return bls.verify(group_public_key, compute_prf_message(contract_id), signature)


def _check_partial(
    partial: PartialSignature,
    message: bytes,
    public_shares: Mapping[int, bytes],
) -> BadPartial | None:
    public_share = public_shares.get(partial.index)
    if public_share is None:
        return BadPartial(partial.index, "no public share has this index")
    if not bls.is_valid_partial(public_share, message, partial):
        return BadPartial(partial.index, "does not verify under its public share")
    return None


def _distinct(partials: Sequence[PartialSignature]) -> list[PartialSignature]:
    """Partials with repeated identical copies removed (first occurrence kept).

    Two *different* signatures from one index cannot both be valid (BLS signatures are
    unique), so a conflicting copy is kept and will be found bad.
    """
    seen: set[tuple[int, bytes]] = set()
    out: list[PartialSignature] = []
    for partial in partials:
        if not isinstance(partial, PartialSignature):
            raise ConfigError(f"expected PartialSignature, got {type(partial).__name__}")
        key = (partial.index, bytes(partial.signature))
        if key not in seen:
            seen.add(key)
            out.append(partial)
    return out


def _select_verified(
    partials: list[PartialSignature],
    message: bytes,
    threshold: int,
    public_shares: Mapping[int, bytes],
    *,
    drop_bad: bool,
) -> list[PartialSignature]:
    """Verify every partial; return ``threshold`` good ones with distinct indices."""
    good: dict[int, PartialSignature] = {}
    bad: list[BadPartial] = []
    for partial in partials:
        problem = _check_partial(partial, message, public_shares)
        if problem is None and partial.index in good:
            problem = BadPartial(partial.index, "conflicts with another partial of its holder")
        if problem is not None:
            if not drop_bad:
                raise problem
            bad.append(problem)
            continue
        good[partial.index] = partial
    if len(good) < threshold:
        named = ", ".join(str(p.index) for p in bad)
        detail = f" (bad partials from holders: {named})" if bad else ""
        raise ThresholdError(f"need {threshold} valid partial signatures, got {len(good)}{detail}")
    return list(good.values())[:threshold]


def _check_key_set(
    threshold: int, group_public_key: bytes, public_shares: Mapping[int, bytes]
) -> None:
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
        raise ConfigError(f"threshold must be a positive int, got {threshold!r}")
    if (
        not isinstance(group_public_key, bytes | bytearray)
        or len(group_public_key) != bls.PUBLIC_KEY_SIZE
    ):
        raise ConfigError(f"group public key must be {bls.PUBLIC_KEY_SIZE} bytes")
    if len(public_shares) < threshold:
        raise ConfigError(f"{len(public_shares)} public shares cannot reach threshold {threshold}")


def combine_contract_signature(
    contract_id: bytes,
    partials: Sequence[PartialSignature],
    *,
    threshold: int,
    group_public_key: bytes,
    public_shares: Mapping[int, bytes],
    drop_bad: bool = False,
    optimistic: bool = False,
) -> bytes:
    """The verified unique signature of ``contract_id``'s PRF message from ``partials``.

    Raises :class:`BadPartial` on a partial that fails its check (unless ``drop_bad``),
    :class:`~sealbridge.crypto.shamir.ThresholdError` when fewer than ``threshold`` good
    partials remain, :class:`CombinedSignatureInvalid` when the combination does not
    verify under ``group_public_key``.
    """
    _check_key_set(threshold, group_public_key, public_shares)
    message = compute_prf_message(contract_id)
    candidates = _distinct(partials)
    if optimistic:
        first: dict[int, PartialSignature] = {}
        for partial in candidates:
            if partial.index in public_shares:
                first.setdefault(partial.index, partial)
        if len(first) >= threshold:
            try:
                signature = bls.combine(list(first.values()), threshold)
            except InvalidSignature:
                signature = b""
            if bls.verify(group_public_key, message, signature):
                return signature
    chosen = _select_verified(candidates, message, threshold, public_shares, drop_bad=drop_bad)
    signature = bls.combine(chosen, threshold)
    if not bls.verify(group_public_key, message, signature):
        raise CombinedSignatureInvalid(
            "combined signature does not verify under the group public key: the public "
            "shares do not belong to it"
        )
    return signature


def combine_contract_key(
    contract_id: bytes,
    partials: Sequence[PartialSignature],
    *,
    threshold: int,
    group_public_key: bytes,
    public_shares: Mapping[int, bytes],
    drop_bad: bool = False,
    optimistic: bool = False,
) -> bytes:
    """The 32-byte contract key from ``threshold`` valid partials (see the module doc)."""
    signature = combine_contract_signature(
        contract_id,
        partials,
        threshold=threshold,
        group_public_key=group_public_key,
        public_shares=public_shares,
        drop_bad=drop_bad,
        optimistic=optimistic,
    )
    return derive_contract_key_from_signature(contract_id, signature)
