"""Typed errors of the consensus layer.

Whose fault it is decides the branch (see :mod:`sealbridge.core.errors`):

* :class:`ConsensusConfigError` (a :class:`~sealbridge.core.errors.ConfigError`) -- the
  cluster was set up wrongly: n < 3f + 1, a threshold out of range, a key share that does
  not belong to the replica, bad genesis balances. Raised by constructors only.
* :class:`ConsensusRemoteError` and its subclasses (``RemoteProtocolError``) -- a message
  from a peer or a client is malformed, foreign, stale, forged or conflicting. A
  :class:`~sealbridge.consensus.replica.Replica` catches these in its handlers, counts
  them in ``Replica.stats.rejected[code]`` and changes nothing.
* :class:`LedgerError` (``LocalProtocolError``) -- the ledger was called with something
  that is not an operation. Refused operations are *not* errors: they are ordered like any
  other and yield an :class:`~sealbridge.consensus.ledger.Outcome` with a failure code.
"""

from __future__ import annotations

from sealbridge.core.errors import ConfigError, LocalProtocolError, RemoteProtocolError

__all__ = [
    "BadCertificate",
    "BadDigest",
    "BadNewView",
    "BadShare",
    "BadViewChange",
    "ConflictingProposal",
    "ConsensusConfigError",
    "ConsensusRemoteError",
    "ForeignMessage",
    "LedgerError",
    "MalformedMessage",
    "NotExpected",
    "OutOfWindow",
    "WrongSender",
    "WrongView",
]


class ConsensusConfigError(ConfigError):
    """A consensus configuration, key share or genesis is invalid."""

    code = "consensus_config"


class LedgerError(LocalProtocolError):
    """The ledger was given something that is not a ledger operation."""

    code = "ledger"


class ConsensusRemoteError(RemoteProtocolError):
    """Base of every refusal of a peer's (or client's) consensus message."""

    code = "consensus_remote"


class MalformedMessage(ConsensusRemoteError):
    """A field has the wrong type or range, or the message is not a consensus message."""

    code = "malformed"


class ForeignMessage(ConsensusRemoteError):
    """The message belongs to another autonomous system (its ``as_id`` differs)."""

    code = "foreign"


class WrongSender(ConsensusRemoteError):
    """The sender may not send this message (not a replica, not the primary, not the signer)."""

    code = "wrong_sender"


class WrongView(ConsensusRemoteError):
    """The message is for a view this replica is not (or no longer) in."""

    code = "wrong_view"


class OutOfWindow(ConsensusRemoteError):
    """The sequence number is already executed or beyond the replica's window."""

    code = "out_of_window"


class BadDigest(ConsensusRemoteError):
    """A batch does not hash to the digest it comes with."""

    code = "bad_digest"


class ConflictingProposal(ConsensusRemoteError):
    """A second, different PrePrepare for a (view, sequence) already pre-prepared."""

    code = "conflicting_proposal"


class BadShare(ConsensusRemoteError):
    """A signature share does not verify under the signer's public share."""

    code = "bad_share"


class BadCertificate(ConsensusRemoteError):
    """A combined (prepare or commit) certificate does not verify under the group key."""

    code = "bad_certificate"


class BadViewChange(ConsensusRemoteError):
    """A ViewChange is unsigned, mis-signed, or carries evidence that does not check."""

    code = "bad_view_change"


class BadNewView(ConsensusRemoteError):
    """A NewView does not follow from its view-change set, or is not the primary's."""

    code = "bad_new_view"


class NotExpected(ConsensusRemoteError):
    """A well-formed message this replica has no use for now (a share for a batch it did
    not propose, a prepare certificate without the batch, a duplicate)."""

    code = "not_expected"
