"""BLS signatures and threshold BLS, cross-checked against py_ecc (the reference)."""

from __future__ import annotations

import itertools

import pytest
from eth_typing import BLSPubkey, BLSSignature
from hypothesis import given, settings
from hypothesis import strategies as st
from py_arkworks_bls12381 import G1Point, G2Point
from py_ecc.bls.ciphersuites import G2ProofOfPossession as Reference  # = py_ecc.bls's

from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import ConfigError, InvalidSignature
from sealbridge.crypto import bls
from sealbridge.crypto.bls import (
    KeyShare,
    PartialSignature,
    ThresholdError,
    ThresholdKeySet,
    combine,
    deal_threshold_key,
    is_valid_partial,
    partial_sign,
)
from sealbridge.crypto.shamir import BLS_SCALAR_ORDER, Share, recover_secret
from sealbridge.crypto.shamir import ThresholdError as ShamirThresholdError

MSG = b"sealbridge: lock 100 tokens, round 7"
SEED = bytes(range(32))


def _pks(keys: list[bytes]) -> list[BLSPubkey]:
    return [BLSPubkey(key) for key in keys]


def _pk(key_set: ThresholdKeySet) -> BLSPubkey:
    return BLSPubkey(key_set.group_public_key)


@pytest.fixture(scope="module")
def key_set() -> ThresholdKeySet:
    return deal_threshold_key(3, 5, randomness=b"test dealer")


def test_ciphersuite_and_threshold_error_export() -> None:
    assert bls.CIPHERSUITE == b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
    assert ThresholdError is ShamirThresholdError


def test_keygen_and_sign_match_reference() -> None:
    secret, public = bls.keygen(SEED)
    assert int.from_bytes(secret, "big") == Reference.KeyGen(SEED)
    assert public == Reference.SkToPk(int.from_bytes(secret, "big"))
    assert len(secret) == 32 and len(public) == 48
    assert bls.public_key(secret) == public
    signature = bls.sign(secret, MSG)
    assert len(signature) == 96
    assert signature == Reference.Sign(int.from_bytes(secret, "big"), MSG)
    assert bls.pop_prove(secret) == Reference.PopProve(int.from_bytes(secret, "big"))
    assert bls.pop_verify(public, bls.pop_prove(secret))
    assert not bls.pop_verify(public, signature)


def test_keygen_random_and_bad_input() -> None:
    a, b = bls.keygen(), bls.keygen()
    assert a != b
    with pytest.raises(ConfigError):
        bls.keygen(b"too short")
    for bad in (bytes(32), BLS_SCALAR_ORDER.to_bytes(32, "big"), b"\x01" * 31):
        with pytest.raises(ConfigError):
            bls.public_key(bad)
        with pytest.raises(ConfigError):
            bls.sign(bad, MSG)


def test_verify() -> None:
    secret, public = bls.keygen(SEED)
    signature = bls.sign(secret, MSG)
    assert bls.verify(public, MSG, signature)
    assert not bls.verify(public, MSG + b"!", signature)
    _, other = bls.keygen(b"\x01" * 32)
    assert not bls.verify(other, MSG, signature)


def test_verify_never_raises_on_bad_bytes() -> None:
    secret, public = bls.keygen(SEED)
    signature = bls.sign(secret, MSG)
    identity_g1 = G1Point.identity().to_compressed_bytes()
    identity_g2 = G2Point.identity().to_compressed_bytes()
    flipped = bytearray(signature)
    flipped[50] ^= 1
    bad_keys = [b"", public[:47], b"\xff" * 48, b"\x00" * 48, identity_g1, public + b"\x00"]
    bad_sigs = [b"", signature[:95], b"\xff" * 96, b"\x00" * 96, bytes(flipped), identity_g2]
    for key in bad_keys:
        assert not bls.verify(key, MSG, signature)
    for sig in bad_sigs:
        assert not bls.verify(public, MSG, sig)
    # The identity key with the identity signature "verifies" every message unless refused.
    assert not bls.verify(identity_g1, MSG, identity_g2)
    assert not bls.verify(public, "not bytes", signature)  # type: ignore[arg-type]


def test_aggregate_and_fast_aggregate_verify() -> None:
    keys = [bls.keygen(bytes([i]) * 32) for i in range(1, 5)]
    same = [bls.sign(secret, MSG) for secret, _ in keys]
    publics = [public for _, public in keys]
    agg = bls.aggregate(same)
    assert bls.fast_aggregate_verify(publics, MSG, agg)
    assert not bls.fast_aggregate_verify(publics[:-1], MSG, agg)
    assert not bls.fast_aggregate_verify(publics, MSG + b"!", agg)
    assert not bls.fast_aggregate_verify([], MSG, agg)
    assert not bls.fast_aggregate_verify([b"\x00" * 48, *publics], MSG, agg)
    # Rogue-key shape: pk and -pk sum to the identity; the identity signature must not pass.
    pk = G1Point.from_compressed_bytes(publics[0])
    minus = (-pk).to_compressed_bytes()
    identity_g2 = G2Point.identity().to_compressed_bytes()
    assert not bls.fast_aggregate_verify([publics[0], minus], MSG, identity_g2)
    assert not bls.aggregate_verify([publics[0], minus], [MSG, MSG], identity_g2)
    messages = [MSG + bytes([i]) for i in range(4)]
    distinct = [bls.sign(secret, m) for (secret, _), m in zip(keys, messages, strict=True)]
    agg2 = bls.aggregate(distinct)
    assert bls.aggregate_verify(publics, messages, agg2)
    assert not bls.aggregate_verify(publics, messages[::-1], agg2)
    assert not bls.aggregate_verify(publics[:-1], messages, agg2)
    assert not bls.aggregate_verify([], [], agg2)
    assert not bls.aggregate_verify(publics, messages, b"\x00" * 96)
    with pytest.raises(ConfigError):
        bls.aggregate([])
    with pytest.raises(InvalidSignature):
        bls.aggregate([same[0], b"\x00" * 96])


def test_aggregate_verify_agrees_with_reference() -> None:
    keys = [bls.keygen(bytes([i]) * 32) for i in (7, 8)]
    publics = [public for _, public in keys]
    messages = [b"first", b"second"]
    agg = bls.aggregate([bls.sign(sk, m) for (sk, _), m in zip(keys, messages, strict=True)])
    assert bls.aggregate_verify(publics, messages, agg) is True
    assert Reference.AggregateVerify(_pks(publics), messages, BLSSignature(agg)) is True
    swapped = [b"second", b"first"]
    assert bls.aggregate_verify(publics, swapped, agg) is False
    assert Reference.AggregateVerify(_pks(publics), swapped, BLSSignature(agg)) is False


def test_threshold_combine_matches_group_signature(key_set: ThresholdKeySet) -> None:
    assert key_set.threshold == 3
    assert len(key_set.shares) == len(key_set.public_shares) == 5
    partials = [partial_sign(share, MSG) for share in key_set.shares]
    for share, public, partial in zip(key_set.shares, key_set.public_shares, partials, strict=True):
        assert bls.public_key(share.secret) == public
        assert partial.index == share.index
        assert is_valid_partial(public, MSG, partial)
    results = {combine(list(subset), 3) for subset in itertools.permutations(partials, 3)}
    assert len(results) == 1
    signature = results.pop()
    assert bls.verify(key_set.group_public_key, MSG, signature)
    assert not bls.verify(key_set.group_public_key, MSG + b"!", signature)
    # It is the plain signature of the (never assembled) group secret.
    shares = [Share(index=k.index, value=k.secret) for k in key_set.shares]
    group_secret = recover_secret(shares[:3], 3).to_bytes(32, "big")
    assert bls.public_key(group_secret) == key_set.group_public_key
    assert signature == bls.sign(group_secret, MSG)


def test_threshold_combine_equals_dealer_signature() -> None:
    secret, public = bls.keygen(SEED)
    key_set = deal_threshold_key(3, 5, secret=secret)
    assert key_set.group_public_key == public
    partials = [partial_sign(share, MSG) for share in key_set.shares]
    assert combine(partials[2:], 3) == bls.sign(secret, MSG)
    assert combine([partials[4], partials[0], partials[2]], 3) == bls.sign(secret, MSG)


def test_threshold_signature_verifies_under_reference(key_set: ThresholdKeySet) -> None:
    partials = [partial_sign(share, MSG) for share in key_set.shares]
    signature = combine([partials[1], partials[3], partials[4]], 3)
    assert Reference.Verify(_pk(key_set), MSG, BLSSignature(signature)) is True
    assert Reference.Verify(_pk(key_set), b"another message", BLSSignature(signature)) is False


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_any_t_subset_combines_identically(data: st.DataObject) -> None:
    count = data.draw(st.integers(1, 7))
    threshold = data.draw(st.integers(1, count))
    secret, public = bls.keygen(data.draw(st.binary(min_size=32, max_size=32)))
    key_set = deal_threshold_key(threshold, count, secret=secret)
    partials = [partial_sign(share, MSG) for share in key_set.shares]
    chosen = data.draw(st.permutations(partials))[:threshold]
    assert combine(chosen, threshold) == bls.sign(secret, MSG)


def test_wrong_share_fails_verify_partial(key_set: ThresholdKeySet) -> None:
    other = deal_threshold_key(3, 5, randomness=b"another dealer")
    forged = partial_sign(KeyShare(index=2, secret=other.shares[1].secret), MSG)
    assert not is_valid_partial(key_set.public_shares[1], MSG, forged)
    honest = partial_sign(key_set.shares[1], MSG)
    assert not is_valid_partial(key_set.public_shares[0], MSG, honest)
    assert not is_valid_partial(key_set.public_shares[1], b"other", honest)
    # And a combination with the forged partial is not the group's signature.
    partials = [partial_sign(share, MSG) for share in key_set.shares]
    bad = combine([partials[0], forged, partials[2]], 3)
    assert not bls.verify(key_set.group_public_key, MSG, bad)


def test_combine_thresholds_and_duplicates(key_set: ThresholdKeySet) -> None:
    partials = [partial_sign(share, MSG) for share in key_set.shares]
    with pytest.raises(ThresholdError):
        combine(partials[:2], 3)
    with pytest.raises(ThresholdError):
        combine([partials[0], partials[0], partials[1], partials[1]], 3)
    # Duplicates are skipped; exactly the first three distinct indices are used.
    expected = combine([partials[0], partials[1], partials[2]], 3)
    assert combine([partials[0], partials[0], partials[1], partials[2], partials[3]], 3) == expected
    # A garbage partial after the first `threshold` distinct ones is never looked at.
    junk = PartialSignature(index=5, signature=b"junk")
    assert combine([*partials[:3], junk], 3) == expected
    with pytest.raises(InvalidSignature):
        combine([partials[0], partials[1], PartialSignature(index=3, signature=b"\x00" * 96)], 3)
    with pytest.raises(InvalidSignature):
        combine(
            [partials[0], partials[1], PartialSignature(index=0, signature=partials[2].signature)],
            3,
        )
    with pytest.raises(ConfigError):
        combine(partials, 0)


def test_dealing_is_deterministic_and_validated() -> None:
    one = deal_threshold_key(2, 3, randomness=b"r")
    assert one == deal_threshold_key(2, 3, randomness=b"r")
    assert one.group_public_key != deal_threshold_key(2, 3, randomness=b"s").group_public_key
    assert deal_threshold_key(2, 3).group_public_key != deal_threshold_key(2, 3).group_public_key
    with pytest.raises(ConfigError):
        deal_threshold_key(4, 3)
    with pytest.raises(ConfigError):
        deal_threshold_key(2, 3, secret=bytes(32))


def test_messages_encode_canonically(key_set: ThresholdKeySet) -> None:
    assert decode(encode(key_set), ThresholdKeySet) == key_set
    partial = partial_sign(key_set.shares[0], MSG)
    assert decode(encode(partial), PartialSignature) == partial


def test_combine_without_subgroup_checks_gives_the_same_signature() -> None:
    """The collector's fast path (it verifies the result) combines to the same bytes; a
    malformed partial is still refused."""
    key_set = bls.deal_threshold_key(3, 5, randomness=b"unchecked")
    message = b"certificate statement"
    partials = [bls.partial_sign(share, message) for share in key_set.shares[1:4]]
    fast = bls.combine(partials, 3, check_subgroup=False)
    assert fast == bls.combine(partials, 3)
    assert bls.verify(key_set.group_public_key, message, fast)
    broken = [*partials[:2], bls.PartialSignature(index=4, signature=b"\x00" * 96)]
    with pytest.raises(InvalidSignature):
        bls.combine(broken, 3, check_subgroup=False)


def test_uncompressed_partials_combine_and_verify_like_compressed_ones() -> None:
    """A collector's partials may travel uncompressed (192 bytes, no square root to load):
    they combine to the same signature, verify, and bad ones are refused."""
    key_set = bls.deal_threshold_key(3, 5, randomness=b"uncompressed")
    message = b"statement"
    compressed = [bls.partial_sign(share, message) for share in key_set.shares[:3]]
    raw = [bls.partial_sign(share, message, uncompressed=True) for share in key_set.shares[:3]]
    assert all(len(p.signature) == bls.UNCOMPRESSED_SIGNATURE_SIZE for p in raw)
    assert [bls.compress_signature(p.signature) for p in raw] == [p.signature for p in compressed]
    expected = bls.combine(compressed, 3)
    assert bls.combine(raw, 3, check_subgroup=False) == expected == bls.combine(raw, 3)
    assert bls.combine([raw[0], compressed[1], raw[2]], 3) == expected
    assert bls.is_valid_partial(key_set.public_shares[0], message, raw[0])
    assert not bls.is_valid_partial(key_set.public_shares[1], message, raw[0])
    bent = raw[0].signature[:-1] + bytes([raw[0].signature[-1] ^ 1])  # off the curve
    assert not bls.verify(key_set.public_shares[0], message, bent)
    with pytest.raises(InvalidSignature):
        bls.combine([bls.PartialSignature(index=1, signature=bent), *raw[1:]], 3)
    with pytest.raises(InvalidSignature):
        bls.compress_signature(bent)
    with pytest.raises(InvalidSignature):
        bls.combine([bls.PartialSignature(index=1, signature=b"\x01" * 150), *raw[1:]], 3)
