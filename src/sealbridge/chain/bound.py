"""Reading a bound contract's events (shared by the typed contract wrappers)."""

from __future__ import annotations

from typing import Any

from sealbridge.chain.abi import AbiCodec
from sealbridge.chain.adapter import ChainAdapter, TxReceipt


class EventReader:
    """Mixin for a wrapper with ``adapter``, ``address`` (checksummed) and ``codec``."""

    adapter: ChainAdapter
    address: str
    codec: AbiCodec

    def decode_events(self, receipt: TxReceipt) -> list[tuple[str, dict[str, Any]]]:
        """This contract's events in ``receipt``, in log order, as ``(name, args)``."""
        out: list[tuple[str, dict[str, Any]]] = []
        for log in receipt.logs:
            if log.address != self.address or not log.topics:
                continue
            event = self.codec.events.get(log.topics[0])
            if event is not None:
                out.append((event.name, event.decode(log.topics, log.data)))
        return out

    def get_events(
        self, from_block: int, to_block: int | None = None, *, name: str | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """This contract's events in a block range (inclusive), optionally of one kind."""
        end = self.adapter.get_block_number() if to_block is None else to_block
        topics: list[bytes | None] | None = None
        if name is not None:
            topics = [self.codec.event_by_name(name).topic]
        out: list[tuple[str, dict[str, Any]]] = []
        for log in self.adapter.get_logs(from_block, end, [self.address], topics):
            event = self.codec.events.get(log.topics[0]) if log.topics else None
            if event is not None:
                out.append((event.name, event.decode(log.topics, log.data)))
        return out
