"""A BFT replica of an autonomous system: linear, collector-based, sans-I/O (SBFT style).

Theory of operation
-------------------
``n`` replicas order client requests into batches and apply them to a
:class:`~sealbridge.consensus.ledger.Ledger`. In view ``v`` replica ``v mod n`` is the
*primary*, which proposes batches, and the *collector*, which turns signature shares into
threshold-BLS certificates. Every message goes to or from the collector, so a round costs
``O(n)`` messages, and every certificate is one 96-byte signature of the group key.

Normal case (sequence ``s``, batch digest ``d``)::

    client ──Request──▶ any replica ──(forwarded)──▶ primary
    primary ──PrePrepare(v, s, d, batch)──▶ all            "proposed"
    replica ──SignShare(PREPARE, v, s, d)──▶ collector
    collector: threshold shares ─▶ prepare certificate
    collector ──Prepare(v, s, d, cert)──▶ all
    replica (having executed s - 1) ──SignShare(COMMIT, v, s, d)──▶ collector
    collector: threshold shares ─▶ commit certificate
    collector ──Commit(v, s, d, cert)──▶ all
    replica: executes s once s - 1 is executed ──Reply──▶ client   "committed"

A replica signs a PREPARE share for the first PrePrepare it gets for ``(v, s)`` from the
primary of its view, if ``s`` is in its window and the batch hashes to ``d``; it never
signs a second digest for the same ``(v, s)``. It signs a COMMIT share once it holds the
prepare certificate *and has executed* ``s - 1`` (so commits, though not proposals, go
in sequence order: a commit certificate for ``s`` proves that an honest replica can serve
batches ``1..s-1``). The collector combines shares optimistically and verifies the result
once; on failure it checks shares one by one, drops and reports the bad signers
(``stats.bad_signers``), and waits for more.

Why two certificates and not one (as in SBFT's fast path)? With ``n = 3f + 1`` and a
quorum of ``2f + 1``, a single round of shares leaves no evidence a view change can rely
on: a commit certificate may exist at one Byzantine collector while only one honest
replica knows the batch, and ``f`` Byzantine replicas can outvote it. The prepare
certificate is that evidence (see :mod:`sealbridge.consensus.viewchange`). SBFT itself
falls back to exactly this linear two-phase path when its fast path (which needs more
than ``n - f`` shares) does not complete.

Single-phase mode (``ConsensusConfig.single_phase``, the round of InterTrust's Figure 4):
replicas answer a PrePrepare with a COMMIT share at once and the collector's first
certificate is the commit -- three message delays instead of five. It is a measurement
mode: without prepare certificates a Byzantine collector can keep the only commit
certificate to itself, and the view change cannot recover that batch.

A replica missing a batch it holds a commit certificate for (it lost the PrePrepare, or
it is behind) asks for it with :class:`FetchCommitted`: first, after ``fetch_timeout``,
the node that showed it the certificate, then ``f + 1`` other replicas per further
timeout, round robin. Every reply is a self-verifying :class:`CommittedBatch`.

View change (the ``f + 1`` rule)
    A replica suspects the primary when a request it holds is not executed within
    ``view_change_timeout`` (as in PBFT, the timer waits for one request, the oldest
    pending, and starts afresh for the next once that one is executed). It first makes
    sure it is not merely behind: it asks
    ``f + 1`` replicas for the next sequences (FetchCommitted) and waits
    ``fetch_timeout``; only if that brings no progress does it move to view ``v + 1``.
    It sends a ViewChange, signed with its key share, to all: its last commit certificate
    and, for each sequence above, its best certificate with the batch. A replica that
    holds ViewChanges from ``f + 1`` others for views above its own joins at once (the
    lowest of the ``f + 1`` highest such views: at least one honest replica asked for
    it). The new primary, on ``max(2f + 1, threshold)`` checked ViewChanges for its view,
    sends a NewView signed with its share, carrying that set and the re-proposals it
    determines (:mod:`sealbridge.consensus.viewchange`); every replica re-derives them,
    checks the set's signatures in one aggregate verification, enters the view and
    re-sends its pending requests to the new primary. Only the new primary checks a
    ViewChange when it arrives; the others only count its sender (authenticated by the
    channel) for the ``f + 1`` rule.

    A view change that times out moves on to the next view, the timeout doubling each
    time -- but first the replica asks ``f + 1`` replicas for the NewView of the view it
    waits for (FetchNewView) and for the next committed sequences, in case the view
    started without it. A replica still changing views that sees a PrePrepare, Prepare or
    SignShare of that very view keeps the message, asks its sender for the NewView, and
    handles the message once it has entered the view. A replica never goes back to a
    view below one it sent a ViewChange for; while it waits it still executes what commit
    certificates show, as an observer.

States: ``Status.NORMAL`` (in view ``v``, processing its messages) and
``Status.VIEW_CHANGE`` (moving to view ``v``; only Requests, certificates, fetches and
view-change messages are processed). Per sequence a replica goes through
*pre-prepared* (batch accepted in the view) -> *prepared* (prepare certificate) ->
*committed* (commit certificate) -> *executed*; certificates carry over views.

Effects and reports (the driver's interface, :mod:`sealbridge.core.effects`)
    Timers: ``consensus/batch`` (primary: flush a partial batch after
    ``batch_timeout``), ``consensus/view-change``, ``consensus/fetch``. :meth:`on_start`
    arms them again, so a driver may restart a crashed replica object (its state kept,
    its timers lost). Replies go to ``request.client``, which must be a node the driver
    knows, unless ``config.send_replies`` is False.

    ``Report`` kinds (``data`` is a dict):

    ``proposed``     at the primary when it sends a PrePrepare: ``view``, ``seq``,
                     ``digest``, ``requests`` (count), ``reproposal`` (bool; True for the
                     re-proposals of a NewView)
    ``certified``    at the collector: ``phase`` ("prepare"/"commit"), ``view``, ``seq``,
                     ``digest``
    ``committed``    at every replica when it executes a batch: ``view`` (of the commit
                     certificate), ``seq``, ``digest``, ``requests`` (count),
                     ``request_ids`` (list of (client, client_seq)), ``executed`` (new,
                     non-duplicate requests). Round time = this event's time at a replica
                     minus the ``proposed`` time of the same ``seq``.
    ``bad_share``    at the collector: ``view``, ``seq``, ``phase``, ``signer`` (index)
    ``view_change``  a replica starts a view change: ``view`` (the new one),
                     ``from_view``, ``reason`` ("timeout" or "f+1")
    ``new_view``     a replica enters a view: ``view``, ``primary`` (index), ``base``
                     (highest decided seq of the set), ``reproposed`` (count)
    ``conflict``     a valid certificate for a batch other than the one executed at
                     ``seq`` (impossible at the safe threshold with at most ``f`` faults)

Bad input from peers raises a :class:`~sealbridge.consensus.errors.ConsensusRemoteError`
inside the handler before any state changes; :meth:`Replica.on_message` counts it in
``stats.rejected[code]`` and returns no effects.

Simplified: no checkpoints or garbage collection -- executed batches and replies are
kept for the whole run (they serve lagging replicas and duplicate requests); a replica
accepts proposals only ``window`` sequences beyond its last executed one; requests are
not signed by clients (the channel authenticates senders; a client whose request is not
answered re-sends it to all replicas, which is what starts their view-change timers);
the ledger state is not part of the certificate.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from itertools import islice
from typing import Any

import msgspec

from sealbridge.consensus.certs import (
    SharePool,
    VerifyCache,
    compute_batch_digest,
    compute_new_view_digest,
    compute_statement,
    compute_view_change_digest,
)
from sealbridge.consensus.config import ConsensusConfig
from sealbridge.consensus.errors import (
    BadCertificate,
    BadShare,
    ConflictingProposal,
    ConsensusConfigError,
    ForeignMessage,
    MalformedMessage,
    NotExpected,
    OutOfWindow,
    WrongSender,
    WrongView,
)
from sealbridge.consensus.ledger import Ledger
from sealbridge.consensus.messages import (
    Commit,
    CommittedBatch,
    FetchCommitted,
    FetchNewView,
    NewView,
    Phase,
    Prepare,
    PreparedEntry,
    PrePrepare,
    Reply,
    Request,
    SignShare,
    ViewChange,
)
from sealbridge.consensus.viewchange import (
    NewViewPlan,
    check_batch,
    check_committed_batch,
    check_new_view,
    check_request,
    check_view_change,
    check_view_change_shape,
    compute_new_view_plan,
    is_uint,
    rank_entry,
)
from sealbridge.core.effects import CancelTimer, Effect, Report, Send, SetTimer
from sealbridge.core.errors import ConfigError, RemoteProtocolError
from sealbridge.crypto import bls
from sealbridge.crypto.bls import KeyShare, PartialSignature

__all__ = [
    "TIMER_BATCH",
    "TIMER_FETCH",
    "TIMER_VIEW_CHANGE",
    "Replica",
    "ReplicaStats",
    "Status",
]

TIMER_BATCH = "consensus/batch"
TIMER_VIEW_CHANGE = "consensus/view-change"
TIMER_FETCH = "consensus/fetch"
TIMER_CHECK = "consensus/check"  # + "/<view>/<seq>/<phase>/<digest hex>"
_EPSILON = 1e-9
_MAX_BACKOFF_DOUBLINGS = 16
_PROBE_SEQUENCES = 8

RequestKey = tuple[int, int]


class Status(Enum):
    NORMAL = "normal"
    VIEW_CHANGE = "view_change"


@dataclass
class ReplicaStats:
    """Counters for observers; nothing in the protocol reads them except ``bad_signers``."""

    rejected: Counter[str] = field(default_factory=Counter)
    bad_signers: set[int] = field(default_factory=set)  # replica indices caught lying
    batches: int = 0
    executed_requests: int = 0
    duplicate_requests: int = 0
    view_changes: int = 0
    fetches: int = 0


@dataclass
class _Slot:
    """What a replica knows about one sequence above its last executed one."""

    batches: dict[bytes, list[Request]] = field(default_factory=dict)  # digest -> batch
    accepted_view: int = -1  # the view of the PrePrepare accepted last
    accepted_digest: bytes = b""
    evidence: PreparedEntry | None = None  # best certificate held, for a ViewChange
    commit: tuple[int, bytes, bytes] | None = None  # (view, digest, commit certificate)


class Replica:
    """One replica: call :meth:`on_start`, then feed it messages and timers."""

    def __init__(
        self,
        config: ConsensusConfig,
        index: int,
        key_share: KeyShare,
        *,
        verifier: VerifyCache | None = None,
    ) -> None:
        if type(index) is not int or not 0 <= index < config.n:
            raise ConsensusConfigError(f"replica index must be in [0, {config.n}), got {index}")
        if not isinstance(key_share, KeyShare) or key_share.index != index + 1:
            raise ConsensusConfigError(f"replica {index} needs key share {index + 1}")
        try:
            public = bls.public_key(key_share.secret)
        except ConfigError as exc:
            raise ConsensusConfigError(f"key share {index + 1}: {exc.message}") from exc
        if public != config.get_public_share(index):
            raise ConsensusConfigError(f"key share {index + 1} does not match the group key")
        self.config = config
        self.index = index
        self._node_id = config.replica_ids[index]
        self._share = key_share
        self._verifier = verifier if verifier is not None else VerifyCache()
        self._others = tuple(node for node in config.replica_ids if node != self._node_id)
        self.ledger = Ledger(
            config.genesis,
            as_id=config.as_id,
            gateway_keys=config.gateway_keys,
            verify=self._verifier.verify,
        )
        self.stats = ReplicaStats()
        # replicated state
        self.view = 0
        self.status = Status.NORMAL
        self.last_executed = 0
        self._log: dict[int, CommittedBatch] = {}  # executed sequences
        self._replies: dict[RequestKey, Reply] = {}  # executed requests -> their Reply
        self._slots: dict[int, _Slot] = {}  # sequences above last_executed
        self._pending: dict[RequestKey, Request] = {}  # seen, not executed (arrival order)
        # view state
        self._view_base = 0  # highest sequence fixed by the current view's NewView
        self._new_view_msg: NewView | None = None
        self._view_changes: dict[int, ViewChange] = {}  # replica index -> latest ViewChange
        self._higher: set[int] = set()  # other replicas whose latest ViewChange is above view
        self._vc_attempts = 0
        self._vc_deadline: float | None = None
        self._early: list[tuple[int, PrePrepare | Prepare | SignShare]] = []
        self._asked_for_new_view: set[int] = set()  # whom we asked, while changing views
        self._sent_shares: set[tuple[Phase, int]] = set()  # this view
        self._prepared_now: dict[int, bytes] = {}  # seq -> digest prepared in this view
        # primary / collector state (this view)
        self._pools: dict[int, dict[tuple[Phase, bytes], SharePool]] = {}
        self._proposed: dict[int, bytes] = {}
        self._queue: dict[RequestKey, Request] = {}
        self._in_batch: set[RequestKey] = set()
        self._next_seq = 1
        self._batch_timer_armed = False
        # catch-up
        self._known_committed = 0
        self._fetch_armed = False
        self._fetch_hint: int | None = None
        self._fetch_round = 0
        self._waiting_for: RequestKey | None = None  # the request the view-change timer is for
        self._waiting_since = 0.0
        self._probing = False  # the timer expired; we asked peers whether we are behind
        self._probe_top = 0  # the last sequence that probe asked for
        self._probe_round = 0
        self._asked_at_timeout = -1  # the view whose NewView we asked for at its timeout
        # What each message does depends on the status; the handlers check it.
        self._handlers: dict[type, Callable[[int, Any, float], list[Effect]]] = {
            Request: self._on_request,
            PrePrepare: self._on_preprepare,
            SignShare: self._on_sign_share,
            Prepare: self._on_prepare,
            Commit: self._on_commit,
            CommittedBatch: self._on_committed_batch,
            FetchCommitted: self._on_fetch,
            FetchNewView: self._on_fetch_new_view,
            ViewChange: self._on_view_change,
            NewView: self._on_new_view,
        }

    # --- reads --------------------------------------------------------------------------------

    @property
    def node_id(self) -> int:
        return self._node_id

    @property
    def is_primary(self) -> bool:
        return self.config.get_primary_index(self.view) == self.index

    @property
    def primary_id(self) -> int:
        return self.config.get_primary_id(self.view)

    @property
    def has_pending_requests(self) -> bool:
        """True while a request this replica has seen is not executed yet."""
        return bool(self._pending)

    def get_committed(self, seq: int) -> CommittedBatch | None:
        """The executed batch at ``seq`` with its commit certificate."""
        return self._log.get(seq)

    def get_reply(self, client: int, client_seq: int) -> Reply | None:
        return self._replies.get((client, client_seq))

    def get_state_summary(self) -> dict[str, Any]:
        """Plain data describing the whole protocol state (for tests and debugging)."""
        return {
            "view": self.view,
            "status": self.status.value,
            "last_executed": self.last_executed,
            "ledger": self.ledger.compute_digest(),
            "log": [(s, self._log[s].view, self._log[s].digest) for s in sorted(self._log)],
            "replies": sorted(self._replies),
            "slots": {
                s: (
                    slot.accepted_view,
                    slot.accepted_digest,
                    sorted(slot.batches),
                    None
                    if slot.evidence is None
                    else (slot.evidence.phase, slot.evidence.view, slot.evidence.digest),
                    None if slot.commit is None else slot.commit[:2],
                )
                for s, slot in sorted(self._slots.items())
            },
            "pending": sorted(self._pending),
            "view_base": self._view_base,
            "view_changes": {j: vc.new_view for j, vc in sorted(self._view_changes.items())},
            "sent_shares": sorted((p.value, s) for p, s in self._sent_shares),
            "prepared_now": dict(sorted(self._prepared_now.items())),
            "pools": {
                (s, p.value, d): (sorted(pool.shares), pool.certificate is not None)
                for s, pools in sorted(self._pools.items())
                for (p, d), pool in pools.items()
            },
            "proposed": dict(sorted(self._proposed.items())),
            "queue": list(self._queue),
            "next_seq": self._next_seq,
            "known_committed": self._known_committed,
            "bad_signers": sorted(self.stats.bad_signers),
        }

    # --- driver interface ---------------------------------------------------------------------

    def on_start(self, now: float) -> list[Effect]:
        """Start, or restart after a crash with the state kept: a driver forgets a crashed
        node's timers, so every timer this replica relies on is armed again here."""
        self._batch_timer_armed = False
        self._fetch_armed = False
        self._vc_deadline = None
        self._probing = False
        effects: list[Effect] = []
        if self.status is Status.VIEW_CHANGE:
            effects.append(SetTimer(TIMER_VIEW_CHANGE, self.config.view_change_timeout))
        else:
            effects += self._rearm_view_change_timer(now)
            effects += self._maybe_propose(now)
        return effects + self._schedule_fetch(None)

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        handler = self._handlers.get(type(message))
        try:
            if handler is None:
                raise MalformedMessage(f"a replica takes no {type(message).__name__}")
            if not is_uint(message.as_id) or message.as_id != self.config.as_id:
                raise ForeignMessage(f"message for AS {message.as_id!r}")
            if not isinstance(message, Request) and self.config.get_index(sender) is None:
                raise WrongSender(f"node {sender} is not a replica of this AS")
            return handler(sender, message, now)
        except RemoteProtocolError as exc:
            self.stats.rejected[exc.code] += 1
            return []

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name == TIMER_BATCH:
            self._batch_timer_armed = False
            return self._maybe_propose(now, force=True)
        if name == TIMER_VIEW_CHANGE:
            return self._on_view_change_timer(now)
        if name == TIMER_FETCH:
            return self._on_fetch_timer(now)
        if name.startswith(TIMER_CHECK + "/"):
            return self._on_check_timer(name, now)
        return []

    # --- requests and proposals ---------------------------------------------------------------

    def _on_request(self, sender: int, request: Request, now: float) -> list[Effect]:
        check_request(self.config, request)
        key = request.key
        reply = self._replies.get(key)
        if reply is not None:  # executed already: answer again, order nothing
            self.stats.duplicate_requests += 1
            return self._send_reply(request.client, reply)
        effects: list[Effect] = []
        if key not in self._pending:
            self._pending[key] = request
            effects += self._rearm_view_change_timer(now)
        if self.status is not Status.NORMAL:
            return effects
        if self.is_primary:
            if key not in self._queue and key not in self._in_batch:
                self._queue[key] = request
            effects += self._maybe_propose(now)
        elif self.config.get_index(sender) is None:  # straight from a client: forward it
            effects.append(Send((self.primary_id,), request))
        return effects

    def _maybe_propose(self, now: float, *, force: bool = False) -> list[Effect]:
        if self.status is not Status.NORMAL or not self.is_primary:
            return []
        effects: list[Effect] = []
        size = self.config.batch_size
        while self._queue and self._next_seq <= self.last_executed + self.config.window:
            if len(self._queue) < size and not force:
                if not self._batch_timer_armed:
                    self._batch_timer_armed = True
                    effects.append(SetTimer(TIMER_BATCH, self.config.batch_timeout))
                return effects
            keys = list(islice(self._queue, size))
            batch = [self._queue.pop(key) for key in keys]
            self._in_batch.update(keys)
            effects += self._propose(batch, now)
        if not self._queue and self._batch_timer_armed:
            self._batch_timer_armed = False
            effects.append(CancelTimer(TIMER_BATCH))
        return effects

    def _propose(self, batch: list[Request], now: float) -> list[Effect]:
        seq = self._next_seq
        self._next_seq += 1
        digest = compute_batch_digest(batch)
        pp = PrePrepare(
            as_id=self.config.as_id, view=self.view, seq=seq, digest=digest, batch=batch
        )
        self._proposed[seq] = digest
        effects: list[Effect] = [
            Send(self._others, pp),
            Report("proposed", self._proposal_data(seq, digest, len(batch), reproposal=False)),
        ]
        return effects + self._accept_preprepare(pp, now)

    def _proposal_data(
        self, seq: int, digest: bytes, count: int, *, reproposal: bool
    ) -> dict[str, Any]:
        return {
            "view": self.view,
            "seq": seq,
            "digest": digest,
            "requests": count,
            "reproposal": reproposal,
        }

    # --- normal case: replica side -------------------------------------------------------------

    def _hold_early(self, sender: int, msg: PrePrepare | Prepare | SignShare) -> list[Effect]:
        """A normal-case message of the view we are changing to: that view is running and we
        missed its NewView. Keep the message for later and ask the sender for the NewView."""
        if msg.view != self.view:
            raise WrongView(f"{type(msg).__name__} for view {msg.view!r} while changing views")
        if len(self._early) >= 4 * self.config.window:
            raise WrongView("too many messages held for the next view")
        self._early.append((sender, msg))
        if sender in self._asked_for_new_view:
            return []
        self._asked_for_new_view.add(sender)
        return [Send((sender,), FetchNewView(as_id=self.config.as_id, view=self.view))]

    def _on_preprepare(self, sender: int, pp: PrePrepare, now: float) -> list[Effect]:
        if self.status is Status.VIEW_CHANGE:
            return self._hold_early(sender, pp)
        if pp.view != self.view:
            raise WrongView(f"PrePrepare for view {pp.view!r}, this replica is in {self.view}")
        if sender != self.primary_id:
            raise WrongSender(f"PrePrepare from {sender}, not the primary of view {self.view}")
        seq = pp.seq
        if not is_uint(seq):
            raise MalformedMessage("sequence numbers are ints")
        low = max(self.last_executed, self._view_base)
        if not low < seq <= self.last_executed + self.config.window:
            raise OutOfWindow(f"PrePrepare seq {seq} outside ({low}, window]")
        check_batch(self.config, pp.batch, pp.digest)
        slot = self._slots.get(seq)
        if slot is not None and slot.accepted_view == self.view:
            if slot.accepted_digest == pp.digest:
                raise NotExpected(f"duplicate PrePrepare for seq {seq}")
            raise ConflictingProposal(f"second PrePrepare for ({self.view}, {seq})")
        return self._accept_preprepare(pp, now)

    def _accept_preprepare(self, pp: PrePrepare, now: float) -> list[Effect]:
        """Take a checked proposal of the current view and sign a PREPARE share for it
        (a COMMIT share in single-phase mode)."""
        seq = pp.seq
        first = Phase.COMMIT if self.config.single_phase else Phase.PREPARE
        if seq <= self.last_executed:
            # A NewView re-proposes a sequence this replica executed: help certify it
            # again if it is the same batch.
            if self._log[seq].digest != pp.digest:
                return []
            return self._send_share(first, seq, pp.digest, now)
        if seq > self.last_executed + self.config.window:
            return []
        slot = self._get_slot(seq)
        slot.accepted_view = self.view
        slot.accepted_digest = pp.digest
        slot.batches[pp.digest] = pp.batch
        effects = self._send_share(first, seq, pp.digest, now)
        if slot.commit is not None and slot.commit[1] == pp.digest:
            effects += self._execute_ready(now)
        return effects

    def _send_share(self, phase: Phase, seq: int, digest: bytes, now: float) -> list[Effect]:
        if (phase, seq) in self._sent_shares:
            return []
        self._sent_shares.add((phase, seq))
        message = compute_statement(phase, self.config.as_id, self.view, seq, digest)
        # uncompressed: the collector loads it without a square root (its combine is on
        # every round's critical path); certificates stay compressed
        share = bls.partial_sign(self._share, message, uncompressed=True)
        if self.is_primary:
            return self._collect(self.index, phase, seq, digest, share, now, trusted=True)
        msg = SignShare(
            as_id=self.config.as_id,
            phase=phase,
            view=self.view,
            seq=seq,
            digest=digest,
            share=share,
        )
        return [Send((self.primary_id,), msg)]

    def _holds_batch(self, view: int, seq: int, digest: bytes) -> bool:
        if seq <= self.last_executed:
            return self._log[seq].digest == digest
        slot = self._slots.get(seq)
        return slot is not None and slot.accepted_view == view and slot.accepted_digest == digest

    def _on_prepare(self, sender: int, msg: Prepare, now: float) -> list[Effect]:
        if self.status is Status.VIEW_CHANGE:
            return self._hold_early(sender, msg)
        if msg.view != self.view:
            raise WrongView(f"Prepare for view {msg.view!r}, this replica is in {self.view}")
        if not is_uint(msg.seq) or msg.seq < 1 or type(msg.digest) is not bytes:
            raise MalformedMessage("malformed Prepare")
        if self._prepared_now.get(msg.seq) == msg.digest:
            raise NotExpected(f"duplicate Prepare for seq {msg.seq}")
        if not self._holds_batch(msg.view, msg.seq, msg.digest):
            raise NotExpected(f"prepare certificate for seq {msg.seq} without its PrePrepare")
        if not self._verify_certificate(
            Phase.PREPARE, msg.view, msg.seq, msg.digest, msg.certificate
        ):
            raise BadCertificate(f"prepare certificate for seq {msg.seq} does not verify")
        return self._process_prepare_cert(msg.seq, msg.digest, msg.certificate, now)

    def _process_prepare_cert(
        self, seq: int, digest: bytes, certificate: bytes, now: float
    ) -> list[Effect]:
        self._prepared_now[seq] = digest
        slot = self._slots.get(seq)
        if slot is not None and digest in slot.batches:
            entry = PreparedEntry(
                phase=Phase.PREPARE,
                view=self.view,
                seq=seq,
                digest=digest,
                certificate=certificate,
                batch=slot.batches[digest],
            )
            slot.evidence = _better(slot.evidence, entry)
        return self._maybe_send_commit_share(seq, now)

    def _maybe_send_commit_share(self, seq: int, now: float) -> list[Effect]:
        digest = self._prepared_now.get(seq)
        if self.status is not Status.NORMAL or digest is None or seq > self.last_executed + 1:
            return []
        return self._send_share(Phase.COMMIT, seq, digest, now)

    def _on_commit(self, sender: int, msg: Commit, now: float) -> list[Effect]:
        if not is_uint(msg.view) or not is_uint(msg.seq) or msg.seq < 1:
            raise MalformedMessage("malformed Commit")
        if type(msg.digest) is not bytes:
            raise MalformedMessage("malformed Commit")
        if msg.seq <= self.last_executed:
            return self._check_conflict(msg.view, msg.seq, msg.digest, msg.certificate)
        if msg.seq > self.last_executed + self.config.window:
            raise OutOfWindow(f"Commit seq {msg.seq} beyond the window")
        slot = self._slots.get(msg.seq)
        if slot is not None and slot.commit is not None:
            raise NotExpected(f"seq {msg.seq} is already committed here")
        if not self._verify_certificate(
            Phase.COMMIT, msg.view, msg.seq, msg.digest, msg.certificate
        ):
            raise BadCertificate(f"commit certificate for seq {msg.seq} does not verify")
        return self._process_commit_cert(
            msg.view, msg.seq, msg.digest, msg.certificate, now, hint=sender
        )

    def _on_committed_batch(self, sender: int, msg: CommittedBatch, now: float) -> list[Effect]:
        if not is_uint(msg.seq):
            raise MalformedMessage("malformed CommittedBatch")
        if msg.seq <= self.last_executed:
            return []  # already have it
        if msg.seq > self.last_executed + self.config.window:
            raise OutOfWindow(f"CommittedBatch seq {msg.seq} beyond the window")
        slot = self._slots.get(msg.seq)
        if slot is not None and slot.commit is not None and slot.commit[1] in slot.batches:
            return []
        check_committed_batch(self.config, self._verifier, msg)
        return self._process_commit_cert(
            msg.view, msg.seq, msg.digest, msg.certificate, now, hint=sender, batch=msg.batch
        )

    def _process_commit_cert(
        self,
        view: int,
        seq: int,
        digest: bytes,
        certificate: bytes,
        now: float,
        *,
        hint: int | None,
        batch: list[Request] | None = None,
    ) -> list[Effect]:
        """Record a verified commit certificate; execute what became executable."""
        if seq <= self.last_executed:
            return []
        self._known_committed = max(self._known_committed, seq)
        if seq > self.last_executed + self.config.window:
            return self._schedule_fetch(hint)
        slot = self._get_slot(seq)
        effects: list[Effect] = []
        if slot.commit is None:
            slot.commit = (view, digest, certificate)
        elif slot.commit[1] != digest:  # only possible below the safe threshold
            data = {"seq": seq, "executed": slot.commit[1], "certified": digest, "view": view}
            return [Report("conflict", data)]
        if batch is not None:
            slot.batches[digest] = batch
        known = slot.batches.get(digest)
        if known is not None:
            entry = PreparedEntry(
                phase=Phase.COMMIT,
                view=view,
                seq=seq,
                digest=digest,
                certificate=certificate,
                batch=known,
            )
            slot.evidence = _better(slot.evidence, entry)
        effects += self._execute_ready(now)
        return effects + self._schedule_fetch(hint)

    def _check_conflict(
        self, view: int, seq: int, digest: bytes, certificate: bytes
    ) -> list[Effect]:
        """A certificate for an executed sequence: harmless unless it names another batch."""
        executed = self._log[seq]
        if executed.digest == digest:
            return []
        if not self._verify_certificate(Phase.COMMIT, view, seq, digest, certificate):
            raise BadCertificate(f"commit certificate for seq {seq} does not verify")
        data = {"seq": seq, "executed": executed.digest, "certified": digest, "view": view}
        return [Report("conflict", data)]

    # --- normal case: collector side ----------------------------------------------------------

    def _on_sign_share(self, sender: int, msg: SignShare, now: float) -> list[Effect]:
        if self.status is Status.VIEW_CHANGE:
            return self._hold_early(sender, msg)
        if msg.view != self.view:
            raise WrongView(f"SignShare for view {msg.view!r}, this replica is in {self.view}")
        if not self.is_primary:
            raise WrongSender(f"this replica is not the collector of view {self.view}")
        if not isinstance(msg.phase, Phase) or not is_uint(msg.seq):
            raise MalformedMessage("malformed SignShare")
        signer = self.config.get_index(sender)
        if not isinstance(msg.share, PartialSignature) or signer is None:
            raise MalformedMessage("malformed SignShare")
        if msg.share.index != signer + 1 or type(msg.share.signature) is not bytes:
            raise WrongSender(f"share {msg.share.index!r} sent by replica {signer}")
        if self._proposed.get(msg.seq) != msg.digest:
            raise NotExpected(f"a share for a batch not proposed at seq {msg.seq}")
        return self._collect(signer, msg.phase, msg.seq, msg.digest, msg.share, now, trusted=False)

    def _collect(
        self,
        signer: int,
        phase: Phase,
        seq: int,
        digest: bytes,
        share: PartialSignature,
        now: float,
        *,
        trusted: bool,
    ) -> list[Effect]:
        pools = self._pools.get(seq, {})
        pool = pools.get((phase, digest))
        if pool is not None and (pool.certificate is not None or share.index in pool.shares):
            return []  # late or repeated share
        message = (
            pool.message
            if pool is not None
            else compute_statement(phase, self.config.as_id, self.view, seq, digest)
        )
        if not trusted and signer in self.stats.bad_signers:
            # A replica that once sent a bad share is checked before it is counted.
            if not self._verifier.verify(
                self.config.get_public_share(signer), message, share.signature
            ):
                raise BadShare(f"replica {signer} sent another invalid share")
            trusted = True
        if pool is None:
            pool = SharePool(message)
            self._pools.setdefault(seq, {})[(phase, digest)] = pool
        pool.add(share, verified=trusted)
        if pool.speculative is not None:
            return []  # a combination is out and being checked: the check uses this share
        if self.config.speculative_certificates and not pool.forwarded:
            candidate = pool.combine_unverified(self.config.threshold)
            if candidate is not None:
                # Forward first, verify right after (a zero-delay timer): the pairing is off
                # the critical path, and receivers verify the certificate anyway.
                pool.forwarded = candidate
                name = f"{TIMER_CHECK}/{self.view}/{seq}/{phase.value}/{digest.hex()}"
                message_out = self._certificate_message(phase, seq, digest, candidate)
                return [Send(self._others, message_out), SetTimer(name, 0.0)]
        return self._try_certify(pool, phase, seq, digest, now)

    def _on_check_timer(self, name: str, now: float) -> list[Effect]:
        """Verify a combination forwarded unverified (see :meth:`_collect`)."""
        try:
            _, _, view_text, seq_text, phase_text, digest_hex = name.split("/")
            view, seq = int(view_text), int(seq_text)
            phase, digest = Phase(phase_text), bytes.fromhex(digest_hex)
        except ValueError:
            return []
        pool = self._pools.get(seq, {}).get((phase, digest))
        if view != self.view or self.status is not Status.NORMAL or pool is None:
            return []  # the view moved on: its pools are gone
        return self._try_certify(pool, phase, seq, digest, now)

    def _try_certify(
        self, pool: SharePool, phase: Phase, seq: int, digest: bytes, now: float
    ) -> list[Effect]:
        certificate, bad = pool.try_certify(
            self.config.threshold,
            self.config.group_key.group_public_key,
            self.config.group_key.public_shares,
            self._verifier,
        )
        effects: list[Effect] = []
        for index in bad:
            self.stats.bad_signers.add(index - 1)
            self.stats.rejected[BadShare.code] += 1
            data = {"view": self.view, "seq": seq, "phase": phase.value, "signer": index - 1}
            effects.append(Report("bad_share", data))
        if certificate is not None:
            pool.shares.clear()
            sent = certificate == pool.forwarded
            effects += self._on_certified(phase, seq, digest, certificate, now, send=not sent)
        return effects

    def _certificate_message(
        self, phase: Phase, seq: int, digest: bytes, certificate: bytes
    ) -> Prepare | Commit:
        as_id, view = self.config.as_id, self.view
        if phase is Phase.PREPARE:
            return Prepare(as_id=as_id, view=view, seq=seq, digest=digest, certificate=certificate)
        return Commit(as_id=as_id, view=view, seq=seq, digest=digest, certificate=certificate)

    def _on_certified(
        self,
        phase: Phase,
        seq: int,
        digest: bytes,
        certificate: bytes,
        now: float,
        *,
        send: bool = True,
    ) -> list[Effect]:
        data = {"phase": phase.value, "view": self.view, "seq": seq, "digest": digest}
        effects: list[Effect] = [Report("certified", data)]
        if send:
            effects.append(
                Send(self._others, self._certificate_message(phase, seq, digest, certificate))
            )
        if phase is Phase.PREPARE:
            return effects + self._process_prepare_cert(seq, digest, certificate, now)
        return effects + self._process_commit_cert(
            self.view, seq, digest, certificate, now, hint=None
        )

    # --- execution ----------------------------------------------------------------------------

    def _execute_ready(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        progressed = False
        while True:
            seq = self.last_executed + 1
            slot = self._slots.get(seq)
            if slot is None or slot.commit is None:
                break
            view, digest, certificate = slot.commit
            batch = slot.batches.get(digest)
            if batch is None:
                break
            effects += self._execute(seq, view, digest, certificate, batch)
            progressed = True
        if progressed:
            self._prune()
            effects += self._maybe_send_commit_share(self.last_executed + 1, now)
            effects += self._rearm_view_change_timer(now)
            if self._probing and self.last_executed >= self._probe_top:
                effects += self._probe(now)  # the probe was answered in full: ask for more
            effects += self._maybe_propose(now)
        return effects

    def _execute(
        self, seq: int, view: int, digest: bytes, certificate: bytes, batch: list[Request]
    ) -> list[Effect]:
        effects: list[Effect] = []
        executed = 0
        for request in batch:
            key = request.key
            if key in self._replies:
                self.stats.duplicate_requests += 1
                continue
            outcome = self.ledger.apply(request.operation)
            reply = Reply(
                as_id=self.config.as_id,
                view=view,
                seq=seq,
                client=request.client,
                client_seq=request.client_seq,
                outcome=outcome,
            )
            self._replies[key] = reply
            self._pending.pop(key, None)
            self._queue.pop(key, None)
            self._in_batch.discard(key)
            executed += 1
            effects += self._send_reply(request.client, reply)
        self._log[seq] = CommittedBatch(
            as_id=self.config.as_id,
            view=view,
            seq=seq,
            digest=digest,
            certificate=certificate,
            batch=batch,
        )
        del self._slots[seq]
        self.last_executed = seq
        self.stats.batches += 1
        self.stats.executed_requests += executed
        data = {
            "view": view,
            "seq": seq,
            "digest": digest,
            "requests": len(batch),
            "request_ids": [r.key for r in batch],
            "executed": executed,
        }
        effects.append(Report("committed", data))
        return effects

    def _send_reply(self, client: int, reply: Reply) -> list[Effect]:
        if client == self._node_id or not self.config.send_replies:
            return []
        return [Send((client,), reply)]

    def _prune(self) -> None:
        """Forget collector state for sequences far below the last executed one."""
        horizon = self.last_executed - self.config.window
        for seq in [s for s in self._pools if s <= horizon]:
            del self._pools[seq]
        for seq in [s for s in self._proposed if s <= horizon]:
            del self._proposed[seq]
        for seq in [s for s in self._prepared_now if s <= horizon]:
            del self._prepared_now[seq]

    # --- catch-up -----------------------------------------------------------------------------

    def _get_missing(self) -> list[int]:
        top = min(self._known_committed, self.last_executed + self.config.window)
        missing = []
        for seq in range(self.last_executed + 1, top + 1):
            slot = self._slots.get(seq)
            if slot is None or slot.commit is None or slot.commit[1] not in slot.batches:
                missing.append(seq)
        return missing

    def _schedule_fetch(self, hint: int | None) -> list[Effect]:
        if self._fetch_armed or not self._get_missing():
            return []
        self._fetch_armed = True
        self._fetch_hint = hint
        self._fetch_round = 0
        return [SetTimer(TIMER_FETCH, self.config.fetch_timeout)]

    def _on_fetch_timer(self, now: float) -> list[Effect]:
        self._fetch_armed = False
        missing = self._get_missing()
        if not missing:
            return []
        if self._fetch_round == 0 and self._fetch_hint in self._others:
            targets: tuple[int, ...] = (self._fetch_hint,)
        else:
            targets = self._get_rotating_targets(self._fetch_round)
        self._fetch_round += 1
        self._fetch_armed = True
        self.stats.fetches += 1
        request = FetchCommitted(as_id=self.config.as_id, seqs=missing)
        return [Send(targets, request), SetTimer(TIMER_FETCH, self.config.fetch_timeout)]

    def _get_rotating_targets(self, round_: int) -> tuple[int, ...]:
        """``f + 1`` other replicas, a different group each round."""
        others = self._others
        if not others:
            return ()
        count = min(self.config.f + 1, len(others))
        start = (round_ * count + self.index) % len(others)
        return tuple(others[(start + k) % len(others)] for k in range(count))

    def _probe(self, now: float) -> list[Effect]:
        """Before suspecting the primary, make sure we are not merely behind: ask ``f + 1``
        replicas for the next sequences and give them ``fetch_timeout`` to answer."""
        self._probing = True
        self._probe_round += 1
        first = self.last_executed + 1
        seqs = list(range(first, first + min(self.config.window, _PROBE_SEQUENCES)))
        self._probe_top = seqs[-1]
        request = FetchCommitted(as_id=self.config.as_id, seqs=seqs)
        self._vc_deadline = now + self.config.fetch_timeout
        self.stats.fetches += 1
        return [
            Send(self._get_rotating_targets(self._probe_round), request),
            SetTimer(TIMER_VIEW_CHANGE, self.config.fetch_timeout),
        ]

    def _on_fetch(self, sender: int, msg: FetchCommitted, now: float) -> list[Effect]:
        if type(msg.seqs) is not list or len(msg.seqs) > self.config.window:
            raise MalformedMessage(f"a fetch asks for at most {self.config.window} sequences")
        effects: list[Effect] = []
        for seq in msg.seqs:
            committed = self._log.get(seq) if is_uint(seq) else None
            if committed is not None:
                effects.append(Send((sender,), committed))
        return effects

    # --- view change --------------------------------------------------------------------------

    def _rearm_view_change_timer(self, now: float) -> list[Effect]:
        """In NORMAL status the timer runs while requests are pending (as in PBFT): it
        waits for one of them, and starts afresh, for the oldest one left, once that one
        is executed."""
        if self.status is not Status.NORMAL:
            return []
        if not self._pending:
            self._waiting_for = None
            self._probing = False
            if self._vc_deadline is None:
                return []
            self._vc_deadline = None
            return [CancelTimer(TIMER_VIEW_CHANGE)]
        if self._waiting_for not in self._pending:
            self._waiting_for = next(iter(self._pending))
            self._waiting_since = now
            self._probing = False
        if self._probing:
            return []  # the probe's grace period stands
        deadline = self._waiting_since + self.config.view_change_timeout
        if deadline == self._vc_deadline:
            return []
        self._vc_deadline = deadline
        return [SetTimer(TIMER_VIEW_CHANGE, max(0.0, deadline - now))]

    def _on_view_change_timer(self, now: float) -> list[Effect]:
        self._vc_deadline = None
        if self.status is Status.VIEW_CHANGE:
            if self._asked_at_timeout != self.view:
                # Before giving up on this view, make sure it did not start without us, and
                # (as an observer of lower views) that we have what they committed.
                self._asked_at_timeout = self.view
                self._probe_round += 1
                targets = self._get_rotating_targets(self._probe_round)
                first = self.last_executed + 1
                seqs = list(range(first, first + min(self.config.window, _PROBE_SEQUENCES)))
                return [
                    Send(targets, FetchNewView(as_id=self.config.as_id, view=self.view)),
                    Send(targets, FetchCommitted(as_id=self.config.as_id, seqs=seqs)),
                    SetTimer(TIMER_VIEW_CHANGE, self.config.fetch_timeout),
                ]
            return self._start_view_change(self.view + 1, now, reason="timeout")
        if self._waiting_for in self._pending:
            if self._probing:
                return self._start_view_change(self.view + 1, now, reason="timeout")
            if now + _EPSILON >= self._waiting_since + self.config.view_change_timeout:
                return self._probe(now)
        return self._rearm_view_change_timer(now)

    def _reset_view_state(self) -> list[Effect]:
        self._pools.clear()
        self._proposed.clear()
        self._queue.clear()
        self._in_batch.clear()
        self._sent_shares.clear()
        self._prepared_now.clear()
        self._asked_for_new_view.clear()
        if self._batch_timer_armed:
            self._batch_timer_armed = False
            return [CancelTimer(TIMER_BATCH)]
        return []

    def _set_view(self, view: int) -> None:
        self.view = view
        self._higher = {
            j for j, vc in self._view_changes.items() if j != self.index and vc.new_view > view
        }

    def _start_view_change(self, new_view: int, now: float, *, reason: str) -> list[Effect]:
        old_view = self.view
        self._set_view(new_view)
        self.status = Status.VIEW_CHANGE
        self._vc_attempts += 1
        self._vc_deadline = None
        self._probing = False
        self.stats.view_changes += 1
        self._early.clear()
        effects = self._reset_view_state()
        vc = self._make_view_change()
        self._view_changes[self.index] = vc
        backoff = 2 ** min(self._vc_attempts - 1, _MAX_BACKOFF_DOUBLINGS)
        effects += [
            Send(self._others, vc),
            SetTimer(TIMER_VIEW_CHANGE, self.config.view_change_timeout * backoff),
            Report("view_change", {"view": new_view, "from_view": old_view, "reason": reason}),
        ]
        return effects + self._maybe_send_new_view(now)

    def _make_view_change(self) -> ViewChange:
        entries = []
        top = self.last_executed + self.config.window
        for seq in sorted(self._slots):
            evidence = self._slots[seq].evidence
            if seq <= top and evidence is not None:
                entries.append(evidence)
        unsigned = ViewChange(
            as_id=self.config.as_id,
            new_view=self.view,
            replica=self.index,
            last_commit=self._log.get(self.last_executed),
            entries=entries,
        )
        signature = bls.partial_sign(self._share, compute_view_change_digest(unsigned))
        return msgspec.structs.replace(unsigned, signature=signature.signature)

    def _on_view_change(self, sender: int, vc: ViewChange, now: float) -> list[Effect]:
        signer = self.config.get_index(sender)
        if not is_uint(vc.new_view) or vc.replica != signer:
            raise WrongSender(f"ViewChange of replica {vc.replica!r} sent by {sender}")
        if vc.new_view < self.view or (vc.new_view == self.view and self.status is Status.NORMAL):
            return []  # for a view we run or left behind (it may ask for our NewView)
        previous = self._view_changes.get(vc.replica)
        if previous is not None and previous.new_view >= vc.new_view:
            return []
        if self.config.get_primary_index(vc.new_view) == self.index:
            # Only the new primary relays ViewChanges (in its NewView): it checks them all.
            # The others use them only to count senders for the f + 1 rule, and the sender
            # is authenticated by the channel.
            check_view_change(self.config, self._verifier, vc)
        else:
            check_view_change_shape(self.config, vc)
        self._view_changes[vc.replica] = vc
        if vc.new_view > self.view:
            self._higher.add(vc.replica)
        effects = self._apply_join_rule(now)
        return effects + self._maybe_send_new_view(now)

    def _apply_join_rule(self, now: float) -> list[Effect]:
        """The f + 1 rule: f + 1 others are past our view, so an honest one is; follow.

        The view joined is the lowest of the f + 1 highest: at least one honest replica
        asked for it or a higher one.
        """
        count = self.config.f + 1
        if len(self._higher) < count:
            return []
        views = heapq.nlargest(count, (self._view_changes[j].new_view for j in self._higher))
        return self._start_view_change(views[-1], now, reason="f+1")

    def _maybe_send_new_view(self, now: float) -> list[Effect]:
        if self.status is not Status.VIEW_CHANGE or not self.is_primary:
            return []
        others = sorted(
            (
                vc
                for j, vc in self._view_changes.items()
                if vc.new_view == self.view and j != self.index
            ),
            key=lambda vc: vc.replica,
        )
        quorum = self.config.view_change_quorum
        if len(others) + 1 < quorum:
            return []
        chosen = [self._view_changes[self.index], *others[: quorum - 1]]
        plan = compute_new_view_plan(chosen)
        preprepares = [
            PrePrepare(as_id=self.config.as_id, view=self.view, seq=seq, digest=digest, batch=batch)
            for seq, digest, batch in plan.proposals
        ]
        message = compute_new_view_digest(
            self.config.as_id,
            self.view,
            [vc.signature for vc in chosen],
            [(pp.seq, pp.digest) for pp in preprepares],
        )
        signature = bls.partial_sign(self._share, message).signature
        nv = NewView(
            as_id=self.config.as_id,
            view=self.view,
            view_changes=chosen,
            preprepares=preprepares,
            signature=signature,
        )
        return [Send(self._others, nv), *self._enter_view(nv, plan, now)]

    def _on_fetch_new_view(self, sender: int, msg: FetchNewView, now: float) -> list[Effect]:
        if not is_uint(msg.view):
            raise MalformedMessage("malformed FetchNewView")
        nv = self._new_view_msg
        if self.status is not Status.NORMAL or nv is None or nv.view < msg.view:
            return []
        return [Send((sender,), nv)]

    def _on_new_view(self, sender: int, nv: NewView, now: float) -> list[Effect]:
        if not is_uint(nv.view):
            raise MalformedMessage("malformed NewView")
        if nv.view < self.view or (nv.view == self.view and self.status is Status.NORMAL):
            return []  # a view we run or left behind
        plan = check_new_view(self.config, self._verifier, nv)
        return self._enter_view(nv, plan, now)

    def _enter_view(self, nv: NewView, plan: NewViewPlan, now: float) -> list[Effect]:
        self._view_changes = {
            j: vc for j, vc in self._view_changes.items() if vc.new_view > nv.view
        }
        self._set_view(nv.view)
        self.status = Status.NORMAL
        self._vc_attempts = 0
        effects = self._reset_view_state()
        self._new_view_msg = nv
        self._view_base = plan.high_seq
        self._vc_deadline = None
        effects.append(CancelTimer(TIMER_VIEW_CHANGE))
        # Give the new primary a full timeout for everything pending.
        self._waiting_for = None
        self._probing = False
        primary = self.config.get_primary_index(nv.view)
        data = {
            "view": nv.view,
            "primary": primary,
            "base": plan.base_seq,
            "reproposed": len(plan.proposals),
        }
        effects.append(Report("new_view", data))
        if self.is_primary:
            self._next_seq = plan.high_seq + 1  # fresh proposals come after the plan's
            reproposed: set[RequestKey] = set()
            for seq, digest, batch in plan.proposals:
                self._proposed[seq] = digest
                reproposed.update(r.key for r in batch)
                report = self._proposal_data(seq, digest, len(batch), reproposal=True)
                effects.append(Report("proposed", report))
            self._in_batch = {key for key in reproposed if key not in self._replies}
            self._queue = {
                key: request for key, request in self._pending.items() if key not in reproposed
            }
        base = plan.base
        if base is not None and base.seq > self.last_executed:
            effects += self._process_commit_cert(
                base.view,
                base.seq,
                base.digest,
                base.certificate,
                now,
                hint=self.primary_id,
                batch=base.batch,
            )
        for pp in nv.preprepares:
            effects += self._accept_preprepare(pp, now)
        if self.is_primary:
            effects += self._maybe_propose(now)
        else:
            for request in self._pending.values():
                effects.append(Send((self.primary_id,), request))
        effects += self._rearm_view_change_timer(now)
        effects += self._execute_ready(now)
        early, self._early = self._early, []
        for sender, msg in early:  # what arrived before this NewView
            if msg.view == self.view:
                effects += self.on_message(sender, msg, now)
        return effects

    # --- helpers ------------------------------------------------------------------------------

    def _get_slot(self, seq: int) -> _Slot:
        slot = self._slots.get(seq)
        if slot is None:
            slot = self._slots[seq] = _Slot()
        return slot

    def _verify_certificate(
        self, phase: Phase, view: int, seq: int, digest: bytes, certificate: object
    ) -> bool:
        if type(certificate) is not bytes or not is_uint(view):
            return False
        message = compute_statement(phase, self.config.as_id, view, seq, digest)
        return self._verifier.verify(self.config.group_key.group_public_key, message, certificate)


def _better(current: PreparedEntry | None, candidate: PreparedEntry) -> PreparedEntry:
    if current is None or rank_entry(candidate) > rank_entry(current):
        return candidate
    return current
