"""Typed wrapper of the DepositToken contract: a plain owner-minted ERC-20.

Theory of operation: ``contracts/DepositToken.vy`` is the ERC-20 that key-release
deposits hold on a devnet: balances, allowances, ``transfer`` / ``approve`` /
``transferFrom`` with the standard ``Transfer`` and ``Approval`` events, plus ``mint``
by the owner (deployer). An allowance of ``2**256 - 1`` is unlimited (never decreased).
Arguments are checked here first (``ChainConfigError``: malformed or zero addresses,
amounts outside uint256), so only state-dependent refusals (:class:`TokenRevert`) come
back from the chain as ``TransactionReverted``. :meth:`DepositToken.encode_transfer`
gives the calldata of a transfer for a transaction signed elsewhere, e.g. by the enclave
that holds a deposit key.
"""

from __future__ import annotations

from enum import StrEnum

from sealbridge.chain.abi import AbiCodec, checksum
from sealbridge.chain.errors import ChainConfigError
from sealbridge.evm.adapter import ChainAdapter, TxReceipt
from sealbridge.evm.bound import BoundContract
from sealbridge.evm.compiler import compile_contract

__all__ = [
    "BALANCE_OF_SLOT",
    "CONTRACT_NAME",
    "UNLIMITED",
    "DepositToken",
    "TokenRevert",
    "deploy_deposit_token",
]

CONTRACT_NAME = "DepositToken"
# the storage slot of DepositToken's balanceOf HashMap (tests/unit/test_chain_facts.py
# compares it with the compiler's layout): a balance proof reads keccak(slot ++ holder)
BALANCE_OF_SLOT = 7
UNLIMITED = 2**256 - 1  # an allowance that transferFrom never decreases
MAX_DECIMALS = 36
MAX_NAME = 64
MAX_SYMBOL = 32


class TokenRevert(StrEnum):
    """Every revert reason of the DepositToken contract."""

    NOT_OWNER = "not owner"
    ZERO_ADDRESS = "zero address"
    INSUFFICIENT_BALANCE = "insufficient balance"
    INSUFFICIENT_ALLOWANCE = "insufficient allowance"


def _amount(value: int, what: str = "amount") -> int:
    if type(value) is not int or not 0 <= value <= UNLIMITED:
        raise ChainConfigError(f"{what} must be an int in [0, 2**256), got {value!r}")
    return value


def _recipient(address: str, what: str) -> str:
    value = checksum(address)
    if int(value, 16) == 0:
        raise ChainConfigError(f"{what} must not be the zero address")
    return value


def _text(value: str, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value.encode("utf-8")) > limit:
        raise ChainConfigError(f"{what} must be a non-empty str of at most {limit} bytes")
    return value


class DepositToken(BoundContract):
    """The DepositToken bound to an adapter (arguments first, the sender's key last)."""

    name = CONTRACT_NAME

    # ------------------------------------------------------------------ transactions

    def mint(self, to: str, amount: int, owner_key: bytes) -> TxReceipt:
        """Create ``amount`` base units for ``to`` (owner only)."""
        return self._transact("mint", [_recipient(to, "to"), _amount(amount)], owner_key)

    def transfer(self, to: str, amount: int, sender_key: bytes) -> TxReceipt:
        return self._transact("transfer", [_recipient(to, "to"), _amount(amount)], sender_key)

    def approve(self, spender: str, amount: int, owner_key: bytes) -> TxReceipt:
        """Let ``spender`` move up to ``amount`` (``UNLIMITED``: no limit)."""
        args = [_recipient(spender, "spender"), _amount(amount)]
        return self._transact("approve", args, owner_key)

    def transfer_from(self, owner: str, to: str, amount: int, spender_key: bytes) -> TxReceipt:
        """Move ``amount`` of ``owner``'s tokens to ``to`` under the spender's allowance."""
        args = [checksum(owner), _recipient(to, "to"), _amount(amount)]
        return self._transact("transferFrom", args, spender_key)

    def encode_transfer(self, to: str, amount: int) -> bytes:
        """Calldata of ``transfer(to, amount)`` for a transaction signed elsewhere."""
        return self.codec.function("transfer").encode_call([_recipient(to, "to"), _amount(amount)])

    # ------------------------------------------------------------------ views

    def balance_of(self, address: str) -> int:
        return int(self._call("balanceOf", checksum(address))[0])

    def allowance(self, owner: str, spender: str) -> int:
        return int(self._call("allowance", checksum(owner), checksum(spender))[0])

    def total_supply(self) -> int:
        return int(self._call("totalSupply")[0])

    def decimals(self) -> int:
        return int(self._call("decimals")[0])

    def symbol(self) -> str:
        return str(self._call("symbol")[0])

    def token_name(self) -> str:
        """The ERC-20 ``name()`` (``name`` is the contract's Vyper name here)."""
        return str(self._call("name")[0])

    def get_owner(self) -> str:
        return checksum(self._call("owner")[0])

    def get_transfer_recipients(self, sender: str, from_block: int) -> list[str]:
        """The recipients of every ``Transfer`` out of ``sender`` since ``from_block``, in
        chain order (``transfer`` and ``transferFrom`` alike)."""
        event = self.codec.event_by_name("Transfer")
        topic_from = bytes(12) + bytes.fromhex(checksum(sender)[2:])
        logs = self.adapter.get_logs(
            from_block, self.adapter.get_block_number(), [self.address], [event.topic, topic_from]
        )
        return [checksum(event.decode(e.topics, e.data)["receiver"]) for e in logs]


def deploy_deposit_token(
    adapter: ChainAdapter, deployer_key: bytes, name: str, symbol: str, decimals: int
) -> str:
    """Compile and deploy a DepositToken owned (and minted) by the deployer."""
    if type(decimals) is not int or not 0 <= decimals <= MAX_DECIMALS:
        raise ChainConfigError(f"decimals must be an int in [0, {MAX_DECIMALS}]")
    args = [_text(name, "name", MAX_NAME), _text(symbol, "symbol", MAX_SYMBOL), decimals]
    compiled = compile_contract(CONTRACT_NAME, evm_version=adapter.evm_version)
    ctor = AbiCodec(compiled.abi).encode_constructor(args)
    return adapter.deploy(deployer_key, compiled.bytecode, ctor)
