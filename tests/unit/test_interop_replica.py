"""The replicas' interop side, driven directly: shares, attestations, scans, bad input."""

from __future__ import annotations

import random
from collections.abc import Sequence

import msgspec
import pytest

from sealbridge.consensus.ledger import (
    CrossLock,
    CrossState,
    compute_attestation_message,
    compute_transfer_id,
)
from sealbridge.consensus.messages import Request
from sealbridge.core.effects import Send
from sealbridge.crypto import bls
from sealbridge.crypto.signing import is_valid_ed25519
from sealbridge.interop.messages import (
    AttestReply,
    AttestRequest,
    KeyGrant,
    ScanReply,
    ScanRequest,
    ShareDelivery,
    compute_reply_message,
)
from sealbridge.interop.replica import InteropReplica
from sealbridge.interop.setup import (
    SimGatewayTee,
    derive_seed,
    generate_key_grant,
    get_gateway_measurement,
)
from sealbridge.sim.interop_scenario import (
    AS_A,
    AS_B,
    InteropDeployment,
    InteropSpec,
    build_deployment,
    gateway_id,
)

G_A = gateway_id(AS_A, 0)
G_B = gateway_id(AS_B, 0)


@pytest.fixture
def deployment() -> InteropDeployment:
    return build_deployment(InteropSpec(seed=b"replica-tests"))


def grant_for(deployment: InteropDeployment, scope: bytes = b"") -> KeyGrant:
    tee = SimGatewayTee(
        identity_seed=derive_seed(deployment.seed, f"gateway/{G_B}/identity"),
        platform_private_key=deployment.platform_private_key,
        measurement=get_gateway_measurement(),
        random_bytes=random.Random(len(scope)).randbytes,
    )
    return generate_key_grant(deployment.profiles[AS_A], scope, tee)


def delivery(grant: KeyGrant, index: int) -> ShareDelivery:
    return ShareDelivery(
        endorsement=grant.endorsement,
        index=index + 1,
        public_share=grant.public_shares[index],
        ciphertext=grant.shares[index],
    )


def one_reply(effects: Sequence[object]) -> AttestReply:
    assert len(effects) == 1
    send = effects[0]
    assert isinstance(send, Send) and send.to == (G_A,)
    assert isinstance(send.message, AttestReply)
    return send.message


def test_shares_are_taken_only_from_own_gateways_and_only_if_they_open(
    deployment: InteropDeployment,
) -> None:
    replica: InteropReplica = deployment.replicas[100]
    grant = grant_for(deployment)
    key_id = grant.endorsement.key_id
    bad = [
        (G_B, delivery(grant, 0), "unknown_sender"),  # the other AS's gateway
        (101, delivery(grant, 0), "unknown_sender"),  # another replica
        (G_A, delivery(grant, 1), "bad_key"),  # someone else's share
        (G_A, msgspec.structs.replace(delivery(grant, 0), ciphertext=grant.shares[1]), "bad_key"),
        (
            G_A,
            msgspec.structs.replace(
                delivery(grant, 0),
                endorsement=msgspec.structs.replace(grant.endorsement, signer_as=AS_B),
            ),
            "bad_key",
        ),
    ]
    for sender, message, code in bad:
        before = replica.stats.rejected[code]
        assert replica.on_message(sender, message, 1.0) == []
        assert replica.stats.rejected[code] == before + 1
        assert replica.get_key(key_id) is None
    assert replica.on_message(G_A, delivery(grant, 0), 1.0) == []
    held = replica.get_key(key_id)
    assert held is not None and held.share.index == 1
    assert replica.on_message(G_A, delivery(grant, 0), 1.0) == []  # a replay changes nothing
    assert replica.stats.duplicate_shares == 1 and replica.stats.shares_held == 1


def test_a_replica_attests_only_what_its_ledger_holds(deployment: InteropDeployment) -> None:
    replica: InteropReplica = deployment.replicas[100]
    grant = grant_for(deployment)
    key = grant.endorsement
    transfer = deployment.make_transfer(AS_A, "alice", "bob", 10, 5.0, b"x")
    tid = compute_transfer_id(transfer)
    identity = deployment.profiles[AS_A].replica_identity_keys[0]
    # unknown key: the state, a request for the share, no signature share
    reply = one_reply(
        replica.on_message(G_A, AttestRequest(transfer=transfer, key_id=key.key_id), 1.0)
    )
    assert reply.state is None and reply.share is None and not reply.missing_key
    replica.on_message(G_A, delivery(grant, 0), 1.0)
    reply = one_reply(
        replica.on_message(G_A, AttestRequest(transfer=transfer, key_id=key.key_id), 1.0)
    )
    assert reply.state is None and reply.share is None  # not locked: nothing to sign
    assert replica.replica.ledger.apply(CrossLock(transfer=transfer)).is_ok
    reply = one_reply(
        replica.on_message(G_A, AttestRequest(transfer=transfer, key_id=key.key_id), 1.0)
    )
    assert reply.state is CrossState.LOCKED and reply.share is not None
    assert is_valid_ed25519(identity, compute_reply_message(reply), reply.signature)
    message = compute_attestation_message(key.key_id, AS_A, tid, CrossState.LOCKED)
    assert bls.is_valid_partial(grant.public_shares[0], message, reply.share)
    # state only (no key id), and a key scoped to another transfer: no share
    reply = one_reply(replica.on_message(G_A, AttestRequest(transfer=transfer, key_id=b""), 1.0))
    assert reply.state is CrossState.LOCKED and reply.share is None
    scoped = grant_for(deployment, scope=b"\x09" * 32)
    replica.on_message(G_A, delivery(scoped, 0), 1.0)
    request = AttestRequest(transfer=transfer, key_id=scoped.endorsement.key_id)
    reply = one_reply(replica.on_message(G_A, request, 1.0))
    assert reply.share is None
    # an unknown key for an attestable state: ask for the share again
    request = AttestRequest(transfer=transfer, key_id=b"\x01" * 32)
    assert one_reply(replica.on_message(G_A, request, 1.0)).missing_key


def test_bad_attestation_requests_change_nothing(deployment: InteropDeployment) -> None:
    replica: InteropReplica = deployment.replicas[100]
    transfer = deployment.make_transfer(AS_A, "alice", "bob", 10, 5.0, b"x")
    digest = replica.replica.ledger.compute_digest()
    cases = [
        (G_B, AttestRequest(transfer=transfer, key_id=b""), "unknown_sender"),
        (
            G_A,
            AttestRequest(transfer=msgspec.structs.replace(transfer, amount=0), key_id=b""),
            "malformed",
        ),
        (
            G_A,
            AttestRequest(
                transfer=msgspec.structs.replace(transfer, src_as=7, dst_as=8), key_id=b""
            ),
            "malformed",
        ),
        (G_A, ScanRequest(as_id=AS_B, nonce=1), "malformed"),
    ]
    for sender, message, code in cases:
        assert replica.on_message(sender, message, 1.0) == []
        assert replica.stats.rejected[code] >= 1
    assert replica.replica.ledger.compute_digest() == digest


def test_a_scan_lists_the_locked_transfers(deployment: InteropDeployment) -> None:
    replica: InteropReplica = deployment.replicas[100]
    transfers = [
        deployment.make_transfer(AS_A, "alice", "bob", 10, 5.0, bytes([i])) for i in range(3)
    ]
    for transfer in transfers:
        assert replica.replica.ledger.apply(CrossLock(transfer=transfer)).is_ok
    effects = replica.on_message(G_A, ScanRequest(as_id=AS_A, nonce=4), 1.0)
    assert len(effects) == 1 and isinstance(effects[0], Send)
    answer = effects[0].message
    assert isinstance(answer, ScanReply) and answer.nonce == 4
    assert sorted(t.salt for t in answer.transfers) == [b"\x00", b"\x01", b"\x02"]


def test_consensus_messages_pass_through_to_the_replica(deployment: InteropDeployment) -> None:
    replica: InteropReplica = deployment.replicas[100]
    transfer = deployment.make_transfer(AS_A, "alice", "bob", 10, 5.0, b"x")
    request = Request(as_id=AS_A, client=G_A, client_seq=1, operation=CrossLock(transfer=transfer))
    effects = replica.on_message(G_A, request, 0.0)  # the primary of view 0 batches it
    assert replica.replica.has_pending_requests
    assert effects  # a batch timer (or a proposal)
