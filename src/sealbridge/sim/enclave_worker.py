"""Workers with their real enclaves in the simulator: contracts executed, blocks verified.

Theory of operation
-------------------
:class:`~sealbridge.sim.worker.SimWorker` runs a worker host's submission core against a
*modelled* enclave. :class:`SimEnclaveWorker` runs the same host with the worker's real
enclave program (:class:`~sealbridge.runtime.enclave.WorkerProgram`, in process, called
through its encoded ECALL boundary), so contracts run in their WebAssembly sandbox and
every block is verified before it is applied. Two host cores decide, unchanged from the
network worker:

* the **follow core** (:class:`~sealbridge.runtime.follow.WorkerFollowCore`): each
  block, with its evidence, to the enclave (``WORKER_PROCESS_BLOCK``); the state bundle
  persisted; the peers' witnesses collected (``AskPeers``) and handed to the enclave
  (``WORKER_RELEASE_OUTPUTS``) once caught up; then ``CaughtUp`` to
* the **submission core** (:class:`~sealbridge.runtime.submission.SubmissionCore`):
  competitive-execution outputs signed by the enclave (real signatures, real end
  hashes, which the ledger model checks against the chain's block hashes) and
  checkpoints offered to the storage nodes.

What the host does around them, as the network worker's follow loop does: it asks the
chain's height every ``poll`` seconds, reads the evidence of the blocks it has not
offered (``EvidenceQuery`` of the chain model's own chain, whose blocks are in the real
formats with the management contracts' events, :mod:`sealbridge.sim.management_logs`),
offers them one at a time, and says ``FollowCaughtUp`` when none is left. A block the
enclave refused for a passing reason is offered again at the next poll; any other
refusal stops the following (``follow_stopped``). ``AskPeers`` is carried out over the
simulated links: a :class:`WitnessCall` to each named peer host, whose enclave signs
(``WORKER_WITNESS_BLOCK``) its :class:`WitnessReply`; what came within
``witness_timeout`` seconds is the answer.

**What is modelled.** The contract keys are not released by gatekeepers here: each
worker's install carries its contract key encrypted to its enclave (``wrapped_key``, the
tools' path) and is tried after every applied block until the enclave has read the
contract's ``ContractDeployed`` and ``ContractKeyPublished`` events in verified blocks
(the install facts; before that it refuses). Cross-contract messages are not posted
(the posting core is not run here) and a ``KeyProofQuery`` is answered with a refusal.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

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
from sealbridge.core.errors import ConfigError, SealbridgeError
from sealbridge.interop.chain_feed import EvidenceQuery
from sealbridge.runtime.ecalls import (
    WORKER_CONFIGURE_CHAIN,
    WORKER_INSTALL_CONTRACT,
    WORKER_STATUS,
    WORKER_WITNESS_BLOCK,
)
from sealbridge.runtime.enclave import WorkerProgram
from sealbridge.runtime.follow import (
    ApplyBlock,
    FollowCaughtUp,
    FollowStep,
    MessagesReleased,
    PeerWitness,
    WitnessAsk,
    WorkerFollowCore,
)
from sealbridge.runtime.messages import (
    BlockWitness,
    ChainConfig,
    ContractStatus,
    InstallContract,
    WitnessRequest,
)
from sealbridge.runtime.submission import CaughtUp
from sealbridge.sim.worker import LedgerModel, SimWorker
from sealbridge.tee.ecall import NOTHING
from sealbridge.tee.enclave import RawEcall

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
    answers: dict[str, PeerWitness] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class SimEnclaveWorker(SimWorker):
    """One worker host with its real enclave in the simulator (see the module docstring)."""

    def __init__(
        self,
        address: int,
        *,
        chain: int,
        program: WorkerProgram,
        chain_config: ChainConfig,
        installs: list[InstallContract],
        peers: dict[int, str],
        storage: tuple[int, ...],
        ledger: LedgerModel,
        checkpoint_interval: int,
        poll: float = 1.0,
        store_timeout: float = 5.0,
        witness_timeout: float = 2.0,
    ) -> None:
        contracts = [i.contract_id for i in installs]
        super().__init__(
            address,
            chain=chain,
            worker_id=program.ctx.identity.identity_key,
            contracts=contracts,
            executors=[list(i.workers) for i in installs],
            storage=storage,
            ledger=ledger,
            checkpoint_interval=checkpoint_interval,
            poll=poll,
            store_timeout=store_timeout,
        )
        self.name = f"worker-{address}"
        self.program = program
        self.table: dict[str, RawEcall] = dict(program.get_ecalls())
        self.chain_id = chain_config.chain_id
        answer = self._ecall(CallEnclave("build", WORKER_CONFIGURE_CHAIN, chain_config))
        if answer.error:
            raise ConfigError(f"the worker enclave refused its chain: {answer.error}")
        self.next_block = chain_config.anchor_number + 1
        self.pending_installs = list(installs)
        self.installed: list[InstallContract] = []
        self.peer_names = dict(peers)  # address -> name
        self.follow = WorkerFollowCore(
            peers=sorted(peers.values()),
            address=address,
            host=address,
            chain=chain,
            enclave=address,
            peer_workers=address,
            posting=address,
            submission=address,
        )
        self.witness_timeout = witness_timeout
        self.tip = 0
        self.fetching = ""  # the tag of the evidence read in flight
        self._reads = 0
        self.fetched: deque[BlockEvidence] = deque()
        self.collecting: _Collecting | None = None
        self.caught_up_at = -1  # the height FollowCaughtUp was last said at
        self.stopped = ""
        self.messages_dropped = 0

    # -- ProtocolNode ----------------------------------------------------------------------
    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name == WITNESS_TIMER:
            return self._finish_collecting(now)
        return super().on_timer(name, now)

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if self.follower.claims(message):
            height = self.follower.take(sender, message)
            if height is None:
                return []
            self.tip = height
            return self._pump(now)
        if isinstance(message, WitnessCall):
            return self._witness(sender, message)
        if isinstance(message, WitnessReply):
            return self._on_witness(sender, message, now)
        if (
            sender == self.chain
            and isinstance(message, ChainRead)
            and self.fetching
            and message.tag == self.fetching
        ):
            return self._on_evidence(message, now)
        return super().on_message(sender, message, now)

    # -- following ---------------------------------------------------------------------------
    def _busy(self) -> bool:
        follow = self.follow
        return follow.step is not FollowStep.IDLE or follow.job is not None or bool(follow.backlog)

    def _pump(self, now: float) -> list[Effect]:
        """Offer the fetched blocks one by one; read more; say caught up at the tip."""
        out: list[Effect] = []
        while not self.stopped and not self.fetching and not self._busy():
            if self.fetched:
                evidence = self.fetched[0]
                block = ApplyBlock(
                    number=evidence.header.number,
                    block_hash=compute_header_hash(evidence.header),
                    evidence=evidence,
                    applied=self.next_block - 1,
                )
                out += self._run_follow(self.follow.on_message(self.address, block, now), now)
                if self._busy():
                    break  # waiting for the peers' witnesses (a full backlog)
                out += self._after_block(now)
                if self.follow.failure is not None:
                    break
                continue
            if self.next_block <= self.tip:
                self._reads += 1
                self.fetching = f"blocks:{self._reads}"
                last = min(self.tip, self.next_block + EVIDENCE_BATCH - 1)
                numbers = list(range(self.next_block, last + 1))
                out.append(ReadChain(self.fetching, EvidenceQuery(self.chain_id, numbers)))
                break
            if self.caught_up_at == self.next_block - 1:
                break
            self.caught_up_at = self.next_block - 1
            caught_up = FollowCaughtUp(
                height=self.next_block - 1,
                contract_ids=[i.contract_id for i in self.installed],
                executors=[list(i.workers) for i in self.installed],
            )
            out += self._run_follow(self.follow.on_message(self.address, caught_up, now), now)
        return out

    def _after_block(self, now: float) -> list[Effect]:
        failure = self.follow.failure
        if failure is None:
            self.fetched.popleft()
            self.next_block += 1
            return self._install()
        if failure.passing:
            self.fetched.clear()  # offered again, read again, at the next poll
            return []
        self.stopped = f"{failure.code}: {failure.message}"
        return [Report("follow_stopped", self.stopped)]

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
        return self._pump(now)

    def _install(self) -> list[Effect]:
        """Try the waiting installs (the enclave refuses until it verified the facts)."""
        out: list[Effect] = []
        waiting, self.pending_installs = self.pending_installs, []
        for install in waiting:
            answer = self._ecall(CallEnclave("install", WORKER_INSTALL_CONTRACT, install))
            if not answer.error:
                self.installed.append(install)
                out.append(Report("installed", install.contract_id.hex()[:16]))
            elif answer.error.startswith("install_facts_unverified"):
                self.pending_installs.append(install)
            else:
                out.append(Report("install_refused", answer.error))
        return out

    # -- the follow core's effects ---------------------------------------------------------
    def _run_follow(self, effects: list[Effect], now: float) -> list[Effect]:
        out: list[Effect] = []
        queue = list(effects)
        while queue:
            effect = queue.pop(0)
            if isinstance(effect, CallEnclave):
                answer = self._ecall(effect)
                queue += self.follow.on_message(self.address, answer, now)
            elif isinstance(effect, AskPeers):
                out += self._start_collecting(effect)
            elif isinstance(effect, ReadChain):  # a KeyProofQuery: not modelled here
                refusal = ChainRead(
                    effect.tag, error="state proofs are not modelled", passing=False
                )
                queue += self.follow.on_message(self.chain, refusal, now)
            elif isinstance(effect, Send) and effect.to == (self.address,):
                if isinstance(effect.message, CaughtUp):
                    out += self._run(self.core.on_message(self.address, effect.message, now), now)
                elif isinstance(effect.message, MessagesReleased):
                    self.messages_dropped += len(effect.message.messages)
            else:
                out.append(effect)
        return out

    def _start_collecting(self, effect: AskPeers) -> list[Effect]:
        ask = effect.request
        if not isinstance(ask, WitnessAsk):
            return []
        names = set(ask.peers)
        asked = {a: n for a, n in self.peer_names.items() if n in names}
        self.collecting = _Collecting(effect.tag, asked)
        call = WitnessCall(effect.tag, ask.height)
        return [
            Send(tuple(sorted(asked)), call),
            SetTimer(WITNESS_TIMER, self.witness_timeout),
        ]

    def _on_witness(self, sender: int, reply: WitnessReply, now: float) -> list[Effect]:
        collecting = self.collecting
        if collecting is None or reply.tag != collecting.tag:
            return []
        name = collecting.asked.get(sender)
        if name is None or name != reply.peer or name in collecting.answers:
            return []
        if reply.witness is None:
            collecting.errors.append(f"{name}: {reply.error or 'no witness'}")
        else:
            collecting.answers[name] = PeerWitness(peer=name, witness=reply.witness)
        if len(collecting.answers) + len(collecting.errors) < len(collecting.asked):
            return []
        return self._finish_collecting(now)

    def _finish_collecting(self, now: float) -> list[Effect]:
        collecting = self.collecting
        if collecting is None:
            return []
        self.collecting = None
        answer = PeerAnswers(
            collecting.tag,
            answers=tuple(collecting.answers[n] for n in sorted(collecting.answers)),
            errors=tuple(collecting.errors),
        )
        out = self._run_follow(self.follow.on_message(self.address, answer, now), now)
        if not self._busy() and self.fetched:
            out += self._after_block(now)
        return out + self._pump(now)

    def _witness(self, sender: int, call: WitnessCall) -> list[Effect]:
        """A peer's host asks: this enclave's witness (the host only carries it)."""
        request = WitnessRequest(height=call.height)
        answer = self._ecall(CallEnclave(call.tag, WORKER_WITNESS_BLOCK, request))
        if answer.error:
            return [Send((sender,), WitnessReply(call.tag, self.name, error=answer.error))]
        return [Send((sender,), WitnessReply(call.tag, self.name, witness=answer.response))]

    # -- the enclave -------------------------------------------------------------------------
    def _ecall(self, effect: CallEnclave) -> EnclaveAnswer:
        spec = effect.ecall
        run = self.table.get(getattr(spec, "name", ""))
        if run is None:
            return EnclaveAnswer(effect.tag, error="unknown_ecall: not a worker ECALL")
        try:
            return EnclaveAnswer(
                effect.tag, spec.decode_response(run(spec.encode_request(effect.request)))
            )
        except SealbridgeError as exc:
            return EnclaveAnswer(effect.tag, error=f"{exc.code}: {exc.message}")

    def get_status(self) -> list[ContractStatus]:
        """The enclave's status of its contracts (heights, roots, commands applied)."""
        answer = self._ecall(CallEnclave("status", WORKER_STATUS, NOTHING))
        if answer.error:
            raise ConfigError(answer.error)
        return list(answer.response.contracts)
