"""Test helpers for the witness rule: honest peers' witnesses of a runtime's own blocks.

Every enclave made by ``make_enclave`` is remembered here, so a test can have the other
executors of a runtime's contracts vouch for the blocks the runtime verified (as their
enclaves would, having verified the same chain)."""

from __future__ import annotations

from sealbridge.core.encoding import encode
from sealbridge.runtime.messages import (
    WITNESS_SIGN_TAG,
    BlockOutput,
    BlockWitness,
    ChainConfig,
    WitnessBody,
    Witnesses,
)
from sealbridge.runtime.worker import WorkerRuntime
from sealbridge.tee.enclave import EnclaveKeys

KNOWN_ENCLAVES: dict[bytes, EnclaveKeys] = {}


def remember(enclave: EnclaveKeys) -> EnclaveKeys:
    KNOWN_ENCLAVES[enclave.identity.identity_key] = enclave
    return enclave


def sign_witness(
    peer: EnclaveKeys, config: ChainConfig, height: int, block_hash: bytes
) -> BlockWitness:
    body = encode(
        WitnessBody(
            chain_id=config.chain_id,
            command_inbox=config.command_inbox,
            height=height,
            block_hash=block_hash,
        )
    )
    return BlockWitness(
        worker=peer.identity.identity_key,
        body=body,
        signature=peer.sign_identity(WITNESS_SIGN_TAG + body),
    )


def peer_witnesses(worker: WorkerRuntime, height: int | None = None) -> list[BlockWitness]:
    """Witnesses of ``worker``'s block ``height`` (default: its newest) by every other
    known executor of its contracts."""
    if worker.view is None:
        return []
    at = worker.gate.tip if height is None else height
    peers = {w for runtime in worker.contracts.values() for w in runtime.workers} - {
        worker.identity_key
    }
    return [
        sign_witness(KNOWN_ENCLAVES[w], worker.view.config, at, worker.gate.hashes[at])
        for w in sorted(peers)
        if w in KNOWN_ENCLAVES
    ]


def with_released(worker: WorkerRuntime, output: BlockOutput) -> BlockOutput:
    """The block's output with what honest peers' witnesses release at once (what a
    host that fetched them would get)."""
    if not output.held:
        return output
    released = worker.release_outputs(Witnesses(witnesses=peer_witnesses(worker)))
    return BlockOutput(
        number=output.number,
        contracts=output.contracts,
        receipts=sorted(
            [*output.receipts, *(r for b in released.blocks for r in b.receipts)],
            key=lambda r: r.seq,
        ),
        messages=[*output.messages, *(m for b in released.blocks for m in b.messages)],
        held=released.held,
    )
