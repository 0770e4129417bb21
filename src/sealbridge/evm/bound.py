"""A contract bound to an adapter: calls, transactions and events (shared by the typed
contract wrappers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sealbridge.chain.abi import AbiCodec, checksum
from sealbridge.evm.adapter import ChainAdapter, TxReceipt
from sealbridge.evm.compiler import CompiledContract, compile_contract


class BoundContract:
    """One deployed contract: ``name`` is its Vyper contract name, compiled on demand when
    no compiled artefact is given."""

    name = ""

    def __init__(
        self, adapter: ChainAdapter, address: str, compiled: CompiledContract | None = None
    ) -> None:
        self.adapter = adapter
        self.address = checksum(address)
        if compiled is None:
            compiled = compile_contract(self.name, evm_version=adapter.evm_version)
        self.codec = AbiCodec(compiled.abi)

    @property
    def chain_id(self) -> int:
        return self.adapter.chain_id

    def _call(self, fn: str, *args: Any) -> tuple[Any, ...]:
        function = self.codec.function(fn)
        return function.decode_result(self.adapter.call(self.address, function.encode_call(args)))

    def _transact(
        self,
        fn: str,
        args: Sequence[Any],
        sender_key: bytes,
        value: int = 0,
        *,
        gas: int | None = None,
    ) -> TxReceipt:
        data = self.codec.function(fn).encode_call(args)
        return self.adapter.transact(sender_key, to=self.address, data=data, value=value, gas=gas)

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
