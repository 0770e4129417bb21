"""Committees in the simulator: the GatekeeperCommittee's rules and the chain follower.

Theory of operation
-------------------
These parts let a committee's key lifecycle run in the deterministic simulator with the
same host core the gatekeeper and gateway processes run
(:class:`~sealbridge.keyservice.committee_host.CommitteeHostCore`; the simulated
gatekeeper is :class:`~sealbridge.sim.gatekeeper.SimGatekeeper`, the simulated gateway
:class:`~sealbridge.sim.gateway.SimGateway`):

* :class:`CommitteeModel` -- the contract's rules, held by the chain model
  (:class:`~sealbridge.sim.chain_model.ChainModel` delegates the committee's
  transactions and questions to it): ``elect`` (an admin transaction: genesis, or a
  resharing from the active era), ``post_dealing`` (a dealer of the pending era, once,
  before the deadline), ``confirm_ready`` (a member, once, before the deadline; every
  confirmation must repeat the first's group key and qualified set, which must be
  strictly increasing, at least the required dealings, all dealt; a resharing keeps the
  group key; the last confirmation activates the era and retires the one before) and
  ``restart`` (after the deadline: the era fails, the members that did not confirm and
  the dealers that did not deal are penalized, and a retry era of the confirmed members
  opens when at least ``threshold`` remain). Events are kept per block and answered to
  ``CommitteeLogs``. A sender is identified by its simulator address (the model's
  ``identities``), standing in for the enclave signatures the real contract checks;
  registration is not required here (the registry model covers it separately).
* :class:`TipPoller` -- a simulated node's follower: it asks the chain for its height
  every ``poll`` seconds and takes only the answer to its newest question.

Key material is drawn by the enclaves from the OS (as on hardware), so two runs of one
seed hold different keys; the schedule, every message's kind and time, and therefore
the trace digest are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sealbridge.chain.eras import CommitteePhase, EraRecord
from sealbridge.core.effects import (
    ChainRead,
    Effect,
    ReadChain,
    SetTimer,
)
from sealbridge.core.encoding import Message
from sealbridge.core.errors import ConfigError, SealbridgeError
from sealbridge.keyservice.committee_host import (
    CardsQuery,
    CommitteeEvent,
    CommitteeLogs,
    ConfirmReady,
    DealingSeen,
    DealtQuery,
    EraElectedSeen,
    EraQuery,
    MembersQuery,
    PendingEra,
    PendingQuery,
    PostDealing,
    RestartEra,
    RotationReadySeen,
    RotationRestartedSeen,
)
from sealbridge.tee.card import AttestedCard

__all__ = ["CommitteeModel", "Elect", "TipPoller", "TipQuery"]

ADMIN = -1  # the sender of admin transactions (the simulator's outside world)
COMMITTEE_TXS = (PostDealing, ConfirmReady, RestartEra)


class Elect(Message, frozen=True):
    """The admin elects an era (genesis when none is active, else a resharing)."""

    members: list[bytes]
    threshold: int
    committee: str = "gatekeepers"  # or "gateways"


class TipQuery(Message, frozen=True):
    """The chain's newest block number -> int."""


class TipPoller:
    """A simulated node's follower: asks ``chain`` for its height every ``poll``
    seconds (timer ``follow``) and takes only the answer to its newest question."""

    TIMER = "follow"

    def __init__(self, chain: int, poll: float) -> None:
        self.chain = chain
        self.poll = poll
        self.asked = 0
        self.tag = ""

    def start(self) -> SetTimer:
        return SetTimer(self.TIMER, self.poll)

    def ask(self) -> list[Effect]:
        """On the ``follow`` timer: the next question, and the timer again."""
        self.asked += 1
        self.tag = f"tip:{self.asked}"
        return [SetTimer(self.TIMER, self.poll), ReadChain(self.tag, TipQuery())]

    def claims(self, message: Any) -> bool:
        """Whether ``message`` answers the question in flight (the node hands it here)."""
        return isinstance(message, ChainRead) and bool(self.tag) and message.tag == self.tag

    def take(self, sender: int, message: ChainRead) -> int | None:
        """The height the chain answered, or None for an answer from anyone else or
        one that is not a height (the question stays open)."""
        if sender != self.chain or not isinstance(message.value, int):
            return None
        self.tag = ""
        return message.value


COMMITTEE_QUERIES = (CommitteeLogs, EraQuery, MembersQuery, DealtQuery, PendingQuery, CardsQuery)


@dataclass
class _Era:
    record: EraRecord
    dealt: list[bytes] = field(default_factory=list)
    confirmed: list[bytes] = field(default_factory=list)
    candidate: tuple[bytes, tuple[bytes, ...]] | None = None  # (group key, qualified)


class CommitteeModel:
    """The GatekeeperCommittee's rules (see the module docstring)."""

    def __init__(self, *, rotation_timeout: int, cards: dict[bytes, AttestedCard]) -> None:
        if rotation_timeout < 1:
            raise ConfigError("rotation_timeout must be at least one block")
        self.rotation_timeout = int(rotation_timeout)
        self.cards = dict(cards)
        self.eras: dict[int, _Era] = {}
        self.pending = 0
        self.active = 0
        self.events: list[tuple[int, CommitteeEvent]] = []  # (block, event)
        self.penalties: dict[bytes, int] = {}

    # -- transactions ------------------------------------------------------------------
    def apply(self, sender_id: bytes | None, tx: Any, block: int) -> str:
        """Apply one committee transaction at ``block``; the revert reason, or ``""``."""
        if isinstance(tx, Elect):
            return "only the admin elects" if sender_id is not None else self._elect(tx, block)
        if sender_id is None:
            return "unknown sender"
        if isinstance(tx, PostDealing):
            return self._post_dealing(sender_id, tx, block)
        if isinstance(tx, ConfirmReady):
            return self._confirm(sender_id, tx, block)
        if isinstance(tx, RestartEra):
            return self._restart(tx.era, block)
        return f"the committee model runs no {type(tx).__name__}"

    def _open(
        self,
        members: list[bytes],
        threshold: int,
        dealers: list[bytes],
        dealer_threshold: int,
        previous: int,
        block: int,
    ) -> int:
        era = len(self.eras) + 1
        self.eras[era] = _Era(
            EraRecord(
                era=era,
                members=list(members),
                threshold=threshold,
                dealers=list(dealers),
                dealer_threshold=dealer_threshold,
                group_public_key=b"",
                phase=CommitteePhase.ELECTED,
                elected_at=block,
                deadline=block + self.rotation_timeout,
                previous_era=previous,
                dealing_count=0,
                confirmation_count=0,
            )
        )
        self.pending = era
        self.events.append((block, EraElectedSeen(era=era)))
        return era

    def _elect(self, tx: Elect, block: int) -> str:
        if self.pending:
            return "an era is pending"
        if not tx.members or len(set(tx.members)) != len(tx.members):
            return "members must be distinct and non-empty"
        if not 1 <= tx.threshold <= len(tx.members):
            return "threshold out of range"
        if not self.active:
            self._open(tx.members, tx.threshold, tx.members, 0, 0, block)
            return ""
        current = self.eras[self.active].record
        self._open(tx.members, tx.threshold, current.members, current.threshold, self.active, block)
        return ""

    def _check_pending(self, era: int, block: int) -> _Era | str:
        entry = self.eras.get(era)
        if entry is None:
            return "unknown era"
        if entry.record.phase != CommitteePhase.ELECTED:
            return "era is not pending"
        if block > entry.record.deadline:
            return "era deadline passed"
        return entry

    def _post_dealing(self, sender: bytes, tx: PostDealing, block: int) -> str:
        entry = self._check_pending(tx.era, block)
        if isinstance(entry, str):
            return entry
        if tx.dealer != sender or sender not in entry.record.dealers:
            return "not a dealer of the era"
        if sender in entry.dealt:
            return "dealer already dealt"
        entry.dealt.append(sender)
        event = DealingSeen(
            era=tx.era,
            dealer=sender,
            commitments=tx.commitments,
            shares=tx.shares,
            signature=tx.signature,
        )
        self.events.append((block, event))
        return ""

    def _confirm(self, sender: bytes, tx: ConfirmReady, block: int) -> str:
        entry = self._check_pending(tx.era, block)
        if isinstance(entry, str):
            return entry
        record = entry.record
        if tx.member != sender or sender not in record.members:
            return "not a member of the era"
        if sender in entry.confirmed:
            return "member already confirmed"
        qualified = tuple(tx.qualified)
        if len(qualified) < record.required_dealings:
            return "too few qualified dealers"
        if any(a >= b for a, b in zip(qualified, qualified[1:], strict=False)):
            return "qualified dealers must be strictly increasing"
        if any(d not in entry.dealt for d in qualified):
            return "qualified dealer has not dealt"
        if record.is_resharing:
            kept = self.eras[record.previous_era].record.group_public_key
            if tx.group_public_key != kept:
                return "a resharing must keep the group key"
        candidate = (bytes(tx.group_public_key), qualified)
        if entry.candidate is None:
            entry.candidate = candidate
        elif entry.candidate != candidate:
            return "confirmation differs from the first"
        entry.confirmed.append(sender)
        if len(entry.confirmed) == len(record.members):
            self._activate(entry, block)
        return ""

    def _activate(self, entry: _Era, block: int) -> None:
        record = entry.record
        group_key = entry.candidate[0] if entry.candidate else b""
        entry.record = _with(record, phase=CommitteePhase.ACTIVE, group_public_key=group_key)
        if self.active:
            old = self.eras[self.active]
            old.record = _with(old.record, phase=CommitteePhase.RETIRED)
        self.active = record.era
        self.pending = 0
        self.events.append((block, RotationReadySeen(era=record.era, group_public_key=group_key)))

    def _restart(self, era: int, block: int) -> str:
        entry = self.eras.get(era)
        if entry is None:
            return "unknown era"
        record = entry.record
        if record.phase != CommitteePhase.ELECTED:
            return "era is not pending"
        if block <= record.deadline:
            return "deadline not reached"
        entry.record = _with(record, phase=CommitteePhase.FAILED)
        self.pending = 0
        kept = [m for m in record.members if m in entry.confirmed]
        for node_id in [m for m in record.members if m not in entry.confirmed] + [
            d for d in record.dealers if d not in entry.dealt
        ]:
            self.penalties[node_id] = self.penalties.get(node_id, 0) + 1
        dealers = record.dealers
        if not record.is_resharing:
            dealers = [d for d in record.dealers if d in entry.dealt and d in entry.confirmed]
        self.events.append((block, RotationRestartedSeen(failed_era=era)))
        retry = len(kept) >= record.threshold
        if not record.is_resharing:
            retry = retry and len(dealers) >= record.threshold
        if retry:
            self._open(
                kept, record.threshold, dealers, record.dealer_threshold, record.previous_era, block
            )
        return ""

    # -- questions ---------------------------------------------------------------------
    def read(self, query: Any, number: int) -> Any:
        """The answer to one committee question at block ``number`` (raises a
        SealbridgeError the chain model turns into a lasting read failure)."""
        if isinstance(query, CommitteeLogs):
            return [event for block, event in self.events if query.first <= block <= query.last]
        if isinstance(query, EraQuery):
            entry = self.eras.get(query.era)
            if entry is None:
                return None
            return _with(
                entry.record,
                dealing_count=len(entry.dealt),
                confirmation_count=len(entry.confirmed),
            )
        if isinstance(query, MembersQuery):
            entry = self.eras.get(query.era)
            return list(entry.record.members) if entry is not None else []
        if isinstance(query, DealtQuery):
            entry = self.eras.get(query.era)
            return entry is not None and query.node_id in entry.dealt
        if isinstance(query, PendingQuery):
            entry = self.eras.get(self.pending)
            deadline = entry.record.deadline if entry is not None else 0
            return PendingEra(era=self.pending, deadline=deadline, block_number=number)
        if isinstance(query, CardsQuery):
            missing = [n for n in query.node_ids if n not in self.cards]
            if missing:
                raise _NotRegistered(f"node 0x{missing[0].hex()[:12]}… is not registered")
            return [self.cards[n] for n in query.node_ids]
        raise _NotRegistered(f"the committee model answers no {type(query).__name__}")


class _NotRegistered(SealbridgeError):
    code = "not_registered"


def _with(record: EraRecord, **changes: Any) -> EraRecord:
    fields = {name: getattr(record, name) for name in record.__struct_fields__}
    fields.update(changes)
    return EraRecord(**fields)
