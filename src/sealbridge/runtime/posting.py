"""The worker host's posting of contract messages, sans-I/O.

Theory of operation
-------------------
A contract's outgoing messages come out of the worker's enclave (released once the
block that produced them is witnessed) as ciphertexts for the target's inbox. Every
worker of the sending contract makes the same ciphertext for a message, so any of them
may post it, and the target refuses a second copy as a replay. :class:`MessagePostingCore`
decides, for one worker host, which to post and when; its driver
(:mod:`sealbridge.node.driver`, run inline from :mod:`sealbridge.node.worker`'s follow
loop) sends the transactions (:class:`PostMessage`, relayed without waiting for a
receipt).

* **Released** (:class:`MessagesOut`, with each message's source's executor set): a
  message of a contract this worker does not run is ignored; one without a ciphertext
  (the target's key is not known yet) cannot be delivered (reported by the source's
  first worker). Every other one is remembered until it is seen in the inbox, due on
  chain ``repost_blocks`` blocks after its block; the source's *first* worker posts it
  at once.
* **Seen** (:class:`InboxBlock`: the ciphertexts of one block's ``Command`` events):
  a remembered message seen on chain is forgotten; then every one still missing whose
  block has come is posted again, by whichever worker notices (so a stalled or dead
  first worker delays messages but never loses them), and is due again
  ``repost_blocks`` later.
* At most ``max_pending`` messages are remembered; the oldest are dropped first. So are
  posts in flight past ``2 * max_pending`` (their outcomes lost): a late outcome of a
  forgotten post changes nothing.

With ``post`` off the core remembers messages but sends nothing. Outcomes
(:class:`~sealbridge.core.effects.TxOutcome`, from the ``chain`` address only, under a
tag of its own) are counted: ``sent`` or ``mined`` as posted (or reposted), anything
else reported; a failed post stays remembered and is due again at its time.
Tags come from a :class:`~sealbridge.core.tags.TagSource` that ``on_start`` begins
anew: an answer to an effect of the node's previous incarnation (in flight when it
crashed) never carries a restarted core's tag.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from sealbridge.core.effects import Effect, Report, SubmitTx, TxOutcome
from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError, LocalProtocolError
from sealbridge.core.ids import keccak
from sealbridge.core.tags import TagSource
from sealbridge.runtime.messages import OutgoingMessage

__all__ = [
    "BadPostingInput",
    "InboxBlock",
    "MessagePostingCore",
    "MessagesOut",
    "PostMessage",
]

DEFAULT_MAX_PENDING = 10_000


class MessagesOut(Message, frozen=True):
    """Messages the enclave released at block ``number``; ``executors[i]`` is the
    executor set of ``messages[i]``'s source (empty: not a contract of this worker)."""

    number: int
    messages: list[OutgoingMessage]
    executors: list[list[bytes]]


class InboxBlock(Message, frozen=True):
    """Block ``number`` was handled; ``ciphertexts`` are its Command events'."""

    number: int
    ciphertexts: list[bytes]


class PostMessage(Message, frozen=True):
    """CommandInbox.submit of a message's ciphertext to its target."""

    target: bytes
    ciphertext: bytes


class BadPostingInput(LocalProtocolError):
    """An input that cannot be true (our host's fault): nothing changes."""

    code = "bad_posting_input"


class MessagePostingCore:
    """One worker host's message posting (see the module docstring)."""

    def __init__(
        self,
        worker_id: bytes,
        *,
        repost_blocks: int,
        post: bool = True,
        max_pending: int = DEFAULT_MAX_PENDING,
        address: int = 0,
        host: int = 0,
        chain: int = 0,
        incarnation: int = 0,
    ) -> None:
        if max_pending < 1:
            raise ConfigError("a posting core remembers at least one message")
        self.worker_id = bytes(worker_id)
        self.repost_blocks = max(1, int(repost_blocks))
        self.post = post
        self.max_pending = int(max_pending)
        self.address = address
        self.host = host
        self.chain = chain
        # keccak(ciphertext) -> (target, ciphertext, block by which it should be on chain)
        self.pending: OrderedDict[bytes, tuple[bytes, bytes, int]] = OrderedDict()
        self.in_flight: dict[str, str] = {}  # tag -> "posted" | "reposted"
        self.tags = TagSource("message", sep="/", incarnation=incarnation)
        self.posted = 0
        self.reposted = 0
        self.failed = 0

    # -- ProtocolNode ------------------------------------------------------------------
    @property
    def node_id(self) -> int:
        return self.address

    def on_start(self, now: float) -> list[Effect]:
        self.tags.start(now)  # no answer to an earlier incarnation's effect is taken
        return []

    def on_timer(self, name: str, now: float) -> list[Effect]:
        return []

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if isinstance(message, TxOutcome):
            return self.on_outcome(message) if sender == self.chain else []
        if sender != self.host:
            return []
        if isinstance(message, MessagesOut):
            return self.on_released(message)
        if isinstance(message, InboxBlock):
            return self.on_inbox_block(message)
        return []

    # -- inputs --------------------------------------------------------------------------
    def on_released(self, released: MessagesOut) -> list[Effect]:
        if released.number < 0 or len(released.messages) != len(released.executors):
            raise BadPostingInput("released messages name each source's executors")
        effects: list[Effect] = []
        for message, workers in zip(released.messages, released.executors, strict=True):
            if not workers:
                continue  # not a contract of ours
            leads = workers[0] == self.worker_id
            if not message.ciphertext:
                if leads:
                    effects.append(
                        Report(
                            "message_undeliverable",
                            f"message {message.seq} from 0x{message.source.hex()[:12]} to "
                            f"0x{message.target.hex()[:12]}: target key unknown",
                        )
                    )
                continue
            due = released.number + self.repost_blocks
            self.pending[keccak(message.ciphertext)] = (message.target, message.ciphertext, due)
            if leads and self.post:
                effects.append(self._post("posted", message.target, message.ciphertext))
        while len(self.pending) > self.max_pending:
            self.pending.popitem(last=False)
        return effects

    def on_inbox_block(self, block: InboxBlock) -> list[Effect]:
        if block.number < 0:
            raise BadPostingInput("a block number is >= 0")
        for ciphertext in block.ciphertexts:
            self.pending.pop(keccak(ciphertext), None)
        if not self.post:
            return []
        effects: list[Effect] = []
        for key, (target, ciphertext, due) in list(self.pending.items()):
            if due > block.number:
                continue
            self.pending[key] = (target, ciphertext, block.number + self.repost_blocks)
            effects.append(self._post("reposted", target, ciphertext))
        return effects

    def on_outcome(self, outcome: TxOutcome) -> list[Effect]:
        kind = self.in_flight.pop(outcome.tag, None)
        if kind is None:
            return []  # not ours, or answered already
        if outcome.status in ("sent", "mined"):
            if kind == "posted":
                self.posted += 1
            else:
                self.reposted += 1
            return []
        self.failed += 1
        return [Report("message_not_posted", str(outcome.reason or outcome.status))]

    def _post(self, kind: str, target: bytes, ciphertext: bytes) -> SubmitTx:
        tag = self.tags.issue()
        self.in_flight[tag] = kind
        while len(self.in_flight) > 2 * self.max_pending:  # outcomes lost: forget the oldest
            del self.in_flight[next(iter(self.in_flight))]
        return SubmitTx(tag, PostMessage(target=target, ciphertext=ciphertext))

    def get_status(self) -> dict[str, Any]:
        return {
            "messages_posted": self.posted,
            "messages_reposted": self.reposted,
            "messages_pending": len(self.pending),
            "messages_not_posted": self.failed,
        }
