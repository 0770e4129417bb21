"""The threshold PRF that keys contracts: derivation, combination, and bad partials."""

from __future__ import annotations

import itertools

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from sealbridge.core.errors import ConfigError, InvalidSignature
from sealbridge.crypto import bls
from sealbridge.crypto.bls import PartialSignature, ThresholdKeySet, deal_threshold_key
from sealbridge.crypto.shamir import ThresholdError
from sealbridge.crypto.threshold_prf import (
    CONTRACT_KEY_INFO,
    PRF_TAG,
    BadPartial,
    CombinedSignatureInvalid,
    combine_contract_key,
    combine_contract_signature,
    compute_partial,
    compute_prf_message,
    derive_contract_key_from_signature,
    is_valid_contract_partial,
    is_valid_contract_signature,
)

CID = bytes([0xAB]) * 32
OTHER_CID = bytes([0xCD]) * 32
SECRET = (123456789).to_bytes(32, "big")


@pytest.fixture(scope="module")
def key_set() -> ThresholdKeySet:
    return deal_threshold_key(3, 5, secret=SECRET, randomness=b"prf tests")


def _public_shares(key_set: ThresholdKeySet) -> dict[int, bytes]:
    return {i + 1: pk for i, pk in enumerate(key_set.public_shares)}


def _partials(key_set: ThresholdKeySet, cid: bytes = CID) -> list[PartialSignature]:
    return [compute_partial(share, cid) for share in key_set.shares]


def _combine(key_set: ThresholdKeySet, partials: list[PartialSignature], **kw: bool) -> bytes:
    return combine_contract_key(
        CID,
        partials,
        threshold=key_set.threshold,
        group_public_key=key_set.group_public_key,
        public_shares=_public_shares(key_set),
        **kw,
    )


def _expected() -> bytes:
    return derive_contract_key_from_signature(CID, bls.sign(SECRET, compute_prf_message(CID)))


def test_prf_message_and_key_derivation() -> None:
    assert PRF_TAG == b"sealbridge/contract-key-prf/v1"
    assert compute_prf_message(CID) == PRF_TAG + CID
    with pytest.raises(ConfigError):
        compute_prf_message(b"")
    signature = bls.sign(SECRET, compute_prf_message(CID))
    key = derive_contract_key_from_signature(CID, signature)
    reference = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=CID, info=CONTRACT_KEY_INFO.encode()
    ).derive(signature)
    assert key == reference and len(key) == 32
    assert CONTRACT_KEY_INFO == "sealbridge/contract-key/v2"
    assert derive_contract_key_from_signature(OTHER_CID, signature) != key
    with pytest.raises(ConfigError):
        derive_contract_key_from_signature(CID, signature[:95])


def test_combination_equals_the_group_key_signature(key_set: ThresholdKeySet) -> None:
    partials = _partials(key_set)
    public = _public_shares(key_set)
    for i, partial in enumerate(partials, start=1):
        assert is_valid_contract_partial(public[i], CID, partial)
        assert not is_valid_contract_partial(public[i], OTHER_CID, partial)
    for subset in itertools.combinations(partials, 3):
        assert _combine(key_set, list(subset)) == _expected()
        assert _combine(key_set, list(subset), optimistic=True) == _expected()
    assert _combine(key_set, partials) == _expected()  # more than t: all verified
    signature = combine_contract_signature(
        CID,
        partials,
        threshold=3,
        group_public_key=key_set.group_public_key,
        public_shares=public,
    )
    assert is_valid_contract_signature(key_set.group_public_key, CID, signature)
    assert not is_valid_contract_signature(key_set.group_public_key, OTHER_CID, signature)


def test_identical_duplicates_are_ignored(key_set: ThresholdKeySet) -> None:
    partials = _partials(key_set)
    assert _combine(key_set, [partials[0], partials[0], partials[1], partials[2]]) == _expected()
    with pytest.raises(ThresholdError):
        _combine(key_set, [partials[0], partials[0], partials[1]])


def _relabel(partial: PartialSignature, index: int) -> PartialSignature:
    return PartialSignature(index=index, signature=partial.signature)


def _garbage_cases(key_set: ThresholdKeySet) -> list[tuple[str, PartialSignature]]:
    partials = _partials(key_set)
    other = _partials(key_set, OTHER_CID)
    stranger = deal_threshold_key(3, 5, randomness=b"another key set")
    not_a_point = bytes([0xA0]) + b"\x11" * 95
    return [
        ("wrong index", _relabel(partials[1], 3)),
        ("other message", other[2]),
        ("other key set", compute_partial(stranger.shares[2], CID)),
        ("not a point", PartialSignature(index=3, signature=not_a_point)),
        ("short", PartialSignature(index=3, signature=partials[2].signature[:50])),
        ("identity", PartialSignature(index=3, signature=bytes([0xC0]) + bytes(95))),
    ]


@pytest.mark.parametrize("case", range(6))
@pytest.mark.parametrize("optimistic", [False, True])
def test_bad_partial_is_named(key_set: ThresholdKeySet, case: int, optimistic: bool) -> None:
    partials = _partials(key_set)
    _label, bad = _garbage_cases(key_set)[case]
    with pytest.raises(BadPartial) as info:
        _combine(key_set, [partials[0], partials[1], bad], optimistic=optimistic)
    assert info.value.index == 3
    assert "3" in str(info.value)
    assert isinstance(info.value, InvalidSignature)
    # Dropping bad partials: enough good ones remain -> the right key; too few -> refused.
    assert (
        _combine(key_set, [bad, partials[0], partials[1], partials[3]], drop_bad=True)
        == _expected()
    )
    with pytest.raises(ThresholdError, match="holders: 3"):
        _combine(key_set, [partials[0], partials[1], bad], drop_bad=True, optimistic=optimistic)


def test_unknown_index_and_conflicting_duplicate(key_set: ThresholdKeySet) -> None:
    partials = _partials(key_set)
    with pytest.raises(BadPartial) as info:
        _combine(key_set, [partials[0], partials[1], _relabel(partials[2], 9)])
    assert info.value.index == 9 and "no public share" in info.value.reason
    conflicting = PartialSignature(index=1, signature=_partials(key_set, OTHER_CID)[0].signature)
    with pytest.raises(BadPartial) as info:
        _combine(key_set, [partials[0], conflicting, partials[1], partials[2]])
    assert info.value.index == 1


def test_inconsistent_key_set_never_yields_a_key(key_set: ThresholdKeySet) -> None:
    partials = _partials(key_set)
    wrong_group = bls.keygen(b"\x01" * 32)[1]
    with pytest.raises(CombinedSignatureInvalid):
        combine_contract_key(
            CID,
            partials[:3],
            threshold=3,
            group_public_key=wrong_group,
            public_shares=_public_shares(key_set),
        )
    with pytest.raises(CombinedSignatureInvalid):
        combine_contract_key(
            CID,
            partials[:3],
            threshold=3,
            group_public_key=wrong_group,
            public_shares=_public_shares(key_set),
            optimistic=True,
        )
    # A wrong threshold (2 instead of 3): interpolating 2 shares of a degree-2 sharing.
    with pytest.raises(CombinedSignatureInvalid):
        combine_contract_key(
            CID,
            partials[:2],
            threshold=2,
            group_public_key=key_set.group_public_key,
            public_shares=_public_shares(key_set),
        )


def test_argument_checks(key_set: ThresholdKeySet) -> None:
    partials = _partials(key_set)
    public = _public_shares(key_set)
    group = key_set.group_public_key
    with pytest.raises(ConfigError):
        combine_contract_key(
            CID, partials, threshold=0, group_public_key=group, public_shares=public
        )
    with pytest.raises(ConfigError):
        combine_contract_key(
            CID, partials, threshold=3, group_public_key=b"x", public_shares=public
        )
    with pytest.raises(ConfigError):
        combine_contract_key(
            CID, partials, threshold=6, group_public_key=group, public_shares=public
        )
    with pytest.raises(ThresholdError):
        combine_contract_key(CID, [], threshold=3, group_public_key=group, public_shares=public)


@settings(max_examples=15, deadline=None)
@given(
    t=st.integers(min_value=1, max_value=6),
    extra=st.integers(min_value=0, max_value=3),
    data=st.data(),
)
def test_property_subsets_agree_with_the_dealer_key(
    t: int, extra: int, data: st.DataObject
) -> None:
    n = t + extra
    secret = data.draw(st.integers(min_value=1, max_value=2**200), label="secret")
    key_set = deal_threshold_key(t, n, secret=secret.to_bytes(32, "big"), randomness=b"p")
    cid = data.draw(st.binary(min_size=1, max_size=33), label="cid")
    subset = data.draw(st.permutations(range(n)), label="order")[:t]
    partials = [compute_partial(key_set.shares[i], cid) for i in subset]
    key = combine_contract_key(
        cid,
        partials,
        threshold=t,
        group_public_key=key_set.group_public_key,
        public_shares=_public_shares(key_set),
        optimistic=data.draw(st.booleans(), label="optimistic"),
    )
    signature = bls.sign(secret.to_bytes(32, "big"), compute_prf_message(cid))
    assert key == derive_contract_key_from_signature(cid, signature)
