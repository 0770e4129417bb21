"""The gateway core, driven directly: setup, keys, attestations, and bad input from peers.

Real crypto throughout. Certificates the tests need are made the way the protocol makes
them: a gateway deals a key for the other AS's replicas, the replicas open their shares
(with their X25519 keys) and sign; the tests play the replicas where that is shorter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from sealbridge.consensus.ledger import (
    CrossCertificate,
    CrossLock,
    CrossPay,
    CrossRelease,
    CrossState,
    CrossTransfer,
    Outcome,
    OutcomeCode,
    compute_attestation_message,
    compute_transfer_id,
)
from sealbridge.consensus.messages import Reply, Request
from sealbridge.core.effects import Effect, Report, Send
from sealbridge.crypto import bls, ecies
from sealbridge.crypto.bls import KeyShare, PartialSignature
from sealbridge.crypto.signing import ed25519_sign
from sealbridge.interop.gateway import DestState, Gateway, SourceState
from sealbridge.interop.messages import (
    AttestReply,
    AttestRequest,
    Forward,
    Hello,
    KeyAsk,
    KeyGrant,
    Settled,
    ShareDelivery,
    TransferRequest,
    compute_reply_message,
)
from sealbridge.interop.setup import KeyMode, derive_seed, generate_key_grant, open_share
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


def sends(effects: Sequence[Effect], kind: type) -> list[Send]:
    return [e for e in effects if isinstance(e, Send) and isinstance(e.message, kind)]


def deliver(gateway: Gateway, sender: int, message: Any, now: float = 1.0) -> list[Effect]:
    return gateway.on_message(sender, message, now)


def handshake(a: Gateway, b: Gateway, now: float = 0.0) -> None:
    for hello in sends(a.on_start(now), Hello):
        for answer in sends(deliver(b, a.node_id, hello.message, now), Hello):
            deliver(a, b.node_id, answer.message, now)
    assert a.is_attested(b.node_id) and b.is_attested(a.node_id)


@pytest.fixture
def deployment() -> InteropDeployment:
    return build_deployment(InteropSpec(seed=b"gateway-tests"))


def shares_of(deployment: InteropDeployment, grant: KeyGrant) -> list[KeyShare]:
    """What each replica of the key's AS opens (the replicas' X25519 keys)."""
    profile = deployment.profiles[grant.endorsement.signer_as]
    shares = []
    for i, node in enumerate(profile.replica_ids):
        recipient = ecies.Recipient(derive_seed(deployment.seed, f"replica/{node}/x25519"))
        delivery = ShareDelivery(
            endorsement=grant.endorsement,
            index=i + 1,
            public_share=grant.public_shares[i],
            ciphertext=grant.shares[i],
        )
        shares.append(open_share(delivery, recipient, i + 1))
    return shares


def certify(
    deployment: InteropDeployment,
    grant: KeyGrant,
    transfer: CrossTransfer,
    claim: CrossState,
    *,
    sign_for: CrossTransfer | None = None,
) -> CrossCertificate:
    key = grant.endorsement
    tid = compute_transfer_id(sign_for or transfer)
    message = compute_attestation_message(key.key_id, key.signer_as, tid, claim)
    partials = [bls.partial_sign(s, message) for s in shares_of(deployment, grant)[: key.threshold]]
    return CrossCertificate(claim=claim, key=key, signature=bls.combine(partials, key.threshold))


def transfer_ab(
    deployment: InteropDeployment, salt: bytes = b"1", deadline: float = 50.0
) -> CrossTransfer:
    return deployment.make_transfer(AS_A, "alice", "bob", 10, deadline, salt)


def test_gateways_attest_each_other_and_refuse_bad_quotes(deployment: InteropDeployment) -> None:
    a, b = deployment.gateways[G_A], deployment.gateways[G_B]
    hellos = sends(a.on_start(0.0), Hello)
    hello = hellos[0].message
    tampered = msgspec.structs.replace(
        hello, card=msgspec.structs.replace(hello.card, quote=hello.card.quote[:-2] + b"xx")
    )
    assert deliver(b, G_A, tampered) == [] and b.stats.rejected["bad_quote"] == 1
    assert deliver(b, 999, hello) == [] and b.stats.rejected["unknown_sender"] == 1
    assert deliver(b, G_A, hello, now=10_000.0) == []  # a replayed, stale quote
    assert b.stats.rejected["bad_quote"] == 2 and not b.is_attested(G_A)
    handshake(a, b)


def test_nothing_is_taken_from_an_unattested_peer(deployment: InteropDeployment) -> None:
    a, b = deployment.gateways[G_A], deployment.gateways[G_B]
    transfer = transfer_ab(deployment)
    grant = generate_key_grant(deployment.profiles[AS_A], b"", b.tee)
    certificate = certify(deployment, grant, transfer, CrossState.LOCKED)
    for message in (
        Forward(transfer=transfer, certificate=certificate),
        KeyAsk(signer_as=AS_A, scope=b""),
    ):
        assert deliver(b, G_A, message) == []
    assert deliver(a, G_B, grant) == []
    assert b.stats.rejected["not_attested"] == 2 and a.stats.rejected["not_attested"] == 1
    assert b.get_dest_state(compute_transfer_id(transfer)) is None


def test_forward_is_checked_before_anything_is_paid(deployment: InteropDeployment) -> None:
    a, b = deployment.gateways[G_A], deployment.gateways[G_B]
    handshake(a, b)
    transfer, other = transfer_ab(deployment), transfer_ab(deployment, b"2")
    tid = compute_transfer_id(transfer)
    own_key = generate_key_grant(deployment.profiles[AS_A], b"", b.tee)  # made by G_B
    foreign_key = generate_key_grant(deployment.profiles[AS_A], b"", a.tee)  # made by G_A
    good = certify(deployment, own_key, transfer, CrossState.LOCKED)
    bad = {
        "sigma under a key its own AS did not make": certify(
            deployment, foreign_key, transfer, CrossState.LOCKED
        ),
        "sigma of another transfer": certify(
            deployment, own_key, transfer, CrossState.LOCKED, sign_for=other
        ),
        "another claim": certify(deployment, own_key, transfer, CrossState.PAID),
        "signature swapped": msgspec.structs.replace(
            good, signature=certify(deployment, own_key, other, CrossState.LOCKED).signature
        ),
    }
    for why, certificate in bad.items():
        assert deliver(b, G_A, Forward(transfer=transfer, certificate=certificate)) == [], why
    assert b.stats.rejected["bad_certificate"] == len(bad)
    backwards = deployment.make_transfer(AS_B, "bob", "alice", 10, 50.0, b"3")
    assert deliver(b, G_A, Forward(transfer=backwards, certificate=good)) == []
    assert b.stats.rejected["wrong_transfer"] == 1
    assert b.get_dest_state(tid) is None and b.stats.requests == 0
    effects = deliver(b, G_A, Forward(transfer=transfer, certificate=good))
    pays = sends(effects, Request)
    assert len(pays) == 1 and isinstance(pays[0].message.operation, CrossPay)
    assert pays[0].to == tuple(deployment.profiles[AS_B].replica_ids)
    assert b.get_dest_state(tid) is DestState.DECIDING
    assert sends(deliver(b, G_A, Forward(transfer=transfer, certificate=good)), Request) == []


def test_after_the_deadline_the_destination_refuses(deployment: InteropDeployment) -> None:
    a, b = deployment.gateways[G_A], deployment.gateways[G_B]
    handshake(a, b)
    transfer = transfer_ab(deployment, deadline=5.0)
    grant = generate_key_grant(deployment.profiles[AS_A], b"", b.tee)
    certificate = certify(deployment, grant, transfer, CrossState.LOCKED)
    effects = deliver(b, G_A, Forward(transfer=transfer, certificate=certificate), now=6.0)
    ops = [s.message.operation for s in sends(effects, Request)]
    assert [type(op).__name__ for op in ops] == ["CrossRefuse"]


def source_with_key(deployment: InteropDeployment) -> tuple[Gateway, Gateway, CrossTransfer]:
    """G_A with a transfer in LOCKING and G_B's epoch key for A's replicas delivered."""
    a, b = deployment.gateways[G_A], deployment.gateways[G_B]
    handshake(a, b)
    transfer = transfer_ab(deployment)
    effects = deliver(a, -1, TransferRequest(transfer=transfer))
    locks = sends(effects, Request)
    assert len(locks) == 1 and isinstance(locks[0].message.operation, CrossLock)
    asks = sends(effects, KeyAsk)
    assert [s.to for s in asks] == [(G_B,)]
    grants = sends(deliver(b, G_A, asks[0].message), KeyGrant)
    deliveries = sends(deliver(a, G_B, grants[0].message), ShareDelivery)
    assert len(deliveries) == deployment.profiles[AS_A].n
    return a, b, transfer


def reply(
    deployment: InteropDeployment,
    a: Gateway,
    transfer: CrossTransfer,
    index: int,
    *,
    claim: CrossState = CrossState.LOCKED,
    share: PartialSignature | None = None,
    signer: int | None = None,
) -> AttestReply:
    """Replica ``index``'s signed answer (its share of ``claim`` unless ``share`` given)."""
    grant = a.get_own_grants()[0]
    key_id = grant.endorsement.key_id
    tid = compute_transfer_id(transfer)
    if share is None:
        message = compute_attestation_message(key_id, AS_A, tid, claim)
        share = bls.partial_sign(shares_of(deployment, grant)[index], message)
    unsigned = AttestReply(
        as_id=AS_A, transfer_id=tid, key_id=key_id, state=claim, share=share, missing_key=False
    )
    node = 100 * AS_A + (index if signer is None else signer)
    signing = derive_seed(deployment.seed, f"replica/{node}/ed25519")
    return msgspec.structs.replace(
        unsigned, signature=ed25519_sign(signing, compute_reply_message(unsigned))
    )


def test_forged_attestations_never_make_a_certificate(deployment: InteropDeployment) -> None:
    a, _, transfer = source_with_key(deployment)
    tid = compute_transfer_id(transfer)
    r0 = reply(deployment, a, transfer, 0)
    assert r0.share is not None
    misnumbered = PartialSignature(index=2, signature=r0.share.signature)
    forged = [
        (100, reply(deployment, a, transfer, 0, signer=1)),  # not signed by replica 0
        (101, r0),  # replica 1 relays replica 0's reply
        (100, msgspec.structs.replace(r0, state=CrossState.PAID)),  # altered after signing
        (100, reply(deployment, a, transfer, 0, claim=CrossState.PAID)),  # a destination claim
        (100, reply(deployment, a, transfer, 0, share=misnumbered)),  # share of another index
    ]
    for sender, message in forged:
        assert deliver(a, sender, message) == []
    assert a.stats.rejected["bad_attestation"] == len(forged)
    # a well-signed reply with an invalid share, then a valid one: the bad share is caught
    garbage = bls.partial_sign(shares_of(deployment, a.get_own_grants()[0])[1], b"junk")
    effects = deliver(a, 101, reply(deployment, a, transfer, 1, share=garbage))
    assert sends(effects, Forward) == []
    effects = deliver(a, 100, r0)
    assert sends(effects, Forward) == [] and a.stats.bad_shares == 1
    assert any(isinstance(e, Report) and e.kind == "interop/bad_share" for e in effects)
    assert a.get_source_state(tid) is SourceState.LOCKING
    effects = deliver(a, 102, reply(deployment, a, transfer, 2))
    forwards = sends(effects, Forward)
    assert len(forwards) == 1 and forwards[0].to == (G_B,)
    assert a.get_source_state(tid) is SourceState.FORWARDED
    signature = [e for e in effects if isinstance(e, Report) and e.kind == "interop/signature"]
    data = signature[0].data
    assert bls.verify(
        bytes.fromhex(data["group_public_key"]),
        bytes.fromhex(data["message"]),
        bytes.fromhex(data["signature"]),
    )
    assert deliver(a, 102, reply(deployment, a, transfer, 2)) == []  # a replay: nothing


def test_settlement_is_checked_and_a_replay_changes_nothing(deployment: InteropDeployment) -> None:
    a, b, transfer = source_with_key(deployment)
    tid = compute_transfer_id(transfer)
    own_key = generate_key_grant(deployment.profiles[AS_B], b"", a.tee)  # made by G_A
    foreign_key = generate_key_grant(deployment.profiles[AS_B], b"", b.tee)
    paid = certify(deployment, own_key, transfer, CrossState.PAID)
    for certificate in (
        certify(deployment, foreign_key, transfer, CrossState.PAID),
        certify(deployment, own_key, transfer, CrossState.LOCKED),
        certify(
            deployment, own_key, transfer, CrossState.PAID, sign_for=transfer_ab(deployment, b"9")
        ),
    ):
        assert deliver(a, G_B, Settled(transfer=transfer, certificate=certificate)) == []
    assert a.stats.rejected["bad_certificate"] == 3
    assert deliver(a, 999, Settled(transfer=transfer, certificate=paid)) == []
    assert a.stats.rejected["not_attested"] == 1
    effects = deliver(a, G_B, Settled(transfer=transfer, certificate=paid))
    releases = [s for s in sends(effects, Request) if isinstance(s.message.operation, CrossRelease)]
    assert len(releases) == 1 and a.get_source_state(tid) is SourceState.SETTLING
    assert sends(deliver(a, G_B, Settled(transfer=transfer, certificate=paid)), Request) == []
    # f + 1 replicas report RELEASED: done
    for index in range(2):
        unsigned = AttestReply(
            as_id=AS_A, transfer_id=tid, key_id=b"", state=CrossState.RELEASED, share=None,
            missing_key=False,
        )  # fmt: skip
        node = 100 + index
        signing = derive_seed(deployment.seed, f"replica/{node}/ed25519")
        signed = msgspec.structs.replace(
            unsigned, signature=ed25519_sign(signing, compute_reply_message(unsigned))
        )
        deliver(a, node, signed)
    assert a.get_source_state(tid) is SourceState.DONE


def test_duplicate_and_expired_transfer_requests(deployment: InteropDeployment) -> None:
    a = deployment.gateways[G_A]
    transfer = transfer_ab(deployment, deadline=3.0)
    assert len(sends(deliver(a, -1, TransferRequest(transfer=transfer)), Request)) == 1
    assert sends(deliver(a, -1, TransferRequest(transfer=transfer)), Request) == []
    assert a.stats.duplicates == 1
    late = transfer_ab(deployment, b"late", deadline=0.5)
    assert deliver(a, -1, TransferRequest(transfer=late)) == []
    backwards = deployment.make_transfer(AS_B, "bob", "alice", 1, 9.0, b"b")
    assert deliver(a, -1, TransferRequest(transfer=backwards)) == []
    assert a.stats.rejected["wrong_transfer"] == 2


def test_a_refused_lock_aborts_at_once(deployment: InteropDeployment) -> None:
    a, b = deployment.gateways[G_A], deployment.gateways[G_B]
    handshake(a, b)
    transfer = transfer_ab(deployment)
    request = sends(deliver(a, -1, TransferRequest(transfer=transfer)), Request)[0].message
    outcome = Outcome(code=OutcomeCode.INSUFFICIENT_BALANCE)
    effects: list[Effect] = []
    for index in range(2):  # f + 1 matching replies decide
        answer = Reply(
            as_id=AS_A, view=0, seq=1, client=G_A, client_seq=request.client_seq, outcome=outcome
        )
        effects = deliver(a, 100 + index, answer)
    assert a.get_source_state(compute_transfer_id(transfer)) is SourceState.ABORTING
    assert len(sends(effects, AttestRequest)) == 0
    aborts = [s for s in effects if isinstance(s, Send) and type(s.message).__name__ == "AbortAsk"]
    assert aborts and aborts[0].to == (G_B,)


@pytest.mark.parametrize("mode", list(KeyMode))
def test_keys_are_dealt_per_transfer_or_once_per_epoch(mode: KeyMode) -> None:
    deployment = build_deployment(InteropSpec(seed=b"modes", mode=mode))
    a, b = deployment.gateways[G_A], deployment.gateways[G_B]
    handshake(a, b)
    scopes = [b"", b""] if mode is KeyMode.EPOCH else [b"\x01" * 32, b"\x02" * 32]
    grants = [sends(deliver(b, G_A, KeyAsk(signer_as=AS_A, scope=s)), KeyGrant) for s in scopes]
    ids = {g[0].message.endorsement.key_id for g in grants}
    assert len(ids) == (1 if mode is KeyMode.EPOCH else 2)
    assert b.stats.keygens == len(ids) and b.stats.encryptions == 4 * len(ids)
    assert deliver(b, G_A, KeyAsk(signer_as=AS_B, scope=b"")) == []  # not for its own AS
    assert deliver(b, G_A, KeyAsk(signer_as=AS_A, scope=b"short")) == []
    assert b.stats.rejected["malformed"] == 2


def test_a_restarted_gateway_uses_fresh_request_ids(deployment: InteropDeployment) -> None:
    first = deployment.gateways[G_A]
    restarted = deployment.make_gateway(G_A)
    assert restarted.incarnation == 1 and restarted.tee.node_keys == first.tee.node_keys
    transfer = transfer_ab(deployment)
    old = sends(deliver(first, -1, TransferRequest(transfer=transfer)), Request)[0].message
    new = sends(deliver(restarted, -1, TransferRequest(transfer=transfer)), Request)[0].message
    assert old.client_seq != new.client_seq and new.client_seq == (1 << 32) + 1
