"""The worker host's output submission, sans-I/O (competitive execution).

Theory of operation
-------------------
Every worker of a contract computes the same outputs; the ExecutionLedger keeps the
first valid one for each block range. :class:`SubmissionCore` is what a worker's
*host* decides about submitting its enclave's outputs -- when, which contracts
together, with or without a checkpoint, and what a refusal means -- and nothing else:
its driver (:mod:`sealbridge.node.driver`, run by :mod:`sealbridge.node.worker`) calls
the enclave, reads the chain, stores blobs on the storage nodes and sends the
transaction. It is the untrusted half of the worker: no enclave program imports it,
and every value it hands on is checked again by the enclave or the ledger.

**Rounds.** The host tells the core when it has caught up with the chain
(:class:`CaughtUp`: the newest block its enclave verified, the installed contracts and
each one's executor set). A round starts only when none is running, the block is newer
than the one the last round started at, and it is not before ``submit_after`` -- the
newest block where a submission of ours was mined or where another worker's output was
seen to close our range (before the enclave has seen that block, the start it signs
would be stale and the ledger would refuse it). A round takes the *domains* one after
the other: the installed contracts grouped by executor set, at most
``MAX_OUTPUT_BATCH`` per domain (:func:`compute_domains`). One submission at a time: a
:class:`CaughtUp` during a round only moves the known height.

**One domain.** Each step asks for one effect under a fresh tag and waits for its
answer (states of :class:`SubmissionPhase`; the table :data:`ANSWERS` says which
answer each state waits for):

1. ``CHECKING_DUE`` -- read the contracts' key rotations and checkpoint records
   (:class:`CheckpointFactsQuery`). A checkpoint is due every ``checkpoint_interval``
   blocks after the first contract's last one, and at once once a contract's key was
   rotated after its last checkpoint (until then the committee keeps releasing the old
   key version).
2. ``SIGNING`` -- the enclave signs the outputs (ECALL ``sign_outputs``): all of the
   domain's contracts with a sealed checkpoint when one is due, else only the changed
   ones. A refusal (nothing new, a divergence, an unconfirmed resume) or an empty
   answer ends this domain; the round goes on with the next.
3. ``CHECKING_RANGE`` -- read the ledger's accepted end of each signed contract
   (:class:`AcceptedEndsQuery`). If one is no longer the start we signed, another
   worker was first: the domain is *skipped* (no transaction, which would only be
   refused and cost gas; no checkpoint stored, which nothing would refer to) and
   ``submit_after`` moves to the chain's tip.
4. ``READING_THRESHOLD`` then ``STORING`` -- a checkpoint larger than
   ``inline_checkpoint_max`` goes to the storage nodes
   (:class:`~sealbridge.core.effects.StoreCheckpoint`) with the ledger's storage
   threshold; a smaller one travels inline in the transaction. If the blob is not
   stored (too few confirmations, an unsound answer, no threshold), the enclave signs
   the domain again *without* a checkpoint (the signature covered it, and the ledger
   would refuse it unconfirmed): outputs never wait for storage; the next due round
   tries the checkpoint again.
5. ``SUBMITTING`` -- the ExecutionLedger transaction
   (:class:`~sealbridge.chain.ledger.OutputSubmission`). Mined: *accepted* (and a
   checkpoint stored, if it carried one), ``submit_after`` moves to its block.
   Reverted: *refused* (another worker was first, or the end left the window), and
   ``NOTING_REFUSAL`` reads the tip for ``submit_after``.

A chain read that fails, a transaction never sent, or no answer within
``answer_timeout`` seconds ends the round (it is tried again when the host is next
caught up at a newer block); nothing is counted for it.

**Hostile answers change nothing.** An answer is taken only if it is of the type the
current state waits for, carries the current tag, and comes from the address that
serves that kind of effect (``chain`` for reads and transactions, ``enclave``,
``storage``; ``host`` says :class:`CaughtUp`). Anything else -- an old or unknown tag,
a forged sender, an answer in the wrong state -- is ignored.
Tags come from a :class:`~sealbridge.core.tags.TagSource` that ``on_start`` begins
anew: an answer to an effect of the node's previous incarnation (in flight when it
crashed) never carries a restarted core's tag. An expected answer that
cannot be true (lists of the wrong length, negative blocks, unsorted confirmations) is
treated as the failure of its step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sealbridge.chain.ledger import MAX_OUTPUT_BATCH, OutputSubmission
from sealbridge.core.effects import (
    CallEnclave,
    CancelTimer,
    ChainRead,
    CheckpointStored,
    Effect,
    EnclaveAnswer,
    ReadChain,
    Report,
    SetTimer,
    StoreCheckpoint,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError, LocalProtocolError
from sealbridge.core.tags import TagSource
from sealbridge.runtime.ecalls import WORKER_SIGN_OUTPUTS
from sealbridge.runtime.messages import SignedOutputs, SignOutputs

__all__ = [
    "ANSWERS",
    "AcceptedEnds",
    "AcceptedEndsQuery",
    "BadCaughtUp",
    "BlockNumberQuery",
    "CaughtUp",
    "CheckpointFacts",
    "CheckpointFactsQuery",
    "StorageThresholdQuery",
    "SubmissionCore",
    "SubmissionPhase",
    "SubmissionStats",
    "compute_domains",
]

ANSWER_TIMER = "submission-answer"
DEFAULT_ANSWER_TIMEOUT = 300.0  # seconds an effect may take before the round is dropped


# -- inputs and queries ----------------------------------------------------------------
class CaughtUp(Message, frozen=True):
    """The host caught up with the chain: its enclave verified blocks up to ``height``;
    ``contract_ids[i]`` is installed with executor set ``executors[i]``."""

    height: int
    contract_ids: list[bytes]
    executors: list[list[bytes]]


class BadCaughtUp(LocalProtocolError):
    """A :class:`CaughtUp` that cannot be true (our host's fault): nothing changes."""

    code = "bad_caught_up"


class CheckpointFactsQuery(Message, frozen=True):
    """Per contract: the block of its latest key rotation and of its latest checkpoint."""

    contract_ids: list[bytes]


class CheckpointFacts(Message, frozen=True):
    rotated_at: list[int]  # 0: never rotated (or not registered)
    checkpoint_heights: list[int]  # 0: no checkpoint recorded


class AcceptedEndsQuery(Message, frozen=True):
    """Per contract: the end of its last accepted output; and the chain's tip, read
    after them."""

    contract_ids: list[bytes]


class AcceptedEnds(Message, frozen=True):
    tip: int
    ends: list[int]  # 0: nothing accepted yet


class StorageThresholdQuery(Message, frozen=True):
    """The confirmations the ExecutionLedger wants for a checkpoint (answer: an int)."""


class BlockNumberQuery(Message, frozen=True):
    """The chain's newest block (answer: an int)."""


# -- states ------------------------------------------------------------------------------
class SubmissionPhase(Enum):
    IDLE = "idle"
    CHECKING_DUE = "checking_due"
    SIGNING = "signing"
    CHECKING_RANGE = "checking_range"
    READING_THRESHOLD = "reading_threshold"
    STORING = "storing"
    SUBMITTING = "submitting"
    NOTING_REFUSAL = "noting_refusal"


# the answer each state waits for (IDLE waits for none)
ANSWERS: dict[SubmissionPhase, type] = {
    SubmissionPhase.CHECKING_DUE: ChainRead,
    SubmissionPhase.SIGNING: EnclaveAnswer,
    SubmissionPhase.CHECKING_RANGE: ChainRead,
    SubmissionPhase.READING_THRESHOLD: ChainRead,
    SubmissionPhase.STORING: CheckpointStored,
    SubmissionPhase.SUBMITTING: TxOutcome,
    SubmissionPhase.NOTING_REFUSAL: ChainRead,
}


@dataclass
class SubmissionStats:
    """Counts of this worker's output submissions (competitive execution)."""

    accepted: int = 0
    refused: int = 0  # another worker's output for the range was first
    skipped: int = 0  # not sent: the ledger had already moved past our start
    last_refusal: str = ""
    checkpoints_stored: int = 0  # accepted submissions that carried a checkpoint
    checkpoints_failed: int = 0  # checkpoints not stored (the outputs went without)
    rounds_failed: int = 0  # rounds ended by a failed read, send or timeout


def compute_domains(
    contract_ids: Sequence[bytes], executors: Sequence[Sequence[bytes]]
) -> list[list[bytes]]:
    """Contracts grouped by executor set, each group sorted and cut into batches of at
    most ``MAX_OUTPUT_BATCH`` (one submission each)."""
    groups: dict[tuple[bytes, ...], list[bytes]] = {}
    for cid, workers in sorted(zip(contract_ids, executors, strict=True)):
        groups.setdefault(tuple(sorted(workers)), []).append(cid)
    domains: list[list[bytes]] = []
    for cids in groups.values():
        domains.extend(
            cids[i : i + MAX_OUTPUT_BATCH] for i in range(0, len(cids), MAX_OUTPUT_BATCH)
        )
    return domains


class SubmissionCore:
    """One worker host's output submissions (see the module docstring)."""

    def __init__(
        self,
        worker_id: bytes,
        *,
        checkpoint_interval: int,
        inline_checkpoint_max: int,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
        address: int = 0,
        host: int = 0,
        chain: int = 0,
        enclave: int = 0,
        storage: int = 0,
        incarnation: int = 0,
    ) -> None:
        if inline_checkpoint_max < 0 or answer_timeout <= 0:
            raise ConfigError("a submission core needs inline_checkpoint_max >= 0, timeout > 0")
        self.worker_id = bytes(worker_id)
        self.checkpoint_interval = int(checkpoint_interval)
        self.inline_checkpoint_max = int(inline_checkpoint_max)
        self.answer_timeout = float(answer_timeout)
        self.address = address
        self.host = host
        # who answers each kind of effect (any other sender is ignored)
        self.answerers: dict[type, int] = {
            ChainRead: chain,
            TxOutcome: chain,
            EnclaveAnswer: enclave,
            CheckpointStored: storage,
        }
        self.stats = SubmissionStats()
        self.phase = SubmissionPhase.IDLE
        self.height = 0  # the newest block the host said its enclave verified
        self.submit_after = 0  # no round before the enclave has seen this block
        self.attempted_at = 0  # the height the last round started at
        self.tag = ""  # the tag of the answer awaited ("" when idle)
        self.tags = TagSource("outputs", sep="/", incarnation=incarnation)
        self.domains: list[list[bytes]] = []  # the round's domains still to do
        self.domain: list[bytes] = []  # the domain in hand
        self.signed: SignedOutputs | None = None  # its signed outputs
        self.threshold = 0  # storage confirmations asked for its checkpoint
        self.with_checkpoint = False  # the submission in flight carries a checkpoint
        self._handlers: dict[SubmissionPhase, Callable[[Any], list[Effect]]] = {
            SubmissionPhase.CHECKING_DUE: self._on_checkpoint_facts,
            SubmissionPhase.SIGNING: self._on_signed,
            SubmissionPhase.CHECKING_RANGE: self._on_accepted_ends,
            SubmissionPhase.READING_THRESHOLD: self._on_threshold,
            SubmissionPhase.STORING: self._on_stored,
            SubmissionPhase.SUBMITTING: self._on_outcome,
            SubmissionPhase.NOTING_REFUSAL: self._on_tip,
        }

    # -- ProtocolNode ------------------------------------------------------------------
    @property
    def node_id(self) -> int:
        return self.address

    def on_start(self, now: float) -> list[Effect]:
        self.tags.start(now)  # no answer to an earlier incarnation's effect is taken
        return []

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name != ANSWER_TIMER or self.phase == SubmissionPhase.IDLE:
            return []
        return self._abort(f"no answer while {self.phase.value} within {self.answer_timeout:g}s")

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if isinstance(message, CaughtUp):
            return self.on_caught_up(message) if sender == self.host else []
        expected = ANSWERS.get(self.phase)
        if expected is None or type(message) is not expected:
            return []  # no answer awaited, or not the kind awaited
        if getattr(message, "tag", None) != self.tag or sender != self.answerers[expected]:
            return []  # an old or unknown tag, or a forged sender
        return self._handlers[self.phase](message)

    # -- rounds --------------------------------------------------------------------------
    def on_caught_up(self, update: CaughtUp) -> list[Effect]:
        """Note the height; start a round if one may start (see the module docstring)."""
        if update.height < 0 or len(update.contract_ids) != len(update.executors):
            raise BadCaughtUp("a caught-up height is >= 0 and names each contract's executors")
        self.height = max(self.height, update.height)
        if not update.contract_ids or self.phase != SubmissionPhase.IDLE:
            return []
        if self.height < self.submit_after or self.height <= self.attempted_at:
            return []  # the enclave's start would be stale, or nothing new
        self.attempted_at = self.height
        self.domains = compute_domains(update.contract_ids, update.executors)
        return self._next_domain()

    def is_checkpoint_due(self, facts: CheckpointFacts) -> bool:
        """Due at once if a contract's key was rotated after its last checkpoint (and the
        enclave is past the rotation); else every ``checkpoint_interval`` blocks after
        the first contract's last checkpoint."""
        for rotated, height in zip(facts.rotated_at, facts.checkpoint_heights, strict=True):
            if rotated > 0 and height < rotated <= self.height:
                return True
        if self.checkpoint_interval <= 0:
            return False
        return self.height - facts.checkpoint_heights[0] >= self.checkpoint_interval

    def _next_domain(self) -> list[Effect]:
        self.signed = None
        self.with_checkpoint = False
        if not self.domains:
            self.phase = SubmissionPhase.IDLE
            self.tag = ""
            self.domain = []
            return [CancelTimer(ANSWER_TIMER)]
        self.domain = self.domains.pop(0)
        return self._begin_domain(checkpoint_ok=True)

    def _begin_domain(self, *, checkpoint_ok: bool) -> list[Effect]:
        if not checkpoint_ok:
            return self._sign(due=False)
        query = CheckpointFactsQuery(contract_ids=list(self.domain))
        return self._ask(SubmissionPhase.CHECKING_DUE, lambda tag: ReadChain(tag, query))

    def _sign(self, *, due: bool) -> list[Effect]:
        request = SignOutputs(
            contract_ids=list(self.domain), only_changed=not due, with_checkpoint=due
        )
        return self._ask(
            SubmissionPhase.SIGNING,
            lambda tag: CallEnclave(tag, WORKER_SIGN_OUTPUTS, request),
        )

    def _ask(self, phase: SubmissionPhase, make: Callable[[str], Effect]) -> list[Effect]:
        self.tag = self.tags.issue()
        self.phase = phase
        return [make(self.tag), SetTimer(ANSWER_TIMER, self.answer_timeout)]

    def _abort(self, reason: str) -> list[Effect]:
        """End the round (tried again when next caught up at a newer block)."""
        self.stats.rounds_failed += 1
        self.phase = SubmissionPhase.IDLE
        self.tag = ""
        self.domains = []
        self.domain = []
        self.signed = None
        return [CancelTimer(ANSWER_TIMER), Report("submission_failed", reason)]

    # -- answers -------------------------------------------------------------------------
    def _on_checkpoint_facts(self, read: ChainRead) -> list[Effect]:
        facts = read.value
        count = len(self.domain)
        if (
            read.error
            or not isinstance(facts, CheckpointFacts)
            or len(facts.rotated_at) != count
            or len(facts.checkpoint_heights) != count
            or not _are_counts([*facts.rotated_at, *facts.checkpoint_heights])
        ):
            return self._abort(f"cannot read checkpoint records: {read.error or 'unsound answer'}")
        return self._sign(due=self.is_checkpoint_due(facts))

    def _on_signed(self, answer: EnclaveAnswer) -> list[Effect]:
        signed = answer.response
        if answer.error or not isinstance(signed, SignedOutputs) or not self._is_sound(signed):
            reason = answer.error or "an unsound answer"
            return [Report("outputs_not_signed", reason), *self._next_domain()]
        if not signed.contract_ids:
            return self._next_domain()  # nothing changed since the accepted outputs
        self.signed = signed
        query = AcceptedEndsQuery(contract_ids=list(signed.contract_ids))
        return self._ask(SubmissionPhase.CHECKING_RANGE, lambda tag: ReadChain(tag, query))

    def _is_sound(self, signed: SignedOutputs) -> bool:
        """Outputs for contracts of this domain, each once, with one start, root and
        count each."""
        count = len(signed.contract_ids)
        return (
            len(signed.starts) == len(signed.state_roots) == len(signed.commands_applied) == count
            and all(isinstance(cid, bytes) for cid in signed.contract_ids)
            and _are_counts(signed.starts)
            and isinstance(signed.checkpoint, bytes)
            and len(set(signed.contract_ids)) == count
            and set(signed.contract_ids) <= set(self.domain)
        )

    def _on_accepted_ends(self, read: ChainRead) -> list[Effect]:
        signed = self.signed
        view = read.value
        if (
            signed is None
            or read.error
            or not isinstance(view, AcceptedEnds)
            or len(view.ends) != len(signed.contract_ids)
            or not _are_counts([view.tip, *view.ends])
        ):
            return self._abort(f"cannot read accepted outputs: {read.error or 'unsound answer'}")
        if list(view.ends) != list(signed.starts):
            # another worker's output moved the accepted end; our enclave has not seen it
            # yet: a transaction would only be refused, a stored checkpoint unreferenced
            self.stats.skipped += 1
            self.submit_after = max(self.submit_after, view.tip)
            return self._next_domain()
        if len(signed.checkpoint) > self.inline_checkpoint_max:
            query = StorageThresholdQuery()
            return self._ask(SubmissionPhase.READING_THRESHOLD, lambda tag: ReadChain(tag, query))
        return self._submit((), ())

    def _on_threshold(self, read: ChainRead) -> list[Effect]:
        signed = self.signed
        threshold = read.value
        if signed is None or read.error or not _is_count(threshold) or threshold < 1:
            return self._without_checkpoint(
                f"no storage threshold: {read.error or 'unsound answer'}"
            )
        self.threshold = threshold
        blob = signed.checkpoint
        return self._ask(SubmissionPhase.STORING, lambda tag: StoreCheckpoint(tag, blob, threshold))

    def _on_stored(self, stored: CheckpointStored) -> list[Effect]:
        ids, sigs = stored.node_ids, stored.signatures
        if stored.error:
            return self._without_checkpoint(str(stored.error))
        if (
            not isinstance(ids, tuple | list)
            or not isinstance(sigs, tuple | list)
            or len(ids) != len(sigs)
            or len(ids) < self.threshold
            or not all(isinstance(value, bytes) for value in (*ids, *sigs))
            or any(a >= b for a, b in zip(ids, ids[1:], strict=False))
        ):
            return self._without_checkpoint("an unsound storage answer")
        return self._submit(ids, sigs)

    def _without_checkpoint(self, reason: str) -> list[Effect]:
        """The checkpoint was not stored: sign the domain again without one (its
        signature covers the checkpoint, which the ledger would refuse unconfirmed)."""
        self.stats.checkpoints_failed += 1
        self.signed = None
        return [
            Report("checkpoint_not_stored", f"{reason}; outputs go without"),
            *self._begin_domain(checkpoint_ok=False),
        ]

    def _submit(self, storage_ids: Sequence[bytes], storage_sigs: Sequence[bytes]) -> list[Effect]:
        signed = self.signed
        if signed is None:  # unreachable: every caller holds signed outputs
            return self._abort("no signed outputs to submit")
        blob = signed.checkpoint
        inline = bool(blob) and not storage_ids
        tx = OutputSubmission(
            contract_ids=list(signed.contract_ids),
            starts=list(signed.starts),
            end=signed.end,
            end_hash=signed.end_hash,
            state_roots=list(signed.state_roots),
            commands_applied=list(signed.commands_applied),
            node_id=self.worker_id,
            signature=signed.signature,
            checkpoint_hash=signed.checkpoint_hash,
            checkpoint_size=signed.checkpoint_size,
            storage_ids=list(storage_ids),
            storage_sigs=list(storage_sigs),
            inline_blob=blob if inline else b"",
        )
        self.with_checkpoint = bool(blob)
        return self._ask(SubmissionPhase.SUBMITTING, lambda tag: SubmitTx(tag, tx))

    def _on_outcome(self, outcome: TxOutcome) -> list[Effect]:
        signed = self.signed
        end = signed.end if signed is not None else 0
        count = len(signed.contract_ids) if signed is not None else 0
        if outcome.is_mined and _is_count(outcome.block_number):
            self.stats.accepted += 1
            if self.with_checkpoint:
                self.stats.checkpoints_stored += 1
            self.submit_after = max(self.submit_after, outcome.block_number)
            report = {"contracts": count, "end": end, "checkpoint": self.with_checkpoint}
            return [Report("outputs_accepted", report), *self._next_domain()]
        if outcome.status == "reverted":
            # another worker was first for this range (or the end fell out of the window)
            self.stats.refused += 1
            self.stats.last_refusal = str(outcome.reason)
            query = BlockNumberQuery()
            return [
                Report("outputs_refused", {"end": end, "reason": self.stats.last_refusal}),
                *self._ask(SubmissionPhase.NOTING_REFUSAL, lambda tag: ReadChain(tag, query)),
            ]
        return self._abort(f"outputs not sent: {outcome.reason or outcome.status}")

    def _on_tip(self, read: ChainRead) -> list[Effect]:
        tip = read.value
        if read.error or not _is_count(tip):
            return self._abort(f"cannot read the chain's tip: {read.error or 'unsound answer'}")
        self.submit_after = max(self.submit_after, tip)
        return self._next_domain()

    # -- reads ---------------------------------------------------------------------------
    def get_status(self) -> dict[str, Any]:
        return {
            "submission_phase": self.phase.value,
            "outputs_accepted": self.stats.accepted,
            "outputs_refused": self.stats.refused,
            "outputs_skipped": self.stats.skipped,
            "last_refusal": self.stats.last_refusal,
            "checkpoints_stored": self.stats.checkpoints_stored,
            "checkpoints_failed": self.stats.checkpoints_failed,
            "submit_after": self.submit_after,
        }


def _is_count(value: Any) -> bool:
    """A non-negative int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _are_counts(values: Sequence[Any]) -> bool:
    return all(_is_count(value) for value in values)
