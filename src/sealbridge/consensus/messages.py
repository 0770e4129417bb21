"""Messages of the consensus protocol (see :mod:`sealbridge.consensus.replica`).

All are frozen msgspec Structs with a ``type`` tag, so :data:`ConsensusMessage` decodes
from canonical bytes (:func:`decode_message`). ``as_id`` names the autonomous system in
every message; a replica drops anything foreign. Views and sequence numbers are ints
from 0 (sequences from 1); digests are 32 bytes; signatures and certificates 96 bytes.

Client side
  :class:`Request`      client -> any replica (replicas forward it to the primary)
  :class:`Reply`        replica -> ``request.client``; a client trusts ``f + 1`` equal ones

Normal case (view ``v``, primary = collector = replica ``v mod n``)
  :class:`PrePrepare`   primary -> all: batch ``seq`` with its digest
  :class:`SignShare`    replica -> collector: a share of the PREPARE or COMMIT statement
  :class:`Prepare`      collector -> all: the prepare certificate (``threshold`` shares)
  :class:`Commit`       collector -> all: the commit certificate

Catch-up
  :class:`FetchCommitted`  replica -> replicas: "send me these committed sequences"
  :class:`CommittedBatch`  a commit certificate with its batch; self-verifying
  :class:`FetchNewView`    replica -> a replica running a view: "send me its NewView"

View change
  :class:`ViewChange`   replica -> all, signed with its key share
  :class:`NewView`      new primary -> all, signed; carries the view-change set and the
                        re-proposed PrePrepares
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from sealbridge.consensus.errors import MalformedMessage
from sealbridge.consensus.ledger import Operation, Outcome
from sealbridge.core.encoding import Message, decode
from sealbridge.core.errors import EncodingError
from sealbridge.crypto.bls import PartialSignature

__all__ = [
    "Commit",
    "CommittedBatch",
    "ConsensusMessage",
    "FetchCommitted",
    "FetchNewView",
    "NewView",
    "Phase",
    "PrePrepare",
    "Prepare",
    "PreparedEntry",
    "Reply",
    "Request",
    "SignShare",
    "ViewChange",
    "decode_message",
]


class Phase(StrEnum):
    """Which statement a share or certificate signs."""

    PREPARE = "prepare"
    COMMIT = "commit"


class Request(Message, frozen=True, tag="consensus.request"):
    """An operation for the ledger; ``(client, client_seq)`` identifies it (dedup key).

    ``client`` is also the node id the replies go to. Requests are not signed: the
    channel authenticates senders, and the primary chooses what to order anyway.
    """

    as_id: int
    client: int
    client_seq: int
    operation: Operation

    @property
    def key(self) -> tuple[int, int]:
        return (self.client, self.client_seq)


class Reply(Message, frozen=True, tag="consensus.reply"):
    """The outcome of a request, executed at ``seq`` (committed in ``view``)."""

    as_id: int
    view: int
    seq: int
    client: int
    client_seq: int
    outcome: Outcome


class PrePrepare(Message, frozen=True, tag="consensus.pre_prepare"):
    as_id: int
    view: int
    seq: int
    digest: bytes  # compute_batch_digest(batch)
    batch: list[Request]


class SignShare(Message, frozen=True, tag="consensus.sign_share"):
    """Replica ``share.index - 1``'s signature share of a (phase, view, seq, digest)."""

    as_id: int
    phase: Phase
    view: int
    seq: int
    digest: bytes
    share: PartialSignature


class Prepare(Message, frozen=True, tag="consensus.prepare"):
    """The prepare certificate: ``threshold`` replicas accepted (view, seq, digest)."""

    as_id: int
    view: int
    seq: int
    digest: bytes
    certificate: bytes


class Commit(Message, frozen=True, tag="consensus.commit"):
    """The commit certificate: (view, seq, digest) is decided."""

    as_id: int
    view: int
    seq: int
    digest: bytes
    certificate: bytes


class CommittedBatch(Message, frozen=True, tag="consensus.committed_batch"):
    """A commit certificate with its batch: anyone can check and execute it."""

    as_id: int
    view: int
    seq: int
    digest: bytes
    certificate: bytes
    batch: list[Request]


class FetchCommitted(Message, frozen=True, tag="consensus.fetch_committed"):
    """Ask for CommittedBatch messages of ``seqs`` (at most the window's worth)."""

    as_id: int
    seqs: list[int]


class FetchNewView(Message, frozen=True, tag="consensus.fetch_new_view"):
    """Sent by a replica that sees messages of ``view`` but missed its NewView."""

    as_id: int
    view: int


class PreparedEntry(Message, frozen=True):
    """View-change evidence for one sequence: a certificate of ``phase`` and the batch."""

    phase: Phase
    view: int
    seq: int
    digest: bytes
    certificate: bytes
    batch: list[Request]


class ViewChange(Message, frozen=True, tag="consensus.view_change"):
    """Replica ``replica`` moves to ``new_view``.

    ``last_commit`` proves the replica executed up to ``last_commit.seq`` (None: nothing
    yet); ``entries`` hold its best certificate for each sequence above that, within its
    window. ``signature`` is the replica's key-share signature of the message with an
    empty signature (:func:`~sealbridge.consensus.certs.compute_view_change_digest`).
    """

    as_id: int
    new_view: int
    replica: int
    last_commit: CommittedBatch | None
    entries: list[PreparedEntry]
    signature: bytes = b""

    @property
    def last_executed(self) -> int:
        return 0 if self.last_commit is None else self.last_commit.seq


class NewView(Message, frozen=True, tag="consensus.new_view"):
    """The new primary starts ``view`` from a quorum of ViewChange messages.

    ``preprepares`` re-propose, in view ``view``, every sequence above the highest
    proven commit up to the highest certified sequence of the set (empty batches fill
    gaps). ``signature`` is the primary's key-share signature
    (:func:`~sealbridge.consensus.certs.compute_new_view_digest`), so any replica may relay
    a NewView to one that missed it.
    """

    as_id: int
    view: int
    view_changes: list[ViewChange]
    preprepares: list[PrePrepare]
    signature: bytes = b""


ConsensusMessage = (
    Request
    | Reply
    | PrePrepare
    | SignShare
    | Prepare
    | Commit
    | CommittedBatch
    | FetchCommitted
    | FetchNewView
    | ViewChange
    | NewView
)


def decode_message(data: bytes) -> ConsensusMessage:
    """Decode canonical bytes into a consensus message (MalformedMessage if they are not)."""
    try:
        return decode(data, ConsensusMessage)  # type: ignore[arg-type]
    except (EncodingError, msgspec.ValidationError) as exc:
        raise MalformedMessage(f"not a consensus message: {exc}") from exc
