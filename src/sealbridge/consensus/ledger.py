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

Cross-chain operations (InterTrust, :mod:`sealbridge.interop`; refused unless the ledger
was built with its ``as_id``). ``T`` is a :class:`CrossTransfer`, ``id = compute_transfer_id(T)``;
``cert`` a :class:`CrossCertificate`: a threshold-BLS signature of the *other* AS's replicas
on ``(key_id, signer_as, id, claim)`` under a key that one of this AS's own gateways
generated and endorsed (``gateway_keys``). Every replica checks it during execution, so
all replicas agree whether the operation is valid.

================================  ==============================================================
``CrossLock(T)``                  source: ``sender -> escrow(id)``; record LOCKED
``CrossPay(T, cert LOCKED)``      destination: ``@bridge -> recipient``; record PAID (once)
``CrossRefuse(T, gateway sig)``   destination: record REFUSED (a Pay after it is refused)
``CrossRelease(T, cert PAID)``    source: ``escrow(id) -> @bridge``; LOCKED -> RELEASED
``CrossUnlock(T, cert REFUSED)``  source: ``escrow(id) -> sender``; LOCKED -> UNLOCKED, or,
                                  with no lock yet, record ABORTED (a later CrossLock of T is
                                  refused)
================================  ==============================================================

On the destination the first of CrossPay / CrossRefuse in consensus order wins and the
other is refused: that single ordered decision is what makes the transfer atomic. The
escrow of a cross-chain lock is settled only by CrossRelease / CrossUnlock (plain
Unlock/Release refuse it). Accounts whose names start with ``@`` (the bridge reserve
``@bridge``) are system accounts: no plain operation debits them.

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

import math
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum

import msgspec

from sealbridge.consensus.errors import ConsensusConfigError, LedgerError
from sealbridge.core.encoding import Message
from sealbridge.core.errors import EncodingError
from sealbridge.core.ids import hash_message
from sealbridge.crypto import bls
from sealbridge.crypto.signing import is_valid_ed25519

__all__ = [
    "BRIDGE_ACCOUNT",
    "CROSS_TERMINAL_STATES",
    "CrossCertificate",
    "CrossLock",
    "CrossPay",
    "CrossRecord",
    "CrossRefuse",
    "CrossRelease",
    "CrossState",
    "CrossTransfer",
    "CrossUnlock",
    "KeyEndorsement",
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
    "check_cross_certificate",
    "check_cross_transfer",
    "compute_attestation_message",
    "compute_endorsement_message",
    "compute_key_id",
    "compute_refusal_message",
    "compute_transfer_id",
    "is_system_account",
    "validate_genesis",
]

MAX_AMOUNT = 2**63 - 1
MAX_NAME_LENGTH = 64
MAX_ID_SIZE = 64
LEDGER_DIGEST_TAG = "sealbridge/consensus/ledger-state/v1"
SYSTEM_ACCOUNT_PREFIX = "@"
BRIDGE_ACCOUNT = "@bridge"
TRANSFER_ID_TAG = "sealbridge/interop/transfer/v1"
KEY_ID_TAG = "sealbridge/interop/key-id/v1"
KEY_ENDORSEMENT_TAG = "sealbridge/interop/key-endorsement/v1"
ATTESTATION_TAG = "sealbridge/interop/attestation/v1"
REFUSAL_TAG = "sealbridge/interop/refusal/v1"
MAX_SALT_SIZE = 64
_MAX_UINT = 2**63 - 1

Verifier = Callable[[bytes, bytes, bytes], bool]
"""``verify(public_key, message, signature) -> bool`` for BLS (a VerifyCache's ``verify``)."""


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


# --- cross-chain transfers (InterTrust) ---------------------------------------------------


class CrossTransfer(Message, frozen=True):
    """A cross-chain transfer ``T``: its id is :func:`compute_transfer_id` of these fields.

    ``salt`` makes two otherwise equal transfers distinct; ``deadline`` (seconds of the
    gateways' clock) is when the source gateway gives up and asks for an abort -- a trigger,
    not a ledger rule: the ledger has no clock, consensus order decides.
    """

    src_as: int
    dst_as: int
    sender: str
    recipient: str
    amount: int
    salt: bytes
    deadline: float


class CrossState(StrEnum):
    """Where a transfer stands on one chain (source: the first four; destination: the last two)."""

    LOCKED = "locked"
    RELEASED = "released"
    UNLOCKED = "unlocked"
    ABORTED = "aborted"  # unlocked before any lock: a later CrossLock is refused
    PAID = "paid"
    REFUSED = "refused"


CROSS_TERMINAL_STATES = frozenset(
    {
        CrossState.RELEASED,
        CrossState.UNLOCKED,
        CrossState.ABORTED,
        CrossState.PAID,
        CrossState.REFUSED,
    }
)


class KeyEndorsement(Message, frozen=True):
    """A gateway's statement that it generated, inside its enclave, the threshold key
    ``group_public_key`` for the replicas of ``signer_as`` (``threshold`` of them sign).

    ``scope`` is empty for an epoch key, or the transfer id a per-transaction key is for.
    ``gateway`` is the generating gateway's Ed25519 identity key; ``signature`` its
    signature over :func:`compute_endorsement_message`.
    """

    key_id: bytes
    signer_as: int
    threshold: int
    group_public_key: bytes
    scope: bytes
    gateway: bytes
    signature: bytes = b""


class CrossCertificate(Message, frozen=True):
    """``signature``: the replicas of ``key.signer_as`` attest ``claim`` about a transfer."""

    claim: CrossState
    key: KeyEndorsement
    signature: bytes


class CrossRecord(Message, frozen=True):
    transfer: CrossTransfer
    state: CrossState


class _AttestationStatement(Message, frozen=True):
    key_id: bytes
    signer_as: int
    transfer_id: bytes
    claim: CrossState


class _RefusalStatement(Message, frozen=True):
    transfer_id: bytes
    dst_as: int


class CrossLock(Message, frozen=True, tag="cross_lock"):
    """Source chain: lock ``sender``'s ``amount`` in the escrow of ``T``."""

    transfer: CrossTransfer


class CrossPay(Message, frozen=True, tag="cross_pay"):
    """Destination chain: pay ``recipient`` from the bridge reserve; needs LOCKED by the source."""

    transfer: CrossTransfer
    certificate: CrossCertificate


class CrossRefuse(Message, frozen=True, tag="cross_refuse"):
    """Destination chain: decide never to pay ``T`` (signed by one of this AS's gateways)."""

    transfer: CrossTransfer
    gateway: bytes
    signature: bytes


class CrossRelease(Message, frozen=True, tag="cross_release"):
    """Source chain: pay the escrow to the bridge reserve; needs PAID by the destination."""

    transfer: CrossTransfer
    certificate: CrossCertificate


class CrossUnlock(Message, frozen=True, tag="cross_unlock"):
    """Source chain: return the escrow to the sender; needs REFUSED by the destination."""

    transfer: CrossTransfer
    certificate: CrossCertificate


Operation = (
    Transfer
    | Lock
    | Unlock
    | Release
    | Pay
    | CrossLock
    | CrossPay
    | CrossRefuse
    | CrossRelease
    | CrossUnlock
)
OPERATION_TYPES: tuple[type, ...] = (
    Transfer,
    Lock,
    Unlock,
    Release,
    Pay,
    CrossLock,
    CrossPay,
    CrossRefuse,
    CrossRelease,
    CrossUnlock,
)


# --- outcomes and records --------------------------------------------------------------------


class OutcomeCode(StrEnum):
    OK = "ok"
    INVALID = "invalid"  # a name, id or amount out of range, or src == dst
    INSUFFICIENT_BALANCE = "insufficient_balance"
    LOCK_ID_USED = "lock_id_used"  # Lock with an id that was ever used
    UNKNOWN_LOCK = "unknown_lock"  # Unlock/Release of an id never locked
    LOCK_SETTLED = "lock_settled"  # Unlock/Release of a lock already unlocked or released
    DUPLICATE_PAY = "duplicate_pay"  # Pay with a pay id already executed
    SYSTEM_ACCOUNT = "system_account"  # a plain operation debiting an ``@`` account
    CROSS_CHAIN_LOCK = "cross_chain_lock"  # plain Unlock/Release of a cross-chain escrow
    BAD_CERTIFICATE = "bad_certificate"  # a cross-chain certificate or signature is invalid
    TRANSFER_USED = "transfer_used"  # CrossLock of a transfer id already recorded
    UNKNOWN_TRANSFER = "unknown_transfer"  # CrossRelease of a transfer never locked
    TRANSFER_SETTLED = "transfer_settled"  # the transfer is already decided otherwise


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
    cross: list[CrossRecord] = []


# --- validation helpers ------------------------------------------------------------------------


def _is_name(value: object) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_NAME_LENGTH


def _is_id(value: object) -> bool:
    return type(value) is bytes and 0 < len(value) <= MAX_ID_SIZE


def _is_amount(value: object) -> bool:
    return type(value) is int and 0 < value <= MAX_AMOUNT


def _invalid(detail: str) -> Outcome:
    return Outcome(code=OutcomeCode.INVALID, detail=detail)


def _system(account: str) -> Outcome:
    return Outcome(code=OutcomeCode.SYSTEM_ACCOUNT, detail=f"{account} is a system account")


def is_system_account(name: str) -> bool:
    """True for ``@``-prefixed accounts (the bridge reserve): no plain operation debits them."""
    return name.startswith(SYSTEM_ACCOUNT_PREFIX)


def _is_uint(value: object) -> bool:
    return type(value) is int and 0 <= value <= _MAX_UINT


# --- cross-chain statements ------------------------------------------------------------------


def compute_transfer_id(transfer: CrossTransfer) -> bytes:
    """The 32-byte id of a transfer: a domain-tagged hash of its canonical encoding."""
    return hash_message(TRANSFER_ID_TAG, transfer)


def compute_key_id(signer_as: int, group_public_key: bytes, scope: bytes) -> bytes:
    """The id of an interop threshold key (binds the AS that signs with it and its scope)."""
    return hash_message(KEY_ID_TAG, [signer_as, group_public_key, scope])


def compute_endorsement_message(endorsement: KeyEndorsement) -> bytes:
    """What the generating gateway signs: the endorsement without its signature."""
    return hash_message(KEY_ENDORSEMENT_TAG, msgspec.structs.replace(endorsement, signature=b""))


def compute_attestation_message(
    key_id: bytes, signer_as: int, transfer_id: bytes, claim: CrossState
) -> bytes:
    """The 32 bytes the replicas of ``signer_as`` sign (with their interop key shares) to
    attest that the transfer ``transfer_id`` is in state ``claim`` on their chain."""
    statement = _AttestationStatement(
        key_id=key_id, signer_as=signer_as, transfer_id=transfer_id, claim=claim
    )
    return hash_message(ATTESTATION_TAG, statement)


def compute_refusal_message(transfer_id: bytes, dst_as: int) -> bytes:
    """What a destination gateway signs to have its chain refuse a transfer."""
    return hash_message(REFUSAL_TAG, _RefusalStatement(transfer_id=transfer_id, dst_as=dst_as))


def check_cross_transfer(transfer: object) -> str | None:
    """Why ``transfer`` is not a well-formed :class:`CrossTransfer`; None if it is."""
    if not isinstance(transfer, CrossTransfer):
        return "not a cross-chain transfer"
    if not _is_uint(transfer.src_as) or not _is_uint(transfer.dst_as):
        return "AS ids are ints in [0, 2**63)"
    if transfer.src_as == transfer.dst_as:
        return "source and destination AS are the same"
    if not _is_name(transfer.sender) or not _is_name(transfer.recipient):
        return "account names are 1..64 characters"
    if is_system_account(transfer.sender):
        return "a system account cannot send"
    if not _is_amount(transfer.amount):
        return f"amount must be an int in [1, {MAX_AMOUNT}]"
    if type(transfer.salt) is not bytes or len(transfer.salt) > MAX_SALT_SIZE:
        return f"salt is at most {MAX_SALT_SIZE} bytes"
    deadline = transfer.deadline
    if type(deadline) is not float or not math.isfinite(deadline) or deadline < 0:
        return "deadline is a finite float >= 0"
    return None


def check_cross_certificate(
    certificate: object,
    *,
    claim: CrossState,
    signer_as: int,
    transfer_id: bytes,
    trusted_gateways: Iterable[bytes],
    verify: Verifier = bls.verify,
) -> str | None:
    """Why ``certificate`` does not prove ``claim`` about ``transfer_id`` by ``signer_as``'s
    replicas, under a key endorsed by one of ``trusted_gateways``; None if it does.

    Deterministic (the same answer at every replica): it depends only on its arguments.
    """
    if not isinstance(certificate, CrossCertificate) or not isinstance(
        certificate.key, KeyEndorsement
    ):
        return "not a cross-chain certificate"
    key = certificate.key
    if certificate.claim != claim:
        return f"certificate claims {certificate.claim!r}, {claim.value} needed"
    if key.signer_as != signer_as:
        return f"key is for AS {key.signer_as!r}, not {signer_as}"
    if key.scope not in (b"", transfer_id):
        return "key is scoped to another transfer"
    if key.gateway not in set(trusted_gateways):
        return "key is not endorsed by a gateway of this AS"
    try:
        if key.key_id != compute_key_id(key.signer_as, key.group_public_key, key.scope):
            return "key id does not match the key"
        endorsement = compute_endorsement_message(key)
        message = compute_attestation_message(key.key_id, signer_as, transfer_id, claim)
    except EncodingError:
        return "certificate does not encode"
    if not is_valid_ed25519(key.gateway, endorsement, key.signature):
        return "key endorsement signature does not verify"
    if not verify(key.group_public_key, message, certificate.signature):
        return "threshold signature does not verify"
    return None


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
    """Integer balances with escrow locks, idempotent payments and cross-chain transfers.

    ``as_id`` (the AS this ledger belongs to) enables the cross-chain operations;
    ``gateway_keys`` are the Ed25519 identity keys of this AS's own gateways, whose key
    endorsements and refusals it trusts; ``verify`` checks BLS signatures (default
    :func:`sealbridge.crypto.bls.verify`; a replica passes its memoizing cache).
    """

    def __init__(
        self,
        genesis: Mapping[str, int] | Iterable[tuple[str, int]] = (),
        *,
        as_id: int | None = None,
        gateway_keys: Iterable[bytes] = (),
        verify: Verifier | None = None,
    ) -> None:
        self._balances: dict[str, int] = validate_genesis(genesis)
        self._locks: dict[bytes, LockRecord] = {}
        self._paid: set[bytes] = set()
        self._cross: dict[bytes, CrossRecord] = {}
        self._supply = sum(self._balances.values())
        self.as_id = as_id
        self.gateway_keys = frozenset(bytes(k) for k in gateway_keys)
        self._verify: Verifier = bls.verify if verify is None else verify
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

    def get_cross(self, transfer_id: bytes) -> CrossRecord | None:
        """The cross-chain record of a transfer id, if any."""
        return self._cross.get(transfer_id)

    def get_cross_records(self) -> list[CrossRecord]:
        """Every cross-chain record, in id order."""
        return [self._cross[k] for k in sorted(self._cross)]

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
            cross=[self._cross[k] for k in sorted(self._cross)],
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
        elif isinstance(op, CrossLock):
            outcome = self._process_cross_lock(op)
        elif isinstance(op, CrossPay):
            outcome = self._process_cross_pay(op)
        elif isinstance(op, CrossRefuse):
            outcome = self._process_cross_refuse(op)
        elif isinstance(op, CrossRelease):
            outcome = self._process_cross_release(op)
        elif isinstance(op, CrossUnlock):
            outcome = self._process_cross_unlock(op)
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
        if isinstance(src, str) and is_system_account(src):
            return _system(src)
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
        if is_system_account(op.owner):
            return _system(op.owner)
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
        if lock_id in self._cross:
            return Outcome(
                code=OutcomeCode.CROSS_CHAIN_LOCK,
                detail="a cross-chain escrow is settled only by CrossRelease/CrossUnlock",
            )
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

    # cross-chain transfers

    def _check_cross(self, transfer: CrossTransfer, *, source: bool) -> Outcome | None:
        if self.as_id is None:
            return _invalid("this ledger takes no cross-chain operations (no as_id)")
        problem = check_cross_transfer(transfer)
        if problem is not None:
            return _invalid(problem)
        here = transfer.src_as if source else transfer.dst_as
        if here != self.as_id:
            side = "source" if source else "destination"
            return _invalid(f"the transfer's {side} is AS {here}, this is AS {self.as_id}")
        return None

    def _check_certificate(
        self, certificate: CrossCertificate, claim: CrossState, signer_as: int, tid: bytes
    ) -> Outcome | None:
        problem = check_cross_certificate(
            certificate,
            claim=claim,
            signer_as=signer_as,
            transfer_id=tid,
            trusted_gateways=self.gateway_keys,
            verify=self._verify,
        )
        if problem is not None:
            return Outcome(code=OutcomeCode.BAD_CERTIFICATE, detail=problem)
        return None

    @staticmethod
    def _settled(record: CrossRecord) -> Outcome:
        return Outcome(
            code=OutcomeCode.TRANSFER_SETTLED, detail=f"transfer is {record.state.value}"
        )

    def _process_cross_lock(self, op: CrossLock) -> Outcome:
        xfer = op.transfer
        refusal = self._check_cross(xfer, source=True)
        if refusal is not None:
            return refusal
        tid = compute_transfer_id(xfer)
        if tid in self._cross:
            return Outcome(code=OutcomeCode.TRANSFER_USED, detail="transfer ids are single-use")
        if tid in self._locks:
            return Outcome(code=OutcomeCode.LOCK_ID_USED, detail="lock ids are single-use")
        refusal = self._check_funds(xfer.sender, xfer.amount)
        if refusal is not None:
            return refusal
        self._debit(xfer.sender, xfer.amount)
        self._locks[tid] = LockRecord(
            lock_id=tid, owner=xfer.sender, amount=xfer.amount, state=LockState.LOCKED
        )
        self._cross[tid] = CrossRecord(transfer=xfer, state=CrossState.LOCKED)
        return _OK

    def _process_cross_pay(self, op: CrossPay) -> Outcome:
        xfer = op.transfer
        refusal = self._check_cross(xfer, source=False)
        if refusal is not None:
            return refusal
        tid = compute_transfer_id(xfer)
        record = self._cross.get(tid)
        if record is not None:
            if record.state is CrossState.PAID:
                return Outcome(code=OutcomeCode.DUPLICATE_PAY, detail="transfer already paid")
            return self._settled(record)
        refusal = self._check_funds(BRIDGE_ACCOUNT, xfer.amount)
        refusal = refusal or self._check_certificate(
            op.certificate, CrossState.LOCKED, xfer.src_as, tid
        )
        if refusal is not None:
            return refusal
        self._move(BRIDGE_ACCOUNT, xfer.recipient, xfer.amount)
        self._cross[tid] = CrossRecord(transfer=xfer, state=CrossState.PAID)
        return _OK

    def _process_cross_refuse(self, op: CrossRefuse) -> Outcome:
        xfer = op.transfer
        refusal = self._check_cross(xfer, source=False)
        if refusal is not None:
            return refusal
        tid = compute_transfer_id(xfer)
        record = self._cross.get(tid)
        if record is not None:
            return self._settled(record)
        if type(op.gateway) is not bytes or op.gateway not in self.gateway_keys:
            return Outcome(
                code=OutcomeCode.BAD_CERTIFICATE,
                detail="refusal not signed by a gateway of this AS",
            )
        message = compute_refusal_message(tid, xfer.dst_as)
        if not is_valid_ed25519(op.gateway, message, op.signature):
            return Outcome(
                code=OutcomeCode.BAD_CERTIFICATE, detail="refusal signature does not verify"
            )
        self._cross[tid] = CrossRecord(transfer=xfer, state=CrossState.REFUSED)
        return _OK

    def _process_cross_release(self, op: CrossRelease) -> Outcome:
        xfer = op.transfer
        refusal = self._check_cross(xfer, source=True)
        if refusal is not None:
            return refusal
        tid = compute_transfer_id(xfer)
        record = self._cross.get(tid)
        if record is None:
            return Outcome(code=OutcomeCode.UNKNOWN_TRANSFER, detail="transfer was never locked")
        if record.state is not CrossState.LOCKED:
            return self._settled(record)
        refusal = self._check_certificate(op.certificate, CrossState.PAID, xfer.dst_as, tid)
        if refusal is not None:
            return refusal
        lock = self._locks[tid]
        self._credit(BRIDGE_ACCOUNT, lock.amount)
        self._locks[tid] = msgspec.structs.replace(
            lock, state=LockState.RELEASED, released_to=BRIDGE_ACCOUNT
        )
        self._cross[tid] = CrossRecord(transfer=xfer, state=CrossState.RELEASED)
        return _OK

    def _process_cross_unlock(self, op: CrossUnlock) -> Outcome:
        xfer = op.transfer
        refusal = self._check_cross(xfer, source=True)
        if refusal is not None:
            return refusal
        tid = compute_transfer_id(xfer)
        record = self._cross.get(tid)
        if record is not None and record.state is not CrossState.LOCKED:
            return self._settled(record)
        if record is None and tid in self._locks:
            return Outcome(code=OutcomeCode.LOCK_ID_USED, detail="a plain lock has this id")
        refusal = self._check_certificate(op.certificate, CrossState.REFUSED, xfer.dst_as, tid)
        if refusal is not None:
            return refusal
        if record is None:
            self._cross[tid] = CrossRecord(transfer=xfer, state=CrossState.ABORTED)
            return _OK
        lock = self._locks[tid]
        self._credit(lock.owner, lock.amount)
        self._locks[tid] = msgspec.structs.replace(lock, state=LockState.UNLOCKED)
        self._cross[tid] = CrossRecord(transfer=xfer, state=CrossState.UNLOCKED)
        return _OK
