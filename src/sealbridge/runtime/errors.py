"""Typed errors of the worker runtime.

Each refused command gets one of these; its ``code`` is what a receipt records (never the
command's plaintext).
"""

from __future__ import annotations

from sealbridge.core.errors import LocalProtocolError, RemoteProtocolError


class RuntimeRefusal(RemoteProtocolError):
    """Input from the host or a user that the runtime refuses."""

    code = "refused"


class WrongKeyError(RuntimeRefusal):
    """The command does not decrypt under this contract's key."""

    code = "wrong_key"


class MalformedCommand(RuntimeRefusal):
    code = "malformed_command"


class BadCommandSignature(RuntimeRefusal):
    code = "bad_command_signature"


class ReplayedCommand(RuntimeRefusal):
    """The sender already used this nonce (or a later one) on this contract."""

    code = "replayed_command"


class WrongContract(RuntimeRefusal):
    code = "wrong_contract"


class StaleBlock(RuntimeRefusal):
    """The host delivered a block at or below the height already applied."""

    code = "stale_block"


class QueryRefused(RuntimeRefusal):
    code = "query_refused"


class KeyMismatch(RuntimeRefusal):
    """A released contract key does not match the public key recorded on chain."""

    code = "key_mismatch"


class DirectoryIncomplete(LocalProtocolError):
    """A message names a source whose published keys the host has not supplied: the
    block is refused whole (the host must send the directory entry first)."""

    code = "directory_incomplete"


class UnknownContract(LocalProtocolError):
    code = "unknown_contract"
