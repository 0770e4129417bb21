"""HTLC against two REAL anvil nodes (different chain ids): lock, claim with the right
preimage only, refund only after the timelock, every refusal with its reason and no
state change, the full two-chain swap (four transactions, in order) and its gas.

Anvil is required: if the binary is missing, the module fixture raises AnvilNotFound and
every test here fails with that message (nothing is skipped).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator

import pytest

from sealbridge.chain.errors import ChainConfigError, TransactionReverted
from sealbridge.evm.adapter import ChainAdapter, TxReceipt
from sealbridge.evm.anvil import AnvilNode
from sealbridge.evm.htlc import (
    HTLC,
    HtlcRevert,
    HtlcState,
    compute_hashlock,
    deploy_htlc,
    run_htlc_swap,
)

CHAIN_A = 41_011
CHAIN_B = 41_012
ETHER = 10**18

GAS_REPORT: dict[str, int] = {}


class Env:
    def __init__(self, a: ChainAdapter, b: ChainAdapter) -> None:
        self.a, self.b = a, b
        self.alice = a.dev_keys[1]
        self.bob = a.dev_keys[2]
        self.carol = a.dev_keys[3]  # a third party who relays
        self.htlc_a = HTLC(a, deploy_htlc(a, a.dev_keys[0]))
        self.htlc_b = HTLC(b, deploy_htlc(b, b.dev_keys[0]))

    def now(self, adapter: ChainAdapter) -> int:
        return adapter.get_block("latest").timestamp


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
        print("\nHTLC gas (anvil, prague):")
        for name, gas in GAS_REPORT.items():
            print(f"  {name:<28} {gas:>9,}")


def fresh_address() -> str:
    return ChainAdapter.address_of(os.urandom(32))


def fee(adapter: ChainAdapter, receipt: TxReceipt) -> int:
    raw = adapter.web3.eth.get_transaction_receipt(receipt.tx_hash)  # type: ignore[arg-type]
    return int(raw["effectiveGasPrice"]) * receipt.gas_used


def snapshot(htlc: HTLC, swap_id: bytes, *addresses: str) -> tuple[object, ...]:
    return (
        htlc.get_swap(swap_id),
        htlc.get_locked_total(),
        htlc.adapter.balance(htlc.address),
        *(htlc.adapter.balance(a) for a in addresses),
    )


def expect_revert(reason: str, action: Callable[[], object]) -> None:
    with pytest.raises(TransactionReverted) as info:
        action()
    assert info.value.reason == reason


# ----------------------------------------------------------------------------- one chain


def test_lock_and_claim_with_the_right_preimage(env: Env) -> None:
    htlc = env.htlc_a
    secret = os.urandom(32)
    hashlock = compute_hashlock(secret)
    assert hashlock == hashlib.sha256(secret).digest()
    recipient = fresh_address()
    alice = ChainAdapter.address_of(env.alice)
    timelock = env.now(env.a) + 3600
    locked = htlc.lock(hashlock, recipient, timelock, 2 * ETHER, env.alice)
    GAS_REPORT["lock"] = locked.receipt.gas_used
    assert locked.swap_id == htlc.compute_swap_id(alice, recipient, 2 * ETHER, hashlock, timelock)
    [(name, event)] = htlc.decode_events(locked.receipt)
    assert name == "Locked" and event["timelock"] == timelock and event["amount"] == 2 * ETHER
    swap = htlc.get_swap(locked.swap_id)
    assert swap is not None and swap.state == HtlcState.LOCKED
    assert (swap.sender, swap.recipient, swap.hashlock) == (alice, recipient, hashlock)
    assert htlc.get_preimage(locked.swap_id) is None

    before = snapshot(htlc, locked.swap_id, recipient)
    for wrong in (os.urandom(32), hashlock, bytes(32)):
        with pytest.raises(TransactionReverted) as info:
            htlc.claim(locked.swap_id, wrong, env.carol)
        assert info.value.reason == HtlcRevert.WRONG_PREIMAGE
    assert snapshot(htlc, locked.swap_id, recipient) == before
    expect_revert(HtlcRevert.TIMELOCK_NOT_EXPIRED, lambda: htlc.refund(locked.swap_id, env.alice))
    assert snapshot(htlc, locked.swap_id, recipient) == before

    receipt = htlc.claim(locked.swap_id, secret, env.carol)  # anyone may deliver it
    GAS_REPORT["claim"] = receipt.gas_used
    assert env.a.balance(recipient) == 2 * ETHER
    [(name, event)] = htlc.decode_events(receipt)
    assert name == "Claimed" and event["preimage"] == secret
    assert htlc.get_preimage(locked.swap_id) == secret
    swap = htlc.get_swap(locked.swap_id)
    assert swap is not None and swap.state == HtlcState.CLAIMED

    after = snapshot(htlc, locked.swap_id, recipient)
    expect_revert(HtlcRevert.ALREADY_SETTLED, lambda: htlc.claim(locked.swap_id, secret, env.bob))
    env.a.increase_time(3601)
    expect_revert(HtlcRevert.ALREADY_SETTLED, lambda: htlc.refund(locked.swap_id, env.alice))
    assert snapshot(htlc, locked.swap_id, recipient) == after


def test_refund_only_after_the_timelock(env: Env) -> None:
    htlc = env.htlc_b
    secret = os.urandom(32)
    sender = ChainAdapter.address_of(env.bob)
    timelock = env.now(env.b) + 600
    locked = htlc.lock(compute_hashlock(secret), fresh_address(), timelock, ETHER, env.bob)
    before = snapshot(htlc, locked.swap_id, sender)
    expect_revert(HtlcRevert.TIMELOCK_NOT_EXPIRED, lambda: htlc.refund(locked.swap_id, env.carol))
    env.b.increase_time(300)
    expect_revert(HtlcRevert.TIMELOCK_NOT_EXPIRED, lambda: htlc.refund(locked.swap_id, env.carol))
    assert snapshot(htlc, locked.swap_id, sender) == before
    env.b.increase_time(301)
    # too late to claim, even with the right preimage
    expect_revert(
        HtlcRevert.TIMELOCK_EXPIRED, lambda: htlc.claim(locked.swap_id, secret, env.carol)
    )
    assert snapshot(htlc, locked.swap_id, sender) == before
    balance = env.b.balance(sender)
    receipt = htlc.refund(locked.swap_id, env.carol)  # anyone may send it; the sender is paid
    GAS_REPORT["refund"] = receipt.gas_used
    assert env.b.balance(sender) == balance + ETHER
    swap = htlc.get_swap(locked.swap_id)
    assert swap is not None and swap.state == HtlcState.REFUNDED
    assert htlc.get_preimage(locked.swap_id) is None
    expect_revert(HtlcRevert.ALREADY_SETTLED, lambda: htlc.refund(locked.swap_id, env.carol))
    expect_revert(HtlcRevert.ALREADY_SETTLED, lambda: htlc.claim(locked.swap_id, secret, env.carol))
    expect_revert(HtlcRevert.UNKNOWN_SWAP, lambda: htlc.refund(os.urandom(32), env.carol))
    expect_revert(HtlcRevert.UNKNOWN_SWAP, lambda: htlc.claim(os.urandom(32), secret, env.carol))
    assert htlc.get_swap(os.urandom(32)) is None


@pytest.mark.parametrize(
    ("reason", "amount", "recipient", "delta"),
    [
        (HtlcRevert.ZERO_AMOUNT, 0, None, 600),
        (HtlcRevert.EMPTY_RECIPIENT, ETHER, "0x" + "00" * 20, 600),
        (HtlcRevert.TIMELOCK_NOT_IN_FUTURE, ETHER, None, -1),
    ],
)
def test_lock_refusals(
    env: Env, reason: str, amount: int, recipient: str | None, delta: int
) -> None:
    htlc = env.htlc_a
    locked_total = htlc.get_locked_total()
    expect_revert(
        reason,
        lambda: htlc.lock(
            os.urandom(32),
            recipient or fresh_address(),
            env.now(env.a) + delta,
            amount,
            env.alice,
        ),
    )
    assert htlc.get_locked_total() == locked_total


def test_identical_lock_is_refused(env: Env) -> None:
    htlc = env.htlc_a
    args = (os.urandom(32), fresh_address(), env.now(env.a) + 3600, ETHER)
    htlc.lock(*args, env.alice)
    expect_revert(HtlcRevert.SWAP_EXISTS, lambda: htlc.lock(*args, env.alice))
    htlc.lock(*args, env.bob)  # another sender: another swap id


def test_local_argument_checks(env: Env) -> None:
    with pytest.raises(ChainConfigError):
        env.htlc_a.claim(os.urandom(32), b"short", env.alice)
    with pytest.raises(ChainConfigError):
        compute_hashlock(b"x" * 31)


# ----------------------------------------------------------------------------- two chains


def test_two_chain_swap(env: Env) -> None:
    alice = ChainAdapter.address_of(env.alice)
    bob = ChainAdapter.address_of(env.bob)
    start = {
        ("a", "alice"): env.a.balance(alice),
        ("a", "bob"): env.a.balance(bob),
        ("b", "alice"): env.b.balance(alice),
        ("b", "bob"): env.b.balance(bob),
    }
    locked_a, locked_b = env.htlc_a.get_locked_total(), env.htlc_b.get_locked_total()
    result = run_htlc_swap(
        env.htlc_a,
        env.htlc_b,
        alice_key=env.alice,
        bob_key=env.bob,
        amount_a=3 * ETHER,
        amount_b=5 * ETHER,
    )
    assert [s.name for s in result.steps] == ["lock_a", "lock_b", "claim_b", "claim_a"]
    assert [s.chain_id for s in result.steps] == [CHAIN_A, CHAIN_B, CHAIN_B, CHAIN_A]
    assert [s.sender for s in result.steps] == [alice, bob, alice, bob]
    blocks = [s.receipt.block_number for s in result.steps]
    assert blocks[0] < blocks[3] and blocks[1] < blocks[2]  # each chain in order
    fees = {
        ("a", "alice"): fee(env.a, result.steps[0].receipt),
        ("b", "bob"): fee(env.b, result.steps[1].receipt),
        ("b", "alice"): fee(env.b, result.steps[2].receipt),
        ("a", "bob"): fee(env.a, result.steps[3].receipt),
    }
    assert env.a.balance(alice) == start["a", "alice"] - 3 * ETHER - fees["a", "alice"]
    assert env.a.balance(bob) == start["a", "bob"] + 3 * ETHER - fees["a", "bob"]
    assert env.b.balance(alice) == start["b", "alice"] + 5 * ETHER - fees["b", "alice"]
    assert env.b.balance(bob) == start["b", "bob"] - 5 * ETHER - fees["b", "bob"]
    for htlc, swap_id in ((env.htlc_a, result.swap_id_a), (env.htlc_b, result.swap_id_b)):
        swap = htlc.get_swap(swap_id)
        assert swap is not None and swap.state == HtlcState.CLAIMED
        assert swap.hashlock == result.hashlock
    assert env.htlc_a.get_swap(result.swap_id_a).timelock > (  # type: ignore[union-attr]
        env.htlc_b.get_swap(result.swap_id_b).timelock  # type: ignore[union-attr]
    )
    assert env.htlc_a.get_locked_total() == locked_a
    assert env.htlc_b.get_locked_total() == locked_b
    for name, gas in result.get_gas_by_step().items():
        GAS_REPORT[f"swap: {name}"] = gas
    GAS_REPORT["swap: total"] = result.total_gas


def test_two_chain_swap_refunds_when_alice_walks_away(env: Env) -> None:
    """Steps 1 and 2 only: after the timelocks both get their coins back."""
    secret = os.urandom(32)
    hashlock = compute_hashlock(secret)
    alice = ChainAdapter.address_of(env.alice)
    bob = ChainAdapter.address_of(env.bob)
    lock_a = env.htlc_a.lock(hashlock, bob, env.now(env.a) + 7200, ETHER, env.alice)
    lock_b = env.htlc_b.lock(hashlock, alice, env.now(env.b) + 3600, ETHER, env.bob)
    env.b.increase_time(3601)
    bob_b = env.b.balance(bob)
    env.htlc_b.refund(lock_b.swap_id, env.carol)
    assert env.b.balance(bob) == bob_b + ETHER
    expect_revert(
        HtlcRevert.TIMELOCK_NOT_EXPIRED, lambda: env.htlc_a.refund(lock_a.swap_id, env.carol)
    )
    env.a.increase_time(7201)
    alice_a = env.a.balance(alice)
    env.htlc_a.refund(lock_a.swap_id, env.carol)
    assert env.a.balance(alice) == alice_a + ETHER


def test_swap_arguments_are_checked(env: Env) -> None:
    for timelocks in ((3600, 3600), (3600, 7200), (3600, 0)):
        with pytest.raises(ChainConfigError):
            run_htlc_swap(
                env.htlc_a,
                env.htlc_b,
                alice_key=env.alice,
                bob_key=env.bob,
                amount_a=ETHER,
                amount_b=ETHER,
                timelock_a=timelocks[0],
                timelock_b=timelocks[1],
            )
