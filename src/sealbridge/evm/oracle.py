"""Typed wrapper of the PriceOracle contract: USD prices for sizing key-release deposits.

Theory of operation: ``contracts/PriceOracle.vy`` stores, per asset, the last USD price
(x 1e8, ``price_e8``) pushed by its reporter and the block time it was pushed. Assets
are keyed on chain by :func:`compute_asset_key`, the Keccak-256 of the utf-8 asset id
(``"ETH@31337"``). Readers pass their own freshness bound: :meth:`PriceOracle.get_price`
raises :class:`UnknownAsset` for an asset never priced and :class:`StalePrice` for a
price older than ``max_age_s`` seconds, both typed from the contract's revert reasons
(:class:`OracleRevert`). Arguments are checked here first (``ChainConfigError``), so a
malformed request never reaches the chain. The owner (deployer) may replace the
reporter.
"""

from __future__ import annotations

from enum import StrEnum

from sealbridge.chain.abi import AbiCodec, checksum
from sealbridge.chain.errors import ChainConfigError, ChainError, TransactionReverted
from sealbridge.core.ids import keccak
from sealbridge.evm.adapter import ChainAdapter, TxReceipt
from sealbridge.evm.bound import BoundContract
from sealbridge.evm.compiler import compile_contract

__all__ = [
    "CONTRACT_NAME",
    "OracleRevert",
    "PriceOracle",
    "StalePrice",
    "UnknownAsset",
    "compute_asset_key",
    "deploy_price_oracle",
]

CONTRACT_NAME = "PriceOracle"
MAX_ASSET_ID = 128
UINT256_MAX = 2**256 - 1


class OracleRevert(StrEnum):
    """Every revert reason of the PriceOracle contract."""

    NOT_OWNER = "not owner"
    NOT_REPORTER = "not reporter"
    ZERO_ADDRESS = "zero address"
    ZERO_PRICE = "zero price"
    UNKNOWN_ASSET = "unknown asset"
    STALE_PRICE = "stale price"


class UnknownAsset(ChainError):
    """The oracle has never priced this asset."""

    code = "chain_oracle_unknown_asset"


class StalePrice(ChainError):
    """The oracle's price is older than the reader's bound."""

    code = "chain_oracle_stale_price"


def compute_asset_key(asset_id: str) -> bytes:
    """The oracle's key of an asset: keccak256 of its utf-8 id (``"ETH@31337"``)."""
    if not isinstance(asset_id, str) or not 0 < len(asset_id) <= MAX_ASSET_ID:
        raise ChainConfigError(f"asset id must be a non-empty str of at most {MAX_ASSET_ID}")
    return keccak(asset_id.encode("utf-8"))


def _uint(value: int, what: str, *, minimum: int = 0) -> int:
    if type(value) is not int or not minimum <= value <= UINT256_MAX:
        raise ChainConfigError(f"{what} must be an int in [{minimum}, 2**256), got {value!r}")
    return value


class PriceOracle(BoundContract):
    """The PriceOracle bound to an adapter (arguments first, the sender's key last)."""

    name = CONTRACT_NAME

    # ------------------------------------------------------------------ transactions

    def set_price(self, asset_id: str, price_e8: int, reporter_key: bytes) -> TxReceipt:
        """Push the USD price (x 1e8, positive) of ``asset_id`` (reporter only)."""
        key = compute_asset_key(asset_id)
        price = _uint(price_e8, "price_e8", minimum=1)
        return self._transact("set_price", [key, price], reporter_key)

    def set_reporter(self, reporter: str, owner_key: bytes) -> TxReceipt:
        """Replace the reporter (owner only)."""
        return self._transact("set_reporter", [_nonzero_address(reporter)], owner_key)

    # ------------------------------------------------------------------ views

    def get_price(self, asset_id: str, max_age_s: int) -> int:
        """The price of ``asset_id`` if at most ``max_age_s`` seconds old.

        Raises :class:`UnknownAsset` or :class:`StalePrice` otherwise."""
        key = compute_asset_key(asset_id)
        max_age = _uint(max_age_s, "max_age_s")
        try:
            (price,) = self._call("get_price", key, max_age)
        except TransactionReverted as exc:
            if exc.reason == OracleRevert.UNKNOWN_ASSET:
                raise UnknownAsset(f"no price for {asset_id!r}") from exc
            if exc.reason == OracleRevert.STALE_PRICE:
                raise StalePrice(f"price of {asset_id!r} older than {max_age}s") from exc
            raise
        return int(price)

    def latest(self, asset_id: str) -> tuple[int, int]:
        """``(price_e8, updated_at)`` of ``asset_id``; ``(0, 0)`` if never priced."""
        price, updated_at = self._call("latest", compute_asset_key(asset_id))
        return int(price), int(updated_at)

    def get_owner(self) -> str:
        return checksum(self._call("owner")[0])

    def get_reporter(self) -> str:
        return checksum(self._call("reporter")[0])


def _nonzero_address(address: str) -> str:
    value = checksum(address)
    if int(value, 16) == 0:
        raise ChainConfigError("the zero address is not allowed here")
    return value


def deploy_price_oracle(adapter: ChainAdapter, deployer_key: bytes, reporter: str) -> str:
    """Compile and deploy a PriceOracle owned by the deployer, fed by ``reporter``."""
    compiled = compile_contract(CONTRACT_NAME, evm_version=adapter.evm_version)
    ctor = AbiCodec(compiled.abi).encode_constructor([_nonzero_address(reporter)])
    return adapter.deploy(deployer_key, compiled.bytecode, ctor)
