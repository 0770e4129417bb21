"""Shared set-up for the reference contracts' tests.

:func:`make_world` builds an :class:`~sealbridge.contracts.executor.Executor` with the four
reference contracts deployed in one domain (so they can call each other): two tokens, a
DEX trading them, a sealed-bid auction paid in the first token and a K-Means clustering.
Every test runs twice, on the plain classes and on the sandboxed ones;
:func:`load_program` is the one place that decides how a contract is loaded.
"""

from __future__ import annotations

from typing import Any

import pytest

from sealbridge.contracts.executor import CallOutcome, ContractProgram, Executor
from sealbridge.contracts.gas import DEFAULT_GAS_LIMIT
from sealbridge.contracts.reference.auction import SealedBidAuction
from sealbridge.contracts.reference.dex import Dex
from sealbridge.contracts.reference.kmeans import KMeans
from sealbridge.contracts.reference.token import Token
from sealbridge.contracts.sdk import Contract
from sealbridge.contracts.storage import PersistedStorage

PLAIN_CLASSES: dict[str, type[Contract]] = {
    "token": Token,
    "dex": Dex,
    "auction": SealedBidAuction,
    "kmeans": KMeans,
}
MODES = [False, True]
MODE_IDS = ["plain", "wasm"]
DOMAIN = b"reference-tests"
SEED = b"reference-seed"


def account(n: int) -> bytes:
    """A distinct 32-byte account for user number ``n`` (0 <= n < 65536)."""
    return b"\x01" + n.to_bytes(2, "big") + bytes(29)


def contract_id(name: str) -> bytes:
    return name.encode().ljust(32, b".")


MINTER = account(0)  # deploys the tokens: their owner
SELLER = account(1)  # deploys the auction
ALICE = account(2)
BOB = account(3)
CAROL = account(4)
DAVE = account(5)
STRANGER = account(6)
USERS = [ALICE, BOB, CAROL, DAVE]

TOKEN_A = contract_id("token-a")
TOKEN_B = contract_id("token-b")
DEX = contract_id("dex")
AUCTION = contract_id("auction")
KMEANS = contract_id("kmeans")

AUCTION_ITEM = "a first edition"
AUCTION_CLOSE = 100
AUCTION_RESERVE = 10

_programs: dict[tuple[str, bool], ContractProgram] = {}


def load_program(name: str, sandboxed: bool) -> ContractProgram:
    """The reference contract ``name`` ("token", "dex", "auction" or "kmeans"), plain or
    sandboxed. The one place that decides how tests load contracts."""
    key = (name, sandboxed)
    if key not in _programs:
        if sandboxed:
            try:
                from sealbridge.contracts.catalog import load_builtin
            except ImportError as exc:
                pytest.skip(f"the sandboxed loader is not available: {exc}")
            _programs[key] = load_builtin(name, sandboxed=True)
        else:
            _programs[key] = ContractProgram.from_class(PLAIN_CLASSES[name])
        assert _programs[key].sandboxed == sandboxed
    return _programs[key]


class World:
    """An executor holding reference contracts, with a current block number."""

    def __init__(self, sandboxed: bool) -> None:
        self.sandboxed = sandboxed
        self.executor = Executor(metered=sandboxed)
        self.block = 1
        self.gas_limit = DEFAULT_GAS_LIMIT

    def deploy(self, name: str, cid: bytes, deployer: bytes, /, **args: Any) -> CallOutcome:
        """Add contract ``name`` as ``cid`` and run its ``setup`` (the outcome may be a
        refusal: nothing is asserted)."""
        self.executor.add(cid, load_program(name, self.sandboxed), deployer=deployer, domain=DOMAIN)
        return self.executor.run_command(
            cid,
            "setup",
            args,
            caller=deployer,
            block_number=self.block,
            seed=SEED,
            gas_limit=self.gas_limit,
            is_init=True,
        )

    def run(self, cid: bytes, method: str, caller: bytes, /, **args: Any) -> CallOutcome:
        return self.executor.run_command(
            cid,
            method,
            args,
            caller=caller,
            block_number=self.block,
            seed=SEED,
            gas_limit=self.gas_limit,
        )

    def ok(self, cid: bytes, method: str, caller: bytes, /, **args: Any) -> Any:
        """Run a command that must succeed; its result."""
        outcome = self.run(cid, method, caller, **args)
        assert outcome.ok, f"{method} failed: {outcome.error}: {outcome.message}"
        return outcome.value

    def ask(self, cid: bytes, method: str, caller: bytes, /, **args: Any) -> CallOutcome:
        return self.executor.run_query(
            cid, method, args, caller=caller, block_number=self.block, gas_limit=self.gas_limit
        )

    def read(self, cid: bytes, method: str, caller: bytes, /, **args: Any) -> Any:
        """Run a query that must succeed; its result."""
        outcome = self.ask(cid, method, caller, **args)
        assert outcome.ok, f"query {method} failed: {outcome.error}: {outcome.message}"
        return outcome.value

    def snapshot(self) -> dict[bytes, PersistedStorage]:
        return {cid: d.storage.snapshot() for cid, d in self.executor.contracts.items()}

    def refused(
        self, code: str, cid: bytes, method: str, caller: bytes, /, **args: Any
    ) -> CallOutcome:
        """Run a command that must be refused with ``code`` and change no storage."""
        before = self.snapshot()
        outcome = self.run(cid, method, caller, **args)
        assert not outcome.ok, f"{method} should have failed with {code}"
        assert outcome.error == code, f"{method}: {outcome.error}: {outcome.message}"
        assert self.snapshot() == before
        return outcome

    def denied(self, code: str, cid: bytes, method: str, caller: bytes, /, **args: Any) -> None:
        """Run a query that must be refused with ``code``."""
        outcome = self.ask(cid, method, caller, **args)
        assert not outcome.ok, f"query {method} should have failed with {code}"
        assert outcome.error == code, f"query {method}: {outcome.error}: {outcome.message}"

    # -- token shortcuts --------------------------------------------------------------------
    def balance(self, token: bytes, owner: bytes) -> int:
        value = self.read(token, "balance", owner, owner=owner)
        assert isinstance(value, int)
        return value

    def fund(self, token: bytes, owner: bytes, amount: int) -> None:
        self.ok(token, "mint", MINTER, to=owner, amount=amount)

    def approve(self, token: bytes, owner: bytes, spender: bytes, amount: int) -> None:
        self.ok(token, "approve", owner, spender=spender, amount=amount)


def make_world(
    sandboxed: bool,
    *,
    fee_bps: int = 30,
    parties: list[bytes] | None = None,
    k: int = 2,
    iterations: int = 5,
    dims: int = 2,
) -> World:
    """A world with TOKEN_A and TOKEN_B (owner MINTER, nothing minted), the DEX trading
    them, the auction of AUCTION_ITEM in TOKEN_A (seller SELLER, closing at block
    AUCTION_CLOSE, reserve AUCTION_RESERVE) and the K-Means of ``parties`` (default
    ALICE, BOB, CAROL), at block 1."""
    world = World(sandboxed)
    setups: list[tuple[str, bytes, bytes, dict[str, Any]]] = [
        ("token", TOKEN_A, MINTER, {}),
        ("token", TOKEN_B, MINTER, {}),
        ("dex", DEX, MINTER, {"token_a": TOKEN_A, "token_b": TOKEN_B, "fee_bps": fee_bps}),
        (
            "auction",
            AUCTION,
            SELLER,
            {
                "token": TOKEN_A,
                "item": AUCTION_ITEM,
                "close_block": AUCTION_CLOSE,
                "reserve_price": AUCTION_RESERVE,
            },
        ),
        (
            "kmeans",
            KMEANS,
            MINTER,
            {
                "parties": [ALICE, BOB, CAROL] if parties is None else parties,
                "k": k,
                "iterations": iterations,
                "dims": dims,
            },
        ),
    ]
    for name, cid, deployer, args in setups:
        outcome = world.deploy(name, cid, deployer, **args)
        assert outcome.ok, f"setup of {name} failed: {outcome.error}: {outcome.message}"
    return world
