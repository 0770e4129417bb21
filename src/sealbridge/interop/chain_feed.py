"""The gateway's chain feed: what its host hands the enclave's light clients, sans-I/O.

Theory of operation
-------------------
A gateway's enclave keeps a light client per bridged chain and signs only about what it
verified there (:mod:`sealbridge.interop.evm_gateway`). Its untrusted host decides when
to fetch what and hands it over; this core is those decisions, and the network driver
carries out its effects (:mod:`sealbridge.node.gateway` is the wiring).

**Inputs.** :class:`EscrowsNamed` (the enclave serves its escrows: before that there is
nothing to follow), :class:`SyncChains` (the follower loop is idle, or a sign request
wants the enclave up to date first), and the answers to its effects (from the chain
side only, with the awaited tag and of the kind the effect gets; evidence for more
blocks than were asked for is refused). Tags come from a
:class:`~sealbridge.core.tags.TagSource` started by ``on_start``: an answer to an effect
of the node's previous incarnation (in flight when it crashed) never carries the awaited
tag of a restarted core.

**A sync round**, one chain after another in chain-id order:

1. ``ReadChain(BridgedTipQuery(chain))`` -> the chain's newest block number; the round
   follows up to ``confirmations`` below it;
2. while the enclave's height is below that: ``ReadChain(EvidenceQuery(chain, numbers))``
   for the next :data:`EVIDENCE_BATCH` blocks (headers and receipts, unverified), then
   ``CallEnclave(GATEWAY_FOLLOW)`` for each, in order -- the enclave checks the hash
   links and receipts roots and answers its new height;
3. when following erased a share the enclave kept for a key handover, it returns its
   committee state sealed again: ``Persist("committee", ...)`` before anything else.

A round that fails (a chain unreachable, evidence the enclave refuses) stops where it
is and is reported; the heights reached stand, and the next :class:`SyncChains` goes on
from them. A :class:`SyncChains` during a round is remembered and starts one more round
when this one ends. Evidence is never trusted here: a lying RPC node can only make the
enclave refuse, never make it accept a block that does not link to its anchor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sealbridge.core.effects import (
    CallEnclave,
    ChainRead,
    Effect,
    EnclaveAnswer,
    Persist,
    ReadChain,
    Report,
)
from sealbridge.core.encoding import Message
from sealbridge.core.tags import TagSource
from sealbridge.interop.evm_gateway import GATEWAY_FOLLOW, FollowBlock, Height

__all__ = [
    "EVIDENCE_BATCH",
    "ChainFeedCore",
    "BridgedTipQuery",
    "EscrowsNamed",
    "EvidenceQuery",
    "SyncChains",
]

EVIDENCE_BATCH = 32  # blocks fetched per read


class EscrowsNamed(Message, frozen=True):
    """The enclave serves its escrows: the chains are followed from now on."""


class SyncChains(Message, frozen=True):
    """Bring the enclave's light clients up to ``confirmations`` below each tip."""


class BridgedTipQuery(Message, frozen=True):
    chain_id: int  # -> int (the newest block number)


class EvidenceQuery(Message, frozen=True):
    chain_id: int
    numbers: list[int]  # -> list[BlockEvidence], in this order


@dataclass
class _Round:
    chains: list[int]  # still to follow, in order
    final: int = -1  # the current chain's target height (-1: tip not read yet)
    evidence: list[Any] = field(default_factory=list)  # fetched, not yet handed over
    asked: int = 0  # blocks the evidence read in flight asked for


class ChainFeedCore:
    """A gateway host's chain feed (see the module docstring)."""

    def __init__(
        self,
        heights: dict[int, int],
        *,
        confirmations: int,
        address: int = 0,
        chain: int = 0,
        incarnation: int = 0,
    ) -> None:
        self.heights = dict(heights)  # chain id -> the enclave's verified height
        self.confirmations = max(int(confirmations), 0)
        self.address = address
        self.chain = chain
        self.active = False
        self.round: _Round | None = None
        self.again = False
        self.tag = ""
        self.awaited: type = ChainRead  # the kind of answer the tag's effect gets
        self.tags = TagSource("feed", incarnation=incarnation)
        self.rounds = 0
        self.blocks_fed = 0
        self.last_error = ""

    @property
    def node_id(self) -> int:
        return self.address

    # -- ProtocolNode ----------------------------------------------------------------
    def on_start(self, now: float) -> list[Effect]:
        self.tags.start(now)  # no answer to an earlier incarnation's effect is taken
        return []

    def on_timer(self, name: str, now: float) -> list[Effect]:
        return []

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if sender != self.chain:
            return []
        if isinstance(message, EscrowsNamed):
            self.active = True
            return []
        if isinstance(message, SyncChains):
            if not self.active:
                return []
            if self.round is not None:
                self.again = True
                return []
            return self._start_round()
        tag = getattr(message, "tag", None)
        if self.round is None or not self.tag or tag != self.tag:
            return []  # stale, replayed or unknown
        if type(message) is not self.awaited:
            return []  # not the kind of answer the effect gets: forged or misrouted
        self.tag = ""
        if isinstance(message, ChainRead):
            return self._on_read(self.round, message)
        if isinstance(message, EnclaveAnswer):
            return self._on_followed(self.round, message)
        return []  # never: the awaited kind is one of the two

    # -- a round -----------------------------------------------------------------------
    def _start_round(self) -> list[Effect]:
        self.round = _Round(chains=sorted(self.heights))
        self.rounds += 1
        return self._next(self.round)

    def _ask(self, effect: ReadChain | CallEnclave) -> list[Effect]:
        self.tag = self.tags.issue()
        if isinstance(effect, ReadChain):
            self.awaited = ChainRead
            return [ReadChain(self.tag, effect.query)]
        self.awaited = EnclaveAnswer
        return [CallEnclave(self.tag, effect.ecall, effect.request)]

    def _next(self, current: _Round) -> list[Effect]:
        """The next effect of the round, or its end."""
        while current.chains:
            chain_id = current.chains[0]
            if current.final < 0:
                return self._ask(ReadChain("", BridgedTipQuery(chain_id)))
            if current.evidence:
                block = FollowBlock(chain_id=chain_id, evidence=current.evidence[0])
                return self._ask(CallEnclave("", GATEWAY_FOLLOW, block))
            height = self.heights[chain_id]
            if height < current.final:
                last = min(current.final, height + EVIDENCE_BATCH)
                numbers = list(range(height + 1, last + 1))
                current.asked = len(numbers)
                return self._ask(ReadChain("", EvidenceQuery(chain_id, numbers)))
            current.chains.pop(0)
            current.final = -1
        return self._end()

    def _end(self) -> list[Effect]:
        self.round = None
        if self.again:
            self.again = False
            return self._start_round()
        return []

    def _fail(self, reason: str) -> list[Effect]:
        self.last_error = reason
        self.round = None
        self.again = False
        return [Report("chain_feed_stopped", reason)]

    def _on_read(self, current: _Round, answer: ChainRead) -> list[Effect]:
        chain_id = current.chains[0]
        if answer.error:
            return self._fail(f"chain {chain_id}: {answer.error}")
        if current.final < 0:
            if not isinstance(answer.value, int) or answer.value < 0:
                return self._fail(f"chain {chain_id}: not a block number")
            current.final = answer.value - self.confirmations
            return self._next(current)
        evidence = answer.value
        if not isinstance(evidence, list) or not evidence:
            return self._fail(f"chain {chain_id}: no evidence")
        if len(evidence) > current.asked:
            return self._fail(f"chain {chain_id}: more evidence than the blocks asked for")
        current.evidence = list(evidence)
        return self._next(current)

    def _on_followed(self, current: _Round, answer: EnclaveAnswer) -> list[Effect]:
        chain_id = current.chains[0]
        if answer.error:
            return self._fail(f"chain {chain_id}: the enclave refused a block: {answer.error}")
        height = answer.response
        if not isinstance(height, Height):
            return self._fail(f"chain {chain_id}: not a height")
        current.evidence.pop(0)
        self.heights[chain_id] = max(self.heights[chain_id], height.number)
        self.blocks_fed += 1
        self.last_error = ""
        effects: list[Effect] = []
        if height.committee:  # a share kept for a key handover was erased
            effects += [
                Persist("committee", bytes(height.committee)),
                Report("handover_share_erased", chain_id),
            ]
        return effects + self._next(current)
