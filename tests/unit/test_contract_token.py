"""The reference token: minting, transfers, allowances, and every refusal."""

from __future__ import annotations

import pytest

from tests.unit.contract_helpers import (
    ALICE,
    BOB,
    CAROL,
    MINTER,
    MODE_IDS,
    MODES,
    STRANGER,
    TOKEN_A,
    World,
    contract_id,
    make_world,
)

MAX = 2**63 - 1


@pytest.fixture(params=MODES, ids=MODE_IDS)
def world(request: pytest.FixtureRequest) -> World:
    return make_world(request.param)


def stored_map(world: World, cid: bytes, name: str) -> dict[bytes, int]:
    snapshot = world.executor.contracts[cid].storage.snapshot()
    return dict(snapshot.maps.get(name, []))


def test_setup_makes_the_deployer_owner_once(world: World) -> None:
    assert world.read(TOKEN_A, "token_owner", STRANGER) == MINTER
    assert world.read(TOKEN_A, "total_supply", STRANGER) == 0
    before = world.snapshot()
    again = world.executor.run_command(
        TOKEN_A, "setup", {}, caller=MINTER, block_number=2, seed=b"s", is_init=True
    )
    assert again.error == "already_initialized"
    assert world.snapshot() == before
    # setup is not a command anyone can call later
    world.refused("unknown_method", TOKEN_A, "setup", MINTER)


def test_mint_and_refusals(world: World) -> None:
    assert world.ok(TOKEN_A, "mint", MINTER, to=ALICE, amount=70) == 70
    assert world.ok(TOKEN_A, "mint", MINTER, to=ALICE, amount=30) == 100
    assert world.balance(TOKEN_A, ALICE) == 100
    assert world.read(TOKEN_A, "total_supply", BOB) == 100
    world.refused("not_authorized", TOKEN_A, "mint", ALICE, to=ALICE, amount=1)
    world.refused("bad_arguments", TOKEN_A, "mint", MINTER, to=ALICE, amount=0)
    world.refused("bad_arguments", TOKEN_A, "mint", MINTER, to=ALICE, amount=-5)
    world.refused("bad_arguments", TOKEN_A, "mint", MINTER, to=ALICE, amount=2**63)
    world.refused("bad_arguments", TOKEN_A, "mint", MINTER, to=ALICE, amount=2**64)
    world.refused("bad_arguments", TOKEN_A, "mint", MINTER, to=ALICE, amount=True)
    world.refused("bad_arguments", TOKEN_A, "mint", MINTER, to=ALICE, amount="5")
    world.refused("bad_arguments", TOKEN_A, "mint", MINTER, to=ALICE[:31], amount=5)
    world.refused("bad_arguments", TOKEN_A, "mint", MINTER, to="alice", amount=5)
    world.refused("bad_arguments", TOKEN_A, "mint", MINTER, to=ALICE)
    world.refused("bad_arguments", TOKEN_A, "mint", MINTER, to=ALICE, amount=1, memo="x")


def test_total_supply_is_capped(world: World) -> None:
    world.fund(TOKEN_A, ALICE, MAX - 1)
    world.fund(TOKEN_A, BOB, 1)
    assert world.read(TOKEN_A, "total_supply", STRANGER) == MAX
    world.refused("supply_exceeded", TOKEN_A, "mint", MINTER, to=CAROL, amount=1)
    world.refused("supply_exceeded", TOKEN_A, "mint", MINTER, to=CAROL, amount=MAX)


def test_transfer(world: World) -> None:
    world.fund(TOKEN_A, ALICE, 100)
    assert world.ok(TOKEN_A, "transfer", ALICE, to=BOB, amount=30) == 70
    assert world.balance(TOKEN_A, ALICE) == 70
    assert world.balance(TOKEN_A, BOB) == 30
    assert world.ok(TOKEN_A, "transfer", BOB, to=ALICE, amount=30) == 0
    # a balance that reaches zero leaves the map: storage stays canonical
    assert stored_map(world, TOKEN_A, "balances") == {ALICE: 100}
    assert world.balance(TOKEN_A, BOB) == 0
    assert world.read(TOKEN_A, "total_supply", STRANGER) == 100
    # a contract account holds tokens like anyone
    world.ok(TOKEN_A, "transfer", ALICE, to=contract_id("somewhere"), amount=1)
    assert stored_map(world, TOKEN_A, "balances") == {ALICE: 99, contract_id("somewhere"): 1}


def test_transfer_refusals(world: World) -> None:
    world.fund(TOKEN_A, ALICE, 100)
    world.refused("insufficient_balance", TOKEN_A, "transfer", ALICE, to=BOB, amount=101)
    world.refused("insufficient_balance", TOKEN_A, "transfer", BOB, to=ALICE, amount=1)
    world.refused("bad_arguments", TOKEN_A, "transfer", ALICE, to=BOB, amount=0)
    world.refused("bad_arguments", TOKEN_A, "transfer", ALICE, to=BOB, amount=-1)
    world.refused("bad_arguments", TOKEN_A, "transfer", ALICE, to=BOB, amount=1.0)
    world.refused("bad_arguments", TOKEN_A, "transfer", ALICE, to=BOB + b"x", amount=1)
    world.refused("bad_arguments", TOKEN_A, "transfer", ALICE, to=b"", amount=1)
    world.refused("unknown_method", TOKEN_A, "move", ALICE, source=ALICE, to=BOB, amount=1)
    world.refused("unknown_method", TOKEN_A, "balance", ALICE, owner=ALICE)


def test_transfer_to_self_is_a_checked_no_op(world: World) -> None:
    world.fund(TOKEN_A, ALICE, 100)
    before = world.snapshot()
    assert world.ok(TOKEN_A, "transfer", ALICE, to=ALICE, amount=100) == 100
    assert world.snapshot() == before
    world.refused("insufficient_balance", TOKEN_A, "transfer", ALICE, to=ALICE, amount=101)


def test_approve_and_transfer_from(world: World) -> None:
    world.fund(TOKEN_A, ALICE, 100)
    assert world.ok(TOKEN_A, "approve", ALICE, spender=BOB, amount=40) == 40
    assert world.read(TOKEN_A, "allowance", ALICE, owner=ALICE, spender=BOB) == 40
    assert world.read(TOKEN_A, "allowance", BOB, owner=ALICE, spender=BOB) == 40
    assert world.ok(TOKEN_A, "transfer_from", BOB, owner=ALICE, to=CAROL, amount=15) == 25
    assert world.balance(TOKEN_A, ALICE) == 85
    assert world.balance(TOKEN_A, CAROL) == 15
    assert world.read(TOKEN_A, "allowance", BOB, owner=ALICE, spender=BOB) == 25
    # approve replaces the allowance
    world.approve(TOKEN_A, ALICE, BOB, 10)
    assert world.read(TOKEN_A, "allowance", ALICE, owner=ALICE, spender=BOB) == 10
    # using it all removes the entry
    assert world.ok(TOKEN_A, "transfer_from", BOB, owner=ALICE, to=BOB, amount=10) == 0
    assert stored_map(world, TOKEN_A, "allowances") == {}
    assert world.balance(TOKEN_A, BOB) == 10
    # approving 0 revokes (and deletes)
    world.approve(TOKEN_A, ALICE, CAROL, 5)
    assert len(stored_map(world, TOKEN_A, "allowances")) == 1
    world.approve(TOKEN_A, ALICE, CAROL, 0)
    assert stored_map(world, TOKEN_A, "allowances") == {}
    world.approve(TOKEN_A, ALICE, CAROL, 0)
    assert stored_map(world, TOKEN_A, "allowances") == {}
    assert world.read(TOKEN_A, "total_supply", STRANGER) == 100


def test_transfer_from_owner_to_owner_uses_allowance_only(world: World) -> None:
    world.fund(TOKEN_A, ALICE, 100)
    world.approve(TOKEN_A, ALICE, BOB, 40)
    assert world.ok(TOKEN_A, "transfer_from", BOB, owner=ALICE, to=ALICE, amount=30) == 10
    assert world.balance(TOKEN_A, ALICE) == 100
    assert stored_map(world, TOKEN_A, "balances") == {ALICE: 100}


def test_transfer_from_refusals(world: World) -> None:
    world.fund(TOKEN_A, ALICE, 100)
    world.approve(TOKEN_A, ALICE, BOB, 150)
    world.refused(
        "insufficient_allowance", TOKEN_A, "transfer_from", CAROL, owner=ALICE, to=CAROL, amount=1
    )
    world.refused(
        "insufficient_allowance", TOKEN_A, "transfer_from", BOB, owner=ALICE, to=BOB, amount=151
    )
    world.refused(
        "insufficient_balance", TOKEN_A, "transfer_from", BOB, owner=ALICE, to=BOB, amount=101
    )
    world.refused("bad_arguments", TOKEN_A, "transfer_from", BOB, owner=ALICE, to=BOB, amount=0)
    world.refused(
        "bad_arguments", TOKEN_A, "transfer_from", BOB, owner=ALICE[:-1], to=BOB, amount=1
    )
    world.refused("bad_arguments", TOKEN_A, "transfer_from", BOB, owner=ALICE, to=7, amount=1)
    world.refused("bad_arguments", TOKEN_A, "approve", ALICE, spender=BOB, amount=-1)
    world.refused("bad_arguments", TOKEN_A, "approve", ALICE, spender=BOB, amount=MAX + 1)
    world.refused("bad_arguments", TOKEN_A, "approve", ALICE, spender=b"bob", amount=1)


def test_who_may_read(world: World) -> None:
    world.fund(TOKEN_A, ALICE, 100)
    world.approve(TOKEN_A, ALICE, BOB, 5)
    world.denied("not_a_reader", TOKEN_A, "balance", BOB, owner=ALICE)
    world.denied("not_a_reader", TOKEN_A, "balance", MINTER, owner=ALICE)
    world.denied("not_a_reader", TOKEN_A, "allowance", CAROL, owner=ALICE, spender=BOB)
    world.denied("not_a_reader", TOKEN_A, "allowance", MINTER, owner=ALICE, spender=BOB)
    world.denied("unknown_method", TOKEN_A, "transfer", ALICE, to=BOB, amount=1)
    assert world.read(TOKEN_A, "total_supply", STRANGER) == 100
    assert world.read(TOKEN_A, "balance", STRANGER, owner=STRANGER) == 0
