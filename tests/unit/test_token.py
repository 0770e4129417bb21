"""The token as a pure state transition."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealbridge.contracts import token

ALICE = bytes([1]) * 32
BOB = bytes([2]) * 32


def env(caller: bytes) -> token.ExecEnv:
    return token.ExecEnv(block_number=1, caller=caller)


def initialized(supply: int = 100) -> token.TokenState:
    state = token.apply(
        token.TokenState(), token.execute(token.TokenState(), "initialize", {}, env(ALICE))
    )
    out = token.execute(state, "mint", {"to": ALICE, "amount": supply}, env(ALICE))
    return token.apply(state, out)


def test_initialize_mint_transfer_and_balance() -> None:
    state = initialized(100)
    assert state.owner == ALICE.hex()
    state = token.apply(
        state, token.execute(state, "transfer", {"to": BOB, "amount": 30}, env(ALICE))
    )
    assert token.query(state, "balance", {"owner": ALICE}, ALICE) == 70
    assert token.query(state, "balance", {"owner": BOB}, BOB) == 30
    assert state.total_supply == 100


def test_only_owner_mints_and_initialize_is_once() -> None:
    state = initialized()
    with pytest.raises(token.NotAuthorized):
        token.execute(state, "mint", {"to": BOB, "amount": 1}, env(BOB))
    with pytest.raises(token.NotAuthorized):
        token.execute(state, "initialize", {}, env(BOB))


def test_refusals_are_typed() -> None:
    state = initialized(10)
    with pytest.raises(token.InsufficientBalance):
        token.execute(state, "transfer", {"to": BOB, "amount": 11}, env(ALICE))
    with pytest.raises(token.BadArguments):
        token.execute(state, "transfer", {"to": b"short", "amount": 1}, env(ALICE))
    with pytest.raises(token.BadArguments):
        token.execute(state, "transfer", {"to": BOB, "amount": -1}, env(ALICE))
    with pytest.raises(token.BadArguments):
        token.execute(state, "transfer", {"to": BOB, "amount": True}, env(ALICE))
    with pytest.raises(token.BadArguments):
        token.execute(state, "transfer", {"to": BOB, "amount": 1, "memo": "x"}, env(ALICE))
    with pytest.raises(token.UnknownMethod):
        token.execute(state, "burn", {}, env(ALICE))


def test_balance_is_readable_only_by_its_owner() -> None:
    state = initialized()
    with pytest.raises(token.NotAuthorized):
        token.query(state, "balance", {"owner": ALICE}, BOB)
    with pytest.raises(token.UnknownMethod):
        token.query(state, "total_supply", {}, ALICE)  # no other read, even for the owner


@given(st.lists(st.tuples(st.booleans(), st.integers(min_value=1, max_value=60)), max_size=40))
def test_transfers_conserve_supply(moves: list[tuple[bool, int]]) -> None:
    state = initialized(100)
    for from_alice, amount in moves:
        sender, receiver = (ALICE, BOB) if from_alice else (BOB, ALICE)
        try:
            out = token.execute(state, "transfer", {"to": receiver, "amount": amount}, env(sender))
        except token.InsufficientBalance:
            continue
        state = token.apply(state, out)
    assert sum(state.balances.values()) == state.total_supply == 100
    assert all(v > 0 for v in state.balances.values())
