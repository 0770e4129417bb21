"""Follow the chain: deliver final blocks and their management-contract events.

Theory of operation
-------------------
:class:`FollowerCore` is sans-I/O. It holds the next block number to deliver and the
hashes of the most recently delivered blocks. Given the observed chain tip,
:meth:`FollowerCore.on_tip` lists the numbers that are now final enough
(``tip - n >= confirmations``) and not yet delivered, in ascending order. The driver
fetches them and hands the headers back to :meth:`FollowerCore.process_blocks`, which
checks, before changing any state, that they are exactly the next numbers and that each
one's ``parent_hash`` is the hash of the block before it (the last delivered one, or the
previous in the batch). Only then are they recorded as delivered, so every block number
is delivered exactly once and in order; a contradiction of a delivered block raises
:class:`~sealbridge.chain.errors.ReorgDetected` and leaves the core unchanged.
:meth:`FollowerCore.check_block` re-checks a delivered block's hash on demand.

:class:`BlockFollower` drives the core against a :class:`ChainAdapter`: one
``eth_blockNumber``, one ``eth_getLogs`` over the whole range for the four management
contract addresses, and one batched ``eth_getBlockByNumber`` for the headers (on HTTP).
Each log's block hash must equal the fetched header's hash (a reorg between the two
requests raises ``ReorgDetected``). Blocks without events are delivered too, since they
advance height and carry the receipts root the runtime's light client checks. Measured
on anvil (this machine): a batch of 500 headers takes ~0.25 s (0.5 ms a block, against
2 ms a block one by one) while eth_getLogs over 2,000 blocks takes ~5 ms, so for fast
catch-up over long empty stretches ``skip_empty=True`` fetches headers only for blocks
with events; the height still advances (``core.next_block``) and parent links are
checked between consecutive delivered blocks only.

With ``with_evidence=True`` each :class:`ObservedBlock` also carries the block's
:class:`~sealbridge.chain.lightclient.BlockEvidence` (every header field and every
receipt, from one more batched request) for the enclave's light client. The follower
recomputes each evidence header's hash and requires it, and its number, to equal the
header fetched for the same block; a difference means the chain changed between the
two requests (``ReorgDetected``). It does not check the receipts (the enclave does).
Evidence needs every block, so it cannot be combined with ``skip_empty``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from sealbridge.chain.abi import AbiCodec
from sealbridge.chain.errors import ChainConfigError, ChainError, ReorgDetected
from sealbridge.chain.lightclient import BlockEvidence, LightClientError, compute_header_hash
from sealbridge.core.encoding import Message
from sealbridge.evm.adapter import BlockHeader, ChainAdapter, LogEntry
from sealbridge.evm.management import ManagementAddresses, ManagementContracts


class ChainEvent(Message, frozen=True):
    """One decoded management-contract event."""

    block_number: int
    tx_index: int
    log_index: int
    tx_hash: bytes
    address: str
    name: str
    args: dict[str, Any]


class ObservedBlock(Message, frozen=True):
    """A final block and its management events in chain order."""

    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    receipts_root: bytes
    events: list[ChainEvent]
    evidence: BlockEvidence | None = None


class FollowerCore:
    """Sans-I/O: which blocks are final, delivered once, in order, hash-linked."""

    def __init__(
        self, start_block: int, confirmations: int, *, max_batch: int = 500, history: int = 1024
    ) -> None:
        if start_block < 0:
            raise ChainConfigError("start_block must be >= 0")
        if confirmations < 0:
            raise ChainConfigError("confirmations must be >= 0")
        if max_batch < 1 or history < 1:
            raise ChainConfigError("max_batch and history must be >= 1")
        self.start_block = start_block
        self.confirmations = confirmations
        self.max_batch = max_batch
        self.history = history
        self._next = start_block
        self._hashes: OrderedDict[int, bytes] = OrderedDict()

    @property
    def next_block(self) -> int:
        """The number of the next block to deliver."""
        return self._next

    @property
    def delivered_height(self) -> int | None:
        """The last delivered block number (None before the first)."""
        return self._next - 1 if self._next > self.start_block else None

    def get_delivered_hash(self, number: int) -> bytes | None:
        """Hash of a recently delivered block (None if unknown or too old)."""
        return self._hashes.get(number)

    def compute_final_height(self, tip: int) -> int:
        """Highest block number that is final enough given the tip (may be < 0)."""
        return tip - self.confirmations

    def on_tip(self, tip: int) -> list[int]:
        """Numbers now final enough and not yet delivered (at most ``max_batch``)."""
        if tip < 0:
            raise ChainConfigError("tip must be >= 0")
        last = min(self.compute_final_height(tip), self._next + self.max_batch - 1)
        return list(range(self._next, last + 1))

    def check_block(self, number: int, block_hash: bytes) -> None:
        """Raise ReorgDetected if ``number`` was delivered with another hash."""
        known = self._hashes.get(number)
        if known is not None and known != block_hash:
            raise ReorgDetected(
                f"block {number} was delivered as 0x{known.hex()} but the chain now has "
                f"0x{block_hash.hex()}",
                block_number=number,
            )

    def process_blocks(
        self, headers: Sequence[tuple[int, bytes, bytes]], *, through: int | None = None
    ) -> None:
        """Accept ``(number, hash, parent_hash)`` for the next blocks, all or nothing.

        Without ``through`` the headers must be exactly the next consecutive numbers.
        With ``through`` (skip-empty mode) they may be any ascending subset of
        ``next_block..through``; the parent link is checked wherever the previous block's
        hash is known, and the core then advances past ``through``.
        """
        expected = self._next
        previous: bytes | None = self._hashes.get(expected - 1)
        for number, block_hash, parent_hash in headers:
            if through is None:
                if number != expected:
                    raise ChainConfigError(f"expected block {expected}, got {number}")
            elif number < expected or number > through:
                raise ChainConfigError(f"block {number} outside {expected}..{through}")
            elif number != expected:
                previous = None  # a gap: nothing to link against
            if previous is not None and parent_hash != previous:
                raise ReorgDetected(
                    f"block {number} has parent 0x{parent_hash.hex()} but block {number - 1} "
                    f"was delivered as 0x{previous.hex()}",
                    block_number=number - 1,
                )
            previous = block_hash
            expected = number + 1
        if through is not None:
            if through + 1 < expected:
                raise ChainConfigError("through is below the last header")
            expected = through + 1
        for number, block_hash, _ in headers:
            self._hashes[number] = block_hash
            while len(self._hashes) > self.history:
                self._hashes.popitem(last=False)
        self._next = expected

    def process_block(self, number: int, block_hash: bytes, parent_hash: bytes) -> None:
        """Accept the next single block."""
        self.process_blocks([(number, block_hash, parent_hash)])


def decode_event(codecs: dict[str, AbiCodec], log: LogEntry) -> ChainEvent:
    """Decode one management-contract log; ChainError if it matches no known event."""
    codec = codecs.get(log.address)
    if codec is None or not log.topics:
        raise ChainError(f"log from unexpected address {log.address}")
    event = codec.events.get(log.topics[0])
    if event is None:
        raise ChainError(f"unknown event topic 0x{log.topics[0].hex()} from {log.address}")
    return ChainEvent(
        block_number=log.block_number,
        tx_index=log.tx_index,
        log_index=log.log_index,
        tx_hash=log.tx_hash,
        address=log.address,
        name=event.name,
        args=event.decode(log.topics, log.data),
    )


class BlockFollower:
    """Poll a chain for final blocks and decoded management events."""

    def __init__(
        self,
        adapter: ChainAdapter,
        addresses: ManagementAddresses,
        *,
        start_block: int = 0,
        confirmations: int = 0,
        max_batch: int = 500,
        skip_empty: bool = False,
        with_evidence: bool = False,
    ) -> None:
        if with_evidence and skip_empty:
            raise ChainConfigError(
                "with_evidence needs every block (the light client follows the parent "
                "links), so it cannot be combined with skip_empty"
            )
        self.adapter = adapter
        self.skip_empty = skip_empty
        self.with_evidence = with_evidence
        self.addresses = addresses
        self.core = FollowerCore(start_block, confirmations, max_batch=max_batch)
        self._codecs = ManagementContracts(adapter, addresses).get_codecs()

    def poll(self) -> list[ObservedBlock]:
        """Fetch the blocks that became final since the last poll (at most max_batch)."""
        numbers = self.core.on_tip(self.adapter.get_block_number())
        if not numbers:
            return []
        logs = self.adapter.get_logs(numbers[0], numbers[-1], list(self._codecs))
        if self.skip_empty:
            wanted = sorted({log.block_number for log in logs})
            return self._assemble(self.adapter.get_blocks(wanted), logs, through=numbers[-1])
        headers = self.adapter.get_blocks(numbers)
        evidence = self.adapter.get_block_evidence(numbers) if self.with_evidence else None
        return self._assemble(headers, logs, evidence=evidence)

    def poll_until_caught_up(self) -> list[ObservedBlock]:
        """Poll repeatedly until no final block is left undelivered."""
        out: list[ObservedBlock] = []
        while True:
            batch = self.poll()
            if not batch:
                return out
            out.extend(batch)

    @staticmethod
    def _check_evidence(
        headers: list[BlockHeader], evidence: list[BlockEvidence]
    ) -> list[BlockEvidence | None]:
        """Each evidence header must be the fetched header (same number and hash)."""
        if len(evidence) != len(headers):
            raise ChainError(f"asked for evidence of {len(headers)} blocks, got {len(evidence)}")
        for header, item in zip(headers, evidence, strict=True):
            try:
                evidence_hash = compute_header_hash(item.header)
            except LightClientError as exc:
                raise ChainError(f"node returned malformed evidence: {exc.message}") from exc
            if item.header.number != header.number or evidence_hash != header.hash:
                raise ReorgDetected(
                    f"block {header.number} (0x{header.hash.hex()}) changed between the "
                    f"header and the evidence fetch: evidence is block {item.header.number} "
                    f"hashing to 0x{evidence_hash.hex()}",
                    block_number=header.number,
                )
        return list(evidence)

    def _assemble(
        self,
        headers: list[BlockHeader],
        logs: list[LogEntry],
        *,
        through: int | None = None,
        evidence: list[BlockEvidence] | None = None,
    ) -> list[ObservedBlock]:
        extra: list[BlockEvidence | None] = (
            [None] * len(headers) if evidence is None else self._check_evidence(headers, evidence)
        )
        by_block: dict[int, list[ChainEvent]] = {h.number: [] for h in headers}
        hashes = {h.number: h.hash for h in headers}
        for log in logs:
            if log.block_number not in by_block:
                raise ChainError(f"eth_getLogs returned a log of block {log.block_number}")
            if log.block_hash != hashes[log.block_number]:
                raise ReorgDetected(
                    f"block {log.block_number} changed between eth_getLogs and the header fetch",
                    block_number=log.block_number,
                )
            by_block[log.block_number].append(decode_event(self._codecs, log))
        self.core.process_blocks(
            [(h.number, h.hash, h.parent_hash) for h in headers], through=through
        )
        return [
            ObservedBlock(
                number=h.number,
                hash=h.hash,
                parent_hash=h.parent_hash,
                timestamp=h.timestamp,
                receipts_root=h.receipts_root,
                events=sorted(by_block[h.number], key=lambda e: (e.tx_index, e.log_index)),
                evidence=item,
            )
            for h, item in zip(headers, extra, strict=True)
        ]
