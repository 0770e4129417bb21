"""Typed wrapper of the HTLC contract and the standard two-chain atomic swap.

Theory of operation: a hashed timelock contract (``contracts/HTLC.vy``) holds ETH for a
recipient under ``sha256(preimage) == hashlock`` until a unix ``timelock``. Before the
timelock anyone may ``claim`` with the preimage (the recipient is paid and the preimage
becomes public); from the timelock on anyone may ``refund`` (the sender is paid).
States per swap id: NONE -> LOCKED -> CLAIMED | REFUNDED (:class:`HtlcState`).

The swap between Alice (coins on chain A) and Bob (coins on chain B),
:func:`run_htlc_swap`, takes four transactions in this order:

1. Alice picks a secret ``s`` and locks on A for Bob under ``H = sha256(s)``, timelock
   ``T_A``;
2. Bob checks Alice's lock on A and locks on B for Alice under the same ``H`` with an
   earlier timelock ``T_B < T_A``;
3. Alice checks Bob's lock on B and claims it with ``s``, revealing ``s`` on B;
4. Bob reads ``s`` from B and claims on A before ``T_A``.

If Alice never claims, both refund after their timelocks; if she claims on B, Bob has
``T_A - T_B`` seconds to claim on A. :func:`run_htlc_swap` returns each step's receipt
and gas so benchmarks can compare it with the gateway escrow (:mod:`.escrow`).

Revert reasons are the strings in :class:`HtlcRevert`; the adapter raises
``TransactionReverted(reason)``.
"""

from __future__ import annotations

import hashlib
import os
from enum import IntEnum, StrEnum

from eth_abi.abi import encode as abi_encode

from sealbridge.chain.abi import checksum
from sealbridge.chain.errors import ChainConfigError, ChainError
from sealbridge.core.encoding import Message
from sealbridge.core.ids import keccak
from sealbridge.evm.adapter import ChainAdapter, ChainStep, StepsResult, TxReceipt
from sealbridge.evm.bound import BoundContract
from sealbridge.evm.compiler import compile_contract

__all__ = [
    "CONTRACT_NAME",
    "HTLC",
    "HtlcLock",
    "HtlcRevert",
    "HtlcState",
    "HtlcSwapError",
    "HtlcSwapResult",
    "SwapRecord",
    "SwapStep",
    "compute_hashlock",
    "compute_swap_id",
    "deploy_htlc",
    "run_htlc_swap",
]

CONTRACT_NAME = "HTLC"
PREIMAGE_SIZE = 32


class HtlcState(IntEnum):
    """State of a swap id on chain."""

    NONE = 0
    LOCKED = 1
    CLAIMED = 2
    REFUNDED = 3


class HtlcRevert(StrEnum):
    """Every revert reason of the HTLC contract."""

    ZERO_AMOUNT = "zero amount"
    EMPTY_RECIPIENT = "empty recipient"
    TIMELOCK_NOT_IN_FUTURE = "timelock not in the future"
    SWAP_EXISTS = "swap already exists"
    UNKNOWN_SWAP = "unknown swap"
    ALREADY_SETTLED = "swap already settled"
    TIMELOCK_EXPIRED = "timelock expired"
    WRONG_PREIMAGE = "wrong preimage"
    TIMELOCK_NOT_EXPIRED = "timelock not expired"


class HtlcSwapError(ChainError):
    """A counterparty's lock is not what the swap needs (the swap stops there)."""

    code = "chain_htlc_swap"


class SwapRecord(Message, frozen=True):
    """HTLC.get_swap (``preimage`` is zero until claimed)."""

    swap_id: bytes
    sender: str
    recipient: str
    amount: int
    hashlock: bytes
    timelock: int
    preimage: bytes
    state: HtlcState


class HtlcLock(Message, frozen=True):
    """A mined lock: its swap id and receipt."""

    swap_id: bytes
    receipt: TxReceipt


SwapStep = ChainStep  # one transaction of a two-chain swap


class HtlcSwapResult(StepsResult, frozen=True):
    """What :func:`run_htlc_swap` did: the four steps in order."""

    hashlock: bytes
    swap_id_a: bytes
    swap_id_b: bytes


def compute_hashlock(preimage: bytes) -> bytes:
    """``sha256(preimage)`` of a 32-byte preimage (what ``claim`` checks)."""
    return hashlib.sha256(_preimage(preimage)).digest()


def compute_swap_id(
    *,
    chain_id: int,
    htlc: str,
    sender: str,
    recipient: str,
    amount: int,
    hashlock: bytes,
    timelock: int,
) -> bytes:
    """The id ``lock`` gives a swap."""
    return keccak(
        abi_encode(
            ["uint256", "address", "address", "address", "uint256", "bytes32", "uint256"],
            [
                chain_id,
                checksum(htlc),
                checksum(sender),
                checksum(recipient),
                amount,
                _b32(hashlock, "hashlock"),
                timelock,
            ],
        )
    )


def _b32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ChainConfigError(f"{what} must be 32 bytes")
    return bytes(value)


def _preimage(value: bytes) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != PREIMAGE_SIZE:
        raise ChainConfigError(f"the preimage must be {PREIMAGE_SIZE} bytes")
    return bytes(value)


class HTLC(BoundContract):
    """The HTLC contract bound to an adapter (arguments first, the sender's key last)."""

    name = CONTRACT_NAME

    # ------------------------------------------------------------------ transactions

    def lock(
        self, hashlock: bytes, recipient: str, timelock: int, amount: int, sender_key: bytes
    ) -> HtlcLock:
        """Lock ``amount`` wei for ``recipient`` until ``timelock`` (unix seconds)."""
        receipt = self._transact(
            "lock",
            [_b32(hashlock, "hashlock"), checksum(recipient), timelock],
            sender_key,
            value=amount,
        )
        for name, args in self.decode_events(receipt):
            if name == "Locked":
                return HtlcLock(swap_id=bytes(args["swap_id"]), receipt=receipt)
        raise ChainError("HTLC lock receipt carries no Locked event")

    def claim(self, swap_id: bytes, preimage: bytes, sender_key: bytes) -> TxReceipt:
        """Pay the recipient (anyone may send it; the preimage becomes public)."""
        return self._transact("claim", [_b32(swap_id, "swap_id"), _preimage(preimage)], sender_key)

    def refund(self, swap_id: bytes, sender_key: bytes) -> TxReceipt:
        """Pay the sender back (from the timelock on; anyone may send it)."""
        return self._transact("refund", [_b32(swap_id, "swap_id")], sender_key)

    # ------------------------------------------------------------------ views

    def get_swap(self, swap_id: bytes) -> SwapRecord | None:
        """The swap, or None if there is no such swap id."""
        (raw,) = self._call("get_swap", _b32(swap_id, "swap_id"))
        if int(raw[6]) == HtlcState.NONE:
            return None
        return SwapRecord(
            swap_id=bytes(swap_id),
            sender=checksum(raw[0]),
            recipient=checksum(raw[1]),
            amount=int(raw[2]),
            hashlock=bytes(raw[3]),
            timelock=int(raw[4]),
            preimage=bytes(raw[5]),
            state=HtlcState(int(raw[6])),
        )

    def get_locked_total(self) -> int:
        return int(self._call("locked_total")[0])

    def get_preimage(self, swap_id: bytes) -> bytes | None:
        """The preimage a claim revealed (None while unclaimed)."""
        swap = self.get_swap(swap_id)
        if swap is None or swap.state != HtlcState.CLAIMED:
            return None
        return swap.preimage

    def compute_swap_id(
        self, sender: str, recipient: str, amount: int, hashlock: bytes, timelock: int
    ) -> bytes:
        return compute_swap_id(
            chain_id=self.chain_id,
            htlc=self.address,
            sender=sender,
            recipient=recipient,
            amount=amount,
            hashlock=hashlock,
            timelock=timelock,
        )


def deploy_htlc(adapter: ChainAdapter, deployer_key: bytes) -> str:
    """Compile and deploy an HTLC contract (it has no owner)."""
    compiled = compile_contract(CONTRACT_NAME, evm_version=adapter.evm_version)
    return adapter.deploy(deployer_key, compiled.bytecode)


def _check_lock(
    swap: SwapRecord | None,
    *,
    sender: str,
    recipient: str,
    amount: int,
    hashlock: bytes,
    min_timelock: int,
    what: str,
) -> None:
    if swap is None or swap.state != HtlcState.LOCKED:
        raise HtlcSwapError(f"{what}: no open lock")
    if swap.sender != sender or swap.recipient != recipient:
        raise HtlcSwapError(f"{what}: wrong parties")
    if swap.amount != amount or swap.hashlock != hashlock:
        raise HtlcSwapError(f"{what}: wrong amount or hashlock")
    if swap.timelock < min_timelock:
        raise HtlcSwapError(f"{what}: timelock too early")


def run_htlc_swap(
    chain_a: HTLC,
    chain_b: HTLC,
    *,
    alice_key: bytes,
    bob_key: bytes,
    amount_a: int,
    amount_b: int,
    secret: bytes | None = None,
    timelock_a: int = 7200,
    timelock_b: int = 3600,
) -> HtlcSwapResult:
    """Alice swaps ``amount_a`` on chain A for Bob's ``amount_b`` on chain B.

    The four transactions run in the safe order (module docstring); each party checks
    the other's lock before acting on it. ``timelock_a`` / ``timelock_b`` are seconds
    from each chain's latest block, ``timelock_b < timelock_a``. ``secret`` (32 bytes) is
    Alice's preimage (random if not given)."""
    if not 0 < timelock_b < timelock_a:
        raise ChainConfigError("need 0 < timelock_b < timelock_a (Bob must outlive Alice)")
    if amount_a <= 0 or amount_b <= 0:
        raise ChainConfigError("amounts must be positive")
    preimage = _preimage(secret) if secret is not None else os.urandom(PREIMAGE_SIZE)
    hashlock = compute_hashlock(preimage)
    alice = ChainAdapter.address_of(alice_key)
    bob = ChainAdapter.address_of(bob_key)
    steps: list[SwapStep] = []

    def record(name: str, htlc: HTLC, sender: str, receipt: TxReceipt) -> None:
        steps.append(SwapStep(name=name, chain_id=htlc.chain_id, sender=sender, receipt=receipt))

    # 1. Alice locks on A for Bob.
    t_a = chain_a.adapter.get_block("latest").timestamp + timelock_a
    lock_a = chain_a.lock(hashlock, bob, t_a, amount_a, alice_key)
    record("lock_a", chain_a, alice, lock_a.receipt)

    # 2. Bob checks Alice's lock, then locks on B for Alice with an earlier timelock.
    t_b = chain_b.adapter.get_block("latest").timestamp + timelock_b
    _check_lock(
        chain_a.get_swap(lock_a.swap_id),
        sender=alice,
        recipient=bob,
        amount=amount_a,
        hashlock=hashlock,
        min_timelock=t_a,
        what="Alice's lock on A",
    )
    lock_b = chain_b.lock(hashlock, alice, t_b, amount_b, bob_key)
    record("lock_b", chain_b, bob, lock_b.receipt)

    # 3. Alice checks Bob's lock, then claims on B (revealing the preimage).
    _check_lock(
        chain_b.get_swap(lock_b.swap_id),
        sender=bob,
        recipient=alice,
        amount=amount_b,
        hashlock=hashlock,
        min_timelock=t_b,
        what="Bob's lock on B",
    )
    record("claim_b", chain_b, alice, chain_b.claim(lock_b.swap_id, preimage, alice_key))

    # 4. Bob learns the preimage from chain B and claims on A.
    revealed = chain_b.get_preimage(lock_b.swap_id)
    if revealed is None or compute_hashlock(revealed) != hashlock:
        raise HtlcSwapError("no valid preimage revealed on chain B")
    record("claim_a", chain_a, bob, chain_a.claim(lock_a.swap_id, revealed, bob_key))
    return HtlcSwapResult(
        hashlock=hashlock, swap_id_a=lock_a.swap_id, swap_id_b=lock_b.swap_id, steps=steps
    )
