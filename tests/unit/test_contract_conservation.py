"""Tokens are conserved through any mix of transfers, DEX trades and auctions.

A Hypothesis state machine drives random commands -- token transfers, approvals and
``transfer_from``, DEX liquidity and swaps, auction bids and closes, new auctions, the
passing of blocks -- by several users over two tokens. After every step: each token's
balances (users, the DEX, the auctions) sum to its total supply, which never changes after
the initial minting; the DEX holds exactly its reserves and its shares add up; an open
auction holds exactly its bids and a closed one nothing; and a refused command changed no
storage at all.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from sealbridge.contracts.executor import CallOutcome
from tests.unit.contract_helpers import (
    AUCTION,
    AUCTION_CLOSE,
    DEX,
    MINTER,
    MODE_IDS,
    MODES,
    SELLER,
    TOKEN_A,
    TOKEN_B,
    USERS,
    World,
    contract_id,
    load_program,
    make_world,
)

MAX = 2**63 - 1
START = 50_000  # each user's initial balance of each token
TOKENS = [TOKEN_A, TOKEN_B]
MAX_AUCTIONS = 4

users = st.sampled_from(USERS)
tokens = st.sampled_from(TOKENS)
amounts = st.one_of(
    st.integers(min_value=1, max_value=5_000),
    st.integers(min_value=-2, max_value=START * 2),
    st.sampled_from([0, MAX, 2**63]),
)


class Conservation(RuleBasedStateMachine):
    sandboxed = False

    def __init__(self) -> None:
        super().__init__()
        self.world: World = make_world(self.sandboxed)
        self.auctions: dict[bytes, bytes] = {AUCTION: TOKEN_A}  # auction -> its token
        for user in USERS:
            for token in TOKENS:
                self.world.fund(token, user, START)
                self.world.approve(token, user, DEX, MAX)
            self.world.approve(TOKEN_A, user, AUCTION, MAX)
        # each user may spend some of the next one's tokens
        for user, spender in zip(USERS, [*USERS[1:], USERS[0]], strict=True):
            for token in TOKENS:
                self.world.approve(token, user, spender, START // 2)
        self.supply = {token: START * len(USERS) for token in TOKENS}
        # the pool starts with some liquidity (it may be emptied later)
        self.world.ok(DEX, "add_liquidity", USERS[-1], amount_a=5_000, amount_b=8_000)
        self.refusals = 0

    # -- running commands ---------------------------------------------------------------
    def step(self, cid: bytes, method: str, caller: bytes, **args: Any) -> CallOutcome:
        before = self.world.snapshot()
        outcome = self.world.run(cid, method, caller, **args)
        if not outcome.ok:
            self.refusals += 1
            assert outcome.error, outcome
            assert self.world.snapshot() == before, f"refused {method} changed storage"
        return outcome

    def accounts(self) -> list[bytes]:
        return [*USERS, MINTER, SELLER, DEX, *self.auctions]

    # -- token --------------------------------------------------------------------------
    @rule(token=tokens, caller=users, to=users, amount=amounts)
    def transfer(self, token: bytes, caller: bytes, to: bytes, amount: int) -> None:
        self.step(token, "transfer", caller, to=to, amount=amount)

    @rule(token=tokens, caller=users, to=users, amount=amounts)
    def transfer_to_a_contract(self, token: bytes, caller: bytes, to: bytes, amount: int) -> None:
        # only the seller's account, which the invariants track like a user's
        self.step(token, "transfer", caller, to=SELLER, amount=amount)

    @rule(token=tokens, caller=users, spender=users, amount=amounts, to_dex=st.booleans())
    def approve(
        self, token: bytes, caller: bytes, spender: bytes, amount: int, to_dex: bool
    ) -> None:
        self.step(token, "approve", caller, spender=DEX if to_dex else spender, amount=amount)

    @rule(token=tokens, spender=users, owner=users, to=users, amount=amounts)
    def transfer_from(
        self, token: bytes, spender: bytes, owner: bytes, to: bytes, amount: int
    ) -> None:
        self.step(token, "transfer_from", spender, owner=owner, to=to, amount=amount)

    @rule(token=tokens, caller=users, amount=amounts)
    def mint_without_right(self, token: bytes, caller: bytes, amount: int) -> None:
        outcome = self.step(token, "mint", caller, to=caller, amount=amount)
        assert not outcome.ok

    # -- DEX ----------------------------------------------------------------------------
    @rule(caller=users, amount_a=amounts, amount_b=amounts)
    def add_liquidity(self, caller: bytes, amount_a: int, amount_b: int) -> None:
        self.step(DEX, "add_liquidity", caller, amount_a=amount_a, amount_b=amount_b)

    @rule(caller=users, percent=st.integers(min_value=0, max_value=110), amount=amounts)
    def remove_liquidity(self, caller: bytes, percent: int, amount: int) -> None:
        """Remove ``percent`` of the shares of the first provider from ``caller`` on (or,
        with 0 percent, a random number of shares)."""
        start = USERS.index(caller)
        for user in USERS[start:] + USERS[:start]:
            held = self.world.read(DEX, "shares", user, owner=user)
            if held > 0:
                caller = user
                break
        else:
            held = 0
        shares = held * percent // 100 if percent > 0 else amount
        self.step(DEX, "remove_liquidity", caller, shares=shares)

    @rule(
        caller=users,
        token=tokens,
        amount=amounts,
        min_out=st.integers(min_value=0, max_value=3_000),
    )
    def swap(self, caller: bytes, token: bytes, amount: int, min_out: int) -> None:
        self.step(DEX, "swap", caller, token_in=token, amount_in=amount, min_out=min_out)

    # -- auctions -----------------------------------------------------------------------
    @rule(caller=users, amount=amounts, which=st.integers(min_value=0, max_value=MAX_AUCTIONS))
    def bid(self, caller: bytes, amount: int, which: int) -> None:
        auction = list(self.auctions)[which % len(self.auctions)]
        self.step(auction, "bid", caller, amount=amount)

    @rule(caller=users, which=st.integers(min_value=0, max_value=MAX_AUCTIONS))
    def close(self, caller: bytes, which: int) -> None:
        auction = list(self.auctions)[which % len(self.auctions)]
        self.step(auction, "close", caller)

    @rule(token=tokens, length=st.integers(min_value=1, max_value=40))
    def new_auction(self, token: bytes, length: int) -> None:
        if len(self.auctions) >= MAX_AUCTIONS:
            return
        cid = contract_id(f"auction-{len(self.auctions)}")
        outcome = self.world.deploy(
            "auction",
            cid,
            SELLER,
            token=token,
            item="lot",
            close_block=self.world.block + length,
            reserve_price=100,
        )
        assert outcome.ok, outcome.message
        self.auctions[cid] = token
        for user in USERS:
            self.world.approve(token, user, cid, MAX)

    @rule(blocks=st.integers(min_value=1, max_value=60))
    def advance(self, blocks: int) -> None:
        self.world.block += blocks

    # -- invariants ---------------------------------------------------------------------
    @invariant()
    def tokens_are_conserved(self) -> None:
        accounts = self.accounts()
        for token in TOKENS:
            supply = self.world.read(token, "total_supply", MINTER)
            assert supply == self.supply[token]
            stored = self.world.executor.contracts[token].storage.snapshot().maps["balances"]
            assert all(amount > 0 for _, amount in stored)
            assert {holder for holder, _ in stored} <= set(accounts)
            assert sum(amount for _, amount in stored) == supply
            by_query = [self.world.balance(token, holder) for holder in accounts]
            assert sum(by_query) == supply

    @invariant()
    def dex_holds_its_reserves(self) -> None:
        pool = self.world.read(DEX, "reserves", MINTER)
        assert pool["reserve_a"] == self.world.balance(TOKEN_A, DEX)
        assert pool["reserve_b"] == self.world.balance(TOKEN_B, DEX)
        shares = sum(self.world.read(DEX, "shares", user, owner=user) for user in USERS)
        assert shares == self.world.read(DEX, "total_shares", MINTER)
        assert (shares == 0) == (pool["reserve_a"] == 0) == (pool["reserve_b"] == 0)

    @invariant()
    def auctions_hold_their_bids(self) -> None:
        for auction, token in self.auctions.items():
            state = self.world.read(auction, "status", MINTER)["state"]
            held = self.world.balance(token, auction)
            if state == "closed":
                assert held == 0
            else:
                bids = [self.world.read(auction, "my_bid", u, bidder=u) for u in USERS]
                assert held == sum(bids)


def run_machine(sandboxed: bool, max_examples: int, steps: int) -> Conservation:
    load_program("token", sandboxed)  # skips when this mode is not available
    last: list[Conservation] = []

    class Machine(Conservation):
        def __init__(self) -> None:
            self.sandboxed = sandboxed
            super().__init__()
            last.append(self)

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    return last[-1]


@pytest.mark.parametrize("sandboxed", MODES, ids=MODE_IDS)
def test_tokens_are_conserved(sandboxed: bool) -> None:
    run_machine(sandboxed, max_examples=60 if sandboxed else 100, steps=40)


def test_a_scripted_session_closes_an_auction_and_trades() -> None:
    """The same machine, driven by hand through a path random runs reach only sometimes:
    a closed auction with several bidders, next to DEX trades."""
    machine = Conservation()
    alice, bob, carol, _ = USERS
    machine.add_liquidity(alice, 10_000, 20_000)
    machine.swap(bob, TOKEN_A, 1_000, 0)
    machine.bid(alice, 500, 0)
    machine.bid(bob, 900, 0)
    machine.bid(carol, 700, 0)
    machine.tokens_are_conserved()
    machine.auctions_hold_their_bids()
    machine.advance(AUCTION_CLOSE)
    machine.close(carol, 0)
    assert machine.world.read(AUCTION, "outcome", alice)["price"] == 700
    machine.remove_liquidity(alice, 100, 0)
    assert machine.world.read(DEX, "shares", alice, owner=alice) == 0
    machine.remove_liquidity(alice, 100, 0)  # the next provider: the initial one
    machine.tokens_are_conserved()
    machine.dex_holds_its_reserves()
    machine.auctions_hold_their_bids()
    assert machine.world.read(DEX, "total_shares", alice) == 0
    assert machine.refusals == 0
