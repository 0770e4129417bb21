"""The swap driver: how the untrusted hosts run the pairwise tit-for-tat swaps, sans-I/O.

Theory of operation
-------------------
An accepted offer is settled by one *pairwise swap* per owner in the offer: the
requester (role A) gives chunks of one asset, the owner (role B) gives its chunks of the
offer, one key at a time (:class:`~sealbridge.keyrelease.exchange.TitForTatSwap`). Each
party's *side* of a pair runs that machine: its vault enclave on a devnet, the bare
machine in the loss property test. Between the two sides sit their hosts. They carry
each released key to the other side, sweep what a side received, tell the matcher, and
decide whether to go on. :class:`SwapDriver` makes every one of those decisions and
does nothing else: it returns what to do next and takes the outcome of what it asked for.
Its driver (``KeyReleaseDevnet.run_swap``, ``tests/cluster/test_keyrelease_losses.py``)
makes the calls.

Decisions. Each names a ``tag``; its answer carries the same tag.

* :class:`OpenSide`: open the party's side of a pair and start it. Answer:
  :class:`SideOutput`.
* :class:`DeliverKey`: hand a released key (its ``envelope``) to the other side.
  Answer: :class:`SideOutput` (the key was taken) or :class:`SideRefused` (it was not,
  for example because the side had aborted; nothing changed there).
* :class:`SweepChunk`: move a received chunk's funds to the receiving side's sweep key.
  For the *insured* side (the requester, whose received chunks the matcher booked), the
  matcher's part comes with it: settle the chunk when it is swept, or report the double
  spend when its funds are gone. Answer: :class:`SweepResult` (swept or not, and what
  the report paid).
* :class:`ProceedSide`: every sweep of one side output went through, so the side makes
  the releases it held back for them. Answer: :class:`SideOutput`.
* :class:`AbortSide`: a received chunk was found empty. The side never releases again in
  this pair: held releases are dropped and its unreleased keys go back to its owner.
  Answer: :class:`SideOutput`.
* :class:`~sealbridge.core.effects.Report`: an observation for whoever watches:
  ``swap-open``, ``swap-stall``, ``swap-abort`` or ``swap-pair``.

What a side output sets off. A :class:`SideOutput` can be the answer to an open, a
delivery, a proceed or an abort, or it can come unasked, as :meth:`SwapDriver.on_side_output`
(for example after a deadline tick). It lists the keys the side released, the received
chunks to sweep, and whether the side finished.

1. Each release counts as given by that side, so its exposure grows. Then the stall
   rule applies. A party with ``stall_after = s`` in this pair (given to
   :meth:`SwapDriver.open_pair`) has a host that walks away once it has delivered ``s``
   of its keys in the pair. With ``s`` given to the driver itself, the count runs over
   every pair of the driver. The release is never delivered, and ``swap-stall`` is
   reported the first time in each pair. Any other release becomes a :class:`DeliverKey`
   to the other side.
2. The sweeps form one *batch*, with one :class:`SweepChunk` each. Once every sweep of
   the batch has answered, the driver decides. If all were swept, it asks for
   :class:`ProceedSide`. If any was not, it asks for :class:`AbortSide` and reports
   ``swap-abort``. An abort is asked once per side, and a side that was aborted is not
   asked to proceed.

States (``_PAIR_MOVES`` and ``_SIDE_MOVES`` list the moves)::

    pair:  OPENING --both sides opened (swap-open)--> EXCHANGING
           EXCHANGING --close_pair, nothing in flight (swap-pair)--> CLOSED
    side:  EXCHANGING --stall--> STALLED;  EXCHANGING | STALLED --abort--> ABORTED

Tallies. :class:`SideTally` is kept per side of each pair: ``given`` (keys released),
``received`` (keys taken), ``swept``, ``double_spent`` (received chunks found empty),
``compensated``, and ``exposure_usd_e8``. The exposure is the value given minus the
value received, and for an honest side it is at most one chunk.

Order. A driver can carry out each decision and handle the decisions its answer
brings before it moves on to the next one (depth first). Then each delivery, its
sweeps, and the proceed or abort that follows run before the next delivery, which is
the devnet's order. A driver can also hold deliveries and sweeps and choose among them;
the property test does this to explore schedules.

Hostile input. :class:`SwapInputRefused` is raised, and nothing changes, for any of
these:

* an answer whose tag was never issued or was answered already;
* an answer of the wrong kind for its decision;
* an output that names a chunk that is not the side's to release or sweep;
* an output that releases or sweeps a chunk twice, or finishes twice;
* an unasked output for a pair or party that does not exist.

Nothing here holds a key: envelopes are opaque to the driver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sealbridge.core.effects import Report
from sealbridge.keyrelease.errors import InvalidRequest, SwapInputRefused
from sealbridge.keyrelease.types import USD_DECIMALS, Chunk

__all__ = [
    "ROLE_OWNER",
    "ROLE_REQUESTER",
    "AbortSide",
    "DeliverKey",
    "OpenSide",
    "OutgoingKey",
    "PairPhase",
    "ProceedSide",
    "SideOutput",
    "SidePhase",
    "SideRefused",
    "SideTally",
    "SwapAnswer",
    "SwapDecision",
    "SwapDriver",
    "SwapEffect",
    "SweepChunk",
    "SweepResult",
]

ROLE_REQUESTER = "A"  # moves first; gives chunks of the asset it pays with
ROLE_OWNER = "B"  # gives the offer's chunks
_FINISHED = frozenset({"completed", "aborted"})


class PairPhase(StrEnum):
    OPENING = "opening"  # both sides asked to open
    EXCHANGING = "exchanging"
    CLOSED = "closed"  # nothing more happens in this pair


class SidePhase(StrEnum):
    EXCHANGING = "exchanging"  # its host delivers what the side releases
    STALLED = "stalled"  # its host walked away: its releases are never delivered
    ABORTED = "aborted"  # its host aborted the side: a received chunk was found empty


_PAIR_MOVES: dict[tuple[PairPhase, str], PairPhase] = {
    (PairPhase.OPENING, "opened"): PairPhase.EXCHANGING,
    (PairPhase.EXCHANGING, "close"): PairPhase.CLOSED,
}
_SIDE_MOVES: dict[tuple[SidePhase, str], SidePhase] = {
    (SidePhase.EXCHANGING, "stall"): SidePhase.STALLED,
    (SidePhase.EXCHANGING, "abort"): SidePhase.ABORTED,
    (SidePhase.STALLED, "abort"): SidePhase.ABORTED,
}


# --- decisions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenSide:
    """Open ``party``'s side of the pair (role ``"A"`` or ``"B"``) and start it."""

    tag: str
    swap_id: str
    party: str
    role: str
    mine: tuple[Chunk, ...]  # what this side gives
    theirs: tuple[Chunk, ...]  # what it receives
    counterparty: str


@dataclass(frozen=True, slots=True)
class DeliverKey:
    """Hand the key ``sender``'s side released (``envelope``, opaque here) to
    ``receiver``'s side."""

    tag: str
    swap_id: str
    sender: str
    receiver: str
    sender_role: str
    chunk: Chunk
    envelope: Any


@dataclass(frozen=True, slots=True)
class SweepChunk:
    """Sweep the received ``chunk`` to ``party``'s sweep key. ``insured``: settle it with
    the matcher when swept, report the double spend when its funds are gone."""

    tag: str
    swap_id: str
    party: str
    chunk: Chunk
    insured: bool


@dataclass(frozen=True, slots=True)
class ProceedSide:
    """The side's received chunks are swept: it makes the releases it held back."""

    tag: str
    swap_id: str
    party: str


@dataclass(frozen=True, slots=True)
class AbortSide:
    """Stop the side for good: it never releases again in this pair."""

    tag: str
    swap_id: str
    party: str


SwapDecision = OpenSide | DeliverKey | SweepChunk | ProceedSide | AbortSide
SwapEffect = SwapDecision | Report


# --- answers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutgoingKey:
    """A key a side released: the chunk it opens and the envelope to carry."""

    chunk_id: str
    envelope: Any = None


@dataclass(frozen=True, slots=True)
class SideOutput:
    """What a side did: keys released, received chunks to sweep, and ``finished``
    (``"completed"`` or ``"aborted"``) when it reached its end. ``tag`` is the decision
    answered; ``""`` for an output nobody asked for (see :meth:`SwapDriver.on_side_output`)."""

    tag: str
    releases: tuple[OutgoingKey, ...] = ()
    sweeps: tuple[str, ...] = ()
    finished: str = ""


@dataclass(frozen=True, slots=True)
class SideRefused:
    """The side refused the key delivered to it; nothing changed there."""

    tag: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SweepResult:
    """``swept``: the funds moved to the sweep key. ``compensated``: what the double-spend
    report paid the insured side when they were gone (0 otherwise)."""

    tag: str
    swept: bool
    compensated: int = 0


SwapAnswer = SideOutput | SideRefused | SweepResult


@dataclass(frozen=True, slots=True)
class SideTally:
    """One side of one pair, as its host counted it."""

    party: str
    role: str
    phase: SidePhase
    finished: str  # "" while the side runs, else how it ended
    given: tuple[str, ...]  # own chunks released, in order
    received: tuple[str, ...]  # counterparty chunks whose keys the side took
    swept: tuple[str, ...]
    double_spent: tuple[str, ...]  # received chunks found empty
    compensated: int
    exposure_usd_e8: int  # value given minus value received


# --- state -------------------------------------------------------------------------------------


class _PairSide:
    def __init__(
        self,
        party: str,
        role: str,
        mine: Sequence[Chunk],
        theirs: Sequence[Chunk],
        stall_after: int | None,
    ) -> None:
        self.party = party
        self.role = role
        self.mine = {chunk.chunk_id: chunk for chunk in mine}
        self.theirs = {chunk.chunk_id: chunk for chunk in theirs}
        self.stall_after = stall_after
        self.phase = SidePhase.EXCHANGING
        self.opened = False
        self.finished = ""
        self.delivered = 0  # releases its host delivered (the stall rule counts these)
        self.given: list[str] = []
        self.received: list[str] = []
        self.sweeping: set[str] = set()  # received chunks a sweep was asked for
        self.swept: list[str] = []
        self.double_spent: list[str] = []
        self.compensated = 0

    def move(self, event: str) -> None:
        self.phase = _SIDE_MOVES[(self.phase, event)]

    def get_exposure_usd_e8(self) -> int:
        given = sum(self.mine[c].usd_e8 for c in self.given)
        return given - sum(self.theirs[c].usd_e8 for c in self.received)

    def get_tally(self) -> SideTally:
        return SideTally(
            party=self.party,
            role=self.role,
            phase=self.phase,
            finished=self.finished,
            given=tuple(self.given),
            received=tuple(self.received),
            swept=tuple(self.swept),
            double_spent=tuple(self.double_spent),
            compensated=self.compensated,
            exposure_usd_e8=self.get_exposure_usd_e8(),
        )


class _Pair:
    def __init__(self, swap_id: str, requester: _PairSide, owner: _PairSide) -> None:
        self.swap_id = swap_id
        self.phase = PairPhase.OPENING
        self.requester = requester
        self.owner = owner

    def move(self, event: str) -> None:
        self.phase = _PAIR_MOVES[(self.phase, event)]

    def get_side(self, party: str) -> _PairSide | None:
        for side in (self.requester, self.owner):
            if side.party == party:
                return side
        return None

    def get_other(self, side: _PairSide) -> _PairSide:
        return self.owner if side is self.requester else self.requester


@dataclass
class _Batch:
    """The sweeps one side output asked for; decided when the last one answers."""

    swap_id: str
    party: str
    waiting: set[str] = field(default_factory=set)  # tags of sweeps not answered yet
    failed: bool = False


# --- the driver --------------------------------------------------------------------------------


class SwapDriver:
    """The hosts' decisions for any number of pairwise swaps (see the module docstring)."""

    def __init__(self, *, stall_after: Mapping[str, int] | None = None) -> None:
        """``stall_after[party] = s``: that party's host walks away from every pair once it
        delivered ``s`` of its keys, counted over all of them."""
        self._stall_after = _check_stalls("the driver", stall_after, None)
        self._delivered_by: dict[str, int] = {}  # party -> keys its host delivered
        self._pairs: dict[str, _Pair] = {}
        self._pending: dict[str, SwapDecision] = {}  # tag -> decision awaiting its answer
        self._batches: dict[str, _Batch] = {}  # sweep tag -> its batch
        self._issued = 0

    # -- reads ------------------------------------------------------------------------------

    def get_swap_ids(self) -> list[str]:
        return list(self._pairs)

    def get_pair_phase(self, swap_id: str) -> PairPhase:
        return self._get_pair(swap_id).phase

    def get_tally(self, swap_id: str, party: str) -> SideTally:
        side = self._get_pair(swap_id).get_side(party)
        if side is None:
            raise InvalidRequest(f"{party!r} is not in swap {swap_id!r}")
        return side.get_tally()

    def get_pending(self, swap_id: str | None = None) -> list[SwapDecision]:
        """Decisions asked for and not answered yet (of one pair, or of all)."""
        return [d for d in self._pending.values() if swap_id is None or d.swap_id == swap_id]

    def is_quiet(self, swap_id: str) -> bool:
        """Nothing of this pair is in flight."""
        self._get_pair(swap_id)
        return not self.get_pending(swap_id)

    # -- inputs -----------------------------------------------------------------------------

    def open_pair(
        self,
        swap_id: str,
        *,
        requester: str,
        owner: str,
        requester_chunks: Sequence[Chunk],
        owner_chunks: Sequence[Chunk],
        stall_after: Mapping[str, int] | None = None,
    ) -> list[SwapEffect]:
        """Start a pairwise swap: the owner's side is opened first (it waits for the
        requester's first key), then the requester's. ``stall_after[party] = s``: that
        party's host walks away after delivering ``s`` of its keys in this pair."""
        if not swap_id or swap_id in self._pairs:
            raise InvalidRequest(f"swap {swap_id!r} is empty or open already")
        if not requester or not owner or requester == owner:
            raise InvalidRequest("a pairwise swap needs two different parties")
        if not requester_chunks or not owner_chunks:
            raise InvalidRequest(f"swap {swap_id}: each side gives at least one chunk")
        ids = [c.chunk_id for c in [*requester_chunks, *owner_chunks]]
        if len(set(ids)) != len(ids):
            raise InvalidRequest(f"swap {swap_id}: a chunk appears twice")
        stalls = _check_stalls(f"swap {swap_id}", stall_after, (requester, owner))
        a = _PairSide(
            requester, ROLE_REQUESTER, requester_chunks, owner_chunks, stalls.get(requester)
        )
        b = _PairSide(owner, ROLE_OWNER, owner_chunks, requester_chunks, stalls.get(owner))
        self._pairs[swap_id] = _Pair(swap_id, a, b)
        return [self._issue_open(swap_id, b, a), self._issue_open(swap_id, a, b)]

    def process(self, answer: SwapAnswer) -> list[SwapEffect]:
        """The outcome of a decision asked for earlier; returns what to do next."""
        if not isinstance(answer, SideOutput | SideRefused | SweepResult):
            raise SwapInputRefused(f"not an answer to the swap driver: {type(answer).__name__}")
        decision = self._pending.get(answer.tag)
        if decision is None:
            raise SwapInputRefused(f"no decision {answer.tag!r} awaits an answer")
        pair = self._pairs[decision.swap_id]
        if isinstance(decision, SweepChunk):
            if not isinstance(answer, SweepResult):
                raise SwapInputRefused(f"{answer.tag}: a sweep is answered by a SweepResult")
            return self._on_swept(pair, decision, answer)
        if isinstance(answer, SweepResult):
            raise SwapInputRefused(f"{answer.tag}: a SweepResult answers only a sweep")
        if isinstance(answer, SideRefused):
            if not isinstance(decision, DeliverKey):
                raise SwapInputRefused(f"{answer.tag}: only a delivered key may be refused")
            del self._pending[answer.tag]
            return []
        if isinstance(decision, DeliverKey):
            side = pair.get_side(decision.receiver)
            delivered = decision.chunk.chunk_id
        else:
            side = pair.get_side(decision.party)
            delivered = ""
        if side is None:  # pragma: no cover -- decisions name the pair's parties
            raise SwapInputRefused(f"{answer.tag}: no such side")
        self._check_output(pair, side, answer, delivered)
        del self._pending[answer.tag]
        effects: list[SwapEffect] = []
        if delivered:
            side.received.append(delivered)
        if isinstance(decision, OpenSide):
            side.opened = True
            if pair.requester.opened and pair.owner.opened:
                pair.move("opened")
                effects.append(
                    Report(
                        "swap-open",
                        {
                            "contract": pair.swap_id,
                            "requester": pair.requester.party,
                            "owner": pair.owner.party,
                            "chunks_each": len(pair.owner.mine),
                        },
                    )
                )
        effects.extend(self._apply_output(pair, side, answer))
        return effects

    def on_side_output(self, swap_id: str, party: str, output: SideOutput) -> list[SwapEffect]:
        """An output nobody asked for (a side's deadline tick): handled as any other."""
        pair = self._pairs.get(swap_id)
        if pair is None or pair.phase is PairPhase.CLOSED:
            raise SwapInputRefused(f"no open pairwise swap {swap_id!r}")
        side = pair.get_side(party)
        if side is None:
            raise SwapInputRefused(f"{party!r} is not a party to swap {swap_id}")
        if not isinstance(output, SideOutput) or output.tag:
            raise SwapInputRefused("an unasked side output is a SideOutput without a tag")
        if not side.opened:
            raise SwapInputRefused(f"{party}'s side of {swap_id} is not open")
        self._check_output(pair, side, output, "")
        return self._apply_output(pair, side, output)

    def close_pair(self, swap_id: str) -> list[SwapEffect]:
        """The pair is done with (nothing in flight): report the requester's exposure."""
        pair = self._get_pair(swap_id)
        if pair.phase is not PairPhase.EXCHANGING:
            raise InvalidRequest(f"swap {swap_id} is {pair.phase}: it cannot close")
        if not self.is_quiet(swap_id):
            raise InvalidRequest(f"swap {swap_id} still has decisions in flight")
        pair.move("close")
        exposure = pair.requester.get_exposure_usd_e8()
        data = {
            "contract": swap_id,
            "owner": pair.owner.party,
            "exposure_usd": exposure / 10**USD_DECIMALS,
        }
        return [Report("swap-pair", data)]

    # -- internals --------------------------------------------------------------------------

    def _get_pair(self, swap_id: str) -> _Pair:
        pair = self._pairs.get(swap_id)
        if pair is None:
            raise InvalidRequest(f"no pairwise swap {swap_id!r}")
        return pair

    def _next_tag(self, kind: str) -> str:
        self._issued += 1
        return f"{kind}/{self._issued}"

    def _issue_open(self, swap_id: str, side: _PairSide, other: _PairSide) -> OpenSide:
        decision = OpenSide(
            tag=self._next_tag("open"),
            swap_id=swap_id,
            party=side.party,
            role=side.role,
            mine=tuple(side.mine.values()),
            theirs=tuple(side.theirs.values()),
            counterparty=other.party,
        )
        self._pending[decision.tag] = decision
        return decision

    def _check_output(
        self, pair: _Pair, side: _PairSide, output: SideOutput, delivered: str
    ) -> None:
        """Refuse an output that is not the side's to give; change nothing."""
        where = f"{side.party}'s side of {pair.swap_id}"
        if not isinstance(output.finished, str) or (
            output.finished and output.finished not in _FINISHED
        ):
            raise SwapInputRefused(f"{where}: unknown outcome {output.finished!r}")
        if output.finished and side.finished:
            raise SwapInputRefused(f"{where} finished already ({side.finished})")
        if not isinstance(output.releases, tuple | list) or not isinstance(
            output.sweeps, tuple | list
        ):
            raise SwapInputRefused(f"{where}: releases and sweeps are sequences")
        released: set[str] = set()
        for key in output.releases:
            if not isinstance(key, OutgoingKey) or not isinstance(key.chunk_id, str):
                raise SwapInputRefused(f"{where}: a release is an OutgoingKey")
            if key.chunk_id not in side.mine:
                raise SwapInputRefused(f"{where}: {key.chunk_id!r} is not its chunk to release")
            if key.chunk_id in side.given or key.chunk_id in released:
                raise SwapInputRefused(f"{where}: {key.chunk_id} released twice")
            released.add(key.chunk_id)
        swept: set[str] = set()
        for chunk_id in output.sweeps:
            if not isinstance(chunk_id, str) or chunk_id not in side.theirs:
                raise SwapInputRefused(f"{where}: {chunk_id!r} is not a chunk it receives")
            if chunk_id != delivered and chunk_id not in side.received:
                raise SwapInputRefused(f"{where}: {chunk_id} was not received")
            if chunk_id in side.sweeping or chunk_id in swept:
                raise SwapInputRefused(f"{where}: {chunk_id} swept twice")
            swept.add(chunk_id)

    def _apply_output(self, pair: _Pair, side: _PairSide, output: SideOutput) -> list[SwapEffect]:
        effects: list[SwapEffect] = []
        if output.finished:
            side.finished = output.finished
        if output.sweeps:
            batch = _Batch(pair.swap_id, side.party)
            for chunk_id in output.sweeps:
                side.sweeping.add(chunk_id)
                sweep = SweepChunk(
                    tag=self._next_tag("sweep"),
                    swap_id=pair.swap_id,
                    party=side.party,
                    chunk=side.theirs[chunk_id],
                    insured=side.role == ROLE_REQUESTER,
                )
                batch.waiting.add(sweep.tag)
                self._batches[sweep.tag] = batch
                self._pending[sweep.tag] = sweep
                effects.append(sweep)
        other = pair.get_other(side)
        for key in output.releases:
            side.given.append(key.chunk_id)
            after = self._get_stall(side)
            if after is not None:
                if side.phase is SidePhase.EXCHANGING:
                    side.move("stall")
                    who = "requester" if side.role == ROLE_REQUESTER else "owner"
                    data = {"contract": pair.swap_id, who: side.party, "after": after}
                    effects.append(Report("swap-stall", data))
                continue  # its host walked away: this key is never delivered
            side.delivered += 1
            self._delivered_by[side.party] = self._delivered_by.get(side.party, 0) + 1
            deliver = DeliverKey(
                tag=self._next_tag("deliver"),
                swap_id=pair.swap_id,
                sender=side.party,
                receiver=other.party,
                sender_role=side.role,
                chunk=side.mine[key.chunk_id],
                envelope=key.envelope,
            )
            self._pending[deliver.tag] = deliver
            effects.append(deliver)
        return effects

    def _get_stall(self, side: _PairSide) -> int | None:
        """The limit ``side``'s host reached (it walks away now), or None."""
        if side.stall_after is not None and side.delivered >= side.stall_after:
            return side.stall_after
        limit = self._stall_after.get(side.party)
        if limit is not None and self._delivered_by.get(side.party, 0) >= limit:
            return limit
        return None

    def _on_swept(self, pair: _Pair, decision: SweepChunk, result: SweepResult) -> list[SwapEffect]:
        if not isinstance(result.swept, bool):
            raise SwapInputRefused(f"{result.tag}: swept is a bool")
        paid = result.compensated
        if isinstance(paid, bool) or not isinstance(paid, int) or paid < 0:
            raise SwapInputRefused(f"{result.tag}: compensation must be an int >= 0")
        if paid and (result.swept or not decision.insured):
            raise SwapInputRefused(f"{result.tag}: compensation without an insured loss")
        side = pair.get_side(decision.party)
        if side is None:  # pragma: no cover -- decisions name the pair's parties
            raise SwapInputRefused(f"{result.tag}: no such side")
        del self._pending[result.tag]
        batch = self._batches.pop(result.tag)
        chunk_id = decision.chunk.chunk_id
        if result.swept:
            side.swept.append(chunk_id)
        else:
            side.double_spent.append(chunk_id)
            side.compensated += paid
            batch.failed = True
        batch.waiting.discard(result.tag)
        if batch.waiting:
            return []
        if side.phase is SidePhase.ABORTED:
            return []  # aborted already: never asked to proceed, nor to abort twice
        if not batch.failed:
            proceed = ProceedSide(self._next_tag("proceed"), pair.swap_id, side.party)
            self._pending[proceed.tag] = proceed
            return [proceed]
        # stop giving to a counterparty whose chunk was emptied: the releases held back
        # for this batch are never made
        side.move("abort")
        abort = AbortSide(self._next_tag("abort"), pair.swap_id, side.party)
        self._pending[abort.tag] = abort
        return [abort, Report("swap-abort", {"contract": pair.swap_id, "by": side.party})]


def _check_stalls(
    where: str, stall_after: Mapping[str, int] | None, parties: Sequence[str] | None
) -> dict[str, int]:
    stalls = dict(stall_after or {})
    for party, after in stalls.items():
        if not isinstance(party, str) or (parties is not None and party not in parties):
            raise InvalidRequest(f"{where}: {party!r} is not a party")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidRequest(f"{where}: stall_after must be an int >= 0, got {after!r}")
    return stalls
