"""The replicated ledger: every operation, refusals that change nothing, conservation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealbridge.consensus.errors import ConsensusConfigError, LedgerError
from sealbridge.consensus.ledger import (
    MAX_AMOUNT,
    Ledger,
    Lock,
    LockState,
    Operation,
    OutcomeCode,
    Pay,
    Release,
    Transfer,
    Unlock,
)
from sealbridge.core.encoding import decode, encode

GENESIS = {"alice": 100, "bob": 50}
L1, L2, P1 = b"lock-1", b"lock-2", b"pay-1"


def make_ledger() -> Ledger:
    return Ledger(GENESIS)


def refused(ledger: Ledger, op: Operation, code: OutcomeCode) -> None:
    """``op`` is refused with ``code`` and the state is exactly as before."""
    before = ledger.snapshot()
    outcome = ledger.apply(op)
    assert outcome.code is code, outcome
    assert not outcome.is_ok
    assert ledger.snapshot() == before


def test_genesis() -> None:
    ledger = Ledger({"alice": 100, "bob": 0})
    assert ledger.get_balances() == {"alice": 100}  # zero balances are not stored
    assert ledger.get_total_supply() == ledger.genesis_supply == 100
    assert Ledger([("a", 1), ("b", 2)]).get_total_supply() == 3
    for bad in ({"": 1}, {"x" * 65: 1}, {"a": -1}, {"a": 1.5}, {"a": MAX_AMOUNT, "b": 1}):
        with pytest.raises(ConsensusConfigError):
            Ledger(bad)  # type: ignore[arg-type]
    with pytest.raises(ConsensusConfigError):
        Ledger([("a", 1), ("a", 2)])


def test_transfer() -> None:
    ledger = make_ledger()
    assert ledger.apply(Transfer(src="alice", dst="carol", amount=30)).is_ok
    assert ledger.get_balances() == {"alice": 70, "bob": 50, "carol": 30}
    assert ledger.apply(Transfer(src="carol", dst="bob", amount=30)).is_ok
    assert ledger.get_balance("carol") == 0 and "carol" not in ledger.get_balances()
    refused(ledger, Transfer(src="alice", dst="bob", amount=71), OutcomeCode.INSUFFICIENT_BALANCE)
    refused(ledger, Transfer(src="nobody", dst="bob", amount=1), OutcomeCode.INSUFFICIENT_BALANCE)
    for amount in (0, -5, MAX_AMOUNT + 1, True, 1.0):
        refused(ledger, Transfer(src="alice", dst="bob", amount=amount), OutcomeCode.INVALID)  # type: ignore[arg-type]
    refused(ledger, Transfer(src="alice", dst="alice", amount=1), OutcomeCode.INVALID)
    refused(ledger, Transfer(src="alice", dst="", amount=1), OutcomeCode.INVALID)
    refused(ledger, Transfer(src="alice", dst=b"bob", amount=1), OutcomeCode.INVALID)  # type: ignore[arg-type]
    assert ledger.get_total_supply() == 150


def test_lock_then_release_pays_the_escrow_out() -> None:
    ledger = make_ledger()
    assert ledger.apply(Lock(lock_id=L1, owner="alice", amount=40)).is_ok
    assert ledger.get_balance("alice") == 60 and ledger.get_escrowed() == 40
    assert ledger.get_total_supply() == 150
    record = ledger.get_lock(L1)
    assert record is not None and record.state is LockState.LOCKED
    assert ledger.apply(Release(lock_id=L1, to="dave")).is_ok
    assert ledger.get_balance("dave") == 40 and ledger.get_escrowed() == 0
    record = ledger.get_lock(L1)
    assert record is not None and record.state is LockState.RELEASED
    assert record.released_to == "dave"
    refused(ledger, Release(lock_id=L1, to="dave"), OutcomeCode.LOCK_SETTLED)
    refused(ledger, Unlock(lock_id=L1), OutcomeCode.LOCK_SETTLED)
    refused(ledger, Lock(lock_id=L1, owner="bob", amount=1), OutcomeCode.LOCK_ID_USED)
    assert ledger.get_total_supply() == 150


def test_lock_then_unlock_returns_the_escrow() -> None:
    ledger = make_ledger()
    assert ledger.apply(Lock(lock_id=L1, owner="bob", amount=50)).is_ok
    assert ledger.get_balance("bob") == 0
    assert ledger.apply(Unlock(lock_id=L1)).is_ok
    assert ledger.get_balance("bob") == 50
    refused(ledger, Unlock(lock_id=L1), OutcomeCode.LOCK_SETTLED)
    refused(ledger, Release(lock_id=L1, to="alice"), OutcomeCode.LOCK_SETTLED)
    refused(ledger, Lock(lock_id=L1, owner="bob", amount=1), OutcomeCode.LOCK_ID_USED)


def test_lock_refusals() -> None:
    ledger = make_ledger()
    refused(ledger, Lock(lock_id=L1, owner="alice", amount=101), OutcomeCode.INSUFFICIENT_BALANCE)
    refused(ledger, Lock(lock_id=L1, owner="alice", amount=0), OutcomeCode.INVALID)
    refused(ledger, Lock(lock_id=b"", owner="alice", amount=1), OutcomeCode.INVALID)
    refused(ledger, Lock(lock_id=b"x" * 65, owner="alice", amount=1), OutcomeCode.INVALID)
    refused(ledger, Lock(lock_id=L1, owner="", amount=1), OutcomeCode.INVALID)
    refused(ledger, Unlock(lock_id=L2), OutcomeCode.UNKNOWN_LOCK)
    refused(ledger, Release(lock_id=L2, to="bob"), OutcomeCode.UNKNOWN_LOCK)
    refused(ledger, Unlock(lock_id="lock-2"), OutcomeCode.INVALID)  # type: ignore[arg-type]
    assert ledger.apply(Lock(lock_id=L1, owner="alice", amount=1)).is_ok
    refused(ledger, Release(lock_id=L1, to=""), OutcomeCode.INVALID)
    assert ledger.get_lock(L1) is not None  # still LOCKED
    # A refused Lock did not use the id: L2 is still free.
    assert ledger.apply(Lock(lock_id=L2, owner="alice", amount=1)).is_ok


def test_pay_is_idempotent_by_pay_id() -> None:
    ledger = make_ledger()
    refused(
        ledger, Pay(pay_id=P1, src="bob", dst="erin", amount=60), OutcomeCode.INSUFFICIENT_BALANCE
    )
    assert not ledger.is_paid(P1)  # a refused payment does not use its id
    assert ledger.apply(Pay(pay_id=P1, src="bob", dst="erin", amount=20)).is_ok
    assert ledger.is_paid(P1)
    assert ledger.get_balance("erin") == 20 and ledger.get_balance("bob") == 30
    refused(ledger, Pay(pay_id=P1, src="bob", dst="erin", amount=20), OutcomeCode.DUPLICATE_PAY)
    refused(ledger, Pay(pay_id=P1, src="alice", dst="bob", amount=5), OutcomeCode.DUPLICATE_PAY)
    refused(ledger, Pay(pay_id=b"", src="alice", dst="bob", amount=5), OutcomeCode.INVALID)
    refused(ledger, Pay(pay_id=b"p2", src="alice", dst="alice", amount=5), OutcomeCode.INVALID)
    refused(ledger, Pay(pay_id=b"p2", src="alice", dst="bob", amount=-5), OutcomeCode.INVALID)
    assert ledger.get_total_supply() == 150


def test_not_an_operation_is_a_local_error() -> None:
    ledger = make_ledger()
    with pytest.raises(LedgerError):
        ledger.apply("transfer everything")  # type: ignore[arg-type]
    assert ledger.applied == 0


def test_digest_is_a_function_of_the_state() -> None:
    ops: list[Operation] = [
        Transfer(src="alice", dst="bob", amount=5),
        Lock(lock_id=L1, owner="bob", amount=10),
        Pay(pay_id=P1, src="alice", dst="carol", amount=1),
        Release(lock_id=L1, to="carol"),
    ]
    a, b = make_ledger(), make_ledger()
    assert a.compute_digest() == b.compute_digest()
    digests = set()
    for op in ops:
        assert a.apply(op) == b.apply(op)
        assert a.compute_digest() == b.compute_digest()
        digests.add(a.compute_digest())
    assert len(digests) == len(ops)
    # Same balances, but a different history of locks and payments: another state.
    c = Ledger(a.get_balances())
    assert c.get_balances() == a.get_balances() and c.compute_digest() != a.compute_digest()


def test_operations_round_trip_through_the_canonical_encoding() -> None:
    ops: list[Operation] = [
        Transfer(src="a", dst="b", amount=1),
        Lock(lock_id=L1, owner="a", amount=2),
        Unlock(lock_id=L1),
        Release(lock_id=L1, to="b"),
        Pay(pay_id=P1, src="a", dst="b", amount=3),
    ]
    for op in ops:
        assert decode(encode(op), Operation) == op  # type: ignore[arg-type]


# --- conservation, as a property ---------------------------------------------------------------

NAMES = ["alice", "bob", "carol", "", "x" * 70]
IDS = [b"l1", b"l2", b"l3", b""]
amounts = st.one_of(st.integers(min_value=-3, max_value=120), st.just(MAX_AMOUNT + 1))
names = st.sampled_from(NAMES)
ids = st.sampled_from(IDS)
operations: st.SearchStrategy[Any] = st.one_of(
    st.builds(Transfer, src=names, dst=names, amount=amounts),
    st.builds(Lock, lock_id=ids, owner=names, amount=amounts),
    st.builds(Unlock, lock_id=ids),
    st.builds(Release, lock_id=ids, to=names),
    st.builds(Pay, pay_id=ids, src=names, dst=names, amount=amounts),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=40))
def test_every_operation_conserves_supply_and_refusals_change_nothing(ops: list[Any]) -> None:
    ledger = Ledger({"alice": 100, "bob": 60, "carol": 1})
    twin = Ledger({"alice": 100, "bob": 60, "carol": 1})
    supply = ledger.get_total_supply()
    for op in ops:
        before = ledger.snapshot()
        outcome = ledger.apply(op)
        assert twin.apply(op) == outcome  # deterministic
        if not outcome.is_ok:
            assert ledger.snapshot() == before
        assert ledger.get_total_supply() == supply
        assert all(balance > 0 for balance in ledger.get_balances().values())
        assert ledger.get_escrowed() >= 0
    assert ledger.compute_digest() == twin.compute_digest()
