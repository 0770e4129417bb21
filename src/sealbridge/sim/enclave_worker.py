"""Workers with their real enclaves in the simulator: contracts executed, blocks verified.

Theory of operation
-------------------
:class:`~sealbridge.sim.worker.SimWorker` runs a worker host's submission core against a
*modelled* enclave. :class:`SimEnclaveWorker` runs the worker host with its real enclave
program (:class:`~sealbridge.runtime.enclave.WorkerProgram`, in process, called through
its encoded ECALL boundary), so contracts run in their sandbox and every block is
verified before it is applied. Three host cores decide, unchanged from the network
worker (:mod:`sealbridge.node.worker`):

* the **catch-up core** (:class:`~sealbridge.runtime.catchup.CatchupCore`): where the
  enclave starts -- resume from the state bundle on the node's disk, recover from the
  newest checkpoint (its blob from the storage nodes, checked against the ledger's
  record), or fresh from the genesis block -- and every install: the enclave's key
  request, the committee's group keys and ``t`` partial releases from the gatekeepers
  (``AskPeers``), then ``WORKER_INSTALL_CONTRACT``;
* the **follow core** (:class:`~sealbridge.runtime.follow.WorkerFollowCore`): each
  block, with its evidence, to the enclave; the state bundle persisted; the peers'
  witnesses collected and handed to the enclave once caught up; then ``CaughtUp`` to
* the **submission core** (:class:`~sealbridge.runtime.submission.SubmissionCore`):
  outputs signed by the enclave (real signatures, real end hashes, which the ledger
  model checks against the chain's block hashes) and checkpoints offered to the
  storage nodes.

What the host does around them is what the network worker's follow loop does: it asks
the chain's height every ``poll`` seconds, reads the evidence of the blocks it has not
offered (``EvidenceQuery`` of the chain model's own chain, whose blocks are in the real
formats with the management contracts' events, :mod:`sealbridge.sim.management_logs`),
and runs each block's steps in the order the network host runs them too, declared once
in :func:`~sealbridge.runtime.block_steps.plan_block_steps`: the block to the follow
core, ``BlockApplied`` and then the block's ``KeysPublished`` to the catch-up core (the
posting core's step is left out). A step whose core failed for a passing reason
(a key not released yet, a backlog) stays first and runs again at the next poll; any
other failure stops the following (``follow_stopped``). ``AskPeers`` goes over the
simulated links: a :class:`WitnessCall` to each named peer host (whose enclave signs
its :class:`WitnessReply`), or a :class:`~sealbridge.sim.gatekeeper.KeyReleaseAsk` to
each gatekeeper; what came within ``witness_timeout`` seconds (or, for the
gatekeepers, the ``needed`` answers) is the answer.

**What is modelled.** The gatekeepers release partials with their real trusted core
(:class:`~sealbridge.keyservice.gatekeeper.Gatekeeper`: the request's signature,
freshness and quote, the era, the entitlement, the binding to the install facts), but
the facts come from the chain model (``KeyFactsQuery``), not from state proofs their
enclave verifies. Checkpoint blobs are read from the storage nodes' simulated disks
(the network worker's ``GET /v1/blobs``, I/O and no decision). Cross-contract messages
are not posted (the posting core is not run here) and a ``KeyProofQuery`` is refused.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError

from sealbridge.chain.lightclient import BlockEvidence, compute_header_hash
from sealbridge.core.effects import (
    AskPeers,
    CallEnclave,
    ChainRead,
    Effect,
    EnclaveAnswer,
    PeerAnswers,
    ReadChain,
    Report,
    Send,
    SetTimer,
)
from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError
from sealbridge.interop.chain_feed import EvidenceQuery
from sealbridge.keyservice.messages import KeyRequest
from sealbridge.runtime.block_steps import ObservedWorkerBlock, StepTarget, plan_block_steps
from sealbridge.runtime.catchup import (
    CatchupCore,
    CatchupFailure,
    CheckpointBlobQuery,
    GroupKeysRequest,
    KeyEvent,
    StartCatchup,
    StateBundle,
)
from sealbridge.runtime.chainview import KEY_PUBLISHED_TOPIC
from sealbridge.runtime.ecalls import WORKER_STATUS, WORKER_WITNESS_BLOCK
from sealbridge.runtime.enclave import WorkerProgram
from sealbridge.runtime.follow import (
    ApplyBlock,
    FollowCaughtUp,
    FollowFailure,
    FollowStep,
    MessagesReleased,
    PeerWitness,
    WitnessAsk,
    WorkerFollowCore,
)
from sealbridge.runtime.messages import BlockWitness, ChainConfig, ContractStatus, WitnessRequest
from sealbridge.runtime.submission import CaughtUp
from sealbridge.sim.committee import TipPoller
from sealbridge.sim.gatekeeper import KeyReleaseAnswer, KeyReleaseAsk
from sealbridge.sim.local_enclave import LocalEnclave
from sealbridge.sim.worker import LedgerModel, SimWorker
from sealbridge.tee.ecall import NOTHING

__all__ = ["SimEnclaveWorker", "WitnessCall", "WitnessReply"]

EVIDENCE_BATCH = 16  # blocks read at once
WITNESS_TIMER = "witness-timeout"


class WitnessCall(Message, frozen=True):
    """A peer host asks for this host's enclave's witness of block ``height``."""

    tag: str
    height: int


class WitnessReply(Message, frozen=True):
    tag: str
    peer: str  # the answering host's name
    witness: BlockWitness | None = None
    error: str = ""


@dataclass
class _Collecting:
    tag: str
    asked: dict[int, str]  # address -> peer name
    owner: str  # the core that asked ("follow" or "catchup")
    needed: int
    answered: set[str] = field(default_factory=set)
    answers: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def effect_tag(effect: Effect) -> str:
    return str(getattr(effect, "tag", ""))


def key_events_in(evidence: BlockEvidence, registry: bytes) -> list[KeyEvent]:
    """The registry's ``ContractKeyPublished`` events in a block, as the host reads them
    (unverified: the enclave installs only with facts it verified itself)."""
    events: list[KeyEvent] = []
    for receipt in evidence.receipts:
        for log in receipt.logs:
            if log.address != registry or log.topics[:1] != [KEY_PUBLISHED_TOPIC]:
                continue
            if len(log.topics) < 2:
                continue
            try:
                command_key, message_key, _wrapped = abi_decode(
                    ["bytes32", "bytes32", "bytes"], log.data
                )
            except (DecodingError, ValueError, TypeError):
                continue
            events.append(
                KeyEvent(
                    contract_id=log.topics[1],
                    block_number=evidence.header.number,
                    contract_public_key=bytes(command_key),
                    message_key=bytes(message_key),
                )
            )
    return events


class SimEnclaveWorker(SimWorker):
    """One worker host with its real enclave in the simulator (see the module docstring)."""

    def __init__(
        self,
        address: int,
        *,
        chain: int,
        program: WorkerProgram,
        chain_config: ChainConfig,
        start_block: int,
        contracts: list[bytes],
        peers: dict[int, str],
        gatekeepers: tuple[int, ...],
        storage: tuple[int, ...],
        ledger: LedgerModel,
        checkpoint_interval: int,
        fetch_blob: Callable[[bytes], bytes | None],
        bundle: StateBundle | None = None,
        incarnation: int = 0,
        poll: float = 1.0,
        store_timeout: float = 5.0,
        witness_timeout: float = 2.0,
    ) -> None:
        super().__init__(
            address,
            chain=chain,
            worker_id=program.ctx.identity.identity_key,
            contracts=contracts,
            executors=[],
            storage=storage,
            ledger=ledger,
            checkpoint_interval=checkpoint_interval,
            poll=poll,
            store_timeout=store_timeout,
            incarnation=incarnation,
        )
        self.name = f"worker-{address}"
        self.program = program
        self.local = LocalEnclave(program.get_ecalls(), "worker")
        self.chain_id = chain_config.chain_id
        self.peer_names = dict(peers)  # address -> name
        self.gatekeepers = tuple(gatekeepers)
        self.fetch_blob = fetch_blob
        self.ledger = ledger
        self.catchup = CatchupCore(
            self.worker_id,
            chain_config=chain_config,
            start_block=start_block,
            address=address,
            host=address,
            chain=chain,
            enclave=address,
            peers=address,
            incarnation=incarnation,
        )
        self.follow = WorkerFollowCore(
            bundle=bundle,
            peers=sorted(peers.values()),
            address=address,
            host=address,
            chain=chain,
            enclave=address,
            peer_workers=address,
            posting=address,
            submission=address,
            incarnation=incarnation,
        )
        self.witness_timeout = witness_timeout
        self.tip = 0
        self.fetching = ""  # the tag of the evidence read in flight
        self._reads = 0
        self.fetched: deque[BlockEvidence] = deque()
        # the steps still to run, in order (the start, then each block's, from
        # plan_block_steps); one that failed for a passing reason stays first and runs
        # again at the next poll
        self.steps: deque[tuple[str, Any]] = deque(
            [("catchup", StartCatchup(bundle=self.follow.bundle))]
        )
        self.collecting: _Collecting | None = None
        self.caught_up_at = -1  # the height FollowCaughtUp was last said at
        self.stopped = ""
        self.messages_dropped = 0

    @property
    def installed(self) -> dict[bytes, list[bytes]]:
        return self.catchup.installed

    @property
    def next_block(self) -> int:
        return self.catchup.last_delivered + 1 if self.catchup.started else 0

    # -- ProtocolNode ----------------------------------------------------------------------
    def on_start(self, now: float) -> list[Effect]:
        started = [*self.catchup.on_start(now), *self.follow.on_start(now)]
        return super().on_start(now) + self._run_cores(started, now) + self._advance(now)

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name == WITNESS_TIMER:
            return self._finish_collecting(now)
        if name == TipPoller.TIMER:
            return self.follower.ask() + self._advance(now)  # a failed step: again
        return super().on_timer(name, now)

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if self.follower.claims(message):
            height = self.follower.take(sender, message)
            if height is None:
                return []
            self.tip = height
            return self._advance(now)
        if isinstance(message, WitnessCall):
            return self._witness(sender, message)
        if isinstance(message, WitnessReply | KeyReleaseAnswer):
            return self._on_peer(sender, message, now)
        tag = getattr(message, "tag", None)
        if sender == self.chain and isinstance(message, ChainRead) and tag:
            if tag == self.fetching:
                return self._on_evidence(message, now)
            if tag == self.catchup.tag:
                return self._step_core("catchup", message, now, sender=self.chain)
        return super().on_message(sender, message, now)

    # -- the steps ---------------------------------------------------------------------------
    def _busy(self) -> bool:
        follow, catchup = self.follow, self.catchup
        return (
            follow.step is not FollowStep.IDLE
            or follow.job is not None
            or bool(follow.backlog)
            or catchup.job is not None
            or bool(catchup.backlog)
            or self.collecting is not None
        )

    def _advance(self, now: float) -> list[Effect]:
        """Run the waiting steps in order; read more blocks; say caught up at the tip."""
        out: list[Effect] = []
        while not self.stopped and not self.fetching and not self._busy():
            if self.steps:
                core, message = self.steps[0]
                out += self._step_core(core, message, now, advance=False)
                if self._busy():
                    break  # waiting for an answer: the step ends when it comes
                if not self._step_done(core, out):
                    break
                continue
            if not self.catchup.started:
                break
            if self.fetched:
                self._queue_block(self.fetched.popleft())
                continue
            if self.next_block <= self.tip:
                self._reads += 1
                self.fetching = f"blocks:{self._reads}"
                last = min(self.tip, self.next_block + EVIDENCE_BATCH - 1)
                numbers = list(range(self.next_block, last + 1))
                out.append(ReadChain(self.fetching, EvidenceQuery(self.chain_id, numbers)))
                break
            height = self.catchup.last_delivered
            if self.caught_up_at == height:
                break
            self.caught_up_at = height
            installed = self.catchup.installed
            caught_up = FollowCaughtUp(
                height=height,
                contract_ids=list(installed),
                executors=[list(w) for w in installed.values()],
            )
            out += self._step_core("follow", caught_up, now, advance=False)
        return out

    def _queue_block(self, evidence: BlockEvidence) -> None:
        """The block's steps, in the one order of :func:`plan_block_steps` (the posting
        core's step is left out: it is not run here)."""
        observed = ObservedWorkerBlock(
            number=evidence.header.number,
            block_hash=compute_header_hash(evidence.header),
            evidence=evidence,
            published=key_events_in(evidence, self.catchup.chain_config.contract_registry),
        )
        for step in plan_block_steps(observed, self.catchup.last_delivered):
            if step.target is not StepTarget.POSTING:
                self.steps.append((step.target.value, step.message))

    def _step_done(self, core: str, out: list[Effect]) -> bool:
        """The first step's core is idle: drop the step, or keep it after a failure that
        may pass (False: wait for the next poll); stop for good after any other."""
        failure: FollowFailure | CatchupFailure | None = (
            self.follow.failure if core == "follow" else self.catchup.failure
        )
        if failure is None:
            self.steps.popleft()
            return True
        if failure.passing:
            return False
        self.stopped = f"{failure.code}: {failure.message}"
        self.steps.clear()
        self.fetched.clear()
        out.append(Report("follow_stopped", self.stopped))
        return False

    def _step_core(
        self, core: str, message: Any, now: float, advance: bool = True, sender: int = -1
    ) -> list[Effect]:
        """Hand ``message`` (a step, or an answer) to a core and carry out its effects;
        when it is an answer that ends the first step, go on with the next ones."""
        if isinstance(message, ApplyBlock):
            message = msgspec.structs.replace(message, directory=self.catchup.directory)
            if message.number <= self.catchup.last_delivered:  # applied before a retry
                return []
        target = self.follow if core == "follow" else self.catchup
        sender = self.address if sender < 0 else sender
        out = self._run_cores(target.on_message(sender, message, now), now)
        if advance and not self._busy() and self.steps and self.steps[0][0] == core:
            if self._step_done(core, out):
                out += self._advance(now)
        elif advance and not self._busy() and not self.steps:
            out += self._advance(now)
        return out

    def _on_evidence(self, read: ChainRead, now: float) -> list[Effect]:
        self.fetching = ""
        value = read.value
        if read.error or not isinstance(value, list):
            return []  # asked again at the next poll
        for evidence in value:
            if not isinstance(evidence, BlockEvidence):
                return []
            if evidence.header.number != self.next_block + len(self.fetched):
                return []
            self.fetched.append(evidence)
        return self._advance(now)

    # -- the cores' effects ------------------------------------------------------------------
    def _run_cores(self, effects: list[Effect], now: float) -> list[Effect]:
        """Carry out the follow and catch-up cores' effects: enclave calls at once (the
        enclave is local), peers over the links, blobs from the storage nodes."""
        out: list[Effect] = []
        queue = list(effects)
        while queue:
            effect = queue.pop(0)
            core = self.catchup if effect_tag(effect) == self.catchup.tag else self.follow
            if isinstance(effect, CallEnclave):
                queue += core.on_message(self.address, self._ecall(effect), now)
            elif isinstance(effect, AskPeers):
                out += self._start_collecting(effect)
            elif isinstance(effect, ReadChain) and isinstance(effect.query, CheckpointBlobQuery):
                queue += core.on_message(self.chain, self._read_blob(effect), now)
            elif isinstance(effect, ReadChain) and core is self.follow:  # a KeyProofQuery
                why = "state proofs are not modelled"
                refusal = ChainRead(effect.tag, error=why, passing=False)
                queue += core.on_message(self.chain, refusal, now)
            elif isinstance(effect, Send) and effect.to == (self.address,):
                if isinstance(effect.message, CaughtUp):
                    out += self._run(self.core.on_message(self.address, effect.message, now), now)
                elif isinstance(effect.message, MessagesReleased):
                    self.messages_dropped += len(effect.message.messages)
            else:
                out.append(effect)
        return out

    def _read_blob(self, effect: ReadChain) -> ChainRead:
        query = effect.query
        if query.inline:
            blob = self.ledger.inline_blobs.get(query.blob_hash)
        else:
            blob = self.fetch_blob(query.blob_hash)
        if blob is None:
            return ChainRead(effect.tag, error="BlobUnavailable: no storage node has it")
        return ChainRead(effect.tag, blob)

    def _start_collecting(self, effect: AskPeers) -> list[Effect]:
        """``AskPeers`` over the links: the peer workers for witnesses, the gatekeepers
        for group keys and partial key releases; what came by the timeout is the answer."""
        request = effect.request
        if isinstance(request, WitnessAsk):
            names = set(request.peers)
            asked = {a: n for a, n in self.peer_names.items() if n in names}
            message: Message = WitnessCall(effect.tag, request.height)
        elif isinstance(request, GroupKeysRequest | KeyRequest):
            asked = {a: f"gatekeeper-{a}" for a in self.gatekeepers}
            message = KeyReleaseAsk(effect.tag, request)
        else:
            return []
        owner = "catchup" if effect.tag == self.catchup.tag else "follow"
        self.collecting = _Collecting(effect.tag, asked, owner, effect.needed)
        return [
            Send(tuple(sorted(asked)), message),
            SetTimer(WITNESS_TIMER, self.witness_timeout),
        ]

    def _on_peer(
        self, sender: int, reply: WitnessReply | KeyReleaseAnswer, now: float
    ) -> list[Effect]:
        collecting = self.collecting
        if collecting is None or reply.tag != collecting.tag:
            return []
        name = collecting.asked.get(sender)
        if name is None or name in collecting.answered:
            return []
        collecting.answered.add(name)
        answer: Any = None
        if isinstance(reply, WitnessReply):
            if reply.peer == name and reply.witness is not None:
                answer = PeerWitness(peer=name, witness=reply.witness)
        else:
            answer = reply.group if reply.group is not None else reply.release
        if answer is None:
            collecting.errors.append(f"{name}: {getattr(reply, 'error', '') or 'no answer'}")
        else:
            collecting.answers.append(answer)
        if len(collecting.answered) < len(collecting.asked) and (
            collecting.owner == "follow" or len(collecting.answers) < collecting.needed
        ):
            return []
        return self._finish_collecting(now)

    def _finish_collecting(self, now: float) -> list[Effect]:
        collecting = self.collecting
        if collecting is None:
            return []
        self.collecting = None
        answer = PeerAnswers(
            collecting.tag,
            answers=tuple(collecting.answers),
            errors=tuple(collecting.errors),
        )
        return self._step_core(collecting.owner, answer, now)

    def _witness(self, sender: int, call: WitnessCall) -> list[Effect]:
        """A peer's host asks: this enclave's witness (the host only carries it)."""
        request = WitnessRequest(height=call.height)
        answer = self._ecall(CallEnclave(call.tag, WORKER_WITNESS_BLOCK, request))
        if answer.error:
            return [Send((sender,), WitnessReply(call.tag, self.name, error=answer.error))]
        return [Send((sender,), WitnessReply(call.tag, self.name, witness=answer.response))]

    # -- the enclave -------------------------------------------------------------------------
    def _ecall(self, effect: CallEnclave) -> EnclaveAnswer:
        return self.local.answer(effect)

    def get_status(self) -> list[ContractStatus]:
        """The enclave's status of its contracts (heights, roots, commands applied)."""
        answer = self._ecall(CallEnclave("status", WORKER_STATUS, NOTHING))
        if answer.error:
            raise ConfigError(answer.error)
        return list(answer.response.contracts)
