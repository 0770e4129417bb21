# mypy: disable-error-code="type-arg"
"""A constant-product market maker (AMM) between two tokens.

The pool holds reserves of two :mod:`token <sealbridge.contracts.reference.token>`
contracts, ``token_a`` and ``token_b``, which must run in the same domain as the DEX: it
moves tokens with synchronous calls, so a command either completes every transfer it
makes or none. Before adding liquidity or swapping, a user approves the DEX as a spender
on the token(s) it will pull (``approve(spender=<dex id>, amount=...)``).

All arithmetic is on integers and rounds in favour of the pool, so the product of the
reserves never decreases and the shares of existing providers never lose value.

Commands
--------
* ``setup(token_a, token_b, fee_bps=30)`` (init) -- the two token contracts (distinct
  32-byte ids) and the swap fee in basis points (0 to 9999). Runs once.
* ``add_liquidity(amount_a, amount_b)`` -- the first provider deposits both amounts and
  receives ``isqrt(amount_a * amount_b)`` shares. Later providers receive
  ``min(amount_a * S // reserve_a, amount_b * S // reserve_b)`` shares (``S``: the total
  shares) and the DEX pulls only the proportional part of each amount,
  ``ceil(shares * reserve / S)``, which never exceeds the amount offered; the excess simply
  stays with the caller. Returns ``{"shares", "amount_a", "amount_b"}`` (what was taken).
* ``remove_liquidity(shares)`` -- burns ``shares`` of the caller's shares and pays out
  ``reserve * shares // S`` of each token. Returns ``{"amount_a", "amount_b"}``.
* ``swap(token_in, amount_in, min_out)`` -- sells ``amount_in`` of ``token_in`` (either
  pool token) for the other: with ``in_after_fee = amount_in * (10000 - fee_bps) // 10000``,
  ``out = reserve_out * in_after_fee // (reserve_in + in_after_fee)``; refused when
  ``out < min_out`` (``slippage``) or ``out == 0`` (``amount_too_small``). The whole
  ``amount_in`` (fee included) joins the reserve. Returns ``out``.

Queries and who may read them
-----------------------------
* ``reserves()`` -- anyone: the token ids, both reserves and the fee.
* ``shares(owner)`` -- only ``owner``: its share count.
* ``total_shares()`` -- anyone.

Errors: ``bad_arguments``, ``empty_pool``, ``insufficient_shares``, ``amount_too_small``,
``slippage``, ``already_initialized``; a failed token transfer fails the command with the
token's own code (``insufficient_allowance``, ``insufficient_balance``...).
"""

from sealbridge.contracts.sdk import (
    ANYONE,
    Contract,
    Map,
    Value,
    arg,
    command,
    init,
    query,
    require,
)

MAX_AMOUNT = 2**63 - 1
ACCOUNT_SIZE = 32
BPS = 10000


def isqrt(n: int) -> int:
    """The integer square root of ``n`` >= 0 (the largest ``x`` with ``x * x <= n``), by
    Newton's iteration from above."""
    require(n >= 0, "square root of a negative number", "bad_arguments")
    if n < 2:
        return n
    x = n
    y = (x + 1) // 2
    while y < x:
        x = y
        y = (x + n // x) // 2
    return x


def ceil_div(a: int, b: int) -> int:
    """``a / b`` rounded up, for ``a >= 0`` and ``b > 0``."""
    return -(-a // b)


def check_amount(amount: int, what: str, least: int) -> None:
    require(
        isinstance(amount, int) and not isinstance(amount, bool),
        what + " must be an int",
        "bad_arguments",
    )
    require(
        least <= amount <= MAX_AMOUNT,
        what + " must be from " + str(least) + " to 2**63 - 1",
        "bad_arguments",
    )


class Dex(Contract):
    """A two-token constant-product pool with LP shares."""

    token_a = Value(bytes, default=b"")
    token_b = Value(bytes, default=b"")
    fee = Value(int, default=0)
    reserve_a = Value(int, default=0)
    reserve_b = Value(int, default=0)
    share_supply = Value(int, default=0)
    holdings = Map(bytes, int, default=0)

    @init
    def setup(self, token_a: bytes, token_b: bytes, fee_bps: int = 30) -> None:
        require(self.token_a == b"", "the DEX is already set up", "already_initialized")
        for token in (token_a, token_b):
            require(
                isinstance(token, bytes) and len(token) == ACCOUNT_SIZE,
                "tokens must be 32-byte contract ids",
                "bad_arguments",
            )
            require(token != self.env.contract_id, "the DEX is not a token", "bad_arguments")
        require(token_a != token_b, "the two tokens must differ", "bad_arguments")
        require(
            isinstance(fee_bps, int) and not isinstance(fee_bps, bool) and 0 <= fee_bps < BPS,
            "fee_bps must be an int from 0 to 9999",
            "bad_arguments",
        )
        self.token_a = token_a
        self.token_b = token_b
        self.fee = fee_bps

    @command
    def add_liquidity(self, amount_a: int, amount_b: int) -> dict:
        check_amount(amount_a, "amount_a", 1)
        check_amount(amount_b, "amount_b", 1)
        total = self.share_supply
        reserve_a = self.reserve_a
        reserve_b = self.reserve_b
        if total == 0:
            minted = isqrt(amount_a * amount_b)
            take_a = amount_a
            take_b = amount_b
        else:
            minted = min(amount_a * total // reserve_a, amount_b * total // reserve_b)
            require(minted > 0, "the amounts buy less than one share", "amount_too_small")
            take_a = ceil_div(minted * reserve_a, total)
            take_b = ceil_div(minted * reserve_b, total)
        caller = self.env.caller
        here = self.env.contract_id
        # the deposits first: no share is booked unless both tokens have arrived
        self.call(self.token_a, "transfer_from", owner=caller, to=here, amount=take_a)
        self.call(self.token_b, "transfer_from", owner=caller, to=here, amount=take_b)
        self.share_supply = total + minted
        self.holdings[caller] = self.holdings[caller] + minted
        self.reserve_a = reserve_a + take_a
        self.reserve_b = reserve_b + take_b
        return {"shares": minted, "amount_a": take_a, "amount_b": take_b}

    @command
    def remove_liquidity(self, shares: int) -> dict:
        check_amount(shares, "shares", 1)
        caller = self.env.caller
        held = self.holdings[caller]
        require(
            held >= shares,
            "the caller holds " + str(held) + " shares",
            "insufficient_shares",
        )
        total = self.share_supply
        out_a = self.reserve_a * shares // total
        out_b = self.reserve_b * shares // total
        require(out_a > 0 or out_b > 0, "the shares are worth nothing yet", "amount_too_small")
        if held == shares:
            del self.holdings[caller]
        else:
            self.holdings[caller] = held - shares
        self.share_supply = total - shares
        self.reserve_a = self.reserve_a - out_a
        self.reserve_b = self.reserve_b - out_b
        if out_a > 0:
            self.call(self.token_a, "transfer", to=caller, amount=out_a)
        if out_b > 0:
            self.call(self.token_b, "transfer", to=caller, amount=out_b)
        return {"amount_a": out_a, "amount_b": out_b}

    @command
    def swap(self, token_in: bytes, amount_in: int, min_out: int) -> int:
        require(
            token_in == self.token_a or token_in == self.token_b,
            "token_in must be one of the pool's two tokens",
            "bad_arguments",
        )
        check_amount(amount_in, "amount_in", 1)
        check_amount(min_out, "min_out", 0)
        require(self.share_supply > 0, "the pool has no liquidity", "empty_pool")
        if token_in == self.token_a:
            reserve_in = self.reserve_a
            reserve_out = self.reserve_b
            token_out = self.token_b
        else:
            reserve_in = self.reserve_b
            reserve_out = self.reserve_a
            token_out = self.token_a
        in_after_fee = amount_in * (BPS - self.fee) // BPS
        out = reserve_out * in_after_fee // (reserve_in + in_after_fee)
        require(out > 0, "the swap would pay out nothing", "amount_too_small")
        require(
            out >= min_out,
            "the swap pays " + str(out) + ", less than min_out " + str(min_out),
            "slippage",
        )
        caller = self.env.caller
        # the payment in first, then the books, then the payment out
        self.call(
            token_in, "transfer_from", owner=caller, to=self.env.contract_id, amount=amount_in
        )
        if token_in == self.token_a:
            self.reserve_a = reserve_in + amount_in
            self.reserve_b = reserve_out - out
        else:
            self.reserve_b = reserve_in + amount_in
            self.reserve_a = reserve_out - out
        self.call(token_out, "transfer", to=caller, amount=out)
        return out

    @query(readers=ANYONE)
    def reserves(self) -> dict:
        return {
            "token_a": self.token_a,
            "token_b": self.token_b,
            "reserve_a": self.reserve_a,
            "reserve_b": self.reserve_b,
            "fee_bps": self.fee,
        }

    @query(readers=arg("owner"))
    def shares(self, owner: bytes) -> int:
        return self.holdings[owner]

    @query(readers=ANYONE)
    def total_shares(self) -> int:
        return self.share_supply
