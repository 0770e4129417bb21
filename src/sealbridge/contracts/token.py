"""The confidential token: the first contract sealbridge runs.

Theory of operation
-------------------
A token is a pure state transition. :func:`execute` reads the current :class:`TokenState`
and one authenticated command and returns an :class:`Outcome` holding the writes the
command makes (a new owner, new balances) or the typed error that refused it. The caller
applies the writes only when the command succeeded, so a failed command leaves the state
exactly as it was. Nothing here reads a clock, randomness or I/O; the environment
(block height, caller) arrives as :class:`ExecEnv`.

Accounts are 32-byte Ed25519 public keys, kept as lowercase hex strings so the state has
one canonical msgpack encoding. Methods:

* ``initialize {}`` -- the first caller becomes the owner (once).
* ``mint {to, amount}`` -- owner only.
* ``transfer {to, amount}`` -- moves the caller's tokens.
* query ``balance {owner}`` -- readable only by ``owner`` itself (see :func:`query`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sealbridge.core.encoding import Message
from sealbridge.core.errors import RemoteProtocolError

MAX_AMOUNT = 2**63 - 1
ACCOUNT_SIZE = 32
CODE_NAME = "token"


class ContractError(RemoteProtocolError):
    """A command was well-formed but the contract refused it."""

    code = "contract_error"


class BadArguments(ContractError):
    code = "bad_arguments"


class NotAuthorized(ContractError):
    code = "not_authorized"


class InsufficientBalance(ContractError):
    code = "insufficient_balance"


class UnknownMethod(ContractError):
    code = "unknown_method"


class TokenState(Message, frozen=True):
    """The whole state of one token contract."""

    owner: str = ""
    total_supply: int = 0
    balances: dict[str, int] = {}


class TokenView(Protocol):
    """What :func:`execute` reads: a frozen TokenState or the runtime's live ledger."""

    @property
    def owner(self) -> str: ...

    @property
    def total_supply(self) -> int: ...

    @property
    def balances(self) -> Mapping[str, int]: ...


class LiveToken:
    """The runtime's working copy of a token's state, updated in place per command."""

    def __init__(self, state: TokenState | None = None) -> None:
        base = state or TokenState()
        self.owner = base.owner
        self.total_supply = base.total_supply
        self.balances: dict[str, int] = dict(base.balances)

    def apply(self, outcome: Outcome) -> None:
        """Apply a successful outcome's writes; zero balances are dropped (canonical form)."""
        if outcome.owner is not None:
            self.owner = outcome.owner
        if outcome.total_supply is not None:
            self.total_supply = outcome.total_supply
        for account, value in outcome.balances.items():
            if value:
                self.balances[account] = value
            else:
                self.balances.pop(account, None)

    def snapshot(self) -> TokenState:
        return TokenState(
            owner=self.owner, total_supply=self.total_supply, balances=dict(self.balances)
        )


class ExecEnv(Message, frozen=True):
    """Everything a command may learn from outside the state."""

    block_number: int
    caller: bytes


class Outcome(Message, frozen=True):
    """The writes of a successful command and its (public-safe) result."""

    owner: str | None = None
    total_supply: int | None = None
    balances: dict[str, int] = {}
    result: int | None = None


def get_account(value: Any, what: str) -> str:
    """Validate an account argument (32 bytes) and return its canonical hex form."""
    if isinstance(value, bytes) and len(value) == ACCOUNT_SIZE:
        return value.hex()
    if isinstance(value, str):
        body = value[2:] if value.startswith("0x") else value
        if len(body) == 2 * ACCOUNT_SIZE:
            try:
                return bytes.fromhex(body).hex()
            except ValueError:
                pass
    raise BadArguments(f"{what} must be a 32-byte account key")


def get_amount(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_AMOUNT:
        raise BadArguments(f"amount must be an integer in 1..{MAX_AMOUNT}")
    return value


def _only_keys(args: dict[str, Any], allowed: set[str]) -> None:
    extra = set(args) - allowed
    missing = allowed - set(args)
    if extra or missing:
        raise BadArguments(
            f"expected arguments {sorted(allowed)}, got {sorted(str(k) for k in args)}"
        )


def execute(state: TokenView, method: str, args: dict[str, Any], env: ExecEnv) -> Outcome:
    """Compute the effect of one command; raise a ContractError to refuse it."""
    caller = env.caller.hex()
    if method == "initialize":
        _only_keys(args, set())
        if state.owner:
            raise NotAuthorized("token is already initialized")
        return Outcome(owner=caller)
    if method == "mint":
        _only_keys(args, {"to", "amount"})
        if not state.owner or caller != state.owner:
            raise NotAuthorized("only the owner may mint")
        to = get_account(args["to"], "to")
        amount = get_amount(args["amount"])
        if state.total_supply + amount > MAX_AMOUNT:
            raise BadArguments("mint would overflow the total supply")
        return Outcome(
            total_supply=state.total_supply + amount,
            balances={to: state.balances.get(to, 0) + amount},
        )
    if method == "transfer":
        _only_keys(args, {"to", "amount"})
        to = get_account(args["to"], "to")
        amount = get_amount(args["amount"])
        have = state.balances.get(caller, 0)
        if have < amount:
            raise InsufficientBalance("balance is lower than the amount")
        if to == caller:
            return Outcome()
        return Outcome(balances={caller: have - amount, to: state.balances.get(to, 0) + amount})
    raise UnknownMethod(f"token has no command {method!r}")


def apply(state: TokenState, outcome: Outcome) -> TokenState:
    """Pure form of :meth:`LiveToken.apply`: the state after a successful outcome."""
    live = LiveToken(state)
    live.apply(outcome)
    return live.snapshot()


def query(state: TokenView, method: str, args: dict[str, Any], caller: bytes) -> int:
    """Answer a query. The only read is ``balance``, and only by the balance's owner;
    anything else is refused."""
    if method == "balance":
        _only_keys(args, {"owner"})
        owner = get_account(args["owner"], "owner")
        if owner != caller.hex():
            raise NotAuthorized("a balance is readable only by its owner")
        return state.balances.get(owner, 0)
    raise UnknownMethod(f"token has no query {method!r}")
