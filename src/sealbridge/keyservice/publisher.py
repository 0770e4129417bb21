"""The key publisher: a gatekeeper host's decisions about contract keys, sans-I/O.

Theory of operation
-------------------
A contract's key is never held by one gatekeeper: the contract's *publishing*
gatekeeper (named in ``ContractDeployed``) has its enclave combine its own partial with
``t - 1`` of its peers' into the contract key, and publishes what the ContractRegistry
records of it (the public keys, signed by the enclave). The same happens for each new
key version the deployer asks for (``KeyRotationRequested``). This core decides what
the host does about those events; the network driver carries out its effects
(:mod:`sealbridge.node.gatekeeper` is the wiring).

**Inputs.** :class:`ContractDeployedSeen` and :class:`KeyRotationRequestedSeen`, in
chain order (the host's block follower hands them over), the ``retry`` timer, and the
answers to its effects (from the chain side only, with the awaited tag). Tags come from a
:class:`~sealbridge.core.tags.TagSource` that ``on_start`` begins anew: an answer to an
effect of the node's previous incarnation (in flight when it crashed) never carries
a restarted core's tag.

**One job per event, one at a time.** A job's steps, each waiting on one effect:

======================  ==================================================  =============
step                    effect                                              next
======================  ==================================================  =============
``check``               ``ReadChain``: published already? / the record      ``status``, or done
``status``              ``COMMITTEE_STATUS`` ECALL (holds an active share?)  ``request``, or done
``request``             ``MAKE_KEY_REQUEST`` ECALL (the enclave's request)   ``partials``
``partials``            ``AskPeers`` for ``t - 1`` partial releases         ``combine``, or again
``combine``             ``GATEKEEPER_PUBLISH_CONTRACT_KEY`` ECALL            ``send``
``send``                ``publish_contract_key`` / ``rotate_contract_key``  done
======================  ==================================================  =============

A deployment naming another gatekeeper, a key already published, a rotation that is
not (or no longer) pending at the announced version, or an enclave with no active share
end the job at ``check`` or ``status``. Too few partials (peers down or not yet
following) is a passing condition: the peers are asked again after
:data:`RETRY_DELAY`, at most :data:`MAX_ATTEMPTS` times; then the job is given up and
reported (``key_publish_gave_up``) so later deployments are not held behind it. A
revert (published meanwhile by another path) is reported, not retried. Every answer the
core acts on is checked for its type; partials count only when they are of the job's
key and one per share index (a repeated or foreign partial would fill the ``t - 1``
with partials the enclave cannot combine, and end the job), and are passed to the
enclave, which verifies each against the committee's public shares.

**Trust.** The host is untrusted; the worst a wrong decision here does is delay a key
(the deployer sees it unpublished). The key itself is combined and signed in the
enclave, and the registry checks the signature.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sealbridge.core.effects import (
    AskPeers,
    CallEnclave,
    ChainRead,
    Effect,
    EnclaveAnswer,
    PeerAnswers,
    ReadChain,
    Report,
    SetTimer,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.encoding import Message
from sealbridge.core.tags import TagSource
from sealbridge.crypto.keyschedule import compute_key_id
from sealbridge.keyservice.ecalls import (
    COMMITTEE_STATUS,
    GATEKEEPER_PUBLISH_CONTRACT_KEY,
    MAKE_KEY_REQUEST,
    CommitteeStatus,
    MakeKeyRequest,
    PublishKey,
)
from sealbridge.keyservice.messages import KeyRequest, PublishedContractKey, PublishKeyRequest
from sealbridge.keyservice.threshold_messages import PartialKeyRelease
from sealbridge.tee.ecall import NOTHING

__all__ = [
    "MAX_ATTEMPTS",
    "RETRY_DELAY",
    "ContractDeployedSeen",
    "ContractKeyQuery",
    "ContractKeyView",
    "KeyPublishedQuery",
    "KeyPublisherCore",
    "KeyRotationRequestedSeen",
    "PublishKeyOnChain",
    "PublishStep",
    "RotateKeyOnChain",
]

RETRY_DELAY = 2.0  # seconds before the peers are asked again for partials
MAX_ATTEMPTS = 150  # asks for partials (about five minutes) before a job is given up
MAX_BACKLOG = 10_000  # events waiting; more are refused (and reported)


class ContractDeployedSeen(Message, frozen=True):
    contract_id: bytes
    gatekeeper_id: bytes  # the publishing gatekeeper the deployment names


class KeyRotationRequestedSeen(Message, frozen=True):
    contract_id: bytes
    version: int


class KeyPublishedQuery(Message, frozen=True):
    contract_id: bytes  # -> bool


class ContractKeyQuery(Message, frozen=True):
    contract_id: bytes  # -> ContractKeyView | None


class ContractKeyView(Message, frozen=True):
    """What the ContractRegistry says of a contract's key."""

    gatekeeper_id: bytes
    key_version: int
    rotation_pending: bool


class PublishKeyOnChain(Message, frozen=True):
    contract_id: bytes
    contract_public_key: bytes
    message_key: bytes
    wrapped_key: bytes
    signature: bytes


class RotateKeyOnChain(Message, frozen=True):
    contract_id: bytes
    version: int
    contract_public_key: bytes
    message_key: bytes
    signature: bytes


class PublishStep(StrEnum):
    CHECK = "check"
    STATUS = "status"
    REQUEST = "request"
    PARTIALS = "partials"
    COMBINE = "combine"
    SEND = "send"


_Io = ReadChain | SubmitTx | CallEnclave | AskPeers


@dataclass
class _Job:
    contract_id: bytes
    version: int  # 0: the first key (a deployment)
    step: PublishStep = PublishStep.CHECK
    needed: int = 0
    request: KeyRequest | None = None
    attempts: int = 0
    tag: str = ""
    effect: _Io | None = None


class KeyPublisherCore:
    """A gatekeeper's decisions about contract keys (see the module docstring)."""

    def __init__(
        self,
        node_id: bytes,
        *,
        chain_id: int,
        contract_registry: str,
        address: int = 0,
        chain: int = 0,
        incarnation: int = 0,
    ) -> None:
        self.my_id = bytes(node_id)
        self.chain_id = chain_id
        self.contract_registry = contract_registry
        self.address = address
        self.chain = chain
        self.backlog: deque[_Job] = deque()
        self.job: _Job | None = None
        self.tags = TagSource("publisher", incarnation=incarnation)
        self.published = 0
        self.rotated = 0
        self.gave_up = 0
        self.last_note = ""

    @property
    def node_id(self) -> int:
        return self.address

    # -- ProtocolNode ----------------------------------------------------------------
    def on_start(self, now: float) -> list[Effect]:
        self.tags.start(now)  # no answer to an earlier incarnation's effect is taken
        return []

    def on_timer(self, name: str, now: float) -> list[Effect]:
        job = self.job
        if name != "retry" or job is None or job.effect is None or job.tag:
            return []
        return self._emit(job, job.effect)

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if sender != self.chain:
            return []  # only the chain side answers
        if isinstance(message, ContractDeployedSeen):
            if bytes(message.gatekeeper_id) != self.my_id:
                return []  # another gatekeeper publishes it
            return self._enqueue(_Job(bytes(message.contract_id), 0))
        if isinstance(message, KeyRotationRequestedSeen):
            if message.version < 1:
                return []
            return self._enqueue(_Job(bytes(message.contract_id), int(message.version)))
        job = self.job
        tag = getattr(message, "tag", None)
        if job is None or not isinstance(tag, str) or not job.tag or tag != job.tag:
            return []  # stale, replayed or unknown
        job.tag = ""
        return self._advance(job, message) + self._pump()

    # -- jobs --------------------------------------------------------------------------
    def _enqueue(self, job: _Job) -> list[Effect]:
        if len(self.backlog) >= MAX_BACKLOG:
            self.last_note = f"backlog full: {job.contract_id.hex()[:12]}… not published"
            return [Report("key_publish_dropped", self.last_note)]
        self.backlog.append(job)
        return self._pump()

    def _pump(self) -> list[Effect]:
        if self.job is not None or not self.backlog:
            return []
        job = self.job = self.backlog.popleft()
        if job.version == 0:
            return self._emit(job, ReadChain("", KeyPublishedQuery(job.contract_id)))
        return self._emit(job, ReadChain("", ContractKeyQuery(job.contract_id)))

    def _emit(
        self, job: _Job, effect: ReadChain | SubmitTx | CallEnclave | AskPeers
    ) -> list[Effect]:
        job.tag = self.tags.issue()
        job.effect = effect
        if isinstance(effect, ReadChain):
            return [ReadChain(job.tag, effect.query)]
        if isinstance(effect, SubmitTx):
            return [SubmitTx(job.tag, effect.tx)]
        if isinstance(effect, AskPeers):
            return [AskPeers(job.tag, effect.request, effect.needed)]
        return [CallEnclave(job.tag, effect.ecall, effect.request)]

    def _done(self, *effects: Effect) -> list[Effect]:
        self.job = None
        return list(effects)

    def _refused(self, job: _Job, reason: str) -> list[Effect]:
        self.last_note = (
            f"key v{job.version} of {job.contract_id.hex()[:12]}…: {job.step.value}: {reason}"
        )
        return self._done(Report("key_publish_refused", self.last_note))

    def _advance(self, job: _Job, answer: Any) -> list[Effect]:
        step = job.step
        if isinstance(answer, ChainRead) and answer.error:
            if answer.passing:
                return self._again(job, answer.error)
            return self._refused(job, answer.error)
        if isinstance(answer, EnclaveAnswer) and answer.error:
            return self._refused(job, answer.error)
        if step == PublishStep.CHECK:
            return self._on_check(job, getattr(answer, "value", None))
        if step == PublishStep.STATUS:
            status = getattr(answer, "response", None)
            if not isinstance(status, CommitteeStatus):
                return self._refused(job, "malformed committee status")
            if status.group is None:
                return self._refused(job, "this gatekeeper holds no active share")
            job.needed = max(status.group.threshold - 1, 0)
            job.step = PublishStep.REQUEST
            make = MakeKeyRequest(contract_id=job.contract_id, version=job.version)
            return self._emit(job, CallEnclave("", MAKE_KEY_REQUEST, make))
        if step == PublishStep.REQUEST:
            request = getattr(answer, "response", None)
            if not isinstance(request, KeyRequest):
                return self._refused(job, "malformed key request")
            job.request = request
            job.step = PublishStep.PARTIALS
            return self._ask_peers(job)
        if step == PublishStep.PARTIALS:
            return self._on_partials(job, answer)
        if step == PublishStep.COMBINE:
            published = getattr(answer, "response", None)
            if not isinstance(published, PublishedContractKey):
                return self._refused(job, "malformed published key")
            return self._send(job, published)
        if step == PublishStep.SEND:
            return self._on_sent(job, answer)
        return self._refused(job, "no such step")  # never: every step is listed

    def _on_check(self, job: _Job, value: Any) -> list[Effect]:
        if job.version == 0:
            if value is not False:
                return self._done()  # published already (or a malformed answer)
        elif not isinstance(value, ContractKeyView) or (
            value.gatekeeper_id != self.my_id
            or not value.rotation_pending
            or value.key_version + 1 != job.version
        ):
            return self._done()  # not ours, or rotated meanwhile
        job.step = PublishStep.STATUS
        return self._emit(job, CallEnclave("", COMMITTEE_STATUS, NOTHING))

    def _ask_peers(self, job: _Job) -> list[Effect]:
        if job.needed == 0:
            return self._combine(job, [])
        job.attempts += 1
        return self._emit(job, AskPeers("", job.request, job.needed))

    def _on_partials(self, job: _Job, answer: Any) -> list[Effect]:
        if not isinstance(answer, PeerAnswers):
            return self._refused(job, "not an answer of the peers")
        key_id = compute_key_id(job.contract_id, job.version)
        releases: dict[int, PartialKeyRelease] = {}  # share index -> its first partial
        for a in answer.answers:
            if isinstance(a, PartialKeyRelease) and a.contract_id == key_id:
                if isinstance(a.index, int):
                    releases.setdefault(a.index, a)
        if len(releases) >= job.needed:
            return self._combine(job, list(releases.values())[: job.needed])
        reason = f"{len(releases)} of {job.needed} peer partials"
        if job.attempts >= MAX_ATTEMPTS:
            self.gave_up += 1
            self.last_note = f"key v{job.version} of {job.contract_id.hex()[:12]}…: {reason}"
            return self._done(Report("key_publish_gave_up", self.last_note))
        job.tag = ""  # the retry timer asks again
        job.effect = AskPeers("", job.request, job.needed)
        job.attempts += 1
        return [Report("key_publish_waiting", reason), SetTimer("retry", RETRY_DELAY)]

    def _again(self, job: _Job, reason: str) -> list[Effect]:
        job.attempts += 1
        if job.attempts > MAX_ATTEMPTS:
            self.gave_up += 1
            return self._refused(job, reason)
        return [SetTimer("retry", RETRY_DELAY)]

    def _combine(self, job: _Job, releases: list[PartialKeyRelease]) -> list[Effect]:
        job.step = PublishStep.COMBINE
        request = PublishKeyRequest(
            contract_id=job.contract_id,
            chain_id=self.chain_id,
            contract_registry_address=self.contract_registry,
            version=job.version,
        )
        publish = PublishKey(request=request, releases=releases)
        return self._emit(job, CallEnclave("", GATEKEEPER_PUBLISH_CONTRACT_KEY, publish))

    def _send(self, job: _Job, key: PublishedContractKey) -> list[Effect]:
        job.step = PublishStep.SEND
        tx: PublishKeyOnChain | RotateKeyOnChain
        if job.version == 0:
            tx = PublishKeyOnChain(
                contract_id=job.contract_id,
                contract_public_key=key.contract_public_key,
                message_key=key.message_key,
                wrapped_key=key.wrapped_key,
                signature=key.signature,
            )
        else:
            tx = RotateKeyOnChain(
                contract_id=job.contract_id,
                version=job.version,
                contract_public_key=key.contract_public_key,
                message_key=key.message_key,
                signature=key.signature,
            )
        return self._emit(job, SubmitTx("", tx))

    def _on_sent(self, job: _Job, answer: Any) -> list[Effect]:
        if not isinstance(answer, TxOutcome):
            return self._refused(job, "not a transaction outcome")
        if answer.status == "failed":
            return self._again(job, answer.reason)
        if answer.status == "reverted":
            return self._refused(job, answer.reason or "reverted")
        kind = "key_published" if job.version == 0 else "key_rotated"
        if job.version == 0:
            self.published += 1
        else:
            self.rotated += 1
        return self._done(Report(kind, f"{job.contract_id.hex()} v{job.version}"))

    def get_status(self) -> dict[str, Any]:
        job = self.job
        return {
            "keys_waiting": len(self.backlog) + (job is not None),
            "step": job.step.value if job is not None else "",
            "published": self.published,
            "rotated": self.rotated,
            "gave_up": self.gave_up,
            "note": self.last_note,
        }
