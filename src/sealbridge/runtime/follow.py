"""The worker host's following of blocks and collection of witnesses, sans-I/O.

Theory of operation
-------------------
A worker's enclave verifies every block the host hands it and applies the commands it
finds in it as one unit; it holds each block's receipts and messages back until a
majority of the contract's executors vouched for the block (the witness rule,
:mod:`sealbridge.runtime.witness`). :class:`WorkerFollowCore` is what the worker's
untrusted *host* decides about that -- how a block is offered, what a refusal means,
when the peers are asked for witnesses, what is kept and persisted -- and nothing else:
the driver (:mod:`sealbridge.node.driver`, inline on the worker's follow loop, wired by
:mod:`sealbridge.node.worker`) calls the enclave, reads state proofs, asks the peer
workers and writes the state bundle. The catch-up core
(:mod:`sealbridge.runtime.catchup`) keeps the anchor, the directory and the installed
contracts; the host hands their current values in with each input.

**Inputs** (from the host, address ``host``); each becomes one *job*, jobs run one at a
time, in order, and each step waits for one effect's answer:

* :class:`ApplyBlock` -- a fresh block with its evidence (a block without evidence is
  refused: ``no_evidence``). ``APPLYING``: the block goes to the enclave
  (``WORKER_PROCESS_BLOCK``) with the catch-up core's directory. Its refusals:

  - ``directory_incomplete`` names a message source whose keys the enclave does not
    know: ``PROVING`` reads a state proof of the ContractRegistry records of every
    source named so far, at this block (:class:`KeyProofQuery`), and the block is
    offered again with it. A refusal naming no source, a source named already, or a
    65th source (at most :data:`MAX_PROVEN_SOURCES`) stands: the job fails.
  - ``release_backlog_full``: too much waits for witnesses. The core releases what the
    peers' witnesses of the last applied block cover (below), then fails the job as
    *passing*: the host offers the same block again.
  - anything else: the job fails.

  Applied (a ``BlockOutput``): ``held`` is noted; if contracts changed or anything was
  released, the changed contracts' sealed states replace theirs in the
  :class:`~sealbridge.runtime.catchup.StateBundle`, which is written at once
  (``Persist`` under :data:`BUNDLE_KEY`, atomically by the driver), the receipts are
  kept for ``/v1/result`` (the newest :data:`RECEIPTS_KEPT`), and the messages go to
  the posting core (``Send`` of :class:`MessagesReleased` to ``posting``).
* :class:`FollowCaughtUp` -- no block is pending. If the enclave holds anything, the
  witnesses are collected and released; whatever became of that, the submission core
  is told (``Send`` of :class:`~sealbridge.runtime.submission.CaughtUp` to
  ``submission``) when outputs are submitted and contracts are installed. A failed
  release is kept in :attr:`WorkerFollowCore.failure` for the host to log; it stops
  nothing.
* :class:`CollectWitnesses` -- a query is waiting: the peers' witnesses are collected
  and left in :attr:`WorkerFollowCore.collected` (the enclave checks them with the
  query).

**Witnesses.** ``COLLECTING`` asks every peer that is not resting (:class:`WitnessAsk`,
``AskPeers`` with ``needed`` = all of them; the driver asks them in parallel) for its
witness of a height; a peer without a well-formed answer (:class:`PeerWitness` under
its own name) rests for :data:`PEER_BACKOFF` seconds of the core's time. With no peer
to ask, the step is skipped. ``RELEASING`` hands what came to the enclave
(``WORKER_RELEASE_OUTPUTS``); the released receipts are kept and the messages go to
the posting core, and ``held`` and ``witnessed`` are the enclave's new counts.

**Failures.** A job that fails leaves :attr:`WorkerFollowCore.failure` (a
:class:`FollowFailure`) and drops the jobs behind it: *passing*
(``release_backlog_full``; ``chain_unavailable``: the proof's read may pass;
``unsound_answer``) -- the host offers the same block again; or not (``no_evidence``,
``enclave_refused``, ``read_refused``) -- the host stops following. The next input
that finds the core idle clears it. Nothing is persisted, kept or posted for a block
the enclave did not apply.

**Hostile answers change nothing.** An answer is taken only if it is of the type the
current step waits for (:data:`ANSWERS`), carries the current tag and comes from the
address serving that kind of effect (``chain``, ``enclave``, ``peers``); host inputs
only from ``host``. Anything else is ignored.
Tags come from a :class:`~sealbridge.core.tags.TagSource` that ``on_start`` begins
anew: an answer to an effect of the node's previous incarnation (in flight when it
crashed) never carries a restarted core's tag. An answer of the right kind that cannot be
true (a proof that is not an ``AccountProof``, an output that is not a ``BlockOutput``
of this block) fails the job as a passing ``unsound_answer``, with nothing changed.
Peer answers are filtered: only a ``BlockWitness`` under the name of a peer asked
counts (the enclave verifies its signature and its signer).
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sealbridge.chain.lightclient import BlockEvidence
from sealbridge.chain.proofs import AccountProof
from sealbridge.core.effects import (
    AskPeers,
    CallEnclave,
    ChainRead,
    Effect,
    EnclaveAnswer,
    PeerAnswers,
    Persist,
    ReadChain,
    Report,
    Send,
)
from sealbridge.core.encoding import Message, encode
from sealbridge.core.errors import LocalProtocolError
from sealbridge.core.tags import TagSource
from sealbridge.runtime.catchup import StateBundle
from sealbridge.runtime.ecalls import WORKER_PROCESS_BLOCK, WORKER_RELEASE_OUTPUTS
from sealbridge.runtime.messages import (
    BlockInput,
    BlockOutput,
    BlockWitness,
    DirectoryEntry,
    HeldOutputs,
    OutgoingMessage,
    Receipt,
    ReleasedOutputs,
    Witnesses,
)
from sealbridge.runtime.submission import CaughtUp

__all__ = [
    "ANSWERS",
    "BUNDLE_KEY",
    "MAX_PROVEN_SOURCES",
    "PEER_BACKOFF",
    "RECEIPTS_KEPT",
    "ApplyBlock",
    "CollectWitnesses",
    "FollowCaughtUp",
    "FollowFailure",
    "FollowRefused",
    "FollowStep",
    "KeyProofQuery",
    "MessagesReleased",
    "PeerWitness",
    "WitnessAsk",
    "WorkerFollowCore",
    "get_named_source",
]

RECEIPTS_KEPT = 20_000  # receipts kept for /v1/result (the oldest go first)
PEER_BACKOFF = 5.0  # seconds a peer that gave no witness is left alone
MAX_PROVEN_SOURCES = 64  # message sources proven for one block at most
BUNDLE_KEY = "state_bundle"  # the Persist key of the state bundle


class FollowRefused(LocalProtocolError):
    """A block cannot be applied and will not be by offering it again (the enclave
    refused it, a read that will not pass failed, no evidence): the host stops."""

    code = "follow_refused"


# -- the host's inputs -------------------------------------------------------------------
class ApplyBlock(Message, frozen=True):
    """Hand block ``number`` to the enclave. ``directory``: the catch-up core's keys
    published up to the anchor (the enclave takes them with its first block);
    ``applied``: the newest block the enclave applied before it (the height the peers'
    witnesses are asked for when the release backlog is full)."""

    number: int
    block_hash: bytes
    evidence: BlockEvidence | None
    directory: list[DirectoryEntry] = []
    applied: int = 0


class FollowCaughtUp(Message, frozen=True):
    """No block is pending: the enclave applied blocks up to ``height``;
    ``contract_ids[i]`` is installed with executor set ``executors[i]``."""

    height: int
    contract_ids: list[bytes] = []
    executors: list[list[bytes]] = []


class CollectWitnesses(Message, frozen=True):
    """Collect the peers' witnesses of block ``height`` (for a query)."""

    height: int


# -- what the core asks ------------------------------------------------------------------
class KeyProofQuery(Message, frozen=True):
    """A state proof, at block ``number``, of the ContractRegistry records of
    ``contract_ids`` (key published, command key, message key). Answer: an
    :class:`~sealbridge.chain.proofs.AccountProof`."""

    contract_ids: list[bytes]
    number: int


class WitnessAsk(Message, frozen=True):
    """Asked of the peer workers named in ``peers``: their witness of block ``height``
    (or of their newest, if lower). Answers: :class:`PeerWitness`."""

    height: int
    peers: list[str]


class PeerWitness(Message, frozen=True):
    """One peer's answer to a :class:`WitnessAsk`."""

    peer: str
    witness: BlockWitness


class MessagesReleased(Message, frozen=True):
    """Sent to the posting core: messages the enclave released, at block ``number``."""

    number: int
    messages: list[OutgoingMessage]


@dataclass(frozen=True)
class FollowFailure:
    """Why the last job failed; ``passing``: the host offers the block again later."""

    code: str
    message: str
    passing: bool


# -- steps ---------------------------------------------------------------------------------
class FollowStep(Enum):
    IDLE = "idle"
    APPLYING = "applying"  # the enclave applies the block
    PROVING = "proving"  # the named sources' registry records, proven at the block
    COLLECTING = "collecting"  # the peers' witnesses
    RELEASING = "releasing"  # the enclave releases what they cover


# the answer each step waits for (IDLE waits for none)
ANSWERS: dict[FollowStep, type] = {
    FollowStep.APPLYING: EnclaveAnswer,
    FollowStep.PROVING: ChainRead,
    FollowStep.COLLECTING: PeerAnswers,
    FollowStep.RELEASING: EnclaveAnswer,
}


class _FollowJobKind(Enum):
    BLOCK = "block"
    CAUGHT_UP = "caught_up"
    QUERY = "query"


@dataclass
class _FollowJob:
    kind: _FollowJobKind
    block: ApplyBlock | None = None
    caught_up: FollowCaughtUp | None = None
    height: int = 0  # the height witnesses are asked for
    sources: list[bytes] = field(default_factory=list)  # message sources proven
    proof: AccountProof | None = None
    backlog: str = ""  # the enclave's release_backlog_full refusal, when it came
    asked: list[str] = field(default_factory=list)  # the peers asked for witnesses


_HOST_INPUTS = (ApplyBlock, FollowCaughtUp, CollectWitnesses)
_SOURCE = re.compile(r"0x([0-9a-f]{64})")


def get_named_source(refusal: str) -> bytes | None:
    """The 32-byte contract id a ``directory_incomplete`` refusal names, if any."""
    found = _SOURCE.search(refusal)
    return bytes.fromhex(found.group(1)) if found else None


class WorkerFollowCore:
    """A worker host's block following and witness decisions (see the module docstring)."""

    def __init__(
        self,
        *,
        bundle: StateBundle | None = None,
        peers: list[str] | None = None,
        submit_outputs: bool = True,
        address: int = 0,
        host: int = 0,
        chain: int = 0,
        enclave: int = 0,
        peer_workers: int = 0,
        posting: int = 0,
        submission: int = 0,
        incarnation: int = 0,
    ) -> None:
        self.bundle = bundle if bundle is not None else StateBundle()
        self.peers = list(dict.fromkeys(peers or []))
        self.submit_outputs = submit_outputs
        self.address = address
        self.host = host
        self.posting = posting
        self.submission = submission
        # who answers each kind of effect (any other sender is ignored)
        self.answerers: dict[type, int] = {
            ChainRead: chain,
            EnclaveAnswer: enclave,
            PeerAnswers: peer_workers,
        }
        self.step = FollowStep.IDLE
        self.tag = ""  # the tag of the answer awaited ("" when idle)
        self.tags = TagSource("follow", sep="/", incarnation=incarnation)
        self.now = 0.0  # the time of the input in hand
        self.job: _FollowJob | None = None
        self.backlog: deque[_FollowJob] = deque()
        self.failure: FollowFailure | None = None
        self.held = 0  # receipts and messages the enclave holds for witnesses
        self.witnessed = 0  # the height the peers' witnesses last covered
        self.receipts: OrderedDict[tuple[bytes, int], Receipt] = OrderedDict()
        self.collected: list[BlockWitness] = []  # the last query's witnesses
        self.resting: dict[str, float] = {}  # peer -> the time it may be asked again
        self.applied = 0  # blocks applied
        self.proofs = 0  # state proofs of message sources read
        self._handlers: dict[FollowStep, Callable[[_FollowJob, Any], list[Effect]]] = {
            FollowStep.APPLYING: self._on_applied,
            FollowStep.PROVING: self._on_proof,
            FollowStep.COLLECTING: self._on_witnesses,
            FollowStep.RELEASING: self._on_released,
        }

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
        self.now = now
        if isinstance(message, _HOST_INPUTS):
            return self._on_host(message) if sender == self.host else []
        expected = ANSWERS.get(self.step)
        job = self.job
        if job is None or expected is None or type(message) is not expected:
            return []  # no answer awaited, or not the kind awaited
        if getattr(message, "tag", None) != self.tag or sender != self.answerers[expected]:
            return []  # an old or unknown tag, or a forged sender
        self.tag = ""
        return self._handlers[self.step](job, message) + self._pump()

    # -- reads ---------------------------------------------------------------------------
    def get_receipt(self, contract_id: bytes, seq: int) -> Receipt | None:
        """The receipt of one command, if it was released and is still kept."""
        return self.receipts.get((contract_id, seq))

    def get_error(self) -> LocalProtocolError | None:
        """The last job's failure as the typed error a host raises for a failure that
        will not pass (None when there is none, or it may pass)."""
        failure = self.failure
        if failure is None or failure.passing:
            return None
        return FollowRefused(failure.message)

    def get_status(self) -> dict[str, Any]:
        return {
            "follow_step": self.step.value,
            "blocks_applied": self.applied,
            "source_proofs": self.proofs,
            "receipts_kept": len(self.receipts),
        }

    # -- host inputs ---------------------------------------------------------------------
    def _on_host(self, message: Any) -> list[Effect]:
        if self.job is None and not self.backlog:
            self.failure = None  # a fresh unit of work
        if isinstance(message, ApplyBlock):
            self.backlog.append(_FollowJob(_FollowJobKind.BLOCK, block=message))
        elif isinstance(message, FollowCaughtUp):
            self.backlog.append(_FollowJob(_FollowJobKind.CAUGHT_UP, caught_up=message))
        else:
            self.backlog.append(_FollowJob(_FollowJobKind.QUERY, height=message.height))
        return self._pump()

    # -- jobs ----------------------------------------------------------------------------
    def _pump(self) -> list[Effect]:
        effects: list[Effect] = []
        while self.job is None and self.backlog:
            job = self.job = self.backlog.popleft()
            effects += self._begin(job)
        return effects

    def _begin(self, job: _FollowJob) -> list[Effect]:
        if job.kind == _FollowJobKind.QUERY:
            self.collected = []
            return self._collect(job, job.height)
        if job.kind == _FollowJobKind.CAUGHT_UP:
            caught_up = job.caught_up
            if caught_up is None or not _is_count(caught_up.height):
                return self._done()
            if self.held:
                return self._collect(job, caught_up.height)
            return self._done(*self._tell_submission(job))
        block = job.block
        if block is None or not _is_count(block.number) or not _is_count(block.applied):
            return self._fail("no_evidence", "not a block")
        if block.evidence is None:
            return self._fail("no_evidence", f"block {block.number} came without evidence")
        return self._offer(job, block)

    def _ask(self, step: FollowStep, make: Callable[[str], Effect]) -> list[Effect]:
        self.tag = self.tags.issue()
        self.step = step
        return [make(self.tag)]

    def _done(self, *effects: Effect) -> list[Effect]:
        self.job = None
        self.step = FollowStep.IDLE
        self.tag = ""
        return list(effects)

    def _fail(self, code: str, message: str, *, passing: bool = False) -> list[Effect]:
        """End the job and drop the ones behind it (the host offers them again)."""
        self.failure = FollowFailure(code, message, passing)
        self.backlog.clear()
        kind = "follow_delayed" if passing else "follow_failed"
        return self._done(Report(kind, message))

    def _unsound(self, what: str) -> list[Effect]:
        return self._fail("unsound_answer", f"{self.step.value}: {what}", passing=True)

    # -- a block -------------------------------------------------------------------------
    def _offer(self, job: _FollowJob, block: ApplyBlock) -> list[Effect]:
        request = BlockInput(
            number=block.number,
            block_hash=block.block_hash,
            evidence=block.evidence,
            directory=list(block.directory),
            key_proof=job.proof if job.sources else None,
            key_proof_ids=list(job.sources),
        )
        return self._ask(
            FollowStep.APPLYING, lambda tag: CallEnclave(tag, WORKER_PROCESS_BLOCK, request)
        )

    def _on_applied(self, job: _FollowJob, answer: EnclaveAnswer) -> list[Effect]:
        block = job.block
        if block is None:  # never: only a block job applies
            return self._unsound("no block in hand")
        if answer.error:
            return self._on_refused(job, block, answer.error)
        output = answer.response
        if not _is_output(output, block.number):
            return self._unsound(f"not the output of block {block.number}")
        self.applied += 1
        self.held = output.held
        if not output.contracts and not output.receipts and not output.messages:
            return self._done()
        states = dict(self.bundle.states)
        heights = dict(self.bundle.heights)
        for contract in output.contracts:
            states[contract.contract_id.hex()] = contract.sealed_state
            heights[contract.contract_id.hex()] = block.number
        self.bundle = StateBundle(
            height=block.number, block_hash=block.block_hash, states=states, heights=heights
        )
        self._keep(output.receipts)
        refused = sum(1 for r in output.receipts if r.status != "applied")
        note = {
            "block": block.number,
            "commands": len(output.receipts),
            "refused": refused,
            "contracts_changed": len(output.contracts),
        }
        effects: list[Effect] = [Persist(BUNDLE_KEY, encode(self.bundle))]
        effects += self._post(output.messages, block.number)
        return self._done(*effects, Report("block_applied", note))

    def _on_refused(self, job: _FollowJob, block: ApplyBlock, error: str) -> list[Effect]:
        code = error.split(":", 1)[0].strip()
        if code == "directory_incomplete":
            # a message from a source the enclave does not know: prove its
            # ContractRegistry record at this block (its keys, or that it has none)
            source = get_named_source(error)
            if (
                source is not None
                and source not in job.sources
                and len(job.sources) < MAX_PROVEN_SOURCES
            ):
                job.sources.append(source)
                query = KeyProofQuery(contract_ids=list(job.sources), number=block.number)
                return self._ask(FollowStep.PROVING, lambda tag: ReadChain(tag, query))
        elif code == "release_backlog_full":
            # too much waits for the peers' witnesses: release what they cover, then
            # have the block offered again
            job.backlog = error
            return self._collect(job, block.applied)
        return self._fail("enclave_refused", f"process_block refused: {error}")

    def _on_proof(self, job: _FollowJob, read: ChainRead) -> list[Effect]:
        block = job.block
        if block is None:  # never: only a block job proves
            return self._unsound("no block in hand")
        if read.error:
            what = f"proof of {len(job.sources)} message sources at block {block.number}"
            if read.passing:
                return self._fail("chain_unavailable", f"{what}: {read.error}", passing=True)
            return self._fail("read_refused", f"{what}: {read.error}")
        if not isinstance(read.value, AccountProof):
            return self._unsound("not a state proof")
        job.proof = read.value
        self.proofs += 1
        return self._offer(job, block)

    # -- witnesses and the release -------------------------------------------------------
    def _collect(self, job: _FollowJob, height: int) -> list[Effect]:
        job.height = height
        job.asked = [p for p in self.peers if self.resting.get(p, 0.0) <= self.now]
        if not job.asked:
            return self._witnessed(job, [])
        ask = WitnessAsk(height=height, peers=list(job.asked))
        needed = len(job.asked)
        return self._ask(FollowStep.COLLECTING, lambda tag: AskPeers(tag, ask, needed))

    def _on_witnesses(self, job: _FollowJob, answer: PeerAnswers) -> list[Effect]:
        witnesses: list[BlockWitness] = []
        answered: set[str] = set()
        for item in answer.answers:
            if (
                isinstance(item, PeerWitness)
                and item.peer in job.asked
                and item.peer not in answered
                and isinstance(item.witness, BlockWitness)
            ):
                answered.add(item.peer)
                witnesses.append(item.witness)
        for peer in job.asked:
            if peer not in answered:
                self.resting[peer] = self.now + PEER_BACKOFF
        return self._witnessed(job, witnesses)

    def _witnessed(self, job: _FollowJob, witnesses: list[BlockWitness]) -> list[Effect]:
        if job.kind == _FollowJobKind.QUERY:
            self.collected = witnesses
            return self._done()
        request = Witnesses(witnesses=witnesses)
        return self._ask(
            FollowStep.RELEASING, lambda tag: CallEnclave(tag, WORKER_RELEASE_OUTPUTS, request)
        )

    def _on_released(self, job: _FollowJob, answer: EnclaveAnswer) -> list[Effect]:
        released = answer.response
        problem = ""
        if answer.error:
            problem = f"release_outputs refused: {answer.error}"
        elif not _is_release(released):
            problem = "releasing: not the released outputs"
        if problem:
            if job.kind == _FollowJobKind.CAUGHT_UP:  # kept for the host's log only
                self.failure = FollowFailure("enclave_refused", problem, False)
                return self._done(*self._tell_submission(job))
            code = "enclave_refused" if answer.error else "unsound_answer"
            return self._fail(code, problem, passing=code == "unsound_answer")
        self.held = released.held
        self.witnessed = released.witnessed
        effects: list[Effect] = []
        for block in released.blocks:
            self._keep(block.receipts)
            effects += self._post(block.messages, job.height)
        if job.kind == _FollowJobKind.BLOCK:
            return effects + self._fail("release_backlog_full", job.backlog, passing=True)
        return self._done(*effects, *self._tell_submission(job))

    def _tell_submission(self, job: _FollowJob) -> list[Effect]:
        caught_up = job.caught_up
        if caught_up is None or not self.submit_outputs or not caught_up.contract_ids:
            return []
        if len(caught_up.executors) != len(caught_up.contract_ids):
            return []
        update = CaughtUp(
            height=caught_up.height,
            contract_ids=list(caught_up.contract_ids),
            executors=[list(w) for w in caught_up.executors],
        )
        return [Send((self.submission,), update)]

    # -- what is kept and posted ---------------------------------------------------------
    def _keep(self, receipts: list[Receipt]) -> None:
        for receipt in receipts:
            self.receipts[(receipt.contract_id, receipt.seq)] = receipt
        while len(self.receipts) > RECEIPTS_KEPT:
            self.receipts.popitem(last=False)

    def _post(self, messages: list[OutgoingMessage], number: int) -> list[Effect]:
        if not messages:
            return []
        return [Send((self.posting,), MessagesReleased(number=number, messages=list(messages)))]


def _is_count(value: Any) -> bool:
    """A non-negative int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_output(value: Any, number: int) -> bool:
    return (
        isinstance(value, BlockOutput)
        and value.number == number
        and _is_count(value.held)
        and all(isinstance(r, Receipt) for r in value.receipts)
        and all(isinstance(m, OutgoingMessage) for m in value.messages)
    )


def _is_release(value: Any) -> bool:
    return (
        isinstance(value, ReleasedOutputs)
        and _is_count(value.held)
        and _is_count(value.witnessed)
        and all(isinstance(b, HeldOutputs) for b in value.blocks)
    )
