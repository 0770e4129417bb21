# mypy: disable-error-code="type-arg"
"""A sealed-bid second-price (Vickrey) auction, paid in a token.

The seller (the deployer) auctions one ``item``. Bidders escrow their bids in a
:mod:`token <sealbridge.contracts.reference.token>` contract of the same domain, so every
bid is backed by tokens the auction holds: a bidder first approves the auction as a
spender (``approve(spender=<auction id>, amount=...)``). Bids are sealed: no query shows a
bid to anyone but its bidder, and only the number of bids is public.

Commands
--------
* ``setup(token, item, close_block, reserve_price=1)`` (init) -- the payment token, a
  description of the item (1 to 200 characters), the first block in which bidding is
  over (it must be later than the deploy block) and the lowest acceptable price.
* ``bid(amount)`` -- while ``block_number < close_block``; any account but the seller.
  The first bid must be at least the reserve price. A bidder may **raise** its bid: the
  new amount must exceed the previous one and only the difference is escrowed. A bid
  cannot be lowered or withdrawn. A raised bid counts as made at the time of the raise
  for the tie-break below. At most 256 bidders. Returns the caller's bid.
* ``close()`` -- anyone, once ``block_number >= close_block``, exactly once. The winner is
  the highest bidder (ties: the earliest bid wins); the price is the second-highest bid,
  or the reserve price when there is a single bidder (every bid is at least the reserve).
  The auction pays the seller the price, refunds the winner its bid minus the price and
  every other bidder its whole bid, all with token ``transfer`` calls in one command.
  Without any bid the auction closes with no winner. Returns ``{"winner", "price"}``
  (``winner`` is ``b""`` when nobody bid).

Queries and who may read them
-----------------------------
* ``my_bid(bidder)`` -- only ``bidder``: its current bid (0 if none), also after close.
* ``outcome()`` -- anyone, after close only (``not_closed`` before):
  ``{"item", "winner", "price"}``.
* ``status()`` -- anyone: ``{"item", "state", "bids", "close_block", "reserve_price"}``,
  where ``state`` is ``"open"`` (accepting bids), ``"ended"`` (bidding is over and
  ``close()`` has not run yet) or ``"closed"``.

Errors: ``bad_arguments``, ``not_authorized``, ``bidding_closed``, ``below_reserve``,
``bid_too_low``, ``too_many_bids``, ``too_early``, ``already_closed``, ``not_closed``,
``already_initialized``; a failed token call fails the command with the token's code.
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
MAX_BIDDERS = 256
MAX_ITEM_LENGTH = 200


def check_amount(amount: int, what: str) -> None:
    require(
        isinstance(amount, int) and not isinstance(amount, bool),
        what + " must be an int",
        "bad_arguments",
    )
    require(1 <= amount <= MAX_AMOUNT, what + " must be from 1 to 2**63 - 1", "bad_arguments")


class SealedBidAuction(Contract):
    """One item sold to the highest sealed bid at the second-highest price."""

    token = Value(bytes, default=b"")
    seller = Value(bytes, default=b"")
    item = Value(str, default="")
    close_block = Value(int, default=0)
    reserve_price = Value(int, default=0)
    bids = Map(bytes, int, default=0)
    bid_times = Map(bytes, int, default=0)  # bidder -> sequence number of its latest bid
    bid_count = Value(int, default=0)
    sequence = Value(int, default=0)
    closed = Value(bool, default=False)
    winner = Value(bytes, default=b"")
    price = Value(int, default=0)

    @init
    def setup(self, token: bytes, item: str, close_block: int, reserve_price: int = 1) -> None:
        require(self.token == b"", "the auction is already set up", "already_initialized")
        require(
            isinstance(token, bytes) and len(token) == ACCOUNT_SIZE,
            "token must be a 32-byte contract id",
            "bad_arguments",
        )
        require(token != self.env.contract_id, "the auction is not a token", "bad_arguments")
        require(
            isinstance(item, str) and 1 <= len(item) <= MAX_ITEM_LENGTH,
            "item must be a text of 1 to 200 characters",
            "bad_arguments",
        )
        require(
            isinstance(close_block, int)
            and not isinstance(close_block, bool)
            and self.env.block_number < close_block <= MAX_AMOUNT,
            "close_block must be a later block",
            "bad_arguments",
        )
        check_amount(reserve_price, "reserve_price")
        self.token = token
        self.seller = self.env.deployer
        self.item = item
        self.close_block = close_block
        self.reserve_price = reserve_price

    @command
    def bid(self, amount: int) -> int:
        check_amount(amount, "amount")
        require(not self.closed, "the auction is closed", "bidding_closed")
        require(self.env.block_number < self.close_block, "bidding is over", "bidding_closed")
        caller = self.env.caller
        require(caller != self.seller, "the seller may not bid", "not_authorized")
        previous = self.bids[caller]
        if previous == 0:
            require(self.bid_count < MAX_BIDDERS, "the auction is full", "too_many_bids")
            require(
                amount >= self.reserve_price,
                "bids start at " + str(self.reserve_price),
                "below_reserve",
            )
        else:
            require(
                amount > previous,
                "a new bid must exceed the previous one (" + str(previous) + ")",
                "bid_too_low",
            )
        # the escrow first: no bid is booked unless its tokens have arrived
        self.call(
            self.token,
            "transfer_from",
            owner=caller,
            to=self.env.contract_id,
            amount=amount - previous,
        )
        if previous == 0:
            self.bid_count = self.bid_count + 1
        self.sequence = self.sequence + 1
        self.bids[caller] = amount
        self.bid_times[caller] = self.sequence
        return amount

    @command
    def close(self) -> dict:
        require(not self.closed, "the auction is already closed", "already_closed")
        require(
            self.env.block_number >= self.close_block,
            "bidding ends at block " + str(self.close_block),
            "too_early",
        )
        self.closed = True
        entries = self.bids.items()
        if not entries:
            return {"winner": b"", "price": 0}
        times = self.bid_times
        best = entries[0][0]
        best_amount = entries[0][1]
        for bidder, amount in entries[1:]:
            if amount > best_amount or (amount == best_amount and times[bidder] < times[best]):
                best = bidder
                best_amount = amount
        price = self.reserve_price
        for bidder, amount in entries:
            if bidder != best and amount > price:
                price = amount
        self.winner = best
        self.price = price
        token = self.token
        self.call(token, "transfer", to=self.seller, amount=price)
        if best_amount > price:
            self.call(token, "transfer", to=best, amount=best_amount - price)
        for bidder, amount in entries:
            if bidder != best:
                self.call(token, "transfer", to=bidder, amount=amount)
        return {"winner": best, "price": price}

    @query(readers=arg("bidder"))
    def my_bid(self, bidder: bytes) -> int:
        return self.bids[bidder]

    @query(readers=ANYONE)
    def outcome(self) -> dict:
        require(self.closed, "the auction is not closed yet", "not_closed")
        return {"item": self.item, "winner": self.winner, "price": self.price}

    @query(readers=ANYONE)
    def status(self) -> dict:
        if self.closed:
            state = "closed"
        elif self.env.block_number >= self.close_block:
            state = "ended"
        else:
            state = "open"
        return {
            "item": self.item,
            "state": state,
            "bids": self.bid_count,
            "close_block": self.close_block,
            "reserve_price": self.reserve_price,
        }
