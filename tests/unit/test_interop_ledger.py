"""The ledger's cross-chain operations: certificates checked in execution, one decision.

Real threshold BLS and Ed25519 throughout. AS 1 is the source chain of the transfers
here, AS 2 the destination; each ledger trusts its own gateway's key endorsements only.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealbridge.consensus.ledger import (
    BRIDGE_ACCOUNT,
    CrossCertificate,
    CrossLock,
    CrossPay,
    CrossRefuse,
    CrossRelease,
    CrossState,
    CrossTransfer,
    CrossUnlock,
    KeyEndorsement,
    Ledger,
    Lock,
    Operation,
    OutcomeCode,
    Pay,
    Release,
    Transfer,
    Unlock,
    check_cross_certificate,
    compute_attestation_message,
    compute_endorsement_message,
    compute_key_id,
    compute_refusal_message,
    compute_transfer_id,
)
from sealbridge.core.encoding import decode, encode
from sealbridge.crypto import bls
from sealbridge.crypto.bls import ThresholdKeySet
from sealbridge.crypto.signing import ed25519_keypair, ed25519_sign

SRC, DST = 1, 2
GATEWAY_SRC = ed25519_keypair(b"\x11" * 32)  # a gateway of AS 1 (makes AS 2's keys)
GATEWAY_DST = ed25519_keypair(b"\x22" * 32)  # a gateway of AS 2 (makes AS 1's keys)
GENESIS = {"alice": 100, "bob": 100, BRIDGE_ACCOUNT: 1_000}


def make_transfer(amount: int = 30, salt: bytes = b"t1", src: int = SRC) -> CrossTransfer:
    return CrossTransfer(
        src_as=src,
        dst_as=DST if src == SRC else SRC,
        sender="alice",
        recipient="bob",
        amount=amount,
        salt=salt,
        deadline=10.0,
    )


T1 = make_transfer()
T2 = make_transfer(salt=b"t2")
ID1 = compute_transfer_id(T1)


def source_ledger() -> Ledger:
    return Ledger(GENESIS, as_id=SRC, gateway_keys=[GATEWAY_SRC[1]])


def dest_ledger() -> Ledger:
    return Ledger(GENESIS, as_id=DST, gateway_keys=[GATEWAY_DST[1]])


def endorse(
    key_set: ThresholdKeySet, signer_as: int, gateway: tuple[bytes, bytes], scope: bytes = b""
) -> KeyEndorsement:
    unsigned = KeyEndorsement(
        key_id=compute_key_id(signer_as, key_set.group_public_key, scope),
        signer_as=signer_as,
        threshold=key_set.threshold,
        group_public_key=key_set.group_public_key,
        scope=scope,
        gateway=gateway[1],
    )
    signature = ed25519_sign(gateway[0], compute_endorsement_message(unsigned))
    return msgspec.structs.replace(unsigned, signature=signature)


@functools.cache
def key_set(tag: int) -> ThresholdKeySet:
    return bls.deal_threshold_key(2, 4, randomness=bytes([tag]) * 32)


def certify(
    transfer: CrossTransfer,
    claim: CrossState,
    *,
    signer_as: int,
    gateway: tuple[bytes, bytes],
    keys: ThresholdKeySet | None = None,
    scope: bytes = b"",
    sign_for: bytes | None = None,
) -> CrossCertificate:
    """A certificate of ``signer_as``'s replicas (shares 1 and 2 of ``keys``)."""
    keys = keys or key_set(signer_as)
    endorsement = endorse(keys, signer_as, gateway, scope)
    tid = sign_for or compute_transfer_id(transfer)
    message = compute_attestation_message(endorsement.key_id, signer_as, tid, claim)
    partials = [bls.partial_sign(share, message) for share in keys.shares[:2]]
    return CrossCertificate(
        claim=claim, key=endorsement, signature=bls.combine(partials, keys.threshold)
    )


def locked(transfer: CrossTransfer = T1, **kwargs: Any) -> CrossCertificate:
    return certify(transfer, CrossState.LOCKED, signer_as=SRC, gateway=GATEWAY_DST, **kwargs)


def decided(transfer: CrossTransfer, claim: CrossState, **kwargs: Any) -> CrossCertificate:
    return certify(transfer, claim, signer_as=DST, gateway=GATEWAY_SRC, **kwargs)


def refusal(transfer: CrossTransfer, gateway: tuple[bytes, bytes] = GATEWAY_DST) -> CrossRefuse:
    message = compute_refusal_message(compute_transfer_id(transfer), transfer.dst_as)
    return CrossRefuse(
        transfer=transfer, gateway=gateway[1], signature=ed25519_sign(gateway[0], message)
    )


def refused(ledger: Ledger, op: Operation, code: OutcomeCode) -> None:
    before = ledger.snapshot()
    outcome = ledger.apply(op)
    assert outcome.code is code, outcome
    assert ledger.snapshot() == before


def test_cross_lock_escrows_once() -> None:
    ledger = source_ledger()
    assert ledger.apply(CrossLock(transfer=T1)).is_ok
    assert ledger.get_balance("alice") == 70 and ledger.get_escrowed() == 30
    assert ledger.get_total_supply() == ledger.genesis_supply
    record = ledger.get_cross(ID1)
    assert record is not None and record.state is CrossState.LOCKED and record.transfer == T1
    refused(ledger, CrossLock(transfer=T1), OutcomeCode.TRANSFER_USED)
    refused(ledger, CrossLock(transfer=make_transfer(500, b"x")), OutcomeCode.INSUFFICIENT_BALANCE)
    refused(dest_ledger(), CrossLock(transfer=T2), OutcomeCode.INVALID)  # wrong chain
    refused(Ledger(GENESIS), CrossLock(transfer=T2), OutcomeCode.INVALID)  # no as_id
    bad = [
        msgspec.structs.replace(T2, amount=0),
        msgspec.structs.replace(T2, dst_as=SRC),
        msgspec.structs.replace(T2, sender=BRIDGE_ACCOUNT),
        msgspec.structs.replace(T2, deadline=float("nan")),
        msgspec.structs.replace(T2, salt=b"s" * 65),
        msgspec.structs.replace(T2, recipient=""),
    ]
    for transfer in bad:
        refused(ledger, CrossLock(transfer=transfer), OutcomeCode.INVALID)


def test_plain_operations_cannot_touch_cross_escrow_or_system_accounts() -> None:
    ledger = source_ledger()
    assert ledger.apply(CrossLock(transfer=T1)).is_ok
    refused(ledger, Unlock(lock_id=ID1), OutcomeCode.CROSS_CHAIN_LOCK)
    refused(ledger, Release(lock_id=ID1, to="mallory"), OutcomeCode.CROSS_CHAIN_LOCK)
    refused(
        ledger, Transfer(src=BRIDGE_ACCOUNT, dst="mallory", amount=1), OutcomeCode.SYSTEM_ACCOUNT
    )
    refused(
        ledger,
        Pay(pay_id=b"p", src=BRIDGE_ACCOUNT, dst="mallory", amount=1),
        OutcomeCode.SYSTEM_ACCOUNT,
    )
    refused(ledger, Lock(lock_id=b"l", owner=BRIDGE_ACCOUNT, amount=1), OutcomeCode.SYSTEM_ACCOUNT)
    assert ledger.apply(Transfer(src="bob", dst=BRIDGE_ACCOUNT, amount=1)).is_ok  # credit is fine


def test_pay_needs_locked_under_a_key_its_own_gateway_made() -> None:
    ledger = dest_ledger()
    good = locked()
    problem = check_cross_certificate(
        good,
        claim=CrossState.LOCKED,
        signer_as=SRC,
        transfer_id=ID1,
        trusted_gateways=[GATEWAY_DST[1]],
    )
    assert problem is None
    forged_signature = msgspec.structs.replace(good, signature=locked(keys=key_set(9)).signature)
    tampered_key = msgspec.structs.replace(good, key=msgspec.structs.replace(good.key, threshold=1))
    wrong_id = msgspec.structs.replace(
        good, key=msgspec.structs.replace(good.key, key_id=b"\x00" * 32)
    )
    bad_certificates = {
        "endorsed by the other AS's gateway": certify(
            T1, CrossState.LOCKED, signer_as=SRC, gateway=GATEWAY_SRC
        ),
        "signed under another key": forged_signature,
        "endorsement altered": tampered_key,
        "key id not the key's": wrong_id,
        "another transfer": locked(sign_for=compute_transfer_id(T2)),
        "another claim": certify(T1, CrossState.PAID, signer_as=SRC, gateway=GATEWAY_DST),
        "the wrong AS signed": certify(T1, CrossState.LOCKED, signer_as=DST, gateway=GATEWAY_DST),
        "scoped to another transfer": locked(scope=compute_transfer_id(T2)),
    }
    for why, certificate in bad_certificates.items():
        op = CrossPay(transfer=T1, certificate=certificate)
        outcome = ledger.apply(op)
        assert outcome.code is OutcomeCode.BAD_CERTIFICATE, why
    assert ledger.get_cross(ID1) is None and ledger.get_balance("bob") == 100
    relabelled = msgspec.structs.replace(good, claim=CrossState.PAID)
    refused(ledger, CrossPay(transfer=T1, certificate=relabelled), OutcomeCode.BAD_CERTIFICATE)
    refused(
        ledger,
        CrossPay(transfer=make_transfer(5_000, b"big"), certificate=good),
        OutcomeCode.INSUFFICIENT_BALANCE,
    )
    assert ledger.apply(CrossPay(transfer=T1, certificate=locked(scope=ID1))).is_ok
    assert ledger.get_balance("bob") == 130 and ledger.get_balance(BRIDGE_ACCOUNT) == 970
    refused(ledger, CrossPay(transfer=T1, certificate=good), OutcomeCode.DUPLICATE_PAY)
    refused(ledger, refusal(T1), OutcomeCode.TRANSFER_SETTLED)
    assert ledger.get_total_supply() == ledger.genesis_supply


def test_refuse_first_and_pay_is_refused() -> None:
    ledger = dest_ledger()
    refused(ledger, refusal(T1, GATEWAY_SRC), OutcomeCode.BAD_CERTIFICATE)  # not its gateway
    forged = msgspec.structs.replace(refusal(T1), signature=refusal(T2).signature)
    refused(ledger, forged, OutcomeCode.BAD_CERTIFICATE)
    assert ledger.apply(refusal(T1)).is_ok
    record = ledger.get_cross(ID1)
    assert record is not None and record.state is CrossState.REFUSED
    assert ledger.get_balance("bob") == 100
    refused(ledger, CrossPay(transfer=T1, certificate=locked()), OutcomeCode.TRANSFER_SETTLED)
    refused(ledger, refusal(T1), OutcomeCode.TRANSFER_SETTLED)


def test_release_and_unlock_follow_the_destination_decision() -> None:
    ledger = source_ledger()
    assert ledger.apply(CrossLock(transfer=T1)).is_ok
    assert ledger.apply(CrossLock(transfer=T2)).is_ok
    refused(
        ledger,
        CrossRelease(transfer=T1, certificate=decided(T1, CrossState.REFUSED)),
        OutcomeCode.BAD_CERTIFICATE,
    )
    refused(
        ledger,
        CrossUnlock(transfer=T1, certificate=decided(T1, CrossState.PAID)),
        OutcomeCode.BAD_CERTIFICATE,
    )
    foreign = certify(T1, CrossState.PAID, signer_as=DST, gateway=GATEWAY_DST)
    refused(ledger, CrossRelease(transfer=T1, certificate=foreign), OutcomeCode.BAD_CERTIFICATE)
    assert ledger.apply(CrossRelease(transfer=T1, certificate=decided(T1, CrossState.PAID))).is_ok
    assert ledger.get_balance(BRIDGE_ACCOUNT) == 1_030 and ledger.get_escrowed() == 30
    assert ledger.apply(CrossUnlock(transfer=T2, certificate=decided(T2, CrossState.REFUSED))).is_ok
    assert ledger.get_balance("alice") == 40 + 30 and ledger.get_escrowed() == 0
    for op in (
        CrossUnlock(transfer=T1, certificate=decided(T1, CrossState.REFUSED)),
        CrossRelease(transfer=T2, certificate=decided(T2, CrossState.PAID)),
    ):
        refused(ledger, op, OutcomeCode.TRANSFER_SETTLED)
    assert ledger.get_total_supply() == ledger.genesis_supply


def test_unlock_before_the_lock_aborts_the_transfer_for_good() -> None:
    ledger = source_ledger()
    refused(
        ledger,
        CrossRelease(transfer=T1, certificate=decided(T1, CrossState.PAID)),
        OutcomeCode.UNKNOWN_TRANSFER,
    )
    assert ledger.apply(CrossUnlock(transfer=T1, certificate=decided(T1, CrossState.REFUSED))).is_ok
    record = ledger.get_cross(ID1)
    assert record is not None and record.state is CrossState.ABORTED
    assert ledger.get_balance("alice") == 100  # nothing moved
    refused(ledger, CrossLock(transfer=T1), OutcomeCode.TRANSFER_USED)


def test_cross_operations_encode_canonically() -> None:
    ops: list[Operation] = [
        CrossLock(transfer=T1),
        CrossPay(transfer=T1, certificate=locked()),
        refusal(T1),
        CrossRelease(transfer=T1, certificate=decided(T1, CrossState.PAID)),
        CrossUnlock(transfer=T1, certificate=decided(T1, CrossState.REFUSED)),
    ]
    for op in ops:
        assert decode(encode(op), Operation) == op  # type: ignore[arg-type]


# --- a property: whatever arrives in whatever order ---------------------------------------------

TRANSFERS = [make_transfer(amount, bytes([i])) for i, amount in enumerate((20, 60, 90))]


@functools.cache
def op_pool() -> list[Operation]:
    ops: list[Operation] = []
    for transfer in TRANSFERS:
        ops += [
            CrossLock(transfer=transfer),
            CrossRelease(transfer=transfer, certificate=decided(transfer, CrossState.PAID)),
            CrossUnlock(transfer=transfer, certificate=decided(transfer, CrossState.REFUSED)),
            CrossRelease(transfer=transfer, certificate=decided(transfer, CrossState.REFUSED)),
            Unlock(lock_id=compute_transfer_id(transfer)),
        ]
    return ops


ALLOWED = {
    None: {CrossState.LOCKED, CrossState.ABORTED},
    CrossState.LOCKED: {CrossState.RELEASED, CrossState.UNLOCKED},
}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 14), max_size=25))
def test_source_states_only_move_forward_and_supply_is_kept(picks: list[int]) -> None:
    ledger = source_ledger()
    for pick in picks:
        op = op_pool()[pick]
        before = ledger.snapshot()
        states = {t: ledger.get_cross(compute_transfer_id(t)) for t in TRANSFERS}
        outcome = ledger.apply(op)
        if not outcome.is_ok:
            assert ledger.snapshot() == before
        for transfer, record in states.items():
            after = ledger.get_cross(compute_transfer_id(transfer))
            old = None if record is None else record.state
            new = None if after is None else after.state
            assert old == new or new in ALLOWED.get(old, set())
        assert ledger.get_total_supply() == ledger.genesis_supply


def test_a_ledger_verifies_with_the_replicas_cache() -> None:
    calls: list[bytes] = []

    def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
        calls.append(message)
        return bls.verify(public_key, message, signature)

    ledger = Ledger(GENESIS, as_id=DST, gateway_keys=[GATEWAY_DST[1]], verify=verify)
    assert ledger.apply(CrossPay(transfer=T1, certificate=locked())).is_ok
    assert len(calls) == 1


@pytest.mark.parametrize("claim", [CrossState.LOCKED, CrossState.PAID, CrossState.REFUSED])
def test_attestation_messages_bind_every_field(claim: CrossState) -> None:
    base = compute_attestation_message(b"k" * 32, SRC, ID1, claim)
    assert len(base) == 32
    assert base != compute_attestation_message(b"j" * 32, SRC, ID1, claim)
    assert base != compute_attestation_message(b"k" * 32, DST, ID1, claim)
    assert base != compute_attestation_message(b"k" * 32, SRC, compute_transfer_id(T2), claim)
    other = CrossState.ABORTED
    assert base != compute_attestation_message(b"k" * 32, SRC, ID1, other)
