"""Scan what a chain holds for bytes that must not be there.

Collects every byte the chain stores for a block range -- transaction calldata, log topics
and data, and every storage slot written (read from anvil's/geth's ``prestateTracer`` in
diff mode, which reports each transaction's storage writes) -- and searches it for
"needles": plaintext arguments, balances and keys that confidential contracts must keep
off chain. Used by the e2e leak test and the demo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from web3.types import RPCEndpoint

from sealbridge.chain.errors import RpcError
from sealbridge.core.encoding import Message
from sealbridge.evm.adapter import ChainAdapter


class ChainBlob(Message, frozen=True):
    kind: str  # "calldata" | "log" | "storage"
    block_number: int
    tx_hash: bytes
    where: str  # address (and slot for storage)
    data: bytes


class LeakHit(Message, frozen=True):
    needle: str
    kind: str
    block_number: int
    where: str


def _hex_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    text = str(value)
    text = text[2:] if text.startswith("0x") else text
    return bytes.fromhex(text if len(text) % 2 == 0 else "0" + text)


def collect_chain_blobs(
    adapter: ChainAdapter, from_block: int, to_block: int, *, storage: bool = True
) -> list[ChainBlob]:
    """Every calldata, log and (optionally) storage write in ``[from_block, to_block]``."""
    w3 = adapter.web3
    blobs: list[ChainBlob] = []
    for number in range(from_block, to_block + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        transactions: list[Any] = list(block["transactions"])
        for tx in transactions:
            tx_hash = bytes(tx["hash"])
            blobs.append(
                ChainBlob(
                    kind="calldata",
                    block_number=number,
                    tx_hash=tx_hash,
                    where=str(tx.get("to")),
                    data=bytes(tx["input"]),
                )
            )
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            for log in receipt["logs"]:
                topics = b"".join(bytes(t) for t in log["topics"])
                blobs.append(
                    ChainBlob(
                        kind="log",
                        block_number=number,
                        tx_hash=tx_hash,
                        where=str(log["address"]),
                        data=topics + bytes(log["data"]),
                    )
                )
            if storage:
                blobs.extend(_storage_writes(adapter, number, tx_hash))
    return blobs


def _storage_writes(adapter: ChainAdapter, number: int, tx_hash: bytes) -> list[ChainBlob]:
    try:
        trace = adapter.web3.provider.make_request(
            RPCEndpoint("debug_traceTransaction"),
            [
                "0x" + tx_hash.hex(),
                {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}},
            ],
        )
    except Exception as exc:  # the provider raises many kinds; report one typed error
        raise RpcError(f"debug_traceTransaction failed: {exc}") from exc
    if "error" in trace:
        raise RpcError(f"debug_traceTransaction failed: {trace['error']}")
    post: Mapping[str, Any] = trace["result"].get("post", {})
    out = []
    for address, account in post.items():
        for slot, value in (account.get("storage") or {}).items():
            out.append(
                ChainBlob(
                    kind="storage",
                    block_number=number,
                    tx_hash=tx_hash,
                    where=f"{address}[{slot}]",
                    data=_hex_bytes(value),
                )
            )
    return out


def find_leaks(blobs: list[ChainBlob], needles: Mapping[str, bytes]) -> list[LeakHit]:
    """Every place where a needle's bytes occur inside a blob."""
    hits = []
    for blob in blobs:
        for name, needle in needles.items():
            if needle and needle in blob.data:
                hits.append(
                    LeakHit(
                        needle=name,
                        kind=blob.kind,
                        block_number=blob.block_number,
                        where=blob.where,
                    )
                )
    return hits
