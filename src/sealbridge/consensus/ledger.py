"""The replicated ledger: a pure, deterministic state machine of integer balances.

Theory of operation
-------------------
Every replica of an autonomous system holds one :class:`Ledger` and applies the
operations of committed batches to it in sequence order. :meth:`Ledger.apply` is a pure
state transition ``s_n = f(s_{n-1}, op_n)``: its result depends only on the state and the
operation, so replicas that apply the same operations in the same order hold the same
state and the same :meth:`Ledger.compute_digest`.

State
  ``balances``  account name -> positive integer (an account at zero is not stored)
  ``locks``     lock id -> :class:`LockRecord` (owner, amount, state), kept forever so a
                lock id is single-use
  ``paid``      the set of pay ids already executed

Operations (the ``type`` tag is their wire name)

========================  ====================================================================
``Transfer(src,dst,n)``   ``src -> dst``
``Lock(id,owner,n)``      ``owner -> escrow(id)``; the lock is LOCKED
``Unlock(id)``            ``escrow(id) -> owner``; the abort path: LOCKED -> UNLOCKED
``Release(id,to)``        ``escrow(id) -> to``; the commit path: LOCKED -> RELEASED
``Pay(id,src,dst,n)``     ``src -> dst`` once per pay id (the destination side of a
                          cross-chain transfer; a repeated pay id does nothing)
========================  ====================================================================

These are the ledger steps of InterTrust's cross-chain commit: the source chain
``Lock``\\ s the sender's funds, the destination chain ``Pay``\\ s the receiver (idempotent,
so a gateway may retry), and the source chain ``Release``\\ s the escrow (commit) or
``Unlock``\\ s it (timeout abort).

Every operation yields an :class:`Outcome`. A refused operation (bad amount or name,
insufficient balance, unknown or used lock id, settled lock, duplicate pay id) changes
nothing -- not even the set of used ids. Invariants, checked by property tests: the total
supply (balances plus the escrow of LOCKED locks) never changes, and no balance is
negative. Amounts are integers in ``[1, 2**63 - 1]`` and the genesis supply is at most
``2**63 - 1``, so every value fits the canonical msgpack encoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from sealbridge.consensus.errors import ConsensusConfigError, LedgerError
from sealbridge.core.encoding import Message
from sealbridge.core.ids import hash_message

__all__ = [
    "MAX_AMOUNT",
    "MAX_ID_SIZE",
    "MAX_NAME_LENGTH",
    "LEDGER_DIGEST_TAG",
    "Ledger",
    "LedgerSnapshot",
    "Lock",
    "LockRecord",
    "LockState",
    "Operation",
    "OPERATION_TYPES",
    "Outcome",
    "OutcomeCode",
    "Pay",
    "Release",
    "Transfer",
    "Unlock",
    "validate_genesis",
]

MAX_AMOUNT = 2**63 - 1
MAX_NAME_LENGTH = 64
MAX_ID_SIZE = 64
LEDGER_DIGEST_TAG = "sealbridge/consensus/ledger-state/v1"


# --- operations ------------------------------------------------------------------------------


class Transfer(Message, frozen=True, tag="transfer"):
    """Move ``amount`` from ``src`` to ``dst``."""

    src: str
    dst: str
    amount: int


class Lock(Message, frozen=True, tag="lock"):
    """Move ``amount`` from ``owner`` into the escrow of a new lock ``lock_id``."""

    lock_id: bytes
    owner: str
    amount: int


class Unlock(Message, frozen=True, tag="unlock"):
    """Return a LOCKED escrow to its owner (abort path)."""

    lock_id: bytes


class Release(Message, frozen=True, tag="release"):
    """Pay a LOCKED escrow out to ``to`` (commit path)."""

    lock_id: bytes
    to: str


class Pay(Message, frozen=True, tag="pay"):
    """Move ``amount`` from ``src`` to ``dst``, at most once per ``pay_id``."""

    pay_id: bytes
    src: str
    dst: str
    amount: int


Operation = Transfer | Lock | Unlock | Release | Pay
OPERATION_TYPES: tuple[type, ...] = (Transfer, Lock, Unlock, Release, Pay)


# --- outcomes and records --------------------------------------------------------------------


class OutcomeCode(StrEnum):
    OK = "ok"
    INVALID = "invalid"  # a name, id or amount out of range, or src == dst
    INSUFFICIENT_BALANCE = "insufficient_balance"
    LOCK_ID_USED = "lock_id_used"  # Lock with an id that was ever used
    UNKNOWN_LOCK = "unknown_lock"  # Unlock/Release of an id never locked
    LOCK_SETTLED = "lock_settled"  # Unlock/Release of a lock already unlocked or released
    DUPLICATE_PAY = "duplicate_pay"  # Pay with a pay id already executed


class Outcome(Message, frozen=True):
    """The result of one operation; ``detail`` is for humans."""

    code: OutcomeCode
    detail: str = ""

    @property
    def is_ok(self) -> bool:
        return self.code is OutcomeCode.OK


_OK = Outcome(code=OutcomeCode.OK)


class LockState(StrEnum):
    LOCKED = "locked"
    UNLOCKED = "unlocked"
    RELEASED = "released"


class LockRecord(Message, frozen=True):
    lock_id: bytes
    owner: str
    amount: int
    state: LockState
    released_to: str = ""


class LedgerSnapshot(Message, frozen=True):
    """The whole ledger state in canonical order (what the digest hashes)."""

    balances: list[tuple[str, int]]
    locks: list[LockRecord]
    paid: list[bytes]


# --- validation helpers ------------------------------------------------------------------------


def _is_name(value: object) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_NAME_LENGTH


def _is_id(value: object) -> bool:
    return type(value) is bytes and 0 < len(value) <= MAX_ID_SIZE


def _is_amount(value: object) -> bool:
    return type(value) is int and 0 < value <= MAX_AMOUNT


def _invalid(detail: str) -> Outcome:
    return Outcome(code=OutcomeCode.INVALID, detail=detail)


def validate_genesis(genesis: Mapping[str, int] | Iterable[tuple[str, int]]) -> dict[str, int]:
    """Check genesis balances (names, non-negative ints, supply <= MAX_AMOUNT)."""
    items = list(genesis.items()) if isinstance(genesis, Mapping) else list(genesis)
    balances: dict[str, int] = {}
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ConsensusConfigError("genesis entries are (account, balance) pairs")
        name, amount = item
        if not _is_name(name):
            raise ConsensusConfigError(f"invalid genesis account name {name!r}")
        if type(amount) is not int or amount < 0:
            raise ConsensusConfigError(f"genesis balance of {name!r} must be an int >= 0")
        if name in balances:
            raise ConsensusConfigError(f"genesis names account {name!r} twice")
        balances[name] = amount
    if sum(balances.values()) > MAX_AMOUNT:
        raise ConsensusConfigError(f"genesis supply exceeds {MAX_AMOUNT}")
    return {name: amount for name, amount in balances.items() if amount > 0}


# --- the ledger ----------------------------------------------------------------------------------


class Ledger:
    """Integer balances with escrow locks and idempotent payments."""

    def __init__(self, genesis: Mapping[str, int] | Iterable[tuple[str, int]] = ()) -> None:
        self._balances: dict[str, int] = validate_genesis(genesis)
        self._locks: dict[bytes, LockRecord] = {}
        self._paid: set[bytes] = set()
        self._supply = sum(self._balances.values())
        self.applied = 0  # operations applied (including refused ones)

    # reads

    def get_balance(self, account: str) -> int:
        return self._balances.get(account, 0)

    def get_balances(self) -> dict[str, int]:
        return dict(self._balances)

    def get_lock(self, lock_id: bytes) -> LockRecord | None:
        return self._locks.get(lock_id)

    def is_paid(self, pay_id: bytes) -> bool:
        return pay_id in self._paid

    def get_escrowed(self) -> int:
        return sum(r.amount for r in self._locks.values() if r.state is LockState.LOCKED)

    def get_total_supply(self) -> int:
        """Balances plus escrow; equal to the genesis supply after any operations."""
        return sum(self._balances.values()) + self.get_escrowed()

    @property
    def genesis_supply(self) -> int:
        return self._supply

    def snapshot(self) -> LedgerSnapshot:
        return LedgerSnapshot(
            balances=sorted(self._balances.items()),
            locks=[self._locks[k] for k in sorted(self._locks)],
            paid=sorted(self._paid),
        )

    def compute_digest(self) -> bytes:
        """SHA-256 (domain-tagged) of the canonical snapshot: equal states, equal digests."""
        return hash_message(LEDGER_DIGEST_TAG, self.snapshot())

    # the transition

    def apply(self, op: Operation) -> Outcome:
        """Apply one operation; a refusal changes nothing and says why."""
        if isinstance(op, Transfer):
            outcome = self._process_transfer(op)
        elif isinstance(op, Lock):
            outcome = self._process_lock(op)
        elif isinstance(op, Unlock):
            outcome = self._process_unlock(op)
        elif isinstance(op, Release):
            outcome = self._process_release(op)
        elif isinstance(op, Pay):
            outcome = self._process_pay(op)
        else:
            raise LedgerError(f"not a ledger operation: {type(op).__name__}")
        self.applied += 1
        return outcome

    def _move(self, src: str, dst: str, amount: int) -> None:
        """Debit then credit; callers have checked the balance."""
        self._debit(src, amount)
        self._credit(dst, amount)

    def _credit(self, account: str, amount: int) -> None:
        self._balances[account] = self._balances.get(account, 0) + amount

    def _debit(self, account: str, amount: int) -> None:
        left = self._balances[account] - amount
        if left:
            self._balances[account] = left
        else:
            del self._balances[account]

    def _check_move(self, src: object, dst: object, amount: object) -> Outcome | None:
        if not _is_name(src) or not _is_name(dst):
            return _invalid("account names are 1..64 characters")
        if src == dst:
            return _invalid("source and destination are the same account")
        if not _is_amount(amount):
            return _invalid(f"amount must be an int in [1, {MAX_AMOUNT}]")
        return None

    def _check_funds(self, account: str, amount: int) -> Outcome | None:
        have = self._balances.get(account, 0)
        if have < amount:
            return Outcome(
                code=OutcomeCode.INSUFFICIENT_BALANCE,
                detail=f"{account} holds {have}, needs {amount}",
            )
        return None

    def _process_transfer(self, op: Transfer) -> Outcome:
        refusal = self._check_move(op.src, op.dst, op.amount)
        refusal = refusal or self._check_funds(op.src, op.amount)
        if refusal is not None:
            return refusal
        self._move(op.src, op.dst, op.amount)
        return _OK

    def _process_lock(self, op: Lock) -> Outcome:
        if not _is_id(op.lock_id):
            return _invalid("lock ids are 1..64 bytes")
        if not _is_name(op.owner):
            return _invalid("account names are 1..64 characters")
        if not _is_amount(op.amount):
            return _invalid(f"amount must be an int in [1, {MAX_AMOUNT}]")
        if op.lock_id in self._locks:
            return Outcome(code=OutcomeCode.LOCK_ID_USED, detail="lock ids are single-use")
        refusal = self._check_funds(op.owner, op.amount)
        if refusal is not None:
            return refusal
        self._debit(op.owner, op.amount)
        self._locks[op.lock_id] = LockRecord(
            lock_id=op.lock_id, owner=op.owner, amount=op.amount, state=LockState.LOCKED
        )
        return _OK

    def _get_open_lock(self, lock_id: object) -> LockRecord | Outcome:
        if not isinstance(lock_id, bytes) or not _is_id(lock_id):
            return _invalid("lock ids are 1..64 bytes")
        record = self._locks.get(lock_id)
        if record is None:
            return Outcome(code=OutcomeCode.UNKNOWN_LOCK, detail="no such lock")
        if record.state is not LockState.LOCKED:
            return Outcome(code=OutcomeCode.LOCK_SETTLED, detail=f"lock is {record.state.value}")
        return record

    def _process_unlock(self, op: Unlock) -> Outcome:
        record = self._get_open_lock(op.lock_id)
        if isinstance(record, Outcome):
            return record
        self._credit(record.owner, record.amount)
        self._locks[record.lock_id] = LockRecord(
            lock_id=record.lock_id,
            owner=record.owner,
            amount=record.amount,
            state=LockState.UNLOCKED,
        )
        return _OK

    def _process_release(self, op: Release) -> Outcome:
        if not _is_name(op.to):
            return _invalid("account names are 1..64 characters")
        record = self._get_open_lock(op.lock_id)
        if isinstance(record, Outcome):
            return record
        self._credit(op.to, record.amount)
        self._locks[record.lock_id] = LockRecord(
            lock_id=record.lock_id,
            owner=record.owner,
            amount=record.amount,
            state=LockState.RELEASED,
            released_to=op.to,
        )
        return _OK

    def _process_pay(self, op: Pay) -> Outcome:
        if not _is_id(op.pay_id):
            return _invalid("pay ids are 1..64 bytes")
        refusal = self._check_move(op.src, op.dst, op.amount)
        if refusal is not None:
            return refusal
        if op.pay_id in self._paid:
            return Outcome(code=OutcomeCode.DUPLICATE_PAY, detail="pay id already executed")
        refusal = self._check_funds(op.src, op.amount)
        if refusal is not None:
            return refusal
        self._move(op.src, op.dst, op.amount)
        self._paid.add(op.pay_id)
        return _OK
