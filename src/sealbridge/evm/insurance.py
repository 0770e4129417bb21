"""Typed wrapper of the InsurancePool contract: sybil bonds and the matcher's insurance.

Theory of operation: ``contracts/InsurancePool.vy`` holds two kinds of ETH. Deposit-key
owners post *bonds* (``post_bond``), so that offering many keys under many identities
costs real money; requesters pay matching *fees* into the shared *pool*
(``pay_fee``). The *operator* -- the Ethereum address of the matcher enclave -- slashes
a misbehaving owner (``slash``: up to the requested amount of its bond moves into the
pool and the owner is marked slashed for good) and compensates victims out of the pool
(``compensate``: once per claim id, never more than the pool holds). An owner who was
never slashed leaves in two steps: ``request_unbond`` starts the clock, and
``withdraw_bond`` pays out once ``unbonding_period`` seconds have passed since the last
request; a withdrawal ends the request and posting more bond cancels it. The matcher
must not count a bond with a pending request (:meth:`InsurancePool.get_unbond_requested_at`
!= 0) -- the unbonding period is its window to slash. The owner (deployer) may replace
the operator.

Arguments are checked here first (``ChainConfigError``); state-dependent refusals come
back as ``TransactionReverted`` with one of the reasons in :class:`InsuranceRevert`.
Slashes and compensations are read back from the event log as typed records.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sealbridge.chain.abi import AbiCodec, checksum
from sealbridge.chain.errors import ChainConfigError
from sealbridge.core.encoding import Message
from sealbridge.evm.adapter import ChainAdapter, TxReceipt
from sealbridge.evm.bound import BoundContract
from sealbridge.evm.compiler import compile_contract

__all__ = [
    "CONTRACT_NAME",
    "CompensationRecord",
    "InsurancePool",
    "InsuranceRevert",
    "SlashRecord",
    "deploy_insurance_pool",
]

CONTRACT_NAME = "InsurancePool"
UINT256_MAX = 2**256 - 1
MAX_UNBONDING_PERIOD = 2**64 - 1


class InsuranceRevert(StrEnum):
    """Every revert reason of the InsurancePool contract."""

    NOT_OWNER = "not owner"
    NOT_OPERATOR = "not operator"
    ZERO_ADDRESS = "zero address"
    ZERO_AMOUNT = "zero amount"
    BOND_SLASHED = "bond slashed"
    NO_BOND = "no bond"
    INSUFFICIENT_BOND = "insufficient bond"
    UNBOND_NOT_REQUESTED = "unbond not requested"
    UNBONDING_NOT_OVER = "unbonding period not over"
    CLAIM_ALREADY_PAID = "claim already paid"
    POOL_TOO_SMALL = "pool too small"


class SlashRecord(Message, frozen=True):
    """One ``Slashed`` event: ``amount`` is what actually moved into the pool."""

    owner: str
    amount: int
    evidence: bytes
    block_number: int


class CompensationRecord(Message, frozen=True):
    """One ``Compensated`` event."""

    victim: str
    amount: int
    claim_id: bytes
    block_number: int


def _positive(value: int, what: str) -> int:
    if type(value) is not int or not 0 < value <= UINT256_MAX:
        raise ChainConfigError(f"{what} must be an int in [1, 2**256), got {value!r}")
    return value


def _b32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ChainConfigError(f"{what} must be 32 bytes")
    return bytes(value)


def _nonzero_address(address: str, what: str) -> str:
    value = checksum(address)
    if int(value, 16) == 0:
        raise ChainConfigError(f"{what} must not be the zero address")
    return value


class InsurancePool(BoundContract):
    """The InsurancePool bound to an adapter (arguments first, the sender's key last)."""

    name = CONTRACT_NAME

    # ------------------------------------------------------------------ bond owners

    def post_bond(self, amount: int, owner_key: bytes) -> TxReceipt:
        """Add ``amount`` wei to the sender's bond (cancels a pending unbond request)."""
        return self._transact("post_bond", [], owner_key, value=_positive(amount, "amount"))

    def request_unbond(self, owner_key: bytes) -> TxReceipt:
        """Start (or restart) the sender's unbonding clock."""
        return self._transact("request_unbond", [], owner_key)

    def withdraw_bond(self, amount: int, owner_key: bytes) -> TxReceipt:
        """Take ``amount`` wei of the sender's bond back (after the unbonding period)."""
        return self._transact("withdraw_bond", [_positive(amount, "amount")], owner_key)

    # ------------------------------------------------------------------ requesters

    def pay_fee(self, request_id: bytes, amount: int, payer_key: bytes) -> TxReceipt:
        """Pay ``amount`` wei into the pool as the fee of ``request_id`` (32 bytes)."""
        args = [_b32(request_id, "request_id")]
        return self._transact("pay_fee", args, payer_key, value=_positive(amount, "amount"))

    # ------------------------------------------------------------------ operator, owner

    def slash(self, owner: str, amount: int, evidence: bytes, operator_key: bytes) -> TxReceipt:
        """Move up to ``amount`` of ``owner``'s bond into the pool; mark it slashed."""
        args = [checksum(owner), _positive(amount, "amount"), _b32(evidence, "evidence")]
        return self._transact("slash", args, operator_key)

    def compensate(
        self, victim: str, amount: int, claim_id: bytes, operator_key: bytes
    ) -> TxReceipt:
        """Pay ``amount`` wei from the pool to ``victim``, once per ``claim_id``."""
        args = [
            _nonzero_address(victim, "victim"),
            _positive(amount, "amount"),
            _b32(claim_id, "claim_id"),
        ]
        return self._transact("compensate", args, operator_key)

    def set_operator(self, operator: str, owner_key: bytes) -> TxReceipt:
        """Replace the operator (owner only)."""
        return self._transact("set_operator", [_nonzero_address(operator, "operator")], owner_key)

    # ------------------------------------------------------------------ views

    def get_bond(self, owner: str) -> int:
        return int(self._call("bonds", checksum(owner))[0])

    def get_pool(self) -> int:
        return int(self._call("pool")[0])

    def get_fees_paid(self, payer: str, request_id: bytes) -> int:
        """What ``payer`` paid as fees of ``request_id`` (from the ``FeePaid`` events)."""
        event = self.codec.event_by_name("FeePaid")
        topic = bytes(12) + bytes.fromhex(checksum(payer)[2:])
        logs = self.adapter.get_logs(
            0, self.adapter.get_block_number(), [self.address], [event.topic, topic]
        )
        total = 0
        for entry in logs:
            fields = event.decode(entry.topics, entry.data)
            if bytes(fields["request_id"]) == request_id:
                total += int(fields["amount"])
        return total

    def get_total_bonded(self) -> int:
        return int(self._call("total_bonded")[0])

    def is_claim_paid(self, claim_id: bytes) -> bool:
        return bool(self._call("claim_paid", _b32(claim_id, "claim_id"))[0])

    def is_slashed(self, owner: str) -> bool:
        return bool(self._call("slashed", checksum(owner))[0])

    def get_unbond_requested_at(self, owner: str) -> int:
        """Block time of the owner's pending unbond request (0: none pending)."""
        return int(self._call("unbond_requested_at", checksum(owner))[0])

    def get_unbonding_period(self) -> int:
        return int(self._call("unbonding_period")[0])

    def get_owner(self) -> str:
        return checksum(self._call("owner")[0])

    def get_operator(self) -> str:
        return checksum(self._call("operator")[0])

    # ------------------------------------------------------------------ event log

    def get_slashes(self, from_block: int, to_block: int | None = None) -> list[SlashRecord]:
        """Every slash in a block range (inclusive), in chain order."""
        return [
            SlashRecord(
                owner=args["owner"],
                amount=int(args["amount"]),
                evidence=bytes(args["evidence"]),
                block_number=block,
            )
            for block, args in self._events("Slashed", from_block, to_block)
        ]

    def get_compensations(
        self, from_block: int, to_block: int | None = None
    ) -> list[CompensationRecord]:
        """Every compensation in a block range (inclusive), in chain order."""
        return [
            CompensationRecord(
                victim=args["victim"],
                amount=int(args["amount"]),
                claim_id=bytes(args["claim_id"]),
                block_number=block,
            )
            for block, args in self._events("Compensated", from_block, to_block)
        ]

    def _events(
        self, name: str, from_block: int, to_block: int | None
    ) -> list[tuple[int, dict[str, Any]]]:
        end = self.adapter.get_block_number() if to_block is None else to_block
        event = self.codec.event_by_name(name)
        logs = self.adapter.get_logs(from_block, end, [self.address], [event.topic])
        return [(log.block_number, event.decode(log.topics, log.data)) for log in logs]


def deploy_insurance_pool(
    adapter: ChainAdapter, deployer_key: bytes, operator: str, unbonding_period_s: int
) -> str:
    """Compile and deploy an InsurancePool owned by the deployer, run by ``operator``
    (the matcher enclave's address), with an unbonding period in seconds."""
    if type(unbonding_period_s) is not int or not 0 <= unbonding_period_s <= MAX_UNBONDING_PERIOD:
        raise ChainConfigError("unbonding_period_s must be an int in [0, 2**64)")
    compiled = compile_contract(CONTRACT_NAME, evm_version=adapter.evm_version)
    ctor = AbiCodec(compiled.abi).encode_constructor(
        [_nonzero_address(operator, "operator"), unbonding_period_s]
    )
    return adapter.deploy(deployer_key, compiled.bytecode, ctor)
