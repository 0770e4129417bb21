"""Serving a key request: what a gatekeeper host fetches for its enclave, sans-I/O.

Theory of operation
-------------------
A worker (or the contract's own gatekeeper, to publish) asks a gatekeeper for its
partial of a contract key (``POST /v1/partial``). The gatekeeper's enclave releases it
only after reading the request's facts -- the worker's registration, the contract's
assignment and key version, a pending rotation, a checkpoint after it, the committee's
era -- from Merkle proofs against a block header it verified itself
(:mod:`sealbridge.keyservice.chainfacts`). The host fetches; this core decides what, in
which order, and when to fetch again; :mod:`sealbridge.node.gatekeeper` is the wiring
(an inline network driver, one request at a time under the host's facts lock).

**Steps of one request** (:class:`ServeStep`), each waiting on one effect:

1. ``FINAL`` -- ``ReadChain(FinalBlockQuery())``: the chain's newest block minus the
   host's confirmations (the block facts are read at);
2. ``TIP`` -- ``CallEnclave(GATEKEEPER_ADVANCE_HEADERS)`` with no headers: the enclave's
   newest verified header;
3. ``HEADERS`` / ``ADVANCING`` -- while the enclave is below the final block:
   ``ReadChain(HeaderFieldsQuery)`` of the next :data:`HEADER_BATCH` headers, handed to
   the enclave (``GATEKEEPER_ADVANCE_HEADERS``), which checks the hash links; its sealed
   tip is persisted (``Persist("chain-tip")``) before anything else;
4. ``PROOF`` -- ``ReadChain(FactsProofQuery)``: ``eth_getProof`` of every slot the facts
   are read from, at the enclave's tip;
5. ``RELEASE`` -- ``CallEnclave(GATEKEEPER_RELEASE_PARTIAL)``: the enclave verifies the
   proofs and the request and answers the partial, encrypted to the requester.

**Fetching again.** A proof the enclave refuses as ``proof_invalid`` is read again from
step 1, at most :data:`PROOF_ATTEMPTS` times in all, but only when the chain moved past
the header it was read at (``FINAL_CHECK``): anvil has answered a past block's
``eth_getProof`` from newer state while blocks were being mined; on a chain that did not
move, the refusal is the answer. Every other failure -- a read the driver could not
carry out, any other refusal -- ends the request with that error; nothing is retried
behind the requester's back (it asks another gatekeeper, or again).

The core never judges the facts: a wrong header, proof or request is the enclave's to
refuse. It only takes answers from the chain side with the awaited tag and of the kind
the effect gets (anything else changes nothing), and ends a request whose header read
answered more headers than it asked for. Tags come from a
:class:`~sealbridge.core.tags.TagSource` that ``on_start`` begins anew: an answer to an
effect of the node's previous incarnation (in flight when it crashed) never carries
a restarted core's tag. The answer
(:attr:`FactsServiceCore.result`) is the partial release or the error, taken by the
wiring once the driver has nothing more to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sealbridge.core.effects import (
    CallEnclave,
    ChainRead,
    Effect,
    EnclaveAnswer,
    Persist,
    ReadChain,
)
from sealbridge.core.encoding import Message
from sealbridge.core.errors import LocalProtocolError
from sealbridge.core.tags import TagSource
from sealbridge.keyservice.chainfacts import FactsProof
from sealbridge.keyservice.ecalls import (
    GATEKEEPER_ADVANCE_HEADERS,
    GATEKEEPER_RELEASE_PARTIAL,
    AdvanceHeaders,
    ChainTip,
    ReleaseKey,
)
from sealbridge.keyservice.messages import KeyRequest
from sealbridge.keyservice.threshold_messages import PartialKeyRelease

__all__ = [
    "HEADER_BATCH",
    "PROOF_ATTEMPTS",
    "FactsProofQuery",
    "FactsServiceCore",
    "FinalBlockQuery",
    "HeaderFieldsQuery",
    "ServeKeyRequest",
    "ServeStep",
    "ServiceBusy",
]

HEADER_BATCH = 256  # headers handed to the enclave per ECALL
PROOF_ATTEMPTS = 3  # reads of a request's facts while the chain moves under them
CHAIN_TIP_KEY = "chain-tip"


class ServiceBusy(LocalProtocolError):
    """A second request while one is served (the wiring serialises them)."""

    code = "facts_service_busy"


class ServeKeyRequest(Message, frozen=True):
    request: KeyRequest
    contract_id: bytes
    worker_id: bytes


class FinalBlockQuery(Message, frozen=True):
    """The chain's newest block minus the host's confirmations -> int."""


class HeaderFieldsQuery(Message, frozen=True):
    numbers: list[int]  # -> list[HeaderFields], in this order


class FactsProofQuery(Message, frozen=True):
    contract_id: bytes
    worker_id: bytes
    number: int  # -> FactsProof at this block


class ServeStep(StrEnum):
    IDLE = "idle"
    FINAL = "final"
    TIP = "tip"
    HEADERS = "headers"
    ADVANCING = "advancing"
    PROOF = "proof"
    RELEASE = "release"
    FINAL_CHECK = "final_check"


@dataclass
class _Serving:
    order: ServeKeyRequest
    attempts: int = 1
    final: int = 0
    tip: int = 0


class FactsServiceCore:
    """A gatekeeper host's service of key requests (see the module docstring)."""

    def __init__(self, *, address: int = 0, chain: int = 0, incarnation: int = 0) -> None:
        self.address = address
        self.chain = chain
        self.step = ServeStep.IDLE
        self.serving: _Serving | None = None
        self.tag = ""
        self.awaited: type = ChainRead  # the kind of answer the tag's effect gets
        self.asked = 0  # header numbers the header read in flight asked for
        self.tags = TagSource("facts", incarnation=incarnation)
        self.result: PartialKeyRelease | str | None = None  # the release, or an error
        self.released = 0
        self.refetched = 0
        self.refusal = ""  # the stale-proof refusal being checked against the chain

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
        if isinstance(message, ServeKeyRequest):
            if self.serving is not None:
                raise ServiceBusy("a key request is being served")
            self.serving = _Serving(message)
            self.result = None
            return self._begin()
        tag = getattr(message, "tag", None)
        serving = self.serving
        if serving is None or not self.tag or tag != self.tag:
            return []  # stale, replayed or unknown
        if type(message) is not self.awaited:
            return []  # not the kind of answer the effect gets: forged or misrouted
        self.tag = ""
        if isinstance(message, ChainRead) and message.error:
            return self._end(f"chain: {message.error}")
        if isinstance(message, EnclaveAnswer) and message.error:
            return self._on_refusal(serving, message.error)
        return self._advance(serving, message)

    # -- steps -------------------------------------------------------------------------
    def _ask(self, step: ServeStep, effect: ReadChain | CallEnclave) -> list[Effect]:
        self.tag = self.tags.issue()
        self.step = step
        if isinstance(effect, ReadChain):
            self.awaited = ChainRead
            return [ReadChain(self.tag, effect.query)]
        self.awaited = EnclaveAnswer
        return [CallEnclave(self.tag, effect.ecall, effect.request)]

    def _begin(self) -> list[Effect]:
        return self._ask(ServeStep.FINAL, ReadChain("", FinalBlockQuery()))

    def _end(self, result: PartialKeyRelease | str) -> list[Effect]:
        self.result = result
        self.serving = None
        self.step = ServeStep.IDLE
        return []

    def _advance(self, serving: _Serving, answer: Any) -> list[Effect]:
        value = getattr(answer, "value", None)
        response = getattr(answer, "response", None)
        step = self.step
        if step == ServeStep.FINAL:
            if not isinstance(value, int) or value < 0:
                return self._end("chain: not a block number")
            serving.final = value
            request = AdvanceHeaders(headers=[])
            return self._ask(ServeStep.TIP, CallEnclave("", GATEKEEPER_ADVANCE_HEADERS, request))
        if step in (ServeStep.TIP, ServeStep.ADVANCING):
            if not isinstance(response, ChainTip):
                return self._end("enclave: not a chain tip")
            effects: list[Effect] = []
            if step == ServeStep.ADVANCING:
                effects.append(Persist(CHAIN_TIP_KEY, bytes(response.sealed)))
            serving.tip = response.tip.number
            return effects + self._headers_or_proof(serving)
        if step == ServeStep.HEADERS:
            if not isinstance(value, list) or not value:
                return self._end("chain: no header fields")
            if len(value) > self.asked:
                return self._end("chain: more header fields than the numbers asked for")
            request = AdvanceHeaders(headers=value)
            return self._ask(
                ServeStep.ADVANCING, CallEnclave("", GATEKEEPER_ADVANCE_HEADERS, request)
            )
        if step == ServeStep.PROOF:
            if not isinstance(value, FactsProof):
                return self._end("chain: not a facts proof")
            release = ReleaseKey(request=serving.order.request, proof=value)
            return self._ask(
                ServeStep.RELEASE, CallEnclave("", GATEKEEPER_RELEASE_PARTIAL, release)
            )
        if step == ServeStep.RELEASE:
            if not isinstance(response, PartialKeyRelease):
                return self._end("enclave: not a partial release")
            self.released += 1
            return self._end(response)
        if step == ServeStep.FINAL_CHECK:
            moved = isinstance(value, int) and value > serving.tip
            if not moved:
                return self._end(self.refusal)
            serving.attempts += 1
            self.refetched += 1
            return self._begin()
        return self._end("no such step")  # never: every step is listed

    def _headers_or_proof(self, serving: _Serving) -> list[Effect]:
        if serving.tip < serving.final:
            last = min(serving.final, serving.tip + HEADER_BATCH)
            numbers = list(range(serving.tip + 1, last + 1))
            self.asked = len(numbers)
            return self._ask(ServeStep.HEADERS, ReadChain("", HeaderFieldsQuery(numbers)))
        order = serving.order
        query = FactsProofQuery(order.contract_id, order.worker_id, serving.tip)
        return self._ask(ServeStep.PROOF, ReadChain("", query))

    def _on_refusal(self, serving: _Serving, error: str) -> list[Effect]:
        """The enclave refused: a stale proof under a moving chain is read again."""
        stale = self.step == ServeStep.RELEASE and error.startswith("proof_invalid")
        if not stale or serving.attempts >= PROOF_ATTEMPTS:
            return self._end(f"enclave: {error}")
        self.refusal = f"enclave: {error}"
        return self._ask(ServeStep.FINAL_CHECK, ReadChain("", FinalBlockQuery()))
