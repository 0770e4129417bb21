"""What the key-release parties talk about: assets, chunks, requests and offers.

A *chunk* is one deposit key holding a standard USD amount of one asset. Its value is
fixed when it is funded (``usd_e8``, USD x 1e8, from the price oracle); its ``amount`` is
the asset's base units actually sent to ``address``. Chunks are named
``"<vault hex>:<key index>"``: the vault is the hex of the enclave's Ed25519 identity key,
so a chunk id says which enclave can release it.
"""

from __future__ import annotations

from enum import StrEnum

from sealbridge.core.encoding import Message
from sealbridge.keyrelease.errors import InvalidRequest

__all__ = [
    "MAX_AMOUNT",
    "USD_DECIMALS",
    "Asset",
    "AssetKind",
    "Chunk",
    "ChunkRequest",
    "Offer",
    "compute_chunk_amount",
    "compute_chunk_id",
    "parse_chunk_id",
]

USD_DECIMALS = 8  # USD amounts are integers in units of 1e-8 USD ("usd_e8")
MAX_AMOUNT = 2**64 - 1  # base units per chunk (canonical messages carry 64-bit ints)


class AssetKind(StrEnum):
    NATIVE = "native"  # the chain's coin (ETH on an anvil chain)
    ERC20 = "erc20"  # a token contract on an EVM chain
    BTC = "btc"  # bitcoin P2WPKH outputs (no node here: a local UTXO ledger model)


class Asset(Message, frozen=True):
    """An asset on one chain. Its id is ``"<symbol>@<chain id>"``, or for bitcoin
    ``"<symbol>@<network>"`` (chain id 0: not an EVM chain)."""

    symbol: str
    chain_id: int
    kind: str  # an AssetKind value
    decimals: int
    token: str = ""  # the ERC-20 contract (EIP-55), "" otherwise
    network: str = ""  # the bitcoin network ("regtest", ...) of a btc asset, "" otherwise

    @property
    def asset_id(self) -> str:
        return f"{self.symbol}@{self.network or self.chain_id}"


class Chunk(Message, frozen=True):
    """One funded deposit key, as the matcher offers it."""

    chunk_id: str
    owner: str  # the owner's account (EIP-55): who posted the bond and gets paid
    vault: str  # hex of the identity key of the enclave that holds the private key
    asset: str  # asset id
    address: str  # where the funds are (EIP-55 for EVM assets, P2WPKH bech32 for btc)
    amount: int  # base units deposited
    usd_e8: int  # USD value when funded (the standard chunk size)


class ChunkRequest(Message, frozen=True):
    """ "``usd_e8`` worth of ``asset``, bound by ``contract``"."""

    request_id: str
    requester: str
    asset: str
    usd_e8: int
    contract: str  # e.g. "swap:<id>" or "escrow:<id>"


class Offer(Message, frozen=True):
    """The matcher's answer: chunks from several owners, and the fee for the pool."""

    request_id: str
    requester: str
    contract: str
    asset: str
    chunks: list[Chunk]
    fee_e8: int  # the matching fee (USD x 1e8), paid into the insurance pool


def is_account(value: object) -> bool:
    """Whether ``value`` is a 0x-prefixed 20-byte hex account (any case)."""
    if not isinstance(value, str) or len(value) != 42 or not value.startswith("0x"):
        return False
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        return False
    return True


def compute_chunk_id(vault: str, key_index: int) -> str:
    return f"{vault}:{key_index}"


def parse_chunk_id(chunk_id: str) -> tuple[str, int]:
    """(vault hex, key index) of a chunk id; ``InvalidRequest`` if it is not one."""
    if not isinstance(chunk_id, str):
        raise InvalidRequest(f"not a chunk id: {chunk_id!r}")
    vault, sep, index = chunk_id.partition(":")
    # one spelling per key: ASCII digits without leading zeros (``v:01``, ``v:٣`` and the
    # like would name a key again under another id)
    canonical = index.isascii() and index.isdigit() and (index == "0" or index[0] != "0")
    if not sep or len(vault) != 64 or vault != vault.lower() or not canonical or len(index) > 10:
        raise InvalidRequest(f"not a chunk id: {chunk_id!r}")
    try:
        bytes.fromhex(vault)
    except ValueError as exc:
        raise InvalidRequest(f"not a chunk id: {chunk_id!r}") from exc
    return vault, int(index)


def compute_chunk_amount(usd_e8: int, price_e8: int, decimals: int) -> int:
    """Base units of an asset priced ``price_e8`` (USD x 1e8 per whole unit) worth
    ``usd_e8``, rounded down."""
    for name, value in (("usd_e8", usd_e8), ("price_e8", price_e8)):
        if type(value) is not int or value <= 0:
            raise InvalidRequest(f"{name} must be a positive int, got {value!r}")
    if type(decimals) is not int or not 0 <= decimals <= 36:
        raise InvalidRequest(f"decimals must be an int in [0, 36], got {decimals!r}")
    amount: int = usd_e8 * 10**decimals // price_e8
    if not 0 < amount <= MAX_AMOUNT:
        raise InvalidRequest(
            f"a chunk of {usd_e8} usd_e8 at {price_e8} is {amount} base units: chunk amounts "
            f"must be in [1, 2**64) (messages carry 64-bit ints); pick another chunk size"
        )
    return amount
