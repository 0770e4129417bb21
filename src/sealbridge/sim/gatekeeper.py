"""Gatekeepers in the simulator: the committee, key publication and key release.

Theory of operation
-------------------
:class:`SimGatekeeper` is one gatekeeper host as a simulator node, with its trusted core
in process (a real :class:`~sealbridge.keyservice.gatekeeper.Gatekeeper`, whose
:class:`~sealbridge.keyservice.committee.CommitteeMember` holds the committee share,
behind the real ECALL handlers, called through their encoded boundary with the
simulator's clock). Two host cores decide, unchanged from the network gatekeeper:

* the **committee core** (:class:`~sealbridge.keyservice.committee_host.CommitteeHostCore`):
  eras and key generation on the chain model's committee rules, told the chain's
  height by a :class:`~sealbridge.sim.committee.TipPoller` every ``poll`` seconds;
  its ``Persist("committee")`` lands on the node's simulated disk;
* the **key publisher** (:class:`~sealbridge.keyservice.publisher.KeyPublisherCore`),
  when the node is given the registry: at each poll the host reads the deployments
  since the last one it saw (:class:`DeploymentsQuery`) and hands each to the core,
  which, for a contract naming this gatekeeper, asks its enclave for a key request,
  its peers for ``t - 1`` partial releases (``AskPeers``: a :class:`KeyReleaseAsk` to
  every other gatekeeper), its enclave to combine them and sign the public keys, and
  sends ``publish_contract_key`` (``PublishKeyOnChain``).

And it answers the peers' and the workers' :class:`KeyReleaseAsk`: the committee's group
keys at once, a partial release once it read the chain's facts about the request
(:class:`KeyFactsQuery`), decided by the real ``Gatekeeper.release_partial`` (the
request's signature, freshness and quote under the policy, the era, the requester's
entitlement -- an assigned active worker after publication, or the publishing
gatekeeper before -- and the binding to the install facts).

**What is modelled.** The facts are the chain model's answer: the network gatekeeper's
enclave reads them from state proofs at a header it verified
(:class:`~sealbridge.keyservice.facts_service.FactsServiceCore`), which the chain model
does not produce. The registry does not check the publication's signature (enclave
signatures are not modelled on chain, as in the registry model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sealbridge.core.effects import (
    AskPeers,
    CallEnclave,
    ChainRead,
    Effect,
    EnclaveAnswer,
    PeerAnswers,
    ReadChain,
    Send,
    SetTimer,
)
from sealbridge.core.encoding import Message, decode_canonical, encode
from sealbridge.core.errors import SealbridgeError
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.keyservice.committee import CommitteeState
from sealbridge.keyservice.committee_host import CommitteeHostCore, Followed
from sealbridge.keyservice.ecalls import (
    GATEKEEPER_PUBLISH_CONTRACT_KEY,
    MAKE_KEY_REQUEST,
    CommitteeEcalls,
    MakeKeyRequest,
    PublishKey,
)
from sealbridge.keyservice.gatekeeper import Gatekeeper
from sealbridge.keyservice.messages import (
    ChainFacts,
    KeyRequest,
    KeyRequestBody,
    PublishedContractKey,
    make_key_request,
)
from sealbridge.keyservice.publisher import ContractDeployedSeen, KeyPublisherCore
from sealbridge.keyservice.threshold_messages import PartialKeyRelease
from sealbridge.runtime.catchup import GroupKeysRequest
from sealbridge.sim.committee import TipPoller
from sealbridge.sim.local_enclave import LocalEnclave
from sealbridge.tee.card import AttestedCard
from sealbridge.tee.ecall import get_ecall_table
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.policy import AttestationPolicy

__all__ = [
    "DeploymentsQuery",
    "KeyFactsQuery",
    "KeyReleaseAnswer",
    "KeyReleaseAsk",
    "SimGatekeeper",
]

MAX_RELEASES = 64  # key requests a simulated gatekeeper holds while it reads their facts
ASK_TIMEOUT = 2.0  # seconds the publisher's peers have to answer
ASK_TIMER = "peers-timeout"


class KeyReleaseAsk(Message, frozen=True):
    """A worker's or a peer gatekeeper's host asks: the committee's group keys, or this
    gatekeeper's partial release of a contract key."""

    tag: str
    request: GroupKeysRequest | KeyRequest


class KeyReleaseAnswer(Message, frozen=True):
    tag: str
    group: GroupPublicKeys | None = None
    release: PartialKeyRelease | None = None
    error: str = ""


class KeyFactsQuery(Message, frozen=True):
    """What the chain says about a key request (answer: ``ChainFacts``)."""

    contract_id: bytes
    worker_id: bytes


class DeploymentsQuery(Message, frozen=True):
    """The ContractRegistry's deployments in blocks [first, last] (answer: a list of
    ``ContractDeployedSeen``, in chain order)."""

    first: int
    last: int


@dataclass
class _PeerAsk:
    tag: str
    needed: int
    asked: set[int]
    answered: set[int] = field(default_factory=set)
    answers: list[PartialKeyRelease] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _KeyEcalls:
    """The gatekeeper's key ECALLs over its trusted core (as ``GatekeeperProgram``'s)."""

    def __init__(self, ctx: EnclaveContext, gatekeeper: Gatekeeper, clock: Callable[[], float]):
        self.ctx = ctx
        self.gatekeeper = gatekeeper
        self.clock = clock

    @MAKE_KEY_REQUEST.handler
    def make_key_request(self, request: MakeKeyRequest) -> KeyRequest:
        return make_key_request(self.ctx, request.contract_id, int(self.clock()), request.version)

    @GATEKEEPER_PUBLISH_CONTRACT_KEY.handler
    def publish_contract_key(self, request: PublishKey) -> PublishedContractKey:
        return self.gatekeeper.publish_contract_key(request.request, request.releases)


class SimGatekeeper:
    """One gatekeeper in the simulator (see the module docstring)."""

    def __init__(
        self,
        address: int,
        *,
        chain: int,
        enclave: EnclaveContext,
        policy: AttestationPolicy,
        measurement: bytes,
        clock: Callable[[], float],
        poll: float = 1.0,
        peers: tuple[int, ...] = (),
        chain_id: int = 0,
        contract_registry: str = "",
    ) -> None:
        self.address = address
        self.chain = chain
        self.enclave = enclave
        self.clock = clock
        self.gatekeeper = Gatekeeper(enclave=enclave, policy=policy, measurement=measurement)
        self.member = self.gatekeeper.committee
        self.card = AttestedCard(node=enclave.identity, quote=enclave.get_identity_quote())
        self.committee_id = enclave.identity.identity_key
        self.core = CommitteeHostCore(self.committee_id, scanned=0, address=address, chain=chain)
        committee = CommitteeEcalls(get_member=lambda: self.member, seal=_seal_for_sim, clock=clock)
        keys = _KeyEcalls(enclave, self.gatekeeper, clock)
        self.local = LocalEnclave(get_ecall_table(committee, keys), "gatekeeper")
        self.follower = TipPoller(chain, poll)
        self.peers = tuple(p for p in peers if p != address)
        self.publisher: KeyPublisherCore | None = None
        if contract_registry:
            self.publisher = KeyPublisherCore(
                self.committee_id,
                chain_id=chain_id,
                contract_registry=contract_registry,
                address=address,
                chain=chain,
            )
        self.seen = 0  # the newest block whose deployments were handed to the publisher
        self.reading_deployments = ""
        self.deployments_last = 0  # the last block of the deployments read in flight
        self.peer_ask: _PeerAsk | None = None
        # facts read tag -> (the asker, its tag, its request)
        self.releases: dict[str, tuple[int, str, KeyRequest]] = {}
        self._reads = 0
        self.released = 0
        self.refused = 0

    @property
    def node_id(self) -> int:
        return self.address

    # -- ProtocolNode ----------------------------------------------------------------------
    def on_start(self, now: float) -> list[Effect]:
        out = self._run([*self.core.on_start(now), self.follower.start()], now)
        if self.publisher is not None:
            out += self._run_publisher(self.publisher.on_start(now), now)
        return out

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name == TipPoller.TIMER:
            return self.follower.ask()
        if name == ASK_TIMER:
            return self._finish_peer_ask(now)
        if name == "retry" and self.publisher is not None:
            return self._run_publisher(self.publisher.on_timer(name, now), now)
        return self._run(self.core.on_timer(name, now), now)

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if isinstance(message, KeyReleaseAsk):
            return self._on_key_ask(sender, message)
        if isinstance(message, KeyReleaseAnswer):
            return self._on_peer_answer(sender, message, now)
        tag = getattr(message, "tag", None)
        if sender == self.chain and tag:
            if isinstance(message, ChainRead) and tag in self.releases:
                return self._release(message)
            if isinstance(message, ChainRead) and tag == self.reading_deployments:
                return self._on_deployments(message, now)
            publisher = self.publisher
            if publisher is not None and publisher.job is not None and tag == publisher.job.tag:
                return self._run_publisher(publisher.on_message(sender, message, now), now)
        if self.follower.claims(message):
            height = self.follower.take(sender, message)
            if height is None:
                return []
            return self._run(
                self.core.on_message(sender, Followed(height=height), now), now
            ) + self._read_deployments(height)
        return self._run(self.core.on_message(sender, message, now), now)

    # -- key publication ------------------------------------------------------------------
    def _read_deployments(self, height: int) -> list[Effect]:
        if self.publisher is None or self.reading_deployments or height <= self.seen:
            return []
        self._reads += 1
        self.reading_deployments = f"deployments:{self._reads}"
        self.deployments_last = height
        return [ReadChain(self.reading_deployments, DeploymentsQuery(self.seen + 1, height))]

    def _on_deployments(self, read: ChainRead, now: float) -> list[Effect]:
        self.reading_deployments = ""
        if read.error or not isinstance(read.value, list) or self.publisher is None:
            return []  # read again at the next poll
        out: list[Effect] = []
        for seen in read.value:
            if isinstance(seen, ContractDeployedSeen):
                out += self._run_publisher(self.publisher.on_message(self.chain, seen, now), now)
        self.seen = max(self.seen, self.deployments_last)
        return out

    def _run_publisher(self, effects: list[Effect], now: float) -> list[Effect]:
        """The publisher's effects: enclave calls at once, peers over the links."""
        publisher = self.publisher
        if publisher is None:
            return []
        out: list[Effect] = []
        queue = list(effects)
        while queue:
            effect = queue.pop(0)
            if isinstance(effect, CallEnclave):
                queue += publisher.on_message(self.chain, self._ecall(effect), now)
            elif isinstance(effect, AskPeers) and isinstance(effect.request, KeyRequest):
                self.peer_ask = _PeerAsk(effect.tag, effect.needed, set(self.peers))
                ask = KeyReleaseAsk(effect.tag, effect.request)
                out += [Send(self.peers, ask), SetTimer(ASK_TIMER, ASK_TIMEOUT)]
            else:
                out.append(effect)
        return out

    def _on_peer_answer(self, sender: int, answer: KeyReleaseAnswer, now: float) -> list[Effect]:
        ask = self.peer_ask
        if ask is None or answer.tag != ask.tag or sender not in ask.asked:
            return []
        if sender in ask.answered:
            return []
        ask.answered.add(sender)
        if answer.release is not None:
            ask.answers.append(answer.release)
        else:
            ask.errors.append(f"gatekeeper-{sender}: {answer.error or 'no partial'}")
        if len(ask.answers) < ask.needed and len(ask.answered) < len(ask.asked):
            return []
        return self._finish_peer_ask(now)

    def _finish_peer_ask(self, now: float) -> list[Effect]:
        ask, self.peer_ask = self.peer_ask, None
        if ask is None or self.publisher is None:
            return []
        answer = PeerAnswers(ask.tag, answers=tuple(ask.answers), errors=tuple(ask.errors))
        return self._run_publisher(self.publisher.on_message(self.chain, answer, now), now)

    # -- key release ------------------------------------------------------------------------
    def _on_key_ask(self, sender: int, ask: KeyReleaseAsk) -> list[Effect]:
        """A question: the group keys at once; a partial release once the chain's facts
        about the request are read."""
        if isinstance(ask.request, GroupKeysRequest):
            try:
                group = self.member.get_active().public
            except SealbridgeError as exc:
                return [Send((sender,), KeyReleaseAnswer(ask.tag, error=exc.message))]
            return [Send((sender,), KeyReleaseAnswer(ask.tag, group=group))]
        if not isinstance(ask.request, KeyRequest) or len(self.releases) >= MAX_RELEASES:
            error = "not a key request, or busy"
            return [Send((sender,), KeyReleaseAnswer(ask.tag, error=error))]
        try:
            body = decode_canonical(ask.request.body, KeyRequestBody)
        except SealbridgeError as exc:
            return [Send((sender,), KeyReleaseAnswer(ask.tag, error=exc.message))]
        self._reads += 1
        tag = f"key-facts:{self._reads}"
        self.releases[tag] = (sender, ask.tag, ask.request)
        return [ReadChain(tag, KeyFactsQuery(body.contract_id, body.worker_id))]

    def _release(self, read: ChainRead) -> list[Effect]:
        sender, tag, request = self.releases.pop(read.tag)
        if read.error or not isinstance(read.value, ChainFacts):
            self.refused += 1
            return [Send((sender,), KeyReleaseAnswer(tag, error=read.error or "no facts"))]
        try:
            release = self.gatekeeper.release_partial(request, read.value, int(self.clock()))
        except SealbridgeError as exc:
            self.refused += 1
            error = f"{exc.code}: {exc.message}"
            return [Send((sender,), KeyReleaseAnswer(tag, error=error))]
        self.released += 1
        return [Send((sender,), KeyReleaseAnswer(tag, release=release))]

    # -- the enclave --------------------------------------------------------------------------
    def _run(self, effects: list[Effect], now: float) -> list[Effect]:
        """Carry out the committee core's enclave calls at once (the enclave is local);
        pass on the rest."""
        out: list[Effect] = []
        queue = list(effects)
        while queue:
            effect = queue.pop(0)
            if not isinstance(effect, CallEnclave):
                out.append(effect)
                continue
            queue += self.core.on_message(self.chain, self._ecall(effect), now)
        return out

    def _ecall(self, effect: CallEnclave) -> EnclaveAnswer:
        return self.local.answer(effect)


def _seal_for_sim(state: CommitteeState) -> bytes:
    """The simulator's stand-in for sealing: the state's canonical encoding (the disk
    of a simulated node is the simulator's own memory)."""
    return encode(state)
