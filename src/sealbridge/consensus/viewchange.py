"""View change: checking ViewChange/NewView messages and computing what a new view re-proposes.

Theory of operation
-------------------
A ViewChange from replica ``r`` for view ``w`` carries two kinds of evidence, all of it
verifiable by anyone holding the group key:

* ``last_commit`` -- the commit certificate (and batch) of the last sequence ``r``
  executed. A replica signs a commit share for ``s`` only after executing ``s - 1``, so a
  commit certificate for ``s`` shows that an honest replica executed ``1..s-1`` and can
  serve those batches to replicas that lag behind.
* ``entries`` -- for each sequence above ``last_commit.seq`` (within the window), ``r``'s
  certificate of the highest view it holds: a prepare certificate, or a commit
  certificate, with the batch.

The whole message is signed with ``r``'s key share, so the new primary cannot drop or
alter what ``r`` reported.

:func:`compute_new_view_plan` is deterministic; the new primary runs it on the quorum it
chose and every replica re-runs it on the NewView's set to check the re-proposals:

1. ``base`` = the highest ``last_commit`` of the set (``L`` its sequence, 0 if none).
   Sequences ``<= L`` are decided; replicas behind fetch them.
2. For each ``s`` in ``(L, H]``, ``H`` the highest entry sequence: re-propose the batch of
   the entry with the highest view (a commit certificate beats a prepare certificate of
   the same view; ties beyond that break on the digest, which happens only below the safe
   threshold); an empty batch where no entry exists.

Why this keeps every commit (threshold ``q >= ceil((n + f + 1) / 2)``, quorum
``V = max(2f + 1, q)``): a commit certificate for ``(v, s, d)`` needs ``q`` commit shares,
so ``q - f`` honest replicas held a prepare certificate for ``(v, s, d)``. Any ``V``
ViewChange messages include at least ``V + q - n - f >= 1`` of them, reporting ``s``
(or a ``last_commit`` at or above ``s``). A prepare certificate of a higher view for ``s``
needs an honest share in that view, and honest replicas of later views only accept what
that view's NewView re-proposed -- ``d``, by induction. Within one view two prepare
certificates for different digests would need ``2q - n >= f + 1`` common signers, one of
them honest, who signs one digest per (view, sequence).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sealbridge.consensus.certs import (
    VerifyCache,
    compute_batch_digest,
    compute_new_view_digest,
    compute_statement,
    compute_view_change_digest,
)
from sealbridge.consensus.config import ConsensusConfig
from sealbridge.consensus.errors import (
    BadCertificate,
    BadDigest,
    BadNewView,
    BadViewChange,
    ConsensusRemoteError,
    MalformedMessage,
)
from sealbridge.consensus.ledger import OPERATION_TYPES
from sealbridge.consensus.messages import (
    CommittedBatch,
    NewView,
    Phase,
    PreparedEntry,
    PrePrepare,
    Request,
    ViewChange,
)
from sealbridge.core.errors import EncodingError, InvalidSignature
from sealbridge.crypto import bls
from sealbridge.crypto.bls import SIGNATURE_SIZE

__all__ = [
    "EMPTY_BATCH_DIGEST",
    "NewViewPlan",
    "check_batch",
    "check_committed_batch",
    "check_new_view",
    "check_request",
    "check_view_change",
    "check_view_change_shape",
    "compute_new_view_plan",
    "is_uint",
    "rank_entry",
]

_MAX_UINT = 2**63 - 1
EMPTY_BATCH_DIGEST = compute_batch_digest([])


def is_uint(value: object) -> bool:
    return type(value) is int and 0 <= value <= _MAX_UINT


def _is_digest(value: object) -> bool:
    return type(value) is bytes and len(value) == 32


def _is_signature(value: object) -> bool:
    return type(value) is bytes and len(value) == SIGNATURE_SIZE


def check_request(config: ConsensusConfig, request: object) -> Request:
    """A well-formed request of this AS (the operation's fields are the ledger's concern)."""
    if (
        not isinstance(request, Request)
        or request.as_id != config.as_id
        or not is_uint(request.client)
        or not is_uint(request.client_seq)
        or not isinstance(request.operation, OPERATION_TYPES)
    ):
        raise MalformedMessage("not a well-formed request of this AS")
    return request


def check_batch(config: ConsensusConfig, batch: object, digest: object) -> list[Request]:
    """A well-formed batch of this AS's requests that hashes to ``digest``."""
    if type(batch) is not list or len(batch) > config.batch_size:
        raise MalformedMessage(f"a batch is a list of at most {config.batch_size} requests")
    for request in batch:
        check_request(config, request)
    if not _is_digest(digest):
        raise MalformedMessage("a digest is 32 bytes")
    try:
        actual = compute_batch_digest(batch)
    except EncodingError as exc:
        raise MalformedMessage(f"batch does not encode: {exc.message}") from exc
    if actual != digest:
        raise BadDigest("the batch does not hash to its digest")
    return batch


def _check_certificate(
    config: ConsensusConfig,
    verifier: VerifyCache,
    phase: Phase,
    view: int,
    seq: int,
    digest: bytes,
    certificate: object,
) -> bool:
    if not _is_signature(certificate):
        return False
    message = compute_statement(phase, config.as_id, view, seq, digest)
    return verifier.verify(config.group_key.group_public_key, message, certificate)  # type: ignore[arg-type]


def check_committed_batch(
    config: ConsensusConfig, verifier: VerifyCache, committed: object
) -> CommittedBatch:
    """A CommittedBatch of this AS whose certificate and batch check out."""
    if not isinstance(committed, CommittedBatch):
        raise MalformedMessage("expected a CommittedBatch")
    if committed.as_id != config.as_id or not is_uint(committed.view):
        raise MalformedMessage("foreign or malformed CommittedBatch")
    if not is_uint(committed.seq) or committed.seq < 1:
        raise MalformedMessage("sequence numbers start at 1")
    check_batch(config, committed.batch, committed.digest)
    if not _check_certificate(
        config,
        verifier,
        Phase.COMMIT,
        committed.view,
        committed.seq,
        committed.digest,
        committed.certificate,
    ):
        raise BadCertificate(f"commit certificate of seq {committed.seq} does not verify")
    return committed


def check_view_change_shape(config: ConsensusConfig, vc: object) -> ViewChange:
    """The cheap part of :func:`check_view_change`: types and ranges, no crypto."""
    if not isinstance(vc, ViewChange):
        raise BadViewChange("expected a ViewChange")
    if vc.as_id != config.as_id or not is_uint(vc.new_view) or vc.new_view < 1:
        raise BadViewChange("foreign ViewChange or a new view below 1")
    if not is_uint(vc.replica) or vc.replica >= config.n:
        raise BadViewChange(f"no replica {vc.replica!r}")
    if not _is_signature(vc.signature) or type(vc.entries) is not list:
        raise BadViewChange("malformed ViewChange")
    return vc


def check_view_change(
    config: ConsensusConfig, verifier: VerifyCache, vc: object, *, check_signature: bool = True
) -> ViewChange:
    """Check a ViewChange completely: shape, signature (unless the caller checked it, in
    an aggregate), every certificate and batch."""
    vc = check_view_change_shape(config, vc)
    if check_signature:
        try:
            message = compute_view_change_digest(vc)
        except EncodingError as exc:
            raise BadViewChange(f"ViewChange does not encode: {exc.message}") from exc
        if not verifier.verify(config.get_public_share(vc.replica), message, vc.signature):
            raise BadViewChange(f"ViewChange signature of replica {vc.replica} does not verify")
    low = 0
    try:
        if vc.last_commit is not None:
            committed = check_committed_batch(config, verifier, vc.last_commit)
            if committed.view >= vc.new_view:
                raise BadViewChange("last commit from a view not below the new view")
            low = committed.seq
        seen: set[int] = set()
        for entry in vc.entries:
            _check_entry(config, verifier, vc.new_view, low, entry)
            if entry.seq in seen:
                raise BadViewChange(f"two entries for seq {entry.seq}")
            seen.add(entry.seq)
    except (ConsensusRemoteError, EncodingError) as exc:  # one refusal for any bad evidence
        raise BadViewChange(f"replica {vc.replica}: {exc.message}") from exc
    return vc


def _check_entry(
    config: ConsensusConfig, verifier: VerifyCache, new_view: int, low: int, entry: object
) -> None:
    if not isinstance(entry, PreparedEntry) or not isinstance(entry.phase, Phase):
        raise BadViewChange("malformed entry")
    if not is_uint(entry.view) or entry.view >= new_view:
        raise BadViewChange("entry from a view not below the new view")
    if not is_uint(entry.seq) or not low < entry.seq <= low + config.window:
        raise BadViewChange(f"entry seq {entry.seq!r} outside ({low}, {low + config.window}]")
    check_batch(config, entry.batch, entry.digest)
    if not _check_certificate(
        config, verifier, entry.phase, entry.view, entry.seq, entry.digest, entry.certificate
    ):
        raise BadViewChange(f"{entry.phase.value} certificate of seq {entry.seq} does not verify")


def _check_view_change_signatures(config: ConsensusConfig, vcs: Sequence[ViewChange]) -> None:
    """All signatures of a (shape-checked, distinct-replica) view-change set at once.

    Each replica signed a different message (its own ViewChange), so one aggregate
    verification (``n`` Miller loops, one final exponentiation) replaces ``n`` separate
    ones at about a third of their cost.
    """
    try:
        messages = [compute_view_change_digest(vc) for vc in vcs]
        aggregate = bls.aggregate([vc.signature for vc in vcs])
    except (EncodingError, InvalidSignature) as exc:
        raise BadNewView(f"view-change set: {exc.message}") from exc
    keys = [config.get_public_share(vc.replica) for vc in vcs]
    if not bls.aggregate_verify(keys, messages, aggregate):
        raise BadNewView("view-change set: a ViewChange signature does not verify")


@dataclass(frozen=True)
class NewViewPlan:
    """What a new view starts from: the decided prefix and the re-proposals."""

    base: CommittedBatch | None
    proposals: tuple[tuple[int, bytes, list[Request]], ...]  # (seq, digest, batch)

    @property
    def base_seq(self) -> int:
        return 0 if self.base is None else self.base.seq

    @property
    def high_seq(self) -> int:
        return self.proposals[-1][0] if self.proposals else self.base_seq


def rank_entry(entry: PreparedEntry) -> tuple[int, bool, bytes]:
    """Order of view-change evidence: view, then commit over prepare, then digest."""
    return (entry.view, entry.phase is Phase.COMMIT, entry.digest)


def compute_new_view_plan(view_changes: Sequence[ViewChange]) -> NewViewPlan:
    """The deterministic re-proposals for a set of (already checked) ViewChange messages."""
    commits = [vc.last_commit for vc in view_changes if vc.last_commit is not None]
    base = max(commits, key=lambda c: (c.seq, c.view, c.digest), default=None)
    low = 0 if base is None else base.seq
    best: dict[int, PreparedEntry] = {}
    for vc in view_changes:
        for entry in vc.entries:
            if entry.seq <= low:
                continue
            held = best.get(entry.seq)
            if held is None or rank_entry(entry) > rank_entry(held):
                best[entry.seq] = entry
    high = max(best, default=low)
    proposals: list[tuple[int, bytes, list[Request]]] = []
    for seq in range(low + 1, high + 1):
        chosen = best.get(seq)
        if chosen is None:
            proposals.append((seq, EMPTY_BATCH_DIGEST, []))
        else:
            proposals.append((seq, chosen.digest, chosen.batch))
    return NewViewPlan(base=base, proposals=tuple(proposals))


def check_new_view(config: ConsensusConfig, verifier: VerifyCache, nv: NewView) -> NewViewPlan:
    """Check a NewView against its own view-change set; return the plan it follows."""
    if not is_uint(nv.view) or nv.view < 1:
        raise BadNewView("a new view is at least 1")
    if type(nv.view_changes) is not list or type(nv.preprepares) is not list:
        raise BadNewView("malformed NewView")
    if not _is_signature(nv.signature):
        raise BadNewView("a NewView is signed")
    senders: set[int] = set()
    for vc in nv.view_changes:
        if not isinstance(vc, ViewChange) or vc.new_view != nv.view:
            raise BadNewView("the view-change set holds ViewChanges for another view")
        if vc.replica in senders:
            raise BadNewView(f"replica {vc.replica} appears twice in the view-change set")
        senders.add(vc.replica)
    if len(senders) < config.view_change_quorum:
        raise BadNewView(f"{len(senders)} ViewChanges, the quorum is {config.view_change_quorum}")
    proposals_signed: list[tuple[int, bytes]] = []
    for pp in nv.preprepares:
        if not isinstance(pp, PrePrepare) or not is_uint(pp.seq) or not _is_digest(pp.digest):
            raise BadNewView("malformed re-proposal")
        proposals_signed.append((pp.seq, pp.digest))
    try:
        message = compute_new_view_digest(
            config.as_id, nv.view, [vc.signature for vc in nv.view_changes], proposals_signed
        )
    except EncodingError as exc:
        raise BadNewView(f"NewView does not encode: {exc.message}") from exc
    primary = config.get_primary_index(nv.view)
    if not verifier.verify(config.get_public_share(primary), message, nv.signature):
        raise BadNewView(f"NewView for view {nv.view} is not signed by its primary")
    try:
        for vc in nv.view_changes:
            check_view_change(config, verifier, vc, check_signature=False)
    except BadViewChange as exc:
        raise BadNewView(f"view-change set: {exc.message}") from exc
    _check_view_change_signatures(config, nv.view_changes)
    plan = compute_new_view_plan(nv.view_changes)
    if len(nv.preprepares) != len(plan.proposals):
        raise BadNewView(
            f"{len(nv.preprepares)} re-proposals, the view-change set needs {len(plan.proposals)}"
        )
    for pp, (seq, digest, _) in zip(nv.preprepares, plan.proposals, strict=True):
        if pp.as_id != config.as_id or pp.view != nv.view or pp.seq != seq or pp.digest != digest:
            raise BadNewView(f"re-proposal for seq {seq} does not follow the view-change set")
        try:
            check_batch(config, pp.batch, pp.digest)
        except ConsensusRemoteError as exc:
            raise BadNewView(f"re-proposal for seq {seq}: {exc.message}") from exc
    return plan
