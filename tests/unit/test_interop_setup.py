"""Gateway enclaves, attested cards and threshold keys dealt inside the enclave."""

from __future__ import annotations

import random

import msgspec
import pytest

from sealbridge.consensus.ledger import compute_transfer_id
from sealbridge.core.errors import DecryptionError
from sealbridge.crypto import bls, ecies
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.interop.errors import BadKey, BadQuote, MalformedInterop
from sealbridge.interop.messages import ShareDelivery
from sealbridge.interop.setup import (
    SimGatewayTee,
    check_key_grant,
    derive_seed,
    generate_key_grant,
    get_gateway_measurement,
    make_card,
    open_share,
    verify_gateway_card,
)
from sealbridge.sim.interop_scenario import AS_A, AS_B, InteropSpec, build_deployment, gateway_id
from sealbridge.tee.enclave import compute_report_data
from sealbridge.tee.policy import devnet_policy
from sealbridge.tee.quote import parse_sim_quote

DEPLOYMENT = build_deployment(InteropSpec(seed=b"setup-tests", n=(4, 7)))
PROFILE_A = DEPLOYMENT.profiles[AS_A]
PROFILE_B = DEPLOYMENT.profiles[AS_B]
G_A = gateway_id(AS_A, 0)
G_B = gateway_id(AS_B, 0)


def tee_of(node: int, seed: int = 0) -> SimGatewayTee:
    return SimGatewayTee(
        identity_seed=derive_seed(DEPLOYMENT.seed, f"gateway/{node}/identity"),
        platform_private_key=DEPLOYMENT.platform_private_key,
        measurement=get_gateway_measurement(),
        random_bytes=random.Random(seed).randbytes,
    )


def replica_key(as_id: int, index: int) -> bytes:
    node = 100 * as_id + index
    return derive_seed(DEPLOYMENT.seed, f"replica/{node}/x25519")


def test_the_identity_is_sealed_and_the_quote_binds_it() -> None:
    tee, again = tee_of(G_A, 1), tee_of(G_A, 2)
    assert tee.node_keys == again.node_keys  # same sealed identity, other randomness
    assert tee.identity_key in PROFILE_A.gateway_keys
    quote = parse_sim_quote(tee.get_quote(12.7))
    assert quote.body.report_data == compute_report_data(tee.node_keys)
    assert quote.body.measurement == get_gateway_measurement()
    assert quote.body.timestamp == 12


def test_a_card_verifies_only_as_it_was_made() -> None:
    card = make_card(tee_of(G_A), node_id=G_A, incarnation=0, profile=PROFILE_A, now=5.0)
    policy = DEPLOYMENT.policy
    assert verify_gateway_card(card, sender=G_A, policy=policy, now=6.0, expected_as=AS_A) == card
    other_platform = ed25519_keypair(b"\x07" * 32)[1]
    bad = {
        "sent by someone else": (card, G_B, policy, 6.0, AS_A, MalformedInterop),
        "another AS expected": (card, G_A, policy, 6.0, AS_B, MalformedInterop),
        "stale quote": (card, G_A, policy, 5.0 + 601, AS_A, BadQuote),
        "untrusted platform": (
            card,
            G_A,
            devnet_policy(other_platform, [get_gateway_measurement()]),
            6.0,
            AS_A,
            BadQuote,
        ),
        "other code": (
            card,
            G_A,
            devnet_policy(ed25519_keypair(DEPLOYMENT.platform_private_key)[1], [b"\x00" * 32]),
            6.0,
            AS_A,
            BadQuote,
        ),
    }
    for why, (c, sender, pol, now, expected, error) in bad.items():
        with pytest.raises(error):
            verify_gateway_card(c, sender=sender, policy=pol, now=now, expected_as=expected)
        assert why
    # tampering: another profile, keys that the quote does not bind, a cut quote, a signature
    other_keys = tee_of(gateway_id(AS_A, 0) + 5).node_keys
    tampered = [
        msgspec.structs.replace(card, profile=msgspec.structs.replace(PROFILE_A, f=0)),
        msgspec.structs.replace(
            card,
            node=msgspec.structs.replace(other_keys, identity_key=card.node.identity_key),
        ),
        msgspec.structs.replace(card, quote=card.quote[:-1]),
        msgspec.structs.replace(card, signature=bytes(64)),
        msgspec.structs.replace(card, incarnation=1),
    ]
    for forged in tampered:
        with pytest.raises((BadQuote, MalformedInterop)):
            verify_gateway_card(forged, sender=G_A, policy=policy, now=6.0, expected_as=AS_A)
    with pytest.raises(MalformedInterop):
        verify_gateway_card(b"not a card", sender=G_A, policy=policy, now=6.0, expected_as=AS_A)


def test_a_key_grant_opens_only_at_its_replicas_and_combines_to_the_group_key() -> None:
    tee_b = tee_of(G_B)
    tid = b"\x05" * 32
    grant = generate_key_grant(PROFILE_A, tid, tee_b)
    key = grant.endorsement
    assert key.signer_as == AS_A and key.threshold == PROFILE_A.f + 1 and key.scope == tid
    assert check_key_grant(grant, profile=PROFILE_A, generator=tee_b.identity_key) == grant
    shares = []
    for i in range(PROFILE_A.n):
        delivery = ShareDelivery(
            endorsement=key,
            index=i + 1,
            public_share=grant.public_shares[i],
            ciphertext=grant.shares[i],
        )
        shares.append(open_share(delivery, ecies.Recipient(replica_key(AS_A, i)), i + 1))
    message = b"any statement"
    partials = [bls.partial_sign(s, message) for s in shares[: key.threshold]]
    assert bls.verify(key.group_public_key, message, bls.combine(partials, key.threshold))
    # fewer than f + 1 shares are not a signature of the group key
    assert not bls.verify(key.group_public_key, message, partials[0].signature)
    # a share opens only for its replica, as its index, under its key id
    delivery = ShareDelivery(
        endorsement=key, index=1, public_share=grant.public_shares[0], ciphertext=grant.shares[0]
    )
    with pytest.raises(BadKey):
        open_share(delivery, ecies.Recipient(replica_key(AS_A, 1)), 1)
    with pytest.raises(BadKey):
        open_share(
            msgspec.structs.replace(delivery, index=2), ecies.Recipient(replica_key(AS_A, 0)), 1
        )
    with pytest.raises(BadKey):
        other = msgspec.structs.replace(key, key_id=b"\x00" * 32)
        open_share(
            msgspec.structs.replace(delivery, endorsement=other),
            ecies.Recipient(replica_key(AS_A, 0)),
            1,
        )
    with pytest.raises(BadKey):
        open_share(
            msgspec.structs.replace(delivery, public_share=grant.public_shares[1]),
            ecies.Recipient(replica_key(AS_A, 0)),
            1,
        )
    with pytest.raises(DecryptionError):  # the gateway that forwards it cannot read it
        ecies.decrypt_with(derive_seed(DEPLOYMENT.seed, "anyone"), grant.shares[0])


def test_a_key_grant_is_checked_against_its_generator_and_its_as() -> None:
    tee_b = tee_of(G_B)
    grant = generate_key_grant(PROFILE_A, b"", tee_b)
    with pytest.raises(BadKey):
        check_key_grant(grant, profile=PROFILE_A, generator=tee_of(G_A).identity_key)
    with pytest.raises(BadKey):
        check_key_grant(grant, profile=PROFILE_B, generator=tee_b.identity_key)
    forged = msgspec.structs.replace(
        grant, endorsement=msgspec.structs.replace(grant.endorsement, scope=b"\x01" * 32)
    )
    with pytest.raises(BadKey):
        check_key_grant(forged, profile=PROFILE_A, generator=tee_b.identity_key)
    short = msgspec.structs.replace(grant, shares=grant.shares[:-1])
    with pytest.raises(BadKey):
        check_key_grant(short, profile=PROFILE_A, generator=tee_b.identity_key)


def test_enclave_randomness_not_the_public_transaction_hash_seeds_the_keys() -> None:
    """A dealing seeded by the transaction hash is a public function of the transaction:
    anyone can recompute it and sign for the replicas. Enclave randomness is not."""
    transfer = DEPLOYMENT.make_transfer(AS_A, "alice", "bob", 10, 5.0, b"s")
    public_seed = compute_transfer_id(transfer)
    mine = bls.deal_threshold_key(2, 4, randomness=public_seed)
    anyones = bls.deal_threshold_key(2, 4, randomness=public_seed)
    assert anyones.shares == mine.shares  # the "secret" shares, recomputed by an outsider
    grants = {
        generate_key_grant(PROFILE_A, public_seed, tee_of(G_B, seed)).endorsement.group_public_key
        for seed in (1, 2)
    }
    assert len(grants) == 2  # fresh enclave randomness: a new key every time
    # the same enclave randomness reproduces a key exactly (simulations are deterministic)
    again = generate_key_grant(PROFILE_A, public_seed, tee_of(G_B, 1))
    assert again == generate_key_grant(PROFILE_A, public_seed, tee_of(G_B, 1))
