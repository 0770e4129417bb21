"""The storage node's host core, sans-I/O: blobs in, receipts out, registration kept.

Theory of operation
-------------------
A storage node is untrusted and has no enclave; its *host core* is everything it
decides, and its driver (:mod:`sealbridge.node.storage` on the network, the simulator
in :mod:`sealbridge.sim.devnet`) does every write, read and transaction.

* **Blobs.** A :class:`StoreBlob` message (a worker host offering a checkpoint blob)
  is checked by the protocol core (:meth:`StorageNode.process_store`: not empty, not
  over the limit). If the node does not hold it intact already, the core asks for a
  durable write (:class:`~sealbridge.core.effects.Persist` under ``blob/<hash hex>``);
  the driver finishes that write before it handles anything else, so the receipt that
  follows never promises a blob that is not on disk. The answer to the sender is the
  signed :class:`StorageReceipt` (deterministic: storing twice gives the same receipt).
  A refused blob is answered with :class:`StoreRefused` and nothing is written. A blob
  counts as held only once the driver reports it written (:meth:`on_persisted`).
* **Answers from the chain only.** Chain reads and transaction outcomes are taken
  from the chain's address alone (``chain``); the same message from a peer is ignored.
* **Registration.** A :class:`~sealbridge.chain.registration.RegistrationCore` keeps
  the node registered, renewed and heartbeating (the same rules as every other role);
  its transactions name the node's signing key, which the driver holds.

The driver tells the core which blobs it holds at start (``held``: hash -> size, from
the disk) and gives it one read, ``is_intact(hash, size)``: whether the copy it holds
is whole (a file found damaged is written again). The network driver answers it from
its disk, the simulator from its model of the node's disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sealbridge.chain.abi import Role
from sealbridge.chain.registration import RegistrationCore
from sealbridge.core.effects import Effect, Persist, Send
from sealbridge.core.encoding import Message
from sealbridge.core.errors import SealbridgeError
from sealbridge.storage.messages import StorageReceipt
from sealbridge.storage.node import StorageNode

__all__ = ["StorageHostCore", "StoreBlob", "StoreRefused", "get_blob_key"]


class StoreBlob(Message, frozen=True):
    """A peer offers ``blob`` for storage."""

    blob: bytes


class StoreRefused(Message, frozen=True):
    code: str
    message: str


def get_blob_key(blob_hash: bytes) -> str:
    """The persistent key a blob is stored under."""
    return f"blob/{bytes(blob_hash).hex()}"


class StorageHostCore:
    """Decisions of one storage node (see the module docstring)."""

    def __init__(
        self,
        node: StorageNode,
        *,
        address: int = 0,
        chain: int = 0,
        ttl: int,
        heartbeats: bool = True,
        tick: float = 1.0,
        held: dict[bytes, int] | None = None,
        is_intact: Callable[[bytes, int], bool] | None = None,
    ) -> None:
        self.node = node
        self.address = address  # this node's id in the driver's address space
        self.chain = chain  # who answers chain reads and transactions (nobody else does)
        self.registration = RegistrationCore(
            node.node_id, int(Role.STORAGE), ttl=ttl, heartbeats=heartbeats, tick=tick
        )
        self.sizes: dict[bytes, int] = dict(held or {})  # blob hash -> size held
        self.stored = 0  # blobs written by this incarnation (new or repaired)
        self.is_intact = is_intact if is_intact is not None else (lambda _h, _s: True)

    @property
    def node_id(self) -> int:
        return self.address

    @property
    def bytes_held(self) -> int:
        return sum(self.sizes.values())

    # -- ProtocolNode ------------------------------------------------------------------
    def on_start(self, now: float) -> list[Effect]:
        return self.registration.on_start(now)

    def on_timer(self, name: str, now: float) -> list[Effect]:
        return self.registration.on_timer(name, now)

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if isinstance(message, StoreBlob):
            effects, answer = self.on_store(message.blob)
            if isinstance(answer, StorageReceipt) and effects:
                # the simulator writes the disk as it applies the effects, in order
                self.on_persisted(answer.blob_hash, answer.size)
            return [*effects, Send((sender,), answer)]
        if sender != self.chain:
            return []  # a peer's "chain answer" is a forgery: only the chain answers
        return self.registration.on_message(message, now)

    # -- blobs ---------------------------------------------------------------------------
    def on_store(self, blob: bytes) -> tuple[list[Effect], StorageReceipt | StoreRefused]:
        """The effects of storing ``blob`` (a durable write, unless held intact) and the
        answer: the signed receipt, or the refusal."""
        try:
            decision = self.node.process_store(blob)
        except SealbridgeError as exc:
            return [], StoreRefused(code=exc.code, message=exc.message)
        effects: list[Effect] = []
        held = self.sizes.get(decision.blob_hash)
        if held != decision.size or not self.is_intact(decision.blob_hash, decision.size):
            effects.append(Persist(get_blob_key(decision.blob_hash), bytes(blob)))
        return effects, self.node.sign_receipt(decision.blob_hash, decision.size)

    def on_persisted(self, blob_hash: bytes, size: int) -> None:
        """The driver wrote a blob durably: count it as held (only then)."""
        self.sizes[bytes(blob_hash)] = size
        self.stored += 1

    def get_status(self) -> dict[str, Any]:
        return {
            **self.registration.get_status(),
            "blobs": len(self.sizes),
            "bytes": self.bytes_held,
            "blobs_stored": self.stored,
            "max_blob_size": self.node.max_blob_size,
        }
