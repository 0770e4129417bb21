"""GatewayEscrow against two REAL anvil nodes (different chain ids): the on-chain
hash_to_G2 and BLS verification with the EIP-2537 precompiles, threshold-signed
releases (3-of-5, real crypto), every refusal leaving the state unchanged, commit /
abort / refund on the source chain, key rotation, and the gas of each step.

Anvil is required: if the binary is missing, the module fixture raises AnvilNotFound and
every test here fails with that message (nothing is skipped).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgspec
import pytest
from py_ecc.bls.hash_to_curve import hash_to_G2 as py_ecc_hash_to_g2
from py_ecc.optimized_bls12_381.optimized_curve import normalize

from sealbridge.chain import bls_onchain
from sealbridge.chain.abi import AbiCodec, checksum
from sealbridge.chain.bls_onchain import (
    BLS_DST,
    FP_MODULUS,
    G1_GENERATOR,
    NEG_G1_GENERATOR,
    compute_hash_to_g2,
    compute_lock_ref,
    compute_release_message,
    decode_fp,
    decode_g1,
    decode_g2,
    encode_fp,
    encode_g1,
    encode_g2,
)
from sealbridge.chain.errors import ChainConfigError, TransactionReverted
from sealbridge.crypto import bls
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.anvil import AnvilNode
from sealbridge.evm.compiler import compile_contract
from sealbridge.evm.escrow import (
    EscrowLockState,
    EscrowRevert,
    GatewayEscrow,
    LockedTransfer,
    deploy_gateway_escrow,
    run_gateway_transfer,
)

CHAIN_A = 41_001
CHAIN_B = 41_002
MARGIN = 600  # seconds before the deadline releases stop
ETHER = 10**18
GAS = 1_000_000  # an explicit budget: refused transactions are mined and revert on chain

GAS_REPORT: dict[str, int] = {}


@dataclass
class Committee:
    """A 3-of-5 gateway committee (real threshold BLS)."""

    keys: bls.ThresholdKeySet

    @property
    def public_key(self) -> bytes:
        return self.keys.group_public_key

    def sign(self, message: bytes, holders: tuple[int, ...] = (1, 3, 5)) -> bytes:
        partials = [bls.partial_sign(self.keys.shares[i - 1], message) for i in holders]
        for partial in partials:
            assert bls.is_valid_partial(
                self.keys.public_shares[partial.index - 1], message, partial
            )
        signature = bls.combine(partials, self.keys.threshold)
        assert bls.verify(self.public_key, message, signature)
        return signature


def make_committee(seed: bytes) -> Committee:
    return Committee(bls.deal_threshold_key(3, 5, randomness=seed))


class Env:
    def __init__(self, a: ChainAdapter, b: ChainAdapter) -> None:
        self.a, self.b = a, b
        self.deployer = a.dev_keys[0]
        self.user = a.dev_keys[1]
        self.relayer = a.dev_keys[2]
        self.provider = a.dev_keys[3]
        self.committee = make_committee(b"gateway committee seed")
        self.source = self.escrow(a)
        self.dest = self.escrow(b)
        self.dest.provide_liquidity(20 * ETHER, self.provider)
        self.source.provide_liquidity(5 * ETHER, self.provider)

    def escrow(self, adapter: ChainAdapter, committee: Committee | None = None) -> GatewayEscrow:
        key = (committee or self.committee).public_key
        address = deploy_gateway_escrow(adapter, self.deployer, key, MARGIN)
        return GatewayEscrow(adapter, address)

    def now(self, adapter: ChainAdapter) -> int:
        return adapter.get_block("latest").timestamp

    def lock(
        self, amount: int = ETHER, *, recipient: str | None = None, lifetime: int = 7200
    ) -> LockedTransfer:
        recipient = recipient or fresh_address()
        transfer, _ = self.source.lock(
            os.urandom(32),
            CHAIN_B,
            self.dest.address,
            recipient,
            self.now(self.a) + lifetime,
            amount,
            self.user,
        )
        return transfer


@pytest.fixture(scope="module")
def anvils() -> Iterator[tuple[AnvilNode, AnvilNode]]:
    # AnvilNotFound here fails every test with a clear message; both stop on the way out
    with AnvilNode(chain_id=CHAIN_A) as a, AnvilNode(chain_id=CHAIN_B) as b:
        yield a, b


@pytest.fixture(scope="module")
def env(anvils: tuple[AnvilNode, AnvilNode]) -> Env:
    return Env(anvils[0].adapter(), anvils[1].adapter())


@pytest.fixture(scope="module", autouse=True)
def print_gas_report() -> Iterator[None]:
    yield
    if GAS_REPORT:
        print("\nGatewayEscrow gas (anvil, prague):")
        for name, gas in GAS_REPORT.items():
            print(f"  {name:<40} {gas:>9,}")


def fresh_address() -> str:
    return ChainAdapter.address_of(os.urandom(32))


def snapshot(escrow: GatewayEscrow, *addresses: str) -> tuple[object, ...]:
    """Everything a refused transaction must leave unchanged."""
    adapter = escrow.adapter
    return (
        escrow.get_pool(),
        escrow.get_locked_total(),
        adapter.balance(escrow.address),
        escrow.get_group_key(),
        escrow.get_key_epoch(),
        *(adapter.balance(a) for a in addresses),
    )


def assert_conserved(escrow: GatewayEscrow) -> None:
    balance = escrow.adapter.balance(escrow.address)
    assert balance == escrow.get_pool() + escrow.get_locked_total()


def expect_revert(reason: str, action: Callable[[], object]) -> None:
    with pytest.raises(TransactionReverted) as info:
        action()
    assert info.value.reason == reason


# ----------------------------------------------------------------------------- encodings


def test_eip2537_encodings_round_trip() -> None:
    secret, public = bls.keygen(b"\x11" * 32)
    signature = bls.sign(secret, b"message")
    g1 = encode_g1(public)
    g2 = encode_g2(signature)
    assert len(g1) == 128 and len(g2) == 256
    for word in range(0, 128, 64):
        assert g1[word : word + 16] == bytes(16)
    for word in range(0, 256, 64):
        assert g2[word : word + 16] == bytes(16)
    assert decode_g1(g1) == public and decode_g2(g2) == signature
    # the G1 generator and its negation (x, p - y)
    assert decode_fp(G1_GENERATOR[:64]) == decode_fp(NEG_G1_GENERATOR[:64])
    assert decode_fp(G1_GENERATOR[64:]) + decode_fp(NEG_G1_GENERATOR[64:]) == FP_MODULUS
    assert encode_fp(FP_MODULUS - 1)[:16] == bytes(16)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: encode_fp(FP_MODULUS),
        lambda: decode_fp(b"\x01" + bytes(63)),
        lambda: decode_fp(FP_MODULUS.to_bytes(64, "big")),
        lambda: encode_g1(b"\x00" * 48),
        lambda: encode_g1(b"\x01" * 47),
        lambda: encode_g2(b"\xaa" * 96),
        lambda: decode_g1(bytes(127)),
        lambda: decode_g2(b"\x01" * 256),
    ],
)
def test_malformed_encodings_raise_typed_errors(bad: Callable[[], object]) -> None:
    with pytest.raises(ChainConfigError):
        bad()


def test_python_hash_to_g2_matches_py_ecc() -> None:
    """arkworks (what signs) agrees with py_ecc, an independent RFC 9380 implementation."""
    for message in (b"", b"abc", bytes(range(256)) * 3):
        x, y = normalize(py_ecc_hash_to_g2(message, BLS_DST, hashlib.sha256))  # type: ignore[arg-type]
        expected = b"".join(encode_fp(int(c)) for c in (*x.coeffs, *y.coeffs))
        assert compute_hash_to_g2(message) == expected


# ----------------------------------------------------------------------------- on-chain BLS


@pytest.mark.parametrize(
    "message",
    [b"", b"a", b"abc", bytes(range(224)), b"\xff" * 1000, os.urandom(2048)],
    ids=["empty", "1", "abc", "224", "1000", "2048"],
)
def test_on_chain_hash_to_g2_equals_arkworks(env: Env, message: bytes) -> None:
    assert env.source.hash_to_g2(message) == compute_hash_to_g2(message)


def test_on_chain_verification(env: Env) -> None:
    message = b"gateway message"
    signature = env.committee.sign(message)
    assert env.dest.is_valid_signature(message, signature)
    assert env.dest.is_valid_signature(message, encode_g2(signature))
    assert not env.dest.is_valid_signature(b"another message", signature)
    other = make_committee(b"another committee")
    assert not env.dest.is_valid_signature(message, other.sign(message))
    # not a curve point, the identity, and a point in G2 that is not the signature
    assert not env.dest.is_valid_signature(message, b"\x01" * 256)
    assert not env.dest.is_valid_signature(message, bytes(256))
    assert not env.dest.is_valid_signature(message, compute_hash_to_g2(message))


def test_release_message_is_what_the_contract_hashes(env: Env) -> None:
    transfer = env.lock()
    message = env.dest.compute_release_message(transfer)
    assert len(message) == 224
    assert env.dest.get_release_message(transfer) == message
    assert transfer.compute_lock_ref() == transfer.lock_ref
    assert message == compute_release_message(
        escrow=env.dest.address,
        chain_id=CHAIN_B,
        transfer_id=transfer.transfer_id,
        recipient=transfer.recipient,
        amount=transfer.amount,
        lock_ref=transfer.lock_ref,
    )
    with pytest.raises(ChainConfigError):
        env.source.compute_release_message(transfer)  # names the other escrow


# ----------------------------------------------------------------------------- lock


def test_lock_records_the_transfer(env: Env) -> None:
    recipient = fresh_address()
    salt = os.urandom(32)
    deadline = env.now(env.a) + 3600
    locked_before = env.source.get_locked_total()
    transfer, receipt = env.source.lock(
        salt, CHAIN_B, env.dest.address, recipient, deadline, 3 * ETHER, env.user
    )
    GAS_REPORT["lock (source)"] = receipt.gas_used
    user = ChainAdapter.address_of(env.user)
    assert transfer.transfer_id == env.source.compute_transfer_id(user, salt)
    assert transfer.lock_ref == compute_lock_ref(
        source_chain_id=CHAIN_A,
        source_escrow=env.source.address,
        transfer_id=transfer.transfer_id,
        sender=user,
        amount=3 * ETHER,
        dest_chain_id=CHAIN_B,
        dest_escrow=env.dest.address,
        recipient=recipient,
        deadline=deadline,
    )
    lock = env.source.get_lock(transfer.transfer_id)
    assert lock is not None and lock.state == EscrowLockState.LOCKED
    assert (lock.sender, lock.amount, lock.deadline) == (user, 3 * ETHER, deadline)
    assert env.source.get_locked_total() == locked_before + 3 * ETHER
    assert env.source.get_lock(os.urandom(32)) is None
    assert_conserved(env.source)
    # the same salt from the same sender is the same id
    expect_revert(
        EscrowRevert.TRANSFER_ID_USED,
        lambda: env.source.lock(
            salt, CHAIN_B, env.dest.address, recipient, deadline, ETHER, env.user
        )[1],
    )


@pytest.mark.parametrize(
    ("reason", "amount", "recipient", "lifetime"),
    [
        (EscrowRevert.ZERO_AMOUNT, 0, None, 3600),
        (EscrowRevert.EMPTY_RECIPIENT, ETHER, "0x" + "00" * 20, 3600),
        (EscrowRevert.DEADLINE_TOO_SOON, ETHER, None, MARGIN),
    ],
)
def test_lock_refusals(
    env: Env, reason: str, amount: int, recipient: str | None, lifetime: int
) -> None:
    before = snapshot(env.source)
    to = recipient or fresh_address()
    deadline = env.now(env.a) + lifetime
    with pytest.raises(TransactionReverted) as info:
        env.source.lock(os.urandom(32), CHAIN_B, env.dest.address, to, deadline, amount, env.user)
    assert info.value.reason == reason
    assert snapshot(env.source) == before


# ----------------------------------------------------------------------------- release


def test_threshold_signature_releases_exactly_once(env: Env) -> None:
    transfer = env.lock(2 * ETHER)
    message = env.dest.compute_release_message(transfer)
    # any three of the five holders produce the same group signature
    signature = env.committee.sign(message, (1, 3, 5))
    assert env.committee.sign(message, (2, 4, 5)) == signature
    pool = env.dest.get_pool()
    receipt = env.dest.release(transfer, signature, env.relayer)
    GAS_REPORT["release (destination, fresh recipient)"] = receipt.gas_used
    assert env.dest.adapter.balance(transfer.recipient) == 2 * ETHER
    assert env.dest.get_pool() == pool - 2 * ETHER
    assert env.dest.is_released(transfer.transfer_id)
    [(name, event)] = env.dest.decode_events(receipt)
    assert name == "Released"
    assert event["transfer_id"] == transfer.transfer_id and event["lock_ref"] == transfer.lock_ref
    assert_conserved(env.dest)

    before = snapshot(env.dest, transfer.recipient)
    expect_revert(
        EscrowRevert.ALREADY_RELEASED,
        lambda: env.dest.release(transfer, signature, env.relayer, gas=GAS),
    )
    assert snapshot(env.dest, transfer.recipient) == before

    # the source commits: the lock joins the source pool, no refund any more
    source_pool = env.source.get_pool()
    commit = env.source.commit(
        transfer.transfer_id, env.committee.sign(transfer.compute_commit_message()), env.relayer
    )
    GAS_REPORT["commit (source)"] = commit.gas_used
    lock = env.source.get_lock(transfer.transfer_id)
    assert lock is not None and lock.state == EscrowLockState.COMMITTED
    assert env.source.get_pool() == source_pool + 2 * ETHER
    assert_conserved(env.source)
    expect_revert(
        EscrowRevert.ALREADY_SETTLED, lambda: env.source.refund(transfer.transfer_id, env.relayer)
    )


def _forged(env: Env, transfer: LockedTransfer) -> list[tuple[str, LockedTransfer, bytes]]:
    """(case, transfer as submitted, signature): each must be refused."""
    good = env.committee.sign(env.dest.compute_release_message(transfer))
    other_committee = make_committee(b"not the gateway committee")
    replace = msgspec.structs.replace
    return [
        ("another message", transfer, env.committee.sign(b"some other message")),
        (
            "signed by another key",
            transfer,
            other_committee.sign(transfer.compute_release_message()),
        ),
        ("not a curve point", transfer, b"\x01" * 256),
        ("the identity", transfer, bytes(256)),
        ("the commit signature", transfer, env.committee.sign(transfer.compute_commit_message())),
        ("wrong recipient", replace(transfer, recipient=fresh_address()), good),
        ("wrong amount", replace(transfer, amount=transfer.amount + 1), good),
        ("smaller amount", replace(transfer, amount=transfer.amount - 1), good),
        ("wrong deadline", replace(transfer, deadline=transfer.deadline + 1), good),
        ("wrong sender", replace(transfer, sender=fresh_address()), good),
        ("wrong source escrow", replace(transfer, source_escrow=fresh_address()), good),
        ("wrong source chain", replace(transfer, source_chain_id=CHAIN_B), good),
        ("wrong transfer id", replace(transfer, transfer_id=os.urandom(32)), good),
    ]


def test_forged_releases_revert_and_change_nothing(env: Env) -> None:
    transfer = env.lock(ETHER)
    for case, submitted, signature in _forged(env, transfer):
        watched = (transfer.recipient, submitted.recipient)
        before = snapshot(env.dest, *watched)
        with pytest.raises(TransactionReverted) as info:
            env.dest.release(submitted, signature, env.relayer, gas=GAS)
        assert info.value.reason == EscrowRevert.INVALID_SIGNATURE, case
        assert info.value.tx_hash is not None, case
        assert snapshot(env.dest, *watched) == before, case
        assert not env.dest.is_released(submitted.transfer_id), case
    # the genuine release still goes through afterwards
    env.dest.release(transfer, env.committee.sign(transfer.compute_release_message()), env.relayer)
    assert env.dest.adapter.balance(transfer.recipient) == ETHER


def test_release_signature_is_bound_to_one_escrow(env: Env) -> None:
    """The same committee key on another escrow (same chain) refuses the signature."""
    twin = env.escrow(env.b)
    twin.provide_liquidity(2 * ETHER, env.provider)
    transfer = env.lock(ETHER)
    signature = env.committee.sign(env.dest.compute_release_message(transfer))
    retargeted = msgspec.structs.replace(transfer, dest_escrow=twin.address)
    before = snapshot(twin, transfer.recipient)
    expect_revert(
        EscrowRevert.INVALID_SIGNATURE,
        lambda: twin.release(retargeted, signature, env.relayer, gas=GAS),
    )
    assert snapshot(twin, transfer.recipient) == before


def test_release_needs_liquidity_and_an_open_window(env: Env) -> None:
    big = env.lock(50 * ETHER)
    expect_revert(
        EscrowRevert.INSUFFICIENT_LIQUIDITY,
        lambda: env.dest.release(
            big, env.committee.sign(big.compute_release_message()), env.relayer, gas=GAS
        ),
    )
    transfer = env.lock(ETHER, lifetime=MARGIN + 120)
    signature = env.committee.sign(transfer.compute_release_message())
    env.b.increase_time(300)  # now + margin > deadline on the destination's clock
    before = snapshot(env.dest, transfer.recipient)
    expect_revert(
        EscrowRevert.RELEASE_WINDOW_CLOSED,
        lambda: env.dest.release(transfer, signature, env.relayer, gas=GAS),
    )
    assert snapshot(env.dest, transfer.recipient) == before


def test_pairing_is_not_starved_of_gas(env: Env) -> None:
    transfer = env.lock(ETHER)
    signature = env.committee.sign(transfer.compute_release_message())
    before = snapshot(env.dest, transfer.recipient)
    with pytest.raises(TransactionReverted):
        env.dest.release(transfer, signature, env.relayer, gas=150_000)
    assert snapshot(env.dest, transfer.recipient) == before
    env.dest.release(transfer, signature, env.relayer)
    assert env.dest.is_released(transfer.transfer_id)


def test_local_signature_checks(env: Env) -> None:
    transfer = env.lock(ETHER)
    with pytest.raises(ChainConfigError):
        env.dest.release(transfer, b"\x00" * 95, env.relayer)
    with pytest.raises(ChainConfigError):
        env.dest.release(transfer, b"\xaa" * 96, env.relayer)  # not a compressed G2 point


# ----------------------------------------------------------------------------- source side


def test_refund_only_after_the_deadline(env: Env) -> None:
    transfer = env.lock(ETHER, lifetime=MARGIN + 300)
    expect_revert(
        EscrowRevert.DEADLINE_NOT_REACHED,
        lambda: env.source.refund(transfer.transfer_id, env.relayer),
    )
    env.a.increase_time(MARGIN + 301)
    sender = transfer.sender
    balance = env.a.balance(sender)
    locked = env.source.get_locked_total()
    receipt = env.source.refund(transfer.transfer_id, env.relayer)  # anyone may send it
    GAS_REPORT["refund after deadline (source)"] = receipt.gas_used
    assert env.a.balance(sender) == balance + ETHER
    assert env.source.get_locked_total() == locked - ETHER
    lock = env.source.get_lock(transfer.transfer_id)
    assert lock is not None and lock.state == EscrowLockState.REFUNDED
    assert_conserved(env.source)
    commit_sig = env.committee.sign(transfer.compute_commit_message())
    expect_revert(
        EscrowRevert.ALREADY_SETTLED,
        lambda: env.source.commit(transfer.transfer_id, commit_sig, env.relayer),
    )
    expect_revert(
        EscrowRevert.ALREADY_SETTLED, lambda: env.source.refund(transfer.transfer_id, env.relayer)
    )
    expect_revert(
        EscrowRevert.UNKNOWN_TRANSFER, lambda: env.source.refund(os.urandom(32), env.relayer)
    )


def test_committee_abort_refunds_at_once(env: Env) -> None:
    transfer = env.lock(ETHER)
    before = snapshot(env.source, transfer.sender)
    for forged in (
        env.committee.sign(transfer.compute_commit_message()),  # a commit is not an abort
        make_committee(b"x" * 8).sign(transfer.compute_abort_message()),
    ):
        with pytest.raises(TransactionReverted) as info:
            env.source.abort(transfer.transfer_id, forged, env.relayer)
        assert info.value.reason == EscrowRevert.INVALID_SIGNATURE
    assert snapshot(env.source, transfer.sender) == before
    balance = env.a.balance(transfer.sender)
    receipt = env.source.abort(
        transfer.transfer_id, env.committee.sign(transfer.compute_abort_message()), env.relayer
    )
    GAS_REPORT["abort (source)"] = receipt.gas_used
    assert env.a.balance(transfer.sender) == balance + ETHER
    [(name, event)] = env.source.decode_events(receipt)
    assert name == "Refunded" and event["aborted"] is True
    assert_conserved(env.source)


def test_forged_commit_changes_nothing(env: Env) -> None:
    transfer = env.lock(ETHER)
    before = snapshot(env.source)
    for forged in (
        env.committee.sign(transfer.compute_abort_message()),
        env.committee.sign(transfer.compute_release_message()),
        make_committee(b"y" * 8).sign(transfer.compute_commit_message()),
    ):
        with pytest.raises(TransactionReverted) as info:
            env.source.commit(transfer.transfer_id, forged, env.relayer)
        assert info.value.reason == EscrowRevert.INVALID_SIGNATURE
    assert snapshot(env.source) == before
    lock = env.source.get_lock(transfer.transfer_id)
    assert lock is not None and lock.state == EscrowLockState.LOCKED


# ----------------------------------------------------------------------------- key rotation


def test_committee_key_rotation(env: Env) -> None:
    escrow = env.escrow(env.b)
    escrow.provide_liquidity(5 * ETHER, env.provider)
    new = make_committee(b"next era committee")
    assert escrow.get_key_epoch() == 1
    assert escrow.get_group_public_key() == env.committee.public_key
    message = escrow.compute_key_rotation_message(new.public_key)
    # only the current committee may rotate
    before = snapshot(escrow)
    expect_revert(
        EscrowRevert.INVALID_SIGNATURE,
        lambda: escrow.rotate_key(new.public_key, new.sign(message), env.relayer),
    )
    assert snapshot(escrow) == before
    signature = env.committee.sign(message)
    receipt = escrow.rotate_key(new.public_key, signature, env.relayer)
    GAS_REPORT["rotate_key"] = receipt.gas_used
    assert escrow.get_key_epoch() == 2
    assert escrow.get_group_public_key() == new.public_key
    # the rotation cannot be replayed (the epoch moved on)
    expect_revert(
        EscrowRevert.INVALID_SIGNATURE,
        lambda: escrow.rotate_key(new.public_key, signature, env.relayer),
    )
    # releases now need the new committee
    transfer = msgspec.structs.replace(env.lock(ETHER), dest_escrow=escrow.address)
    message = transfer.compute_release_message()
    expect_revert(
        EscrowRevert.INVALID_SIGNATURE,
        lambda: escrow.release(transfer, env.committee.sign(message), env.relayer, gas=GAS),
    )
    escrow.release(transfer, new.sign(message), env.relayer)
    assert escrow.is_released(transfer.transfer_id)


def _point_outside_the_subgroup() -> bytes:
    """A point of E(Fp): y^2 = x^3 + 4 that is not in G1 (the cofactor is not cleared)."""
    x = 5
    while True:
        rhs = (x**3 + 4) % FP_MODULUS
        y = pow(rhs, (FP_MODULUS + 1) // 4, FP_MODULUS)  # p = 3 mod 4
        if y * y % FP_MODULUS == rhs:
            return encode_fp(x) + encode_fp(y)
        x += 1


BAD_KEYS = {
    "identity": bytes(128),
    "not on the curve": encode_fp(1) + encode_fp(1),
    "not in the subgroup": _point_outside_the_subgroup(),
}


def test_invalid_keys_are_refused(env: Env) -> None:
    with pytest.raises(ChainConfigError):
        decode_g1(BAD_KEYS["not in the subgroup"])  # arkworks agrees it is no key
    for bad in BAD_KEYS.values():
        message = bls_onchain.compute_key_rotation_message(
            escrow=env.dest.address, chain_id=CHAIN_B, epoch=2, new_key=bad
        )
        signature = encode_g2(env.committee.sign(message))
        data = env.dest.codec.function("rotate_key").encode_call([bad, signature])
        with pytest.raises(TransactionReverted) as info:
            env.b.transact(env.relayer, to=env.dest.address, data=data)
        assert info.value.reason == EscrowRevert.INVALID_KEY
    compiled = compile_contract("GatewayEscrow")
    for bad in BAD_KEYS.values():
        ctor = AbiCodec(compiled.abi).encode_constructor([bad, MARGIN])
        with pytest.raises(TransactionReverted) as info:
            env.b.deploy(env.deployer, compiled.bytecode, ctor)
        assert info.value.reason == EscrowRevert.INVALID_KEY


# ----------------------------------------------------------------------------- flows and gas


def test_run_gateway_transfer_and_gas(env: Env) -> None:
    recipient = fresh_address()
    result = run_gateway_transfer(
        env.source,
        env.dest,
        sign=env.committee.sign,
        sender_key=env.user,
        relayer_key=env.relayer,
        recipient=recipient,
        amount=ETHER,
    )
    assert [s.name for s in result.steps] == ["lock", "release", "commit"]
    assert [s.chain_id for s in result.steps] == [CHAIN_A, CHAIN_B, CHAIN_A]
    assert env.b.balance(recipient) == ETHER
    lock = env.source.get_lock(result.transfer.transfer_id)
    assert lock is not None and lock.state == EscrowLockState.COMMITTED
    assert_conserved(env.source)
    assert_conserved(env.dest)
    for name, gas in result.get_gas_by_step().items():
        GAS_REPORT[f"run_gateway_transfer: {name}"] = gas
    GAS_REPORT["run_gateway_transfer: total"] = result.total_gas
    # the parts of a release: hash_to_G2 and the whole verification, as view calls sent
    # in transactions (21,000 + calldata included)
    message = result.transfer.compute_release_message()
    signature = encode_g2(env.committee.sign(message))
    fn = env.dest.codec
    hashed = env.b.transact(
        env.relayer, to=env.dest.address, data=fn.function("hash_to_g2").encode_call([message])
    )
    verified = env.b.transact(
        env.relayer,
        to=env.dest.address,
        data=fn.function("verify_signature").encode_call([message, signature]),
    )
    GAS_REPORT["hash_to_g2(224 B) as a tx"] = hashed.gas_used
    GAS_REPORT["verify_signature(224 B) as a tx"] = verified.gas_used
    release = result.get_gas_by_step()["release"]
    assert 150_000 < release < 400_000
    assert checksum(recipient) == result.transfer.recipient
