"""The management contracts' events, encoded exactly as the Vyper contracts emit them.

Theory of operation
-------------------
A worker's enclave reads the CommandInbox's, ContractRegistry's and ExecutionLedger's
events out of the receipts of blocks it verified
(:mod:`sealbridge.runtime.chainview`). For a simulated chain (and for tests) to give it
blocks it cannot tell from a node's, the events must be encoded as the contracts log
them: topic 0 is the keccak of the event's signature (the runtime's own constants),
indexed arguments are the next topics, and the rest is the ABI encoding of the
non-indexed arguments, in declaration order. Each function here makes one event; the
emitting contract's address is an argument, since a log from any other address is not
a fact to the runtime. Pure: no time, no randomness, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address

from sealbridge.chain.lightclient import EventLog
from sealbridge.runtime.chainview import (
    CHECKPOINT_RECORDED_TOPIC,
    COMMAND_TOPIC,
    DEPLOYED_TOPIC,
    KEY_PUBLISHED_TOPIC,
    OUTPUT_ACCEPTED_TOPIC,
)

__all__ = [
    "checkpoint_recorded_log",
    "command_log",
    "contract_deployed_log",
    "key_published_log",
    "output_accepted_log",
]


def command_log(
    contract_id: bytes, seq: int, ciphertext: bytes, *, sender: bytes, address: bytes
) -> EventLog:
    """``CommandInbox.Command(contract_id indexed, seq, sender, ciphertext)``."""
    return EventLog(
        address=address,
        topics=[COMMAND_TOPIC, contract_id],
        data=abi_encode(
            ["uint256", "address", "bytes"], [seq, to_checksum_address(sender), ciphertext]
        ),
    )


def contract_deployed_log(
    contract_id: bytes,
    *,
    code_hash: bytes,
    workers: Sequence[bytes],
    deployer_commitment: bytes,
    gatekeeper_id: bytes,
    deployer: bytes,
    address: bytes,
) -> EventLog:
    """``ContractRegistry.ContractDeployed(contract_id indexed, deployer, code_hash,
    gatekeeper_id, workers, deployer_commitment)``."""
    return EventLog(
        address=address,
        topics=[DEPLOYED_TOPIC, contract_id],
        data=abi_encode(
            ["address", "bytes32", "bytes32", "bytes32[]", "bytes32"],
            [
                to_checksum_address(deployer),
                code_hash,
                gatekeeper_id,
                list(workers),
                deployer_commitment,
            ],
        ),
    )


def key_published_log(
    contract_id: bytes,
    command_key: bytes,
    message_key: bytes,
    wrapped_key: bytes,
    *,
    address: bytes,
) -> EventLog:
    """``ContractRegistry.ContractKeyPublished(contract_id indexed, contract_public_key,
    message_key, wrapped_key)``."""
    return EventLog(
        address=address,
        topics=[KEY_PUBLISHED_TOPIC, contract_id],
        data=abi_encode(["bytes32", "bytes32", "bytes"], [command_key, message_key, wrapped_key]),
    )


def output_accepted_log(
    contract_id: bytes,
    *,
    start: int,
    end: int,
    end_hash: bytes,
    state_root: bytes,
    commands_applied: int,
    node_id: bytes,
    address: bytes,
) -> EventLog:
    """``ExecutionLedger.OutputAccepted(contract_id indexed, node_id indexed, start, end,
    end_hash, state_root, commands_applied)``."""
    return EventLog(
        address=address,
        topics=[OUTPUT_ACCEPTED_TOPIC, contract_id, node_id],
        data=abi_encode(
            ["uint256", "uint256", "bytes32", "bytes32", "uint256"],
            [start, end, end_hash, state_root, commands_applied],
        ),
    )


def checkpoint_recorded_log(
    blob_hash: bytes,
    *,
    height: int,
    block_hash: bytes,
    size: int,
    contract_ids: Sequence[bytes],
    inline_blob: bytes,
    node_id: bytes,
    address: bytes,
) -> EventLog:
    """``ExecutionLedger.CheckpointRecorded(blob_hash indexed, node_id indexed, height,
    block_hash, size, contract_ids, inline_blob)``."""
    return EventLog(
        address=address,
        topics=[CHECKPOINT_RECORDED_TOPIC, blob_hash, node_id],
        data=abi_encode(
            ["uint256", "bytes32", "uint256", "bytes32[]", "bytes"],
            [height, block_hash, size, list(contract_ids), inline_blob],
        ),
    )
