"""Typed wrapper of the GatewayEscrow contract: gateway-mode cross-chain transfers.

Theory of operation
-------------------
The same ``contracts/GatewayEscrow.vy`` is deployed on every chain with the gateway
committee's threshold BLS group key. A transfer of ETH from chain A to chain B
(InterTrust's Lock -> Verify -> Release/Abort):

1. **lock** (A, the user): ``msg.value`` is locked under ``transfer_id =
   keccak(TRANSFER_TAG, chain A, escrow A, sender, salt)`` with the destination chain,
   escrow and recipient and a ``deadline`` (unix time). The lock reference ``lock_ref``
   hashes all of it (:func:`~sealbridge.chain.bls_onchain.compute_lock_ref`).
2. **release** (B, anyone relays): the committee threshold-signs the release message
   ``(RELEASE_TAG, chain B, escrow B, transfer_id, recipient, amount, lock_ref)``; escrow B
   recomputes ``lock_ref`` from the lock's fields (so it pays only for a lock naming *it*),
   hashes the message to G2 on chain, checks the pairing and pays out of its pool, once
   per transfer id and only while ``now + release_margin <= deadline``.
3. **commit** (A): the committee signs ``(COMMIT_TAG, chain A, escrow A, transfer_id,
   lock_ref)`` once it has seen the release final; the locked ETH joins A's pool.
   Otherwise **abort** (committee-signed, any time) or **refund** (anyone, after the
   deadline) pays the sender back.

States: on A ``NONE -> LOCKED -> COMMITTED | REFUNDED`` (:class:`EscrowLockState`); on B a
transfer id is released or not. Atomicity: a release is impossible after ``deadline -
release_margin`` (B's clock) and a timeout refund is impossible before ``deadline`` (A's
clock), so as long as the committee commits within ``release_margin`` of a release
(minus the clock skew between the chains), every transfer ends either released on B and
committed on A, or refunded on A and never released on B. The honest committee never
signs both a release and an abort for one transfer.

Signatures are the committee's 96-byte compressed BLS signatures (IETF POP ciphersuite,
:mod:`sealbridge.crypto.bls`), converted here to the 256-byte EIP-2537 form the contract
takes. Revert reasons are listed in :class:`EscrowRevert`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import IntEnum, StrEnum
from typing import Any

from sealbridge.chain.abi import AbiCodec, checksum
from sealbridge.chain.bls_onchain import (
    G2_SIZE,
    compute_abort_message,
    compute_commit_message,
    compute_key_rotation_message,
    compute_lock_ref,
    compute_release_message,
    compute_transfer_id,
    decode_g1,
    encode_g1,
    encode_g2,
)
from sealbridge.chain.errors import ChainConfigError, ChainError
from sealbridge.core.encoding import Message
from sealbridge.crypto.bls import SIGNATURE_SIZE
from sealbridge.evm.adapter import ChainAdapter, ChainStep, StepsResult, TxReceipt
from sealbridge.evm.bound import BoundContract
from sealbridge.evm.compiler import compile_contract

__all__ = [
    "CONTRACT_NAME",
    "EscrowLock",
    "EscrowLockState",
    "EscrowRevert",
    "GatewayEscrow",
    "GatewayTransferResult",
    "LockedTransfer",
    "TransferStep",
    "deploy_gateway_escrow",
    "run_gateway_transfer",
]

CONTRACT_NAME = "GatewayEscrow"
MAX_MESSAGE = 2048


class EscrowLockState(IntEnum):
    """State of a transfer id on its source escrow."""

    NONE = 0
    LOCKED = 1
    COMMITTED = 2
    REFUNDED = 3


class EscrowRevert(StrEnum):
    """Every revert reason of the GatewayEscrow contract."""

    ZERO_AMOUNT = "zero amount"
    EMPTY_RECIPIENT = "empty recipient"
    EMPTY_DEST_ESCROW = "empty destination escrow"
    EMPTY_DEST_CHAIN = "empty destination chain"
    DEADLINE_TOO_SOON = "deadline too soon"
    TRANSFER_ID_USED = "transfer id already used"
    UNKNOWN_TRANSFER = "unknown transfer"
    ALREADY_SETTLED = "transfer already settled"
    DEADLINE_NOT_REACHED = "deadline not reached"
    ALREADY_RELEASED = "transfer already released"
    RELEASE_WINDOW_CLOSED = "release window closed"
    INSUFFICIENT_LIQUIDITY = "insufficient liquidity"
    INVALID_SIGNATURE = "invalid committee signature"
    INVALID_KEY = "invalid group key"
    OUT_OF_GAS = "out of gas for the pairing"


class EscrowLock(Message, frozen=True):
    """GatewayEscrow.get_lock: what the source escrow stores for a transfer id."""

    transfer_id: bytes
    sender: str
    amount: int
    deadline: int
    lock_ref: bytes
    state: EscrowLockState


class LockedTransfer(Message, frozen=True):
    """Everything a source lock says (its ``Locked`` event plus where it was emitted):
    what the committee signs for and what ``release`` takes."""

    transfer_id: bytes
    source_chain_id: int
    source_escrow: str
    sender: str
    amount: int
    dest_chain_id: int
    dest_escrow: str
    recipient: str
    deadline: int
    lock_ref: bytes

    def compute_lock_ref(self) -> bytes:
        return compute_lock_ref(
            source_chain_id=self.source_chain_id,
            source_escrow=self.source_escrow,
            transfer_id=self.transfer_id,
            sender=self.sender,
            amount=self.amount,
            dest_chain_id=self.dest_chain_id,
            dest_escrow=self.dest_escrow,
            recipient=self.recipient,
            deadline=self.deadline,
        )

    def compute_release_message(self) -> bytes:
        """The bytes the destination escrow hashes to G2 (lock_ref recomputed)."""
        return compute_release_message(
            escrow=self.dest_escrow,
            chain_id=self.dest_chain_id,
            transfer_id=self.transfer_id,
            recipient=self.recipient,
            amount=self.amount,
            lock_ref=self.compute_lock_ref(),
        )

    def compute_commit_message(self) -> bytes:
        return compute_commit_message(
            escrow=self.source_escrow,
            chain_id=self.source_chain_id,
            transfer_id=self.transfer_id,
            lock_ref=self.lock_ref,
        )

    def compute_abort_message(self) -> bytes:
        return compute_abort_message(
            escrow=self.source_escrow,
            chain_id=self.source_chain_id,
            transfer_id=self.transfer_id,
            lock_ref=self.lock_ref,
        )


def _b32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ChainConfigError(f"{what} must be 32 bytes")
    return bytes(value)


def to_signature_arg(signature: bytes) -> bytes:
    """A 96-byte compressed signature as the contract's 256-byte EIP-2537 form (checked);
    256 bytes pass unchanged (the contract rejects invalid points itself)."""
    if isinstance(signature, bytes | bytearray) and len(signature) == SIGNATURE_SIZE:
        return encode_g2(bytes(signature))
    if isinstance(signature, bytes | bytearray) and len(signature) == G2_SIZE:
        return bytes(signature)
    raise ChainConfigError(f"a signature is {SIGNATURE_SIZE} (compressed) or {G2_SIZE} bytes")


class GatewayEscrow(BoundContract):
    """The GatewayEscrow contract bound to an adapter (arguments first, the sender's key
    last)."""

    name = CONTRACT_NAME

    def to_locked_transfer(self, args: dict[str, Any]) -> LockedTransfer:
        """A ``Locked`` event of this escrow as a :class:`LockedTransfer`."""
        return LockedTransfer(
            transfer_id=bytes(args["transfer_id"]),
            source_chain_id=self.chain_id,
            source_escrow=self.address,
            sender=checksum(args["sender"]),
            amount=int(args["amount"]),
            dest_chain_id=int(args["dest_chain_id"]),
            dest_escrow=checksum(args["dest_escrow"]),
            recipient=checksum(args["recipient"]),
            deadline=int(args["deadline"]),
            lock_ref=bytes(args["lock_ref"]),
        )

    # ------------------------------------------------------------------ source chain

    def lock(
        self,
        salt: bytes,
        dest_chain_id: int,
        dest_escrow: str,
        recipient: str,
        deadline: int,
        amount: int,
        sender_key: bytes,
    ) -> tuple[LockedTransfer, TxReceipt]:
        """Lock ``amount`` wei for ``recipient`` at ``dest_escrow`` on ``dest_chain_id``."""
        args = [
            _b32(salt, "salt"),
            dest_chain_id,
            checksum(dest_escrow),
            checksum(recipient),
            deadline,
        ]
        receipt = self._transact("lock", args, sender_key, value=amount)
        for name, event in self.decode_events(receipt):
            if name == "Locked":
                return self.to_locked_transfer(event), receipt
        raise ChainError("GatewayEscrow lock receipt carries no Locked event")

    def commit(self, transfer_id: bytes, signature: bytes, sender_key: bytes) -> TxReceipt:
        """The committee's commit: the lock joins this escrow's pool."""
        args = [_b32(transfer_id, "transfer_id"), to_signature_arg(signature)]
        return self._transact("commit", args, sender_key)

    def abort(self, transfer_id: bytes, signature: bytes, sender_key: bytes) -> TxReceipt:
        """The committee's abort: refund the sender now."""
        args = [_b32(transfer_id, "transfer_id"), to_signature_arg(signature)]
        return self._transact("abort", args, sender_key)

    def refund(self, transfer_id: bytes, sender_key: bytes) -> TxReceipt:
        """Refund the sender after the deadline (anyone may send it)."""
        return self._transact("refund", [_b32(transfer_id, "transfer_id")], sender_key)

    # ------------------------------------------------------------------ destination chain

    def provide_liquidity(self, amount: int, sender_key: bytes) -> TxReceipt:
        return self._transact("provide_liquidity", [], sender_key, value=amount)

    def release(
        self,
        transfer: LockedTransfer,
        signature: bytes,
        sender_key: bytes,
        *,
        gas: int | None = None,
    ) -> TxReceipt:
        """Pay ``transfer.recipient`` out of the pool (anyone may relay the signature)."""
        args = [
            _b32(transfer.transfer_id, "transfer_id"),
            checksum(transfer.recipient),
            transfer.amount,
            transfer.source_chain_id,
            checksum(transfer.source_escrow),
            checksum(transfer.sender),
            transfer.deadline,
            to_signature_arg(signature),
        ]
        return self._transact("release", args, sender_key, gas=gas)

    # ------------------------------------------------------------------ committee key

    def rotate_key(self, new_group_key: bytes, signature: bytes, sender_key: bytes) -> TxReceipt:
        """Install ``new_group_key`` (48 bytes compressed), signed by the current key over
        :meth:`compute_key_rotation_message`."""
        args = [encode_g1(new_group_key), to_signature_arg(signature)]
        return self._transact("rotate_key", args, sender_key)

    # ------------------------------------------------------------------ messages

    def compute_release_message(self, transfer: LockedTransfer) -> bytes:
        """The release message this escrow checks for ``transfer`` (it must name it)."""
        if transfer.dest_chain_id != self.chain_id or transfer.dest_escrow != self.address:
            raise ChainConfigError("the transfer is not destined for this escrow")
        return transfer.compute_release_message()

    def compute_key_rotation_message(self, new_group_key: bytes) -> bytes:
        return compute_key_rotation_message(
            escrow=self.address,
            chain_id=self.chain_id,
            epoch=self.get_key_epoch() + 1,
            new_key=encode_g1(new_group_key),
        )

    def compute_transfer_id(self, sender: str, salt: bytes) -> bytes:
        return compute_transfer_id(
            chain_id=self.chain_id, escrow=self.address, sender=sender, salt=salt
        )

    # ------------------------------------------------------------------ views

    def get_lock(self, transfer_id: bytes) -> EscrowLock | None:
        """The source lock, or None if this escrow has no such transfer id."""
        (raw,) = self._call("get_lock", _b32(transfer_id, "transfer_id"))
        if int(raw[4]) == EscrowLockState.NONE:
            return None
        return EscrowLock(
            transfer_id=bytes(transfer_id),
            sender=checksum(raw[0]),
            amount=int(raw[1]),
            deadline=int(raw[2]),
            lock_ref=bytes(raw[3]),
            state=EscrowLockState(int(raw[4])),
        )

    def is_released(self, transfer_id: bytes) -> bool:
        return bool(self._call("released", _b32(transfer_id, "transfer_id"))[0])

    def get_pool(self) -> int:
        return int(self._call("pool")[0])

    def get_locked_total(self) -> int:
        return int(self._call("locked_total")[0])

    def get_release_margin(self) -> int:
        return int(self._call("release_margin")[0])

    def get_key_epoch(self) -> int:
        return int(self._call("key_epoch")[0])

    def get_group_key(self) -> bytes:
        """The committee key as stored: EIP-2537 G1, 128 bytes."""
        return bytes(self._call("group_key")[0])

    def get_group_public_key(self) -> bytes:
        """The committee key, 48 bytes compressed."""
        return decode_g1(self.get_group_key())

    def hash_to_g2(self, message: bytes) -> bytes:
        """The contract's on-chain hash_to_G2 (EIP-2537, 256 bytes)."""
        if len(message) > MAX_MESSAGE:
            raise ChainConfigError(f"the contract hashes at most {MAX_MESSAGE} bytes")
        return bytes(self._call("hash_to_g2", bytes(message))[0])

    def is_valid_signature(self, message: bytes, signature: bytes) -> bool:
        """True when the contract's ``verify_signature`` view accepts ``signature`` (current
        key) over ``message``."""
        if len(message) > MAX_MESSAGE:
            raise ChainConfigError(f"the contract hashes at most {MAX_MESSAGE} bytes")
        return bool(self._call("verify_signature", bytes(message), to_signature_arg(signature))[0])

    def get_release_message(self, transfer: LockedTransfer) -> bytes:
        """The bytes ``release`` would hash for ``transfer`` (computed by the contract)."""
        (raw,) = self._call(
            "get_release_message",
            _b32(transfer.transfer_id, "transfer_id"),
            checksum(transfer.recipient),
            transfer.amount,
            transfer.source_chain_id,
            checksum(transfer.source_escrow),
            checksum(transfer.sender),
            transfer.deadline,
        )
        return bytes(raw)


def deploy_gateway_escrow(
    adapter: ChainAdapter, deployer_key: bytes, group_public_key: bytes, release_margin: int
) -> str:
    """Compile and deploy a GatewayEscrow for the committee key ``group_public_key``
    (48 bytes compressed). ``release_margin`` (seconds): how long before a lock's deadline
    releases stop, i.e. the time the committee has to commit on the source chain."""
    if release_margin < 1:
        raise ChainConfigError("release_margin must be at least one second")
    compiled = compile_contract(CONTRACT_NAME, evm_version=adapter.evm_version)
    ctor = AbiCodec(compiled.abi).encode_constructor([encode_g1(group_public_key), release_margin])
    return adapter.deploy(deployer_key, compiled.bytecode, ctor)


# --------------------------------------------------------------------------- one transfer


TransferStep = ChainStep  # one transaction of a gateway transfer


class GatewayTransferResult(StepsResult, frozen=True):
    """What :func:`run_gateway_transfer` did: lock (A), release (B), commit (A)."""

    transfer: LockedTransfer


def run_gateway_transfer(
    source: GatewayEscrow,
    dest: GatewayEscrow,
    *,
    sign: Callable[[bytes], bytes],
    sender_key: bytes,
    relayer_key: bytes,
    recipient: str,
    amount: int,
    deadline_seconds: int = 7200,
    salt: bytes | None = None,
) -> GatewayTransferResult:
    """Move ``amount`` from ``sender_key`` on the source chain to ``recipient`` on the
    destination chain: lock (A, sender), release (B, relayer), commit (A, relayer).

    ``sign(message) -> signature`` stands for the gateway committee: it returns the
    threshold BLS signature (96 bytes compressed) of exactly ``message``."""
    deadline = source.adapter.get_block("latest").timestamp + deadline_seconds
    sender = ChainAdapter.address_of(sender_key)
    relayer = ChainAdapter.address_of(relayer_key)
    transfer, lock_receipt = source.lock(
        salt if salt is not None else os.urandom(32),
        dest.chain_id,
        dest.address,
        recipient,
        deadline,
        amount,
        sender_key,
    )
    steps = [
        TransferStep(name="lock", chain_id=source.chain_id, sender=sender, receipt=lock_receipt)
    ]
    release_receipt = dest.release(
        transfer, sign(dest.compute_release_message(transfer)), relayer_key
    )
    steps.append(
        TransferStep(
            name="release", chain_id=dest.chain_id, sender=relayer, receipt=release_receipt
        )
    )
    commit_receipt = source.commit(
        transfer.transfer_id, sign(transfer.compute_commit_message()), relayer_key
    )
    steps.append(
        TransferStep(
            name="commit", chain_id=source.chain_id, sender=relayer, receipt=commit_receipt
        )
    )
    return GatewayTransferResult(transfer=transfer, steps=steps)
