"""The committee host core: one node's part in a committee's eras, sans-I/O.

Theory of operation
-------------------
A gatekeeper (root key) or a gateway (cross-chain signing key) holds its committee
share in its enclave (:class:`~sealbridge.keyservice.committee.CommitteeMember`), which
checks everything. What the untrusted host *decides* -- which events concern the node,
what to read, what to post and when, when to give up on an era -- is this core; its
driver only executes the effects (:mod:`sealbridge.core.effects`): chain reads and
transactions, the committee ECALLs, and the write of the sealed committee state. The
network driver runs it for the gatekeeper and gateway processes
(:mod:`sealbridge.node.committee`); the simulator runs the same core against its ledger
model (:mod:`sealbridge.sim.committee`).

**Inputs.** :class:`Followed` (the node has followed the chain to a height: the core
reads the committee's events up to it, once each, in chain order), the ``deadline``
timer (every :data:`DEADLINE_CHECK` seconds: a pending era past its deadline is
restarted by whoever sees it first), the ``retry`` timer, and the answers to its
effects -- taken from the chain's address (``chain``) only and matched by tag; an
answer that does not carry the awaited tag, or is not the kind its effect gets, is
stale or forged and changes nothing. Tags come from a
:class:`~sealbridge.core.tags.TagSource` that ``on_start`` begins anew: an answer to an
effect of the node's previous incarnation (in flight when it crashed) never carries
a restarted core's tag. A chain answer naming members or dealers that are
not node ids, or a pending era that is not three numbers, is malformed: the era is
dropped, the restart not sent.

**One job at a time, in chain order.** Every event read becomes a job in a FIFO; a job
runs until it waits on one effect, and the next job starts only when it is finished.
Every member sees the same events in the same order, so each computes the same
qualified dealer set: *the first ``required_dealings`` dealers in chain order*.

**Eras as a state table.** Each era the node takes part in has an :class:`EraStep`;
:data:`TRANSITIONS` lists every allowed move and :meth:`CommitteeHostCore._move`
refuses any other (a bug, never a silent jump)::

    EraElected  -> RECORD      read the era (still ELECTED? who is involved?)
    RECORD      -> CARDS       involved: read every member's and dealer's attested card
                -> LEAVERS     a fresh era we are not in: were we in the era it replaces?
                -> DONE        not involved / no longer pending
    LEAVERS     -> WAITING     yes: only its RotationReady concerns us (keep the old share)
                -> DONE        no
    CARDS       -> GROUP       a newcomer to a resharing: fetch the dealing era's keys
                -> ELECTED     ask the enclave (COMMITTEE_ELECTED)
    GROUP       -> ELECTED
    ELECTED     -> DEALT_CHECK the enclave dealt: did this node deal before a restart?
                -> COLLECTING  a member that does not deal
                -> WAITING     a dealer that is not a member, or nothing to do
                -> DONE        the enclave refused the era
    DEALT_CHECK -> POSTING     post the dealing
                -> COLLECTING / WAITING   it dealt already: that dealing stands
    POSTING     -> COLLECTING / WAITING   mined or reverted (reported), either way on
    DealingPosted (a member, COLLECTING) -> CHECKING -> COLLECTING, or FINISHING once
                the era has its required dealings
    FINISHING   -> CONFIRMING  post the ready confirmation
                -> WAITING     the enclave refused to finish (the era will time out)
    CONFIRMING  -> WAITING     mined or reverted (reported)
    RotationReady     (COLLECTING | WAITING) -> ACTIVATING -> DONE
    RotationRestarted (any idle step)        -> DROPPING   -> DONE

A passing failure (a chain read or transaction the driver could not carry out) repeats
the same effect after :data:`RETRY_DELAY`, at most :data:`MAX_ATTEMPTS` times; so does
an effect whose answer did not come within :data:`ANSWER_TIMEOUT` (counted in deadline
timers: a lost message must not hold the core forever; a lost logs read, deadline read
or restart is asked again). Then, or on a lasting failure, the job is given up and
reported (``committee_gave_up``) so later events are not held behind it. An enclave
refusal is final for its step. Every sealed committee state the enclave returns is
persisted (``Persist("committee", ...)``) before the next input.

**Trust.** The host is untrusted: a wrong decision here can stall an era (it times out,
the node is penalized) but cannot forge a share, a dealing or a confirmation -- the
enclave signs those only after its own checks, and the contract verifies the
signatures.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sealbridge.chain.eras import CommitteePhase, EraRecord
from sealbridge.core.effects import (
    CallEnclave,
    ChainRead,
    Effect,
    EnclaveAnswer,
    Persist,
    ReadChain,
    Report,
    SetTimer,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.encoding import Message
from sealbridge.core.errors import LocalProtocolError
from sealbridge.core.tags import TagSource
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.keyservice.committee import Dealing, EraInfo
from sealbridge.keyservice.ecalls import (
    COMMITTEE_DEALING,
    COMMITTEE_ELECTED,
    COMMITTEE_FAILED,
    COMMITTEE_FINISH,
    COMMITTEE_READY,
    Activate,
    DealingOut,
    Elected,
    ElectedOut,
    EraRef,
    Finish,
    FinishOut,
    SealedBlob,
)
from sealbridge.tee.card import AttestedCard

__all__ = [
    "ANSWER_TIMEOUT",
    "DEADLINE_CHECK",
    "MAX_ATTEMPTS",
    "RETRY_DELAY",
    "TRANSITIONS",
    "CardsQuery",
    "CommitteeHostCore",
    "CommitteeEvent",
    "CommitteeLogs",
    "CommitteeStepError",
    "ConfirmReady",
    "DealingSeen",
    "DealtQuery",
    "EraElectedSeen",
    "EraQuery",
    "EraStep",
    "Followed",
    "GroupQuery",
    "MembersQuery",
    "PendingEra",
    "PendingQuery",
    "PostDealing",
    "RestartEra",
    "RotationReadySeen",
    "RotationRestartedSeen",
]

DEADLINE_CHECK = 1.0  # seconds between looks at a pending era's deadline
RETRY_DELAY = 1.0  # seconds before a passing failure's effect is repeated
MAX_ATTEMPTS = 30  # tries of one effect before its job is given up
ANSWER_TIMEOUT = 120.0  # seconds an effect's answer may take before it counts as lost
MAX_BACKLOG = 4096  # events waiting; more means the node fell far behind: read again later
PERSIST_KEY = "committee"


class CommitteeStepError(LocalProtocolError):
    """A move the state table does not allow (a bug in the core, never an input's fault)."""

    code = "committee_step"


# -- inputs ----------------------------------------------------------------------------


class Followed(Message, frozen=True):
    """The node followed the chain up to ``height`` (its block follower's height)."""

    height: int


class EraElectedSeen(Message, frozen=True):
    era: int


class DealingSeen(Message, frozen=True):
    """A ``DealingPosted`` event, with the enclave's signature from the transaction."""

    era: int
    dealer: bytes
    commitments: list[bytes]
    shares: list[bytes]
    signature: bytes


class RotationReadySeen(Message, frozen=True):
    era: int
    group_public_key: bytes


class RotationRestartedSeen(Message, frozen=True):
    failed_era: int


CommitteeEvent = EraElectedSeen | DealingSeen | RotationReadySeen | RotationRestartedSeen


# -- chain questions (ReadChain.query) and their answers --------------------------------


class CommitteeLogs(Message, frozen=True):
    """The committee's events in blocks ``first..last``, in chain order -> list of
    :data:`CommitteeEvent` (other events of the contract left out)."""

    first: int
    last: int


class EraQuery(Message, frozen=True):
    era: int  # -> EraRecord | None


class MembersQuery(Message, frozen=True):
    era: int  # -> list[bytes] (node ids)


class CardsQuery(Message, frozen=True):
    node_ids: list[bytes]  # -> list[AttestedCard] (registry keys, last registration quote)


class GroupQuery(Message, frozen=True):
    """The active era's public keys, from a peer -> GroupPublicKeys (the enclave checks
    them against the chain's record)."""


class DealtQuery(Message, frozen=True):
    era: int
    node_id: bytes  # -> bool


class PendingQuery(Message, frozen=True):
    """-> :class:`PendingEra`."""


class PendingEra(Message, frozen=True):
    era: int  # 0: none pending
    deadline: int  # the last block the era may finish in
    block_number: int  # the chain's height when read


# -- transactions (SubmitTx.tx) ---------------------------------------------------------


class PostDealing(Message, frozen=True):
    era: int
    dealer: bytes
    commitments: list[bytes]
    shares: list[bytes]
    signature: bytes


class ConfirmReady(Message, frozen=True):
    era: int
    member: bytes
    group_public_key: bytes
    qualified: list[bytes]
    signature: bytes


class RestartEra(Message, frozen=True):
    era: int


# -- the state table --------------------------------------------------------------------


class EraStep(StrEnum):
    RECORD = "record"
    LEAVERS = "leavers"
    CARDS = "cards"
    GROUP = "group"
    ELECTED = "elected"
    DEALT_CHECK = "dealt_check"
    POSTING = "posting"
    COLLECTING = "collecting"
    CHECKING = "checking"
    FINISHING = "finishing"
    CONFIRMING = "confirming"
    WAITING = "waiting"
    ACTIVATING = "activating"
    DROPPING = "dropping"
    DONE = "done"


S = EraStep
IDLE = frozenset({S.COLLECTING, S.WAITING})  # steps that wait for the next event
# an era read in these phases formed while this node was not following: it only waits
# for its RotationReady (the enclave retires older shares when it hears of it)
LATE_PHASES = frozenset({CommitteePhase.ACTIVE, CommitteePhase.RETIRED})
TRANSITIONS: dict[EraStep, frozenset[EraStep]] = {
    S.RECORD: frozenset({S.CARDS, S.LEAVERS, S.WAITING, S.DONE}),
    S.LEAVERS: frozenset({S.WAITING, S.DONE}),
    S.CARDS: frozenset({S.GROUP, S.ELECTED, S.DONE}),
    S.GROUP: frozenset({S.ELECTED, S.DONE}),
    S.ELECTED: frozenset({S.DEALT_CHECK, S.COLLECTING, S.WAITING, S.DONE}),
    S.DEALT_CHECK: frozenset({S.POSTING, S.COLLECTING, S.WAITING, S.DONE}),
    S.POSTING: frozenset({S.COLLECTING, S.WAITING, S.DONE}),
    S.COLLECTING: frozenset({S.CHECKING, S.ACTIVATING, S.DROPPING}),
    S.CHECKING: frozenset({S.COLLECTING, S.FINISHING, S.DONE}),
    S.FINISHING: frozenset({S.CONFIRMING, S.WAITING, S.DONE}),
    S.CONFIRMING: frozenset({S.WAITING, S.DONE}),
    S.WAITING: frozenset({S.ACTIVATING, S.DROPPING}),
    S.ACTIVATING: frozenset({S.DONE}),
    S.DROPPING: frozenset({S.DONE}),
    S.DONE: frozenset(),
}


@dataclass
class EraTrack:
    """What the node follows of one era."""

    era: int
    step: EraStep = S.RECORD
    record: EraRecord | None = None
    info: EraInfo | None = None
    cards: list[AttestedCard] = field(default_factory=list)
    previous: GroupPublicKeys | None = None
    dealing: Dealing | None = None
    dealt: list[bytes] = field(default_factory=list)  # dealer ids, chain order
    checking: bytes = b""  # the dealer whose dealing the enclave is checking
    is_member: bool = False


@dataclass
class _Waiting:
    """The one effect the current job waits on."""

    tag: str
    effect: ReadChain | SubmitTx | CallEnclave
    era: int
    attempts: int = 1
    since: int = 0  # the deadline tick it was asked at


class CommitteeHostCore:
    """One node's decisions in a committee's eras (see the module docstring)."""

    def __init__(
        self,
        node_id: bytes,
        *,
        scanned: int,
        address: int = 0,
        chain: int = 0,
        incarnation: int = 0,
    ) -> None:
        self.my_id = bytes(node_id)
        self.address = address
        self.chain = chain  # only this sender's answers count
        self.scanned = scanned  # events up to this block were read
        self.height = scanned  # the height the node followed
        self.eras: dict[int, EraTrack] = {}
        self.backlog: deque[CommitteeEvent] = deque()
        self.waiting: _Waiting | None = None
        self.reading_logs: str = ""  # the tag of the logs read in flight
        self.reading_last = 0  # the last block that read asked for
        self.deadline_read: str = ""  # the tag of the deadline check in flight
        self.restarting: str = ""  # the tag of a restart in flight
        self.ticks = 0  # deadline timers fired: the clock of the answer timeout
        self.asked = {"logs": 0, "deadline": 0, "restart": 0}  # the tick each was asked at
        self.tags = TagSource("committee", incarnation=incarnation)
        self.dealings_posted = 0
        self.confirmations_posted = 0
        self.restarts_sent = 0
        self.gave_up = 0
        self.last_note = ""

    @property
    def node_id(self) -> int:
        return self.address

    # -- ProtocolNode ----------------------------------------------------------------
    def on_start(self, now: float) -> list[Effect]:
        self.tags.start(now)  # no answer to an earlier incarnation's effect is taken
        return [SetTimer("deadline", DEADLINE_CHECK)]

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name == "deadline":
            self.ticks += 1
            effects: list[Effect] = [SetTimer("deadline", DEADLINE_CHECK), *self._expire()]
            if not self.deadline_read and not self.restarting:
                self.deadline_read = self._tag("deadline")
                self.asked["deadline"] = self.ticks
                effects.append(ReadChain(self.deadline_read, PendingQuery()))
            return effects
        if name == "retry" and self.waiting is not None:
            self.waiting.tag = self._tag(f"era{self.waiting.era}")
            self.waiting.since = self.ticks
            return [_with_tag(self.waiting.effect, self.waiting.tag)]
        if name == "logs" and not self.reading_logs:
            return self._read_logs()
        return []

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if sender != self.chain:
            return []  # only the chain side answers; a peer's "answer" is a forgery
        if isinstance(message, Followed):
            self.height = max(self.height, int(message.height))
            return self._read_logs() if not self.reading_logs else []
        tag = getattr(message, "tag", None)
        if not isinstance(tag, str) or not tag:
            return []
        if tag == self.reading_logs and type(message) is ChainRead:
            return self._on_logs(message)
        if tag == self.deadline_read and type(message) is ChainRead:
            return self._on_pending(message)
        if tag == self.restarting and type(message) is TxOutcome:
            self.restarting = ""
            if message.is_mined:
                return [Report("committee_restart", message.block_number)]
            return [Report("committee_restart_refused", message.reason)]
        waiting = self.waiting
        if waiting is None or tag != waiting.tag:
            return []  # stale (a repeated effect's first answer) or unknown
        return self._on_answer(waiting, message)

    # -- reading events ------------------------------------------------------------------
    def _read_logs(self) -> list[Effect]:
        if self.height <= self.scanned or len(self.backlog) >= MAX_BACKLOG:
            return []
        self.reading_logs = self._tag("logs")
        self.asked["logs"] = self.ticks
        self.reading_last = self.height
        return [ReadChain(self.reading_logs, CommitteeLogs(self.scanned + 1, self.height))]

    def _on_logs(self, answer: ChainRead) -> list[Effect]:
        self.reading_logs = ""
        if answer.error or not isinstance(answer.value, list):
            # read again after a while (a passing failure, or a malformed answer)
            return [SetTimer("logs", RETRY_DELAY)]
        events = [e for e in answer.value if isinstance(e, CommitteeEvent)]
        self.backlog.extend(events)
        self.scanned = self.reading_last
        return self._pump()

    # -- the deadline ------------------------------------------------------------------
    def _on_pending(self, answer: ChainRead) -> list[Effect]:
        self.deadline_read = ""
        pending = answer.value
        if answer.error or not isinstance(pending, PendingEra):
            return []
        if not all(_is_int(n) for n in (pending.era, pending.deadline, pending.block_number)):
            return []  # a malformed answer: the next check reads again
        if pending.era <= 0:
            return []
        if pending.block_number <= pending.deadline:
            return []
        self.restarting = self._tag("restart")
        self.asked["restart"] = self.ticks
        self.restarts_sent += 1
        return [SubmitTx(self.restarting, RestartEra(pending.era))]

    # -- jobs ----------------------------------------------------------------------------
    def _pump(self) -> list[Effect]:
        """Start jobs until one waits on an effect or none is left."""
        effects: list[Effect] = []
        while self.waiting is None and self.backlog:
            effects += self._start(self.backlog.popleft())
        if self.waiting is None and self.height > self.scanned and not self.reading_logs:
            effects += self._read_logs()
        return effects

    def _start(self, event: CommitteeEvent) -> list[Effect]:
        if isinstance(event, EraElectedSeen):
            if event.era in self.eras:
                return []  # elected once; a repeat is a replay
            elected = EraTrack(era=event.era)
            self.eras[event.era] = elected
            return self._ask(elected, ReadChain("", EraQuery(event.era)))
        if isinstance(event, DealingSeen):
            return self._on_dealing(event)
        if isinstance(event, RotationReadySeen):
            ready = self.eras.get(event.era)
            if ready is None or ready.step not in IDLE or ready.info is None:
                return []
            self._move(ready, S.ACTIVATING)
            request = Activate(info=ready.info, group_public_key=bytes(event.group_public_key))
            return self._ask(ready, CallEnclave("", COMMITTEE_READY, request))
        failed = self.eras.get(event.failed_era)
        if failed is None or failed.step not in IDLE:
            return []
        self._move(failed, S.DROPPING)
        return self._ask(failed, CallEnclave("", COMMITTEE_FAILED, EraRef(era=failed.era)))

    def _on_dealing(self, event: DealingSeen) -> list[Effect]:
        track = self.eras.get(event.era)
        dealer = bytes(event.dealer)
        if track is None or track.step not in IDLE or dealer in track.dealt:
            return []
        if track.info is None or dealer not in track.info.dealers:
            return []  # the contract admits dealers only; a stranger is not counted
        if not track.is_member or track.step != S.COLLECTING:
            track.dealt.append(dealer)
            return []
        self._move(track, S.CHECKING)
        track.checking = dealer
        dealing = Dealing(
            era=event.era,
            dealer=dealer,
            commitments=[bytes(c) for c in event.commitments],
            shares=[bytes(s) for s in event.shares],
            signature=bytes(event.signature),
        )
        return self._ask(track, CallEnclave("", COMMITTEE_DEALING, dealing))

    def _ask(self, track: EraTrack, effect: ReadChain | SubmitTx | CallEnclave) -> list[Effect]:
        tag = self._tag(f"era{track.era}")
        self.waiting = _Waiting(tag, effect, track.era, since=self.ticks)
        return [_with_tag(effect, tag)]

    def _on_answer(self, waiting: _Waiting, answer: Any) -> list[Effect]:
        if type(answer) is not ANSWERS[type(waiting.effect)]:
            return []  # not the kind of answer the effect gets: forged or misrouted
        track = self.eras.get(waiting.era)
        if track is None:  # cannot happen: a waiting job's era is tracked
            self.waiting = None
            return self._pump()
        failure = _get_failure(answer)
        if failure is not None and failure[1]:  # passing: repeat the same effect later
            return self._again(waiting, track, failure[0])
        self.waiting = None
        effects = self._advance(track, answer, failure[0] if failure else "")
        return effects + self._pump()

    def _again(self, waiting: _Waiting, track: EraTrack, reason: str) -> list[Effect]:
        """A passing failure: the same effect after :data:`RETRY_DELAY`, or give up."""
        if waiting.attempts < MAX_ATTEMPTS:
            waiting.attempts += 1
            waiting.tag = ""  # an answer to the old tag is stale now
            return [SetTimer("retry", RETRY_DELAY)]
        return self._give_up(track, reason)

    def _expire(self) -> list[Effect]:
        """Forget what was asked :data:`ANSWER_TIMEOUT` ago and never answered (a link
        or the chain lost it): the logs are read again, the deadline checked again, and
        a job's effect counts as a passing failure."""
        late = self.ticks - int(ANSWER_TIMEOUT / DEADLINE_CHECK)
        effects: list[Effect] = []
        if self.deadline_read and self.asked["deadline"] <= late:
            self.deadline_read = ""
        if self.restarting and self.asked["restart"] <= late:
            self.restarting = ""
            effects.append(Report("committee_no_answer", "restart"))
        if self.reading_logs and self.asked["logs"] <= late:
            self.reading_logs = ""
            effects += [Report("committee_no_answer", "logs"), *self._read_logs()]
        waiting = self.waiting
        if waiting is not None and waiting.tag and waiting.since <= late:
            track = self.eras.get(waiting.era)
            if track is None:  # cannot happen: a waiting job's era is tracked
                self.waiting = None
                return effects + self._pump()
            effects += [Report("committee_no_answer", f"era {waiting.era}")]
            effects += self._again(waiting, track, "no answer in time")
        return effects

    def _give_up(self, track: EraTrack, reason: str) -> list[Effect]:
        self.waiting = None
        self.gave_up += 1
        step = track.step
        self._finish(track)
        self.last_note = f"era {track.era}: gave up at {step.value}: {reason}"
        return [Report("committee_gave_up", self.last_note), *self._pump()]

    def _finish(self, track: EraTrack) -> None:
        track.step = S.DONE
        self.eras.pop(track.era, None)

    def _move(self, track: EraTrack, to: EraStep) -> None:
        if to not in TRANSITIONS[track.step]:
            raise CommitteeStepError(
                f"era {track.era}: no move from {track.step.value} to {to.value}"
            )
        if to == S.DONE:
            self._finish(track)
        else:
            track.step = to

    # -- the state table's moves, by the step that was waiting -------------------------
    def _advance(self, track: EraTrack, answer: Any, refusal: str) -> list[Effect]:
        step = track.step
        if refusal:
            return self._on_refusal(track, refusal)
        if step == S.RECORD:
            return self._on_record(track, answer.value)
        if step == S.LEAVERS:
            members = answer.value
            if not _is_ids(members):
                return self._on_refusal(track, "malformed members")
            if self.my_id in members:
                self._move(track, S.WAITING)  # it neither deals nor confirms
                return [Report("committee_leaving", track.era)]
            self._move(track, S.DONE)
            return []
        if step == S.CARDS:
            cards = answer.value
            if not isinstance(cards, list) or not all(isinstance(c, AttestedCard) for c in cards):
                return self._on_refusal(track, "malformed cards")
            track.cards = cards
            record = track.record
            if record is not None and record.is_resharing and self.my_id not in record.dealers:
                self._move(track, S.GROUP)
                return self._ask(track, ReadChain("", GroupQuery()))
            return self._elect(track)
        if step == S.GROUP:
            if not isinstance(answer.value, GroupPublicKeys):
                return self._on_refusal(track, "malformed group keys")
            track.previous = answer.value
            return self._elect(track)
        if step == S.ELECTED:
            return self._on_elected(track, answer.response)
        if step == S.DEALT_CHECK:
            if answer.value is True:
                self._move(track, self._idle_step(track))
                return [Report("committee_already_dealt", track.era)]
            return self._post_dealing(track)
        if step == S.POSTING:
            self._move(track, self._idle_step(track))
            self.dealings_posted += 1
            return [Report("committee_dealing_posted", track.era)]
        if step == S.CHECKING:
            return self._on_checked(track, answer.response)
        if step == S.FINISHING:
            return self._on_finished(track, answer.response)
        if step == S.CONFIRMING:
            self._move(track, S.WAITING)
            self.confirmations_posted += 1
            return [Report("committee_confirmed", track.era)]
        if step in (S.ACTIVATING, S.DROPPING):
            effects = self._persist(answer.response)
            self._move(track, S.DONE)
            kind = "committee_active" if step == S.ACTIVATING else "committee_failed"
            return [*effects, Report(kind, track.era)]
        raise CommitteeStepError(f"era {track.era}: an answer in step {step.value}")

    def _on_refusal(self, track: EraTrack, reason: str) -> list[Effect]:
        """A lasting failure of the step's effect (a refusal, a revert, a bad answer)."""
        step = track.step
        if step == S.POSTING:
            self._move(track, self._idle_step(track))
            return [Report("committee_dealing_refused", reason)]
        if step == S.CONFIRMING:
            self._move(track, S.WAITING)
            return [Report("committee_confirmation_refused", reason)]
        if step == S.FINISHING:
            self._move(track, S.WAITING)  # the era will time out; the restart drops it
            return [Report("committee_finish_refused", reason)]
        if step == S.CHECKING:
            # counted all the same: the qualified set is the first dealers in chain order
            # for every member; an enclave that cannot use one refuses to finish with it
            return [Report("committee_dealing_unchecked", reason), *self._count(track)]
        self.last_note = f"era {track.era}: {step.value} failed: {reason}"
        self._move(track, S.DONE)
        return [Report("committee_era_dropped", self.last_note)]

    def _on_record(self, track: EraTrack, record: Any) -> list[Effect]:
        late = isinstance(record, EraRecord) and record.phase in LATE_PHASES
        if not isinstance(record, EraRecord) or (
            record.phase != CommitteePhase.ELECTED and not late
        ):
            self._move(track, S.DONE)  # failed, or gone: nothing to do for it now
            return []
        if not _is_ids(record.members) or not _is_ids(record.dealers):
            return self._on_refusal(track, "malformed era record")
        track.record = record
        track.is_member = self.my_id in [bytes(m) for m in record.members]
        track.info = EraInfo(
            era=track.era,
            members=[bytes(m) for m in record.members],
            threshold=record.threshold,
            dealers=[bytes(d) for d in record.dealers],
            previous_era=record.previous_era,
            fresh=record.fresh,
        )
        if late:
            # read after it formed (this node was down): too late to take part, but its
            # RotationReady, next in the logs, must still reach the enclave, which then
            # retires the shares it holds of older eras (else it would serve a retired
            # era's group keys to the workers)
            self._move(track, S.WAITING)
            return [Report("committee_era_missed", track.era)]
        involved = list(dict.fromkeys([*track.info.members, *track.info.dealers]))
        if self.my_id not in involved:
            if record.fresh and record.previous_era:
                self._move(track, S.LEAVERS)
                return self._ask(track, ReadChain("", MembersQuery(record.previous_era)))
            self._move(track, S.DONE)
            return []
        self._move(track, S.CARDS)
        return self._ask(track, ReadChain("", CardsQuery(involved)))

    def _elect(self, track: EraTrack) -> list[Effect]:
        info = track.info
        if info is None:
            raise CommitteeStepError(f"era {track.era}: electing without its record")
        self._move(track, S.ELECTED)
        request = Elected(info=info, cards=track.cards, previous=track.previous)
        return self._ask(track, CallEnclave("", COMMITTEE_ELECTED, request))

    def _on_elected(self, track: EraTrack, out: Any) -> list[Effect]:
        if not isinstance(out, ElectedOut):
            return self._on_refusal(track, "malformed answer")
        effects = self._persist(out)
        if out.dealing is None:
            self._move(track, self._idle_step(track))
            return effects
        track.dealing = out.dealing
        self._move(track, S.DEALT_CHECK)
        return effects + self._ask(track, ReadChain("", DealtQuery(track.era, self.my_id)))

    def _post_dealing(self, track: EraTrack) -> list[Effect]:
        dealing = track.dealing
        if dealing is None:
            raise CommitteeStepError(f"era {track.era}: posting without a dealing")
        self._move(track, S.POSTING)
        tx = PostDealing(
            era=track.era,
            dealer=dealing.dealer,
            commitments=dealing.commitments,
            shares=dealing.shares,
            signature=dealing.signature,
        )
        return self._ask(track, SubmitTx("", tx))

    def _on_checked(self, track: EraTrack, out: Any) -> list[Effect]:
        effects: list[Effect] = []
        if isinstance(out, DealingOut) and out.complaint:
            effects.append(Report("committee_complaint", out.complaint))
        return effects + self._count(track)

    def _count(self, track: EraTrack) -> list[Effect]:
        """Count the checked dealing; finish once the era has its required dealings."""
        track.dealt.append(track.checking)
        track.checking = b""
        record = track.record
        if record is None or len(track.dealt) != record.required_dealings:
            self._move(track, S.COLLECTING)
            return []
        self._move(track, S.FINISHING)
        qualified = sorted(track.dealt[: record.required_dealings])
        return self._ask(track, CallEnclave("", COMMITTEE_FINISH, Finish(track.era, qualified)))

    def _on_finished(self, track: EraTrack, out: Any) -> list[Effect]:
        if not isinstance(out, FinishOut):
            return self._on_refusal(track, "malformed answer")
        effects = self._persist(out)
        c = out.confirmation
        self._move(track, S.CONFIRMING)
        tx = ConfirmReady(
            era=c.era,
            member=c.member,
            group_public_key=c.group_public_key,
            qualified=c.qualified,
            signature=c.signature,
        )
        return effects + self._ask(track, SubmitTx("", tx))

    @staticmethod
    def _idle_step(track: EraTrack) -> EraStep:
        return S.COLLECTING if track.is_member else S.WAITING

    @staticmethod
    def _persist(out: Any) -> list[Effect]:
        sealed = getattr(out, "sealed", b"")
        if isinstance(out, SealedBlob | ElectedOut | FinishOut) and sealed:
            return [Persist(PERSIST_KEY, bytes(sealed))]
        return []

    def _tag(self, prefix: str) -> str:
        return self.tags.issue(prefix)

    # -- status ----------------------------------------------------------------------
    def get_status(self) -> dict[str, Any]:
        return {
            "eras_followed": {str(e): t.step.value for e, t in sorted(self.eras.items())},
            "events_waiting": len(self.backlog),
            "scanned": self.scanned,
            "dealings_posted": self.dealings_posted,
            "confirmations_posted": self.confirmations_posted,
            "restarts_sent": self.restarts_sent,
            "gave_up": self.gave_up,
            "note": self.last_note,
        }


def _with_tag(
    effect: ReadChain | SubmitTx | CallEnclave, tag: str
) -> ReadChain | SubmitTx | CallEnclave:
    if isinstance(effect, ReadChain):
        return ReadChain(tag, effect.query)
    if isinstance(effect, SubmitTx):
        return SubmitTx(tag, effect.tx)
    return CallEnclave(tag, effect.ecall, effect.request)


ANSWERS: dict[type, type] = {ReadChain: ChainRead, SubmitTx: TxOutcome, CallEnclave: EnclaveAnswer}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_ids(value: Any) -> bool:
    """A list of node ids (bytes), as the chain's answers name members and dealers."""
    return isinstance(value, list) and all(isinstance(v, bytes) for v in value)


def _get_failure(answer: Any) -> tuple[str, bool] | None:
    """(reason, passing) when the answer reports a failure, else None."""
    if isinstance(answer, ChainRead):
        return (answer.error, answer.passing) if answer.error else None
    if isinstance(answer, TxOutcome):
        if answer.status == "failed":
            return answer.reason or "not sent", True
        if answer.status == "reverted":
            return answer.reason or "reverted", False
        return None
    if isinstance(answer, EnclaveAnswer):
        return (answer.error, False) if answer.error else None
    return "not an answer", False
