"""Typed errors of the interop layer (InterTrust gateways and the replicas' interop side).

* :class:`InteropConfigError` (``ConfigError``) -- a scenario or a core was built wrongly.
* :class:`InteropRemoteError` and its subclasses (``RemoteProtocolError``) -- a message
  from a peer is bad: the core that received it raises one inside its handler before any
  state changes, counts it in ``stats.rejected[code]`` and returns no effects.
"""

from __future__ import annotations

from sealbridge.core.errors import ConfigError, RemoteProtocolError

__all__ = [
    "BadAttestation",
    "BadCrossCertificate",
    "BadKey",
    "BadQuote",
    "InteropConfigError",
    "InteropRemoteError",
    "MalformedInterop",
    "NotAttested",
    "UnknownSender",
    "WrongTransfer",
]


class InteropConfigError(ConfigError):
    code = "interop_config"


class InteropRemoteError(RemoteProtocolError):
    """A message from outside the core is not acceptable."""

    code = "interop_remote"


class MalformedInterop(InteropRemoteError):
    """Wrong types, sizes or fields."""

    code = "malformed"


class UnknownSender(InteropRemoteError):
    """The sender is not who may send this message (channel-authenticated node id)."""

    code = "unknown_sender"


class NotAttested(InteropRemoteError):
    """A gateway message from a peer whose quote was not verified (yet)."""

    code = "not_attested"


class BadQuote(InteropRemoteError):
    """A peer gateway's card: its quote or its signature does not verify under the policy."""

    code = "bad_quote"


class BadKey(InteropRemoteError):
    """A key grant or share delivery that does not check out."""

    code = "bad_key"


class BadAttestation(InteropRemoteError):
    """A replica's attestation reply whose signature or share is not valid."""

    code = "bad_attestation"


class BadCrossCertificate(InteropRemoteError):
    """A threshold certificate that does not prove what it claims (wrong key, transfer,
    claim or signature)."""

    code = "bad_certificate"


class WrongTransfer(InteropRemoteError):
    """A transfer that is malformed, expired, or not between this gateway's ASes."""

    code = "wrong_transfer"
