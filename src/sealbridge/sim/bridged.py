"""Bridged EVM chains in the simulator: real-format blocks and the GatewayEscrow's rules.

Theory of operation
-------------------
A gateway's enclave believes only blocks it verified itself (hash links from its sealed
anchor, receipts roots) and reads the escrows' events out of their receipts. For
gateways to run in the simulator, the chains they bridge must therefore give what a
node gives: :class:`BridgedChain` is one such chain, held by the chain model
(:class:`~sealbridge.sim.chain_model.ChainModel`, which makes a block of every bridged
chain with each of its own). Its blocks are real Prague headers over real receipts
(:mod:`sealbridge.sim.evm_blocks`), and its escrow's events are encoded exactly as the
Vyper contract emits them, so the enclave runs unchanged.

:class:`EscrowModel` holds the GatewayEscrow's rules (``evm/contracts/GatewayEscrow.vy``):

* ``lock`` (:class:`LockFunds`): a positive amount, a recipient, a destination escrow and
  chain, a deadline more than ``release_margin`` seconds ahead; the transfer id and lock
  reference are the contract's (:func:`~sealbridge.chain.bls_onchain.compute_transfer_id`,
  :func:`~sealbridge.chain.bls_onchain.compute_lock_ref`); an id is used once. Emits
  ``Locked``.
* ``release`` (:class:`ReleaseFunds`, on the destination): once per transfer, before
  the deadline minus the margin, out of the pool, with a threshold signature of the
  release message that verifies under the escrow's group key (real BLS). Emits
  ``Released``.
* ``commit`` / ``abort`` (:class:`SettleLock`, on the source): a locked transfer, with a
  threshold signature of the commit (the lock joins the pool) or abort (the sender is
  refunded) message. Emits ``Committed`` or ``Refunded``.
* the key: installed once by the admin (:class:`InstallEscrowKey`), standing in for the
  deployment with the committee's first group key. Key rotation is not modelled.

Senders are accounts named in the transaction (the simulator's nodes have no EVM
accounts); value is counted (pool, locked total, what each recipient was paid and each
sender refunded), not moved between accounts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address

from sealbridge.chain.bls_onchain import (
    compute_abort_message,
    compute_commit_message,
    compute_lock_ref,
    compute_release_message,
    compute_transfer_id,
    encode_g1,
)
from sealbridge.chain.errors import ChainConfigError
from sealbridge.chain.lightclient import BlockEvidence, EventLog
from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError
from sealbridge.core.ids import keccak
from sealbridge.crypto import bls
from sealbridge.interop.evm_gateway import LOCKED_TOPIC, RELEASED_TOPIC
from sealbridge.sim.evm_blocks import EvmChain

__all__ = [
    "BRIDGED_TXS",
    "BridgedChain",
    "EscrowKeyQuery",
    "EscrowModel",
    "InstallEscrowKey",
    "LockFunds",
    "LockStatus",
    "ReleaseFunds",
    "SettleLock",
    "escrow_address",
]

COMMITTED_TOPIC = keccak(b"Committed(bytes32,uint256,bytes32)")
REFUNDED_TOPIC = keccak(b"Refunded(bytes32,address,uint256,bool)")


def escrow_address(chain_id: int) -> str:
    """The simulated escrow's address on ``chain_id`` (checksummed)."""
    return to_checksum_address(keccak(b"sim/GatewayEscrow" + chain_id.to_bytes(8, "big"))[:20])


def _word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address.removeprefix("0x"))


class LockStatus(StrEnum):
    LOCKED = "locked"
    COMMITTED = "committed"
    REFUNDED = "refunded"


class LockFunds(Message, frozen=True):
    """``lock`` on ``chain_id``'s escrow, sent by the account ``sender``."""

    chain_id: int
    salt: bytes
    sender: str
    amount: int
    dest_chain_id: int
    dest_escrow: str
    recipient: str
    deadline: int


class ReleaseFunds(Message, frozen=True):
    """``release`` on ``chain_id``'s escrow (the destination of the transfer)."""

    chain_id: int
    transfer_id: bytes
    recipient: str
    amount: int
    source_chain_id: int
    source_escrow: str
    sender: str
    deadline: int
    signature: bytes  # compressed G2


class SettleLock(Message, frozen=True):
    """``commit`` (``abort=False``) or ``abort`` on ``chain_id``'s escrow (the source)."""

    chain_id: int
    transfer_id: bytes
    signature: bytes
    abort: bool = False


class InstallEscrowKey(Message, frozen=True):
    """The admin deploys ``chain_id``'s escrow with the committee's group key."""

    chain_id: int
    group_key: bytes  # 48 bytes, compressed G1


class EscrowKeyQuery(Message, frozen=True):
    chain_id: int  # -> bytes (the escrow's group key; empty before it is deployed)


BRIDGED_TXS = (LockFunds, ReleaseFunds, SettleLock, InstallEscrowKey)


@dataclass
class _Lock:
    sender: str
    amount: int
    deadline: int
    lock_ref: bytes
    state: LockStatus = LockStatus.LOCKED


@dataclass
class EscrowModel:
    """One chain's GatewayEscrow (see the module docstring)."""

    chain_id: int
    pool: int
    release_margin: int = 5  # seconds
    address: str = ""
    group_key: bytes = b""
    locks: dict[bytes, _Lock] = field(default_factory=dict)
    released: set[bytes] = field(default_factory=set)
    locked_total: int = 0
    paid: dict[str, int] = field(default_factory=dict)  # recipient -> amount released
    refunded: dict[str, int] = field(default_factory=dict)  # sender -> amount refunded

    def __post_init__(self) -> None:
        self.address = self.address or escrow_address(self.chain_id)

    def apply(self, tx: Message, timestamp: int, admin: bool) -> tuple[str, list[EventLog]]:
        """Apply one transaction at a block of ``timestamp``: (revert reason or "", logs)."""
        if isinstance(tx, InstallEscrowKey):
            if not admin:
                return "only the admin deploys", []
            if self.group_key:
                return "the escrow is deployed already", []
            try:
                encode_g1(tx.group_key)  # a G1 point, as the contract's _is_valid_key
            except ChainConfigError:
                return "invalid group key", []
            self.group_key = bytes(tx.group_key)
            return "", []
        if not self.group_key:
            return "the escrow is not deployed", []
        if isinstance(tx, LockFunds):
            return self._lock(tx, timestamp)
        if isinstance(tx, ReleaseFunds):
            return self._release(tx, timestamp)
        if isinstance(tx, SettleLock):
            return self._settle(tx)
        return f"the escrow runs no {type(tx).__name__}", []

    def _lock(self, tx: LockFunds, timestamp: int) -> tuple[str, list[EventLog]]:
        if tx.amount <= 0:
            return "zero amount", []
        if tx.dest_chain_id == 0:
            return "empty destination chain", []
        if tx.deadline <= timestamp + self.release_margin:
            return "deadline too soon", []
        try:
            transfer_id = compute_transfer_id(
                chain_id=self.chain_id, escrow=self.address, sender=tx.sender, salt=tx.salt
            )
            lock_ref = compute_lock_ref(
                source_chain_id=self.chain_id,
                source_escrow=self.address,
                transfer_id=transfer_id,
                sender=tx.sender,
                amount=tx.amount,
                dest_chain_id=tx.dest_chain_id,
                dest_escrow=tx.dest_escrow,
                recipient=tx.recipient,
                deadline=tx.deadline,
            )
        except ChainConfigError as exc:
            return exc.message, []
        if transfer_id in self.locks:
            return "transfer id already used", []
        self.locks[transfer_id] = _Lock(tx.sender, tx.amount, tx.deadline, lock_ref)
        self.locked_total += tx.amount
        log = EventLog(
            address=bytes.fromhex(self.address[2:]),
            topics=[LOCKED_TOPIC, transfer_id, _word(tx.sender)],
            data=abi_encode(
                ["uint256", "uint256", "address", "address", "uint256", "bytes32"],
                [tx.amount, tx.dest_chain_id, tx.dest_escrow, tx.recipient, tx.deadline, lock_ref],
            ),
        )
        return "", [log]

    def _release(self, tx: ReleaseFunds, timestamp: int) -> tuple[str, list[EventLog]]:
        if tx.transfer_id in self.released:
            return "transfer already released", []
        if tx.amount <= 0:
            return "zero amount", []
        if timestamp + self.release_margin > tx.deadline:
            return "release window closed", []
        if tx.amount > self.pool:
            return "insufficient liquidity", []
        try:
            lock_ref = compute_lock_ref(
                source_chain_id=tx.source_chain_id,
                source_escrow=tx.source_escrow,
                transfer_id=tx.transfer_id,
                sender=tx.sender,
                amount=tx.amount,
                dest_chain_id=self.chain_id,
                dest_escrow=self.address,
                recipient=tx.recipient,
                deadline=tx.deadline,
            )
            message = compute_release_message(
                escrow=self.address,
                chain_id=self.chain_id,
                transfer_id=tx.transfer_id,
                recipient=tx.recipient,
                amount=tx.amount,
                lock_ref=lock_ref,
            )
        except ChainConfigError as exc:
            return exc.message, []
        if not bls.verify(self.group_key, message, tx.signature):
            return "invalid committee signature", []
        self.released.add(tx.transfer_id)
        self.pool -= tx.amount
        recipient = to_checksum_address(tx.recipient)
        self.paid[recipient] = self.paid.get(recipient, 0) + tx.amount
        log = EventLog(
            address=bytes.fromhex(self.address[2:]),
            topics=[RELEASED_TOPIC, tx.transfer_id, _word(recipient)],
            data=abi_encode(
                ["uint256", "uint256", "bytes32"], [tx.amount, tx.source_chain_id, lock_ref]
            ),
        )
        return "", [log]

    def _settle(self, tx: SettleLock) -> tuple[str, list[EventLog]]:
        lock = self.locks.get(tx.transfer_id)
        if lock is None:
            return "unknown transfer", []
        if lock.state is not LockStatus.LOCKED:
            return "transfer already settled", []
        make = compute_abort_message if tx.abort else compute_commit_message
        message = make(
            escrow=self.address,
            chain_id=self.chain_id,
            transfer_id=tx.transfer_id,
            lock_ref=lock.lock_ref,
        )
        if not bls.verify(self.group_key, message, tx.signature):
            return "invalid committee signature", []
        self.locked_total -= lock.amount
        if tx.abort:
            lock.state = LockStatus.REFUNDED
            self.refunded[lock.sender] = self.refunded.get(lock.sender, 0) + lock.amount
            log = EventLog(
                address=bytes.fromhex(self.address[2:]),
                topics=[REFUNDED_TOPIC, tx.transfer_id, _word(lock.sender)],
                data=abi_encode(["uint256", "bool"], [lock.amount, True]),
            )
        else:
            lock.state = LockStatus.COMMITTED
            self.pool += lock.amount
            log = EventLog(
                address=bytes.fromhex(self.address[2:]),
                topics=[COMMITTED_TOPIC, tx.transfer_id],
                data=abi_encode(["uint256", "bytes32"], [lock.amount, lock.lock_ref]),
            )
        return "", [log]


class BridgedChain:
    """A bridged chain: its blocks and its escrow (see the module docstring)."""

    def __init__(self, chain_id: int, *, pool: int, release_margin: int = 5) -> None:
        if chain_id <= 0 or pool < 0:
            raise ConfigError("a bridged chain needs a positive id and a pool >= 0")
        self.chain = EvmChain(chain_id)
        self.escrow = EscrowModel(chain_id, pool, release_margin)
        self.pending: list[list[EventLog]] = []  # the logs of this block's transactions

    @property
    def chain_id(self) -> int:
        return self.chain.chain_id

    @property
    def number(self) -> int:
        return self.chain.number

    def apply(self, tx: Message, timestamp: int, admin: bool) -> str:
        """Apply a transaction to the block being made; its revert reason, or ``""``."""
        reason, logs = self.escrow.apply(tx, timestamp, admin)
        if not reason:
            self.pending.append(logs)
        return reason

    def seal(self, timestamp: int) -> BlockEvidence:
        """Make the block of the transactions applied since the last one."""
        txs, self.pending = self.pending, []
        return self.chain.seal(txs, timestamp)
