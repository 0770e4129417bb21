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


class MessageTooEarly(RuntimeRefusal):
    """A message is too far ahead of its source's next number to be held; it can be
    posted again once the earlier ones arrived."""

    code = "message_too_early"


class WrongContract(RuntimeRefusal):
    code = "wrong_contract"


class StaleBlock(RuntimeRefusal):
    """The host delivered a block at or below the height already applied."""

    code = "stale_block"


class BlockFull(RuntimeRefusal):
    """A command would take the block's output (results, messages, state) past its
    budget; it is refused whole and may be sent again."""

    code = "block_full"


class QueryRefused(RuntimeRefusal):
    code = "query_refused"


class KeyMismatch(RuntimeRefusal):
    """A released contract key does not match the public key recorded on chain."""

    code = "key_mismatch"


class InstallFactsMismatch(RuntimeRefusal):
    """An install names a code hash, deployer commitment, executor set or key that differs
    from what the chain (or the contract's own sealed state) says."""

    code = "install_facts_mismatch"


class InstallFactsUnverified(RuntimeRefusal):
    """The runtime has not verified the contract's ``ContractDeployed`` event (nor its key
    publication): the host must deliver those blocks before installing it."""

    code = "install_facts_unverified"


class DirectoryIncomplete(LocalProtocolError):
    """A message names a source whose published keys the runtime does not know: the
    block is refused whole. The host offers it again with a state proof of the source's
    ContractRegistry record at that block (``BlockInput.key_proof``), which either gives
    the keys or shows there are none. ``source`` names it."""

    code = "directory_incomplete"

    def __init__(self, message: str, source: bytes = b"") -> None:
        super().__init__(message)
        self.source = source


class UnknownSource(RuntimeRefusal):
    """A message names a source that, by a state proof at the block, has no published
    key: the message alone is refused."""

    code = "unknown_source"


class UnknownContract(LocalProtocolError):
    code = "unknown_contract"


class ChainNotConfigured(LocalProtocolError):
    """An operation needs the verified chain view, which the host has not set up."""

    code = "chain_not_configured"


class ChainAlreadyConfigured(LocalProtocolError):
    code = "chain_already_configured"


class MalformedEvent(RuntimeRefusal):
    """A management event in a verified receipt does not decode (never on a sound chain)."""

    code = "malformed_event"


class EvidenceRequired(RuntimeRefusal):
    """With a verified chain view, a block must come as evidence, not as a list of
    commands the host assembled."""

    code = "evidence_required"


class CheckpointRefused(RuntimeRefusal):
    """A checkpoint that is tampered, inconsistent or not for this chain."""

    code = "checkpoint_refused"


class StaleCheckpoint(CheckpointRefused):
    """A checkpoint older than state or a checkpoint record the runtime already knows."""

    code = "stale_checkpoint"


class CheckpointUnconfirmed(CheckpointRefused):
    """The ledger did not record the checkpoint the runtime resumed from in time."""

    code = "checkpoint_unconfirmed"


class OutputsRefused(LocalProtocolError):
    """The runtime will not sign outputs now (nothing new, unconfirmed resume, divergence)."""

    code = "outputs_refused"


class KeyRotationPending(LocalProtocolError):
    """A verified block rotates the key of a contract and the host has not staged the new
    version yet: the block is not applied (nothing changes); stage the key and retry."""

    code = "key_rotation_pending"

    def __init__(self, message: str, contract_id: bytes = b"", version: int = 0) -> None:
        super().__init__(message)
        self.contract_id = contract_id
        self.version = version


class NotWitnessed(RuntimeRefusal):
    """Not enough of the contract's executors vouched for the block its state is at (the
    witness rule, :mod:`sealbridge.runtime.witness`): nothing is released yet. Retry once
    the peers have seen the block."""

    code = "not_witnessed"


class WitnessUnavailable(RuntimeRefusal):
    """The enclave cannot witness that height (no verified chain, or too old to remember)."""

    code = "witness_unavailable"


class ReleaseBacklogFull(LocalProtocolError):
    """Too many receipts and messages wait for witnesses: the runtime applies no more
    blocks until peers vouch for the held ones (the block is not applied; retry)."""

    code = "release_backlog_full"
