"""A confidential fungible token.

Every balance is private: only its holder can read it. The deployer becomes the owner,
the only account that may mint. Accounts are 32-byte keys: a user's Ed25519 public key
or a contract's id (a contract such as a DEX or an auction holds tokens like anyone).

Commands
--------
* ``setup()`` (init) -- the deployer becomes the owner; runs once.
* ``mint(to, amount)`` -- owner only; creates ``amount`` tokens for ``to``. The total
  supply may never exceed 2**63 - 1, so no balance or sum of balances overflows.
  Returns the new balance of ``to``.
* ``transfer(to, amount)`` -- moves the caller's tokens to ``to``. A transfer to oneself
  is checked like any other (amount, balance) and then changes nothing. Returns the
  caller's new balance.
* ``approve(spender, amount)`` -- sets (replaces) how much ``spender`` may move out of
  the caller's account with ``transfer_from``; 0 revokes. Returns the allowance.
* ``transfer_from(owner, to, amount)`` -- the caller, an approved spender of ``owner``,
  moves ``amount`` of ``owner``'s tokens to ``to`` and uses up that much allowance (also
  when ``to`` is ``owner``, where no balance changes). Returns the remaining allowance.

Amounts are ints from 1 to 2**63 - 1 (an allowance may also be 0).

Queries and who may read them
-----------------------------
* ``balance(owner)`` -- only ``owner``.
* ``allowance(owner, spender)`` -- only ``owner`` or ``spender``.
* ``total_supply()`` -- anyone.
* ``token_owner()`` -- anyone: who may mint.

Errors: ``bad_arguments``, ``not_authorized``, ``insufficient_balance``,
``insufficient_allowance``, ``supply_exceeded``, ``not_a_reader``,
``already_initialized``.

Storage stays canonical: a balance or allowance that reaches zero is deleted, so two
histories ending with the same balances end with the same storage.
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


def check_account(account: bytes, what: str) -> None:
    """Refuse anything but a 32-byte account."""
    require(
        isinstance(account, bytes) and len(account) == ACCOUNT_SIZE,
        what + " must be a 32-byte account",
        "bad_arguments",
    )


def check_amount(amount: int, least: int) -> None:
    """Refuse anything but an int from ``least`` to 2**63 - 1."""
    require(
        isinstance(amount, int) and not isinstance(amount, bool),
        "amount must be an int",
        "bad_arguments",
    )
    require(
        least <= amount <= MAX_AMOUNT,
        "amount must be from " + str(least) + " to 2**63 - 1",
        "bad_arguments",
    )


class Token(Contract):
    """A fungible token with private balances and ERC-20-style allowances."""

    owner = Value(bytes, default=b"")
    supply = Value(int, default=0)
    balances = Map(bytes, int, default=0)
    allowances = Map(bytes, int, default=0)  # key: owner + spender (64 bytes)

    @init
    def setup(self) -> None:
        require(self.owner == b"", "the token is already set up", "already_initialized")
        self.owner = self.env.deployer

    @command
    def mint(self, to: bytes, amount: int) -> int:
        require(self.env.caller == self.owner, "only the owner may mint", "not_authorized")
        check_account(to, "to")
        check_amount(amount, 1)
        supply = self.supply + amount
        require(supply <= MAX_AMOUNT, "the total supply would exceed 2**63 - 1", "supply_exceeded")
        self.supply = supply
        balance = self.balances[to] + amount
        self.balances[to] = balance
        return balance

    @command
    def transfer(self, to: bytes, amount: int) -> int:
        check_account(to, "to")
        check_amount(amount, 1)
        self.move(self.env.caller, to, amount)
        return self.balances[self.env.caller]

    @command
    def approve(self, spender: bytes, amount: int) -> int:
        check_account(spender, "spender")
        check_amount(amount, 0)
        self.set_allowance(self.env.caller + spender, amount)
        return amount

    @command
    def transfer_from(self, owner: bytes, to: bytes, amount: int) -> int:
        check_account(owner, "owner")
        check_account(to, "to")
        check_amount(amount, 1)
        key = owner + self.env.caller
        allowed = self.allowances[key]
        require(
            allowed >= amount,
            "the caller may move only " + str(allowed) + " of these tokens",
            "insufficient_allowance",
        )
        self.move(owner, to, amount)
        self.set_allowance(key, allowed - amount)
        return allowed - amount

    @query(readers=arg("owner"))
    def balance(self, owner: bytes) -> int:
        return self.balances[owner]

    @query(readers=ANYONE)
    def allowance(self, owner: bytes, spender: bytes) -> int:
        # A readers rule sees only the caller, not the arguments: check them here.
        caller = self.env.caller
        require(
            caller == owner or caller == spender,
            "only the owner or the spender may read an allowance",
            "not_a_reader",
        )
        return self.allowances[owner + spender]

    @query(readers=ANYONE)
    def total_supply(self) -> int:
        return self.supply

    @query(readers=ANYONE)
    def token_owner(self) -> bytes:
        return self.owner

    # -- helpers (not callable from outside: they carry no decorator) --------------------
    def move(self, source: bytes, to: bytes, amount: int) -> None:
        have = self.balances[source]
        require(
            have >= amount,
            "balance " + str(have) + " is less than " + str(amount),
            "insufficient_balance",
        )
        if source == to:
            return
        if have == amount:
            del self.balances[source]
        else:
            self.balances[source] = have - amount
        self.balances[to] = self.balances[to] + amount

    def set_allowance(self, key: bytes, amount: int) -> None:
        if amount == 0:
            if key in self.allowances:
                del self.allowances[key]
        else:
            self.allowances[key] = amount
