"""The runtime's view of the chain: verified blocks and the management events in them.

Theory of operation
-------------------
The host is untrusted, so the runtime does not take its word for what a block holds. For
every block the host hands over the full header fields and *all* receipts
(:class:`~sealbridge.chain.lightclient.BlockEvidence`). :class:`ChainView` recomputes the
header hash and the receipts root (:mod:`sealbridge.chain.lightclient`), requires the
header to link to the last block it accepted (``number = last + 1``,
``parent_hash = last hash``) and only then reads the logs of the four management
contracts out of the receipts itself:

* ``CommandInbox.Command`` -- the commands and messages addressed to contracts;
* ``ContractRegistry.ContractDeployed`` -- what a contract must be installed with: its
  code hash, deployer commitment, executor set and publishing gatekeeper (the runtime
  refuses an install whose host-supplied facts differ from these);
* ``ContractRegistry.ContractKeyPublished`` -- the directory of contract keys;
* ``ContractRegistry.ContractKeyRotated`` -- a new key version (the directory changes, and
  the contract's executors switch to the new key after this block);
* ``ExecutionLedger.OutputAccepted`` -- the outputs the ledger accepted (competitive
  execution: the runtime checks them against its own roots);
* ``ExecutionLedger.CheckpointRecorded`` -- checkpoints (recovery waits for its own).

A host that drops, injects, reorders or alters an event changes the receipts root; one
that forges a header changes its hash; one that skips or repeats a block breaks the link.
Each is a typed :class:`~sealbridge.chain.lightclient.LightClientError` and nothing moves.
:meth:`ChainView.verify` checks without moving; :meth:`ChainView.advance` moves after the
block was applied, so a block that fails to apply can be offered again.

The chain of headers starts at a trusted anchor: the block of a sealed state or of a
checkpoint (authenticated by the contract's state key), or, for a worker that has no
state yet, the block its host names when it starts (trust on first use). A devnet chain
has no consensus proof to check, so a host could fabricate a whole fork from the anchor;
what stops that fork from mattering is the ExecutionLedger, which accepts an output only
if its end hash is the chain's own ``blockhash(end)``.
"""

from __future__ import annotations

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

from sealbridge.chain.lightclient import (
    BlockEvidence,
    BrokenHeaderLink,
    HeaderChain,
    VerifiedBlock,
    verify_block,
)
from sealbridge.core.encoding import Message
from sealbridge.runtime.errors import ChainNotConfigured, MalformedEvent
from sealbridge.runtime.messages import ChainConfig, DirectoryEntry, InboxCommand

COMMAND_TOPIC = bytes(keccak(text="Command(bytes32,uint256,address,bytes)"))
DEPLOYED_TOPIC = bytes(
    keccak(text="ContractDeployed(bytes32,address,bytes32,bytes32,bytes32[],bytes32)")
)
KEY_PUBLISHED_TOPIC = bytes(keccak(text="ContractKeyPublished(bytes32,bytes32,bytes32,bytes)"))
OUTPUT_ACCEPTED_TOPIC = bytes(
    keccak(text="OutputAccepted(bytes32,bytes32,uint256,uint256,bytes32,bytes32,uint256)")
)
KEY_ROTATED_TOPIC = bytes(keccak(text="ContractKeyRotated(bytes32,uint256,bytes32,bytes32)"))
CHECKPOINT_RECORDED_TOPIC = bytes(
    keccak(text="CheckpointRecorded(bytes32,bytes32,uint256,bytes32,uint256,bytes32[],bytes)")
)


class DeploymentEvent(Message, frozen=True):
    """``ContractRegistry.ContractDeployed``: the facts a contract is installed with."""

    contract_id: bytes
    code_hash: bytes
    gatekeeper_id: bytes
    workers: list[bytes]
    deployer_commitment: bytes


class AcceptedOutputEvent(Message, frozen=True):
    contract_id: bytes
    node_id: bytes
    start: int
    end: int
    end_hash: bytes
    state_root: bytes
    commands_applied: int


class KeyRotationEvent(Message, frozen=True):
    contract_id: bytes
    version: int
    command_key: bytes
    message_key: bytes


class CheckpointEvent(Message, frozen=True):
    blob_hash: bytes
    node_id: bytes
    height: int
    block_hash: bytes
    size: int
    contract_ids: list[bytes]


class BlockFacts(Message, frozen=True):
    """What a verified block says to the runtime, in chain order."""

    block: VerifiedBlock
    commands: list[InboxCommand]
    directory: list[DirectoryEntry]
    outputs: list[AcceptedOutputEvent]
    checkpoints: list[CheckpointEvent]
    rotations: list[KeyRotationEvent] = []
    deployments: list[DeploymentEvent] = []


def _topic_bytes32(topics: list[bytes], index: int) -> bytes:
    if len(topics) <= index or len(topics[index]) != 32:
        raise MalformedEvent(f"event lacks indexed topic {index}")
    return topics[index]


def _decode(types: list[str], data: bytes, what: str) -> tuple[object, ...]:
    try:
        return tuple(abi_decode(types, data))
    except (DecodingError, ValueError, TypeError, OverflowError) as exc:
        raise MalformedEvent(f"{what} event data does not decode: {exc}") from exc


class ChainView:
    """Verified blocks from a trusted anchor, and the management events they hold."""

    def __init__(self, config: ChainConfig) -> None:
        self.config = config
        self.headers = HeaderChain(config.anchor_number, config.anchor_hash)

    @property
    def number(self) -> int:
        return self.headers.number

    @property
    def hash(self) -> bytes:
        return self.headers.hash

    def verify(self, evidence: BlockEvidence) -> BlockFacts:
        """Verify the next block against the chain so far and read its events; moves
        nothing (see :meth:`advance`)."""
        block = verify_block(evidence, parent_hash=self.headers.hash)
        if block.number != self.headers.number + 1:
            # verify_block checked the parent link; the number must follow as well
            raise BrokenHeaderLink(
                f"expected block {self.headers.number + 1}, the host gave block {block.number}"
            )
        return self.read_events(block)

    def advance(self, evidence: BlockEvidence) -> None:
        """Accept the block verified by :meth:`verify` as the new head."""
        self.headers.process(evidence)

    def read_events(self, block: VerifiedBlock) -> BlockFacts:
        commands: list[InboxCommand] = []
        directory: list[DirectoryEntry] = []
        outputs: list[AcceptedOutputEvent] = []
        checkpoints: list[CheckpointEvent] = []
        rotations: list[KeyRotationEvent] = []
        deployments: list[DeploymentEvent] = []
        cfg = self.config
        for log in block.logs:
            if not log.topics:
                continue
            topic = log.topics[0]
            if log.address == cfg.command_inbox and topic == COMMAND_TOPIC:
                seq, _sender, ciphertext = _decode(
                    ["uint256", "address", "bytes"], log.data, "Command"
                )
                commands.append(
                    InboxCommand(
                        contract_id=_topic_bytes32(log.topics, 1),
                        seq=int(seq),  # type: ignore[call-overload]
                        tx_index=log.tx_index,
                        log_index=log.log_index,
                        ciphertext=bytes(ciphertext),  # type: ignore[call-overload]
                    )
                )
            elif log.address == cfg.contract_registry and topic == DEPLOYED_TOPIC:
                _deployer, code_hash, gatekeeper, workers, commitment = _decode(
                    ["address", "bytes32", "bytes32", "bytes32[]", "bytes32"],
                    log.data,
                    "ContractDeployed",
                )
                deployments.append(
                    DeploymentEvent(
                        contract_id=_topic_bytes32(log.topics, 1),
                        code_hash=bytes(code_hash),  # type: ignore[call-overload]
                        gatekeeper_id=bytes(gatekeeper),  # type: ignore[call-overload]
                        workers=[bytes(w) for w in workers],  # type: ignore[attr-defined]
                        deployer_commitment=bytes(commitment),  # type: ignore[call-overload]
                    )
                )
            elif log.address == cfg.contract_registry and topic == KEY_PUBLISHED_TOPIC:
                command_key, message_key, _wrapped = _decode(
                    ["bytes32", "bytes32", "bytes"], log.data, "ContractKeyPublished"
                )
                directory.append(
                    DirectoryEntry(
                        contract_id=_topic_bytes32(log.topics, 1),
                        command_key=bytes(command_key),  # type: ignore[call-overload]
                        message_key=bytes(message_key),  # type: ignore[call-overload]
                    )
                )
            elif log.address == cfg.contract_registry and topic == KEY_ROTATED_TOPIC:
                version, command_key, message_key = _decode(
                    ["uint256", "bytes32", "bytes32"], log.data, "ContractKeyRotated"
                )
                rotation = KeyRotationEvent(
                    contract_id=_topic_bytes32(log.topics, 1),
                    version=int(version),  # type: ignore[call-overload]
                    command_key=bytes(command_key),  # type: ignore[call-overload]
                    message_key=bytes(message_key),  # type: ignore[call-overload]
                )
                rotations.append(rotation)
                directory.append(
                    DirectoryEntry(
                        contract_id=rotation.contract_id,
                        command_key=rotation.command_key,
                        message_key=rotation.message_key,
                    )
                )
            elif log.address == cfg.execution_ledger and topic == OUTPUT_ACCEPTED_TOPIC:
                start, end, end_hash, root, applied = _decode(
                    ["uint256", "uint256", "bytes32", "bytes32", "uint256"],
                    log.data,
                    "OutputAccepted",
                )
                outputs.append(
                    AcceptedOutputEvent(
                        contract_id=_topic_bytes32(log.topics, 1),
                        node_id=_topic_bytes32(log.topics, 2),
                        start=int(start),  # type: ignore[call-overload]
                        end=int(end),  # type: ignore[call-overload]
                        end_hash=bytes(end_hash),  # type: ignore[call-overload]
                        state_root=bytes(root),  # type: ignore[call-overload]
                        commands_applied=int(applied),  # type: ignore[call-overload]
                    )
                )
            elif log.address == cfg.execution_ledger and topic == CHECKPOINT_RECORDED_TOPIC:
                height, block_hash, size, contract_ids, _inline = _decode(
                    ["uint256", "bytes32", "uint256", "bytes32[]", "bytes"],
                    log.data,
                    "CheckpointRecorded",
                )
                checkpoints.append(
                    CheckpointEvent(
                        blob_hash=_topic_bytes32(log.topics, 1),
                        node_id=_topic_bytes32(log.topics, 2),
                        height=int(height),  # type: ignore[call-overload]
                        block_hash=bytes(block_hash),  # type: ignore[call-overload]
                        size=int(size),  # type: ignore[call-overload]
                        contract_ids=[bytes(c) for c in contract_ids],  # type: ignore[attr-defined]
                    )
                )
        return BlockFacts(
            block=block,
            commands=commands,
            directory=directory,
            outputs=outputs,
            checkpoints=checkpoints,
            rotations=rotations,
            deployments=deployments,
        )


def require_view(view: ChainView | None) -> ChainView:
    if view is None:
        raise ChainNotConfigured("the runtime has no verified view of the chain yet")
    return view
