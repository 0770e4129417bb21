"""The reference DEX: liquidity, swaps through synchronous token calls, refusals."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealbridge.contracts.reference.dex import ceil_div, isqrt
from tests.unit.contract_helpers import (
    ALICE,
    BOB,
    CAROL,
    DEX,
    MINTER,
    MODE_IDS,
    MODES,
    STRANGER,
    TOKEN_A,
    TOKEN_B,
    World,
    contract_id,
    make_world,
)

FUNDS = 1_000_000


@pytest.fixture(params=MODES, ids=MODE_IDS)
def world(request: pytest.FixtureRequest) -> World:
    world = make_world(request.param)
    for user in (ALICE, BOB, CAROL):
        for token in (TOKEN_A, TOKEN_B):
            world.fund(token, user, FUNDS)
            world.approve(token, user, DEX, FUNDS)
    return world


def reserves(world: World) -> tuple[int, int]:
    value = world.read(DEX, "reserves", STRANGER)
    return value["reserve_a"], value["reserve_b"]


def assert_backed(world: World) -> None:
    """The DEX's token balances are exactly its reserves."""
    assert reserves(world) == (world.balance(TOKEN_A, DEX), world.balance(TOKEN_B, DEX))


@given(st.integers(min_value=0, max_value=2**130))
def test_isqrt_matches_math(n: int) -> None:
    assert isqrt(n) == math.isqrt(n)


def test_isqrt_edges() -> None:
    for n in [0, 1, 2, 3, 4, 15, 16, 17, 2**126 - 1, 2**126, (2**63 - 1) ** 2]:
        assert isqrt(n) == math.isqrt(n)
    assert ceil_div(7, 2) == 4
    assert ceil_div(8, 2) == 4
    assert ceil_div(0, 3) == 0


def test_setup_and_its_refusals(world: World) -> None:
    info = world.read(DEX, "reserves", STRANGER)
    assert info == {
        "token_a": TOKEN_A,
        "token_b": TOKEN_B,
        "reserve_a": 0,
        "reserve_b": 0,
        "fee_bps": 30,
    }
    assert world.read(DEX, "total_shares", STRANGER) == 0
    bad_setups: list[dict[str, Any]] = [
        {"token_a": TOKEN_A, "token_b": TOKEN_A},
        {"token_a": TOKEN_A, "token_b": TOKEN_B[:31]},
        {"token_a": TOKEN_A, "token_b": TOKEN_B, "fee_bps": 10000},
        {"token_a": TOKEN_A, "token_b": TOKEN_B, "fee_bps": -1},
        {"token_a": TOKEN_A, "token_b": "token-b"},
        {"token_a": TOKEN_A},
    ]
    for n, args in enumerate(bad_setups):
        cid = contract_id(f"bad-dex-{n}")
        outcome = world.deploy("dex", cid, MINTER, **args)
        assert outcome.error == "bad_arguments", args
        assert world.executor.contracts[cid].storage.snapshot().values == {}
    own = contract_id("self-dex")
    assert world.deploy("dex", own, MINTER, token_a=own, token_b=TOKEN_B).error == "bad_arguments"
    again = world.deploy("dex", contract_id("fee-free"), MINTER, token_a=TOKEN_A, token_b=TOKEN_B)
    assert again.ok
    before = world.snapshot()
    twice = world.executor.run_command(
        DEX,
        "setup",
        {"token_a": TOKEN_B, "token_b": TOKEN_A},
        caller=MINTER,
        block_number=1,
        seed=b"s",
        is_init=True,
    )
    assert twice.error == "already_initialized"
    assert world.snapshot() == before


def test_first_liquidity_mints_the_geometric_mean(world: World) -> None:
    taken = world.ok(DEX, "add_liquidity", ALICE, amount_a=1000, amount_b=4000)
    assert taken == {"shares": 2000, "amount_a": 1000, "amount_b": 4000}
    assert world.read(DEX, "shares", ALICE, owner=ALICE) == 2000
    assert world.read(DEX, "total_shares", STRANGER) == 2000
    assert reserves(world) == (1000, 4000)
    assert world.balance(TOKEN_A, ALICE) == FUNDS - 1000
    assert world.balance(TOKEN_B, ALICE) == FUNDS - 4000
    assert world.read(TOKEN_A, "allowance", ALICE, owner=ALICE, spender=DEX) == FUNDS - 1000
    assert_backed(world)
    # not a perfect square: rounded down
    world2 = make_world(world.sandboxed)
    for token in (TOKEN_A, TOKEN_B):
        world2.fund(token, ALICE, 10)
        world2.approve(token, ALICE, DEX, 10)
    assert world2.ok(DEX, "add_liquidity", ALICE, amount_a=2, amount_b=3)["shares"] == 2


def test_later_liquidity_takes_only_the_proportional_part(world: World) -> None:
    world.ok(DEX, "add_liquidity", ALICE, amount_a=1000, amount_b=4000)
    # BOB offers too much B: he gets shares for his A and keeps the excess B
    taken = world.ok(DEX, "add_liquidity", BOB, amount_a=500, amount_b=5000)
    assert taken == {"shares": 1000, "amount_a": 500, "amount_b": 2000}
    assert world.balance(TOKEN_B, BOB) == FUNDS - 2000
    assert reserves(world) == (1500, 6000)
    # uneven: shares rounded down, amounts rounded up (in favour of the pool)
    taken = world.ok(DEX, "add_liquidity", CAROL, amount_a=7, amount_b=7)
    assert taken["shares"] == min(7 * 3000 // 1500, 7 * 3000 // 6000) == 3
    assert taken["amount_a"] == ceil_div(3 * 1500, 3000) == 2
    assert taken["amount_b"] == ceil_div(3 * 6000, 3000) == 6
    assert world.read(DEX, "total_shares", STRANGER) == 3003
    assert_backed(world)


def test_add_liquidity_refusals(world: World) -> None:
    world.refused("bad_arguments", DEX, "add_liquidity", ALICE, amount_a=0, amount_b=10)
    world.refused("bad_arguments", DEX, "add_liquidity", ALICE, amount_a=10, amount_b=-1)
    world.refused("bad_arguments", DEX, "add_liquidity", ALICE, amount_a=10, amount_b=2**63)
    world.refused("bad_arguments", DEX, "add_liquidity", ALICE, amount_a=10)
    # not approved: the token refuses the DEX's transfer_from and the whole command reverts
    world.refused(
        "insufficient_allowance", DEX, "add_liquidity", STRANGER, amount_a=10, amount_b=10
    )
    world.fund(TOKEN_A, STRANGER, 10)
    world.approve(TOKEN_A, STRANGER, DEX, 10)
    world.refused(
        "insufficient_allowance", DEX, "add_liquidity", STRANGER, amount_a=10, amount_b=10
    )
    world.approve(TOKEN_B, STRANGER, DEX, 10)
    world.refused("insufficient_balance", DEX, "add_liquidity", STRANGER, amount_a=10, amount_b=10)
    world.ok(DEX, "add_liquidity", ALICE, amount_a=1000, amount_b=1_000_000)
    world.refused("amount_too_small", DEX, "add_liquidity", BOB, amount_a=1, amount_b=1)
    world.approve(TOKEN_B, BOB, DEX, FUNDS * 10)
    world.refused(
        "insufficient_balance", DEX, "add_liquidity", BOB, amount_a=FUNDS, amount_b=FUNDS * 2
    )


def test_remove_liquidity(world: World) -> None:
    world.ok(DEX, "add_liquidity", ALICE, amount_a=1000, amount_b=4000)
    world.ok(DEX, "add_liquidity", BOB, amount_a=500, amount_b=2000)
    paid = world.ok(DEX, "remove_liquidity", BOB, shares=400)
    assert paid == {"amount_a": 1500 * 400 // 3000, "amount_b": 6000 * 400 // 3000}
    assert world.read(DEX, "shares", BOB, owner=BOB) == 600
    assert world.balance(TOKEN_A, BOB) == FUNDS - 500 + 200
    assert_backed(world)
    world.ok(DEX, "remove_liquidity", BOB, shares=600)
    assert world.read(DEX, "shares", BOB, owner=BOB) == 0
    holdings = world.executor.contracts[DEX].storage.snapshot().maps["holdings"]
    assert holdings == [(ALICE, 2000)]
    # the last provider takes everything back
    assert world.ok(DEX, "remove_liquidity", ALICE, shares=2000) == {
        "amount_a": 1000,
        "amount_b": 4000,
    }
    assert reserves(world) == (0, 0)
    assert world.read(DEX, "total_shares", STRANGER) == 0
    assert world.balance(TOKEN_A, DEX) == 0
    # an emptied pool starts afresh
    assert world.ok(DEX, "add_liquidity", CAROL, amount_a=9, amount_b=4)["shares"] == 6


def test_remove_liquidity_refusals(world: World) -> None:
    world.ok(DEX, "add_liquidity", ALICE, amount_a=1000, amount_b=4000)
    world.refused("insufficient_shares", DEX, "remove_liquidity", ALICE, shares=2001)
    world.refused("insufficient_shares", DEX, "remove_liquidity", BOB, shares=1)
    world.refused("bad_arguments", DEX, "remove_liquidity", ALICE, shares=0)
    world.refused("bad_arguments", DEX, "remove_liquidity", ALICE, shares=-3)
    world.refused("bad_arguments", DEX, "remove_liquidity", ALICE, shares="all")


def test_swap_follows_the_constant_product_formula(world: World) -> None:
    world.ok(DEX, "add_liquidity", ALICE, amount_a=100_000, amount_b=200_000)
    in_after_fee = 1000 * (10000 - 30) // 10000
    expected = 200_000 * in_after_fee // (100_000 + in_after_fee)
    assert world.ok(DEX, "swap", BOB, token_in=TOKEN_A, amount_in=1000, min_out=expected) == (
        expected
    )
    assert reserves(world) == (101_000, 200_000 - expected)
    assert world.balance(TOKEN_A, BOB) == FUNDS - 1000
    assert world.balance(TOKEN_B, BOB) == FUNDS + expected
    assert_backed(world)
    # and back the other way
    ra, rb = reserves(world)
    in_after_fee = 5000 * 9970 // 10000
    back = ra * in_after_fee // (rb + in_after_fee)
    assert world.ok(DEX, "swap", BOB, token_in=TOKEN_B, amount_in=5000, min_out=0) == back
    assert reserves(world) == (ra - back, rb + 5000)
    assert ra * rb >= 100_000 * 200_000
    assert (ra - back) * (rb + 5000) >= ra * rb
    assert_backed(world)


@pytest.mark.parametrize("sandboxed", MODES, ids=MODE_IDS)
def test_swap_without_fee(sandboxed: bool) -> None:
    world = make_world(sandboxed, fee_bps=0)
    for token in (TOKEN_A, TOKEN_B):
        world.fund(token, ALICE, 10_000)
        world.approve(token, ALICE, DEX, 10_000)
    world.ok(DEX, "add_liquidity", ALICE, amount_a=1000, amount_b=1000)
    assert world.ok(DEX, "swap", ALICE, token_in=TOKEN_A, amount_in=1000, min_out=0) == 500


def test_swap_refusals(world: World) -> None:
    world.refused("empty_pool", DEX, "swap", BOB, token_in=TOKEN_A, amount_in=10, min_out=0)
    world.ok(DEX, "add_liquidity", ALICE, amount_a=100_000, amount_b=200_000)
    world.refused("slippage", DEX, "swap", BOB, token_in=TOKEN_A, amount_in=1000, min_out=1975)
    # 1 unit in is 0 after the fee: nothing comes out
    world.refused("amount_too_small", DEX, "swap", BOB, token_in=TOKEN_A, amount_in=1, min_out=0)
    world.refused(
        "bad_arguments", DEX, "swap", BOB, token_in=contract_id("other"), amount_in=10, min_out=0
    )
    world.refused("bad_arguments", DEX, "swap", BOB, token_in=DEX, amount_in=10, min_out=0)
    world.refused("bad_arguments", DEX, "swap", BOB, token_in=TOKEN_A, amount_in=0, min_out=0)
    world.refused("bad_arguments", DEX, "swap", BOB, token_in=TOKEN_A, amount_in=10, min_out=-1)
    world.refused("bad_arguments", DEX, "swap", BOB, token_in=TOKEN_A, amount_in=10)
    world.refused(
        "insufficient_allowance", DEX, "swap", STRANGER, token_in=TOKEN_B, amount_in=10, min_out=0
    )
    world.fund(TOKEN_B, STRANGER, 5)
    world.approve(TOKEN_B, STRANGER, DEX, 50)
    world.refused(
        "insufficient_balance", DEX, "swap", STRANGER, token_in=TOKEN_B, amount_in=50, min_out=0
    )


def test_who_may_read(world: World) -> None:
    world.ok(DEX, "add_liquidity", ALICE, amount_a=1000, amount_b=1000)
    world.denied("not_a_reader", DEX, "shares", BOB, owner=ALICE)
    world.denied("not_a_reader", DEX, "shares", MINTER, owner=ALICE)
    assert world.read(DEX, "shares", BOB, owner=BOB) == 0
    assert world.read(DEX, "total_shares", STRANGER) == 1000
    world.denied("unknown_method", DEX, "swap", BOB, token_in=TOKEN_A, amount_in=1, min_out=0)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(min_value=1, max_value=50_000)),
        min_size=1,
        max_size=12,
    )
)
def test_swaps_never_shrink_the_product(trades: list[tuple[bool, int]]) -> None:
    world = make_world(False)
    for token in (TOKEN_A, TOKEN_B):
        world.fund(token, ALICE, FUNDS)
        world.approve(token, ALICE, DEX, FUNDS)
    world.ok(DEX, "add_liquidity", ALICE, amount_a=123_457, amount_b=98_765)
    product = 123_457 * 98_765
    for a_to_b, amount in trades:
        token_in = TOKEN_A if a_to_b else TOKEN_B
        world.run(DEX, "swap", ALICE, token_in=token_in, amount_in=amount, min_out=0)
        ra, rb = reserves(world)
        assert ra * rb >= product
        product = ra * rb
        assert_backed(world)


DRAINER = """
from sealbridge.contracts.sdk import ANYONE, Contract, Value, command, query


def deposit(contract, dex, amount):
    try:
        contract.call(dex, "add_liquidity", amount_a=amount, amount_b=amount)
    finally:
        raise ValueError("turn the token's refusal into an ordinary error")


class Drainer(Contract):
    done = Value(int, default=0)

    @command
    def deposit_nothing(self, dex: bytes, amount: int) -> int:
        try:
            deposit(self, dex, amount)
        except ValueError:
            pass
        return 0

    @command
    def withdraw(self, dex: bytes, shares: int) -> dict:
        return self.call(dex, "remove_liquidity", shares=shares)
"""


def test_a_swallowed_deposit_failure_cannot_drain_the_pool() -> None:
    # issue 13's theft: a contract with no tokens wraps add_liquidity in try/finally so
    # the token's refusal is hidden, keeps the shares the DEX booked, then withdraws them.
    # In the VM a failed callee ends the whole command, and the DEX books no share before
    # both deposits have arrived.
    from sealbridge.contracts.executor import load_program
    from tests.unit.contract_helpers import DOMAIN

    world = make_world(True)
    for token in (TOKEN_A, TOKEN_B):
        world.fund(token, ALICE, FUNDS)
        world.approve(token, ALICE, DEX, FUNDS)
    world.ok(DEX, "add_liquidity", ALICE, amount_a=FUNDS, amount_b=FUNDS)
    drainer = contract_id("drainer")
    world.executor.add(drainer, load_program(DRAINER.encode()), deployer=BOB, domain=DOMAIN)
    before = world.snapshot()
    out = world.run(drainer, "deposit_nothing", BOB, dex=DEX, amount=FUNDS)
    assert not out.ok and out.error == "insufficient_allowance", out
    assert world.snapshot() == before
    assert world.read(DEX, "shares", drainer, owner=drainer) == 0
    out = world.run(drainer, "withdraw", BOB, dex=DEX, shares=FUNDS)
    assert not out.ok and out.error == "insufficient_shares", out
    assert reserves(world) == (FUNDS, FUNDS)
    assert world.balance(TOKEN_A, drainer) == world.balance(TOKEN_B, drainer) == 0
    assert_backed(world)
