"""EVM blocks in their real formats, made in process: for simulated chains and tests.

Theory of operation
-------------------
An enclave's light client (:mod:`sealbridge.chain.lightclient`) takes a block as
evidence -- its header fields and all its receipts -- and checks that the header hashes
to the hash the next header names as its parent, and that the receipts hash to the
header's receipts root. Nothing else in a block matters to it. This module makes blocks
an enclave cannot tell from a node's by those checks:

* :func:`make_receipts` -- one successful EIP-1559 receipt per transaction, its logs
  bloom computed from its logs (:func:`compute_bloom`, the 2048-bit filter of the
  yellow paper: three bits per address and topic, from the first six bytes of its
  keccak), and plausible cumulative gas;
* :func:`make_header` -- a Prague header (every optional field present, real sizes)
  over those receipts, hash-linked to ``parent_hash``, at ``timestamp``;
* :class:`EvmChain` -- a chain of such blocks from a genesis, one appended at a time
  (:meth:`EvmChain.seal`), read back as evidence by number.

The other header fields (state root, transactions root, mix hash, ...) are derived from
the block's number and a salt, so two chains with different salts never share a block
after genesis. Pure: no time, no randomness, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import rlp

from sealbridge.chain.lightclient import (
    EMPTY_TRIE_ROOT,
    BlockEvidence,
    EventLog,
    HeaderFields,
    ReceiptFields,
    compute_header_hash,
    compute_receipts_root,
)
from sealbridge.core.errors import ConfigError
from sealbridge.core.ids import keccak, sha256

__all__ = [
    "EvmChain",
    "compute_bloom",
    "make_header",
    "make_receipts",
]

EMPTY_OMMERS_HASH = keccak(rlp.encode([]))
EMPTY_REQUESTS_HASH = sha256(b"")  # EIP-7685: sha256 of no requests
BLOCK_GAS_LIMIT = 36_000_000
BASE_FEE = 875_000_000
TX_BASE_GAS = 21_000
DYNAMIC_FEE_TX = 2  # EIP-1559 transactions: typed receipts
BLOOM_BITS = 2048


def compute_bloom(logs: Sequence[EventLog]) -> bytes:
    """The 256-byte logs bloom of ``logs``: for every address and topic, the three bits
    named by the low 11 bits of the first three byte pairs of its keccak."""
    bloom = 0
    for log in logs:
        for item in (log.address, *log.topics):
            digest = keccak(item)
            for i in (0, 2, 4):
                bloom |= 1 << (int.from_bytes(digest[i : i + 2], "big") % BLOOM_BITS)
    return bloom.to_bytes(BLOOM_BITS // 8, "big")


def make_receipts(txs: Sequence[Sequence[EventLog]]) -> list[ReceiptFields]:
    """One successful EIP-1559 receipt per transaction, with plausible cumulative gas."""
    receipts: list[ReceiptFields] = []
    cumulative = 0
    for logs in txs:
        cumulative += (
            TX_BASE_GAS + 30_000 + sum(375 * len(x.topics) + 8 * len(x.data) for x in logs)
        )
        receipts.append(
            ReceiptFields(
                tx_type=DYNAMIC_FEE_TX,
                status=1,
                cumulative_gas_used=cumulative,
                logs_bloom=compute_bloom(logs),
                logs=list(logs),
            )
        )
    return receipts


def make_header(
    *,
    parent_hash: bytes,
    number: int,
    receipts: Sequence[ReceiptFields],
    timestamp: int,
    salt: bytes = b"",
) -> HeaderFields:
    """A Prague header over ``receipts`` (``salt`` tells sibling chains apart)."""
    tag = salt + number.to_bytes(8, "big")
    bloom = 0
    for receipt in receipts:
        bloom |= int.from_bytes(receipt.logs_bloom, "big")
    return HeaderFields(
        parent_hash=parent_hash,
        ommers_hash=EMPTY_OMMERS_HASH,
        coinbase=keccak(b"sealbridge/fee recipient")[:20],
        state_root=keccak(b"state" + tag),
        transactions_root=keccak(b"transactions" + tag) if receipts else EMPTY_TRIE_ROOT,
        receipts_root=compute_receipts_root(receipts),
        logs_bloom=bloom.to_bytes(BLOOM_BITS // 8, "big"),
        difficulty=0,
        number=number,
        gas_limit=BLOCK_GAS_LIMIT,
        gas_used=receipts[-1].cumulative_gas_used if receipts else 0,
        timestamp=timestamp,
        extra_data=b"sealbridge sim chain" + salt[:8],
        mix_hash=keccak(b"prevrandao" + tag),
        nonce=bytes(8),
        base_fee_per_gas=BASE_FEE,
        withdrawals_root=EMPTY_TRIE_ROOT,
        blob_gas_used=0,
        excess_blob_gas=0,
        parent_beacon_block_root=keccak(b"beacon" + tag),
        requests_hash=EMPTY_REQUESTS_HASH,
    )


class EvmChain:
    """Hash-linked blocks from a genesis block (number 0), appended one at a time."""

    def __init__(self, chain_id: int, *, salt: bytes = b"", genesis_time: int = 0) -> None:
        self.chain_id = chain_id
        self.salt = salt or chain_id.to_bytes(8, "big")
        genesis = BlockEvidence(
            header=make_header(
                parent_hash=bytes(32),
                number=0,
                receipts=[],
                timestamp=genesis_time,
                salt=self.salt,
            ),
            receipts=[],
        )
        self.blocks: list[BlockEvidence] = [genesis]
        self.hashes: list[bytes] = [compute_header_hash(genesis.header)]

    @property
    def number(self) -> int:
        """The newest block's number."""
        return len(self.blocks) - 1

    @property
    def timestamp(self) -> int:
        return self.blocks[-1].header.timestamp

    def seal(self, txs: Sequence[Sequence[EventLog]], timestamp: int) -> BlockEvidence:
        """Append the next block (one receipt per transaction, each with its logs)."""
        if timestamp < self.timestamp:
            raise ConfigError("a block's timestamp cannot go back")
        receipts = make_receipts(txs)
        header = make_header(
            parent_hash=self.hashes[-1],
            number=self.number + 1,
            receipts=receipts,
            timestamp=timestamp,
            salt=self.salt,
        )
        block = BlockEvidence(header=header, receipts=receipts)
        self.blocks.append(block)
        self.hashes.append(compute_header_hash(header))
        return block

    def get_evidence(self, numbers: Sequence[int]) -> list[BlockEvidence]:
        """The blocks ``numbers``, in that order (a ConfigError for one not made yet)."""
        out = []
        for number in numbers:
            if not isinstance(number, int) or not 0 <= number <= self.number:
                raise ConfigError(f"chain {self.chain_id} has no block {number!r}")
            out.append(self.blocks[number])
        return out
