"""A worker runtime in its own process, for the cross-process determinism test.

Reads length-prefixed msgpack frames from stdin, each a :class:`ReplayJob`; for each job it
builds a fresh :class:`WorkerRuntime`, installs the contracts, replays the blocks and
writes back the state roots after every block (a :class:`ReplayResult` frame).
Run as ``python -m tests.integration.replay_worker``.
"""

from __future__ import annotations

import struct
import sys
from typing import BinaryIO

from sealbridge.core.encoding import Message, decode, encode
from sealbridge.crypto import ecies
from sealbridge.crypto.keyschedule import compute_contract_keys, key_release_aad
from sealbridge.runtime.messages import BlockInput, InstallContract
from sealbridge.runtime.worker import WorkerRuntime
from sealbridge.tee.enclave import EnclaveContext


class ContractSpec(Message, frozen=True):
    contract_id: bytes
    contract_key: bytes
    code_hash: bytes
    deployer_commitment: bytes
    workers: list[bytes]


class ReplayJob(Message, frozen=True):
    contracts: list[ContractSpec]
    blocks: list[bytes]  # canonical BlockInput


class ReplayResult(Message, frozen=True):
    roots: list[list[tuple[bytes, bytes]]]  # per block: (contract id, state root), sorted
    statuses: list[list[str]]  # per block: each receipt's status
    # per block: every sender's latest result (contract, sender, nonce, ok, error, gas)
    results: list[list[tuple[bytes, str, int, bool, str, int]]] = []


def read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(4)
    if len(header) < 4:
        return None
    (size,) = struct.unpack(">I", header)
    return stream.read(size)


def write_frame(stream: BinaryIO, data: bytes) -> None:
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def replay(job: ReplayJob) -> ReplayResult:
    worker = WorkerRuntime(
        EnclaveContext(
            program="tests:Replay", measurement=bytes(32), platform_private_key=bytes([9]) * 32
        )
    )
    identity = worker.enclave.identity
    for spec in job.contracts:
        keys = compute_contract_keys(spec.contract_id, spec.contract_key)
        worker.install_contract(
            InstallContract(
                contract_id=spec.contract_id,
                code_hash=spec.code_hash,
                contract_public_key=keys.command_public_key,
                wrapped_key=ecies.encrypt_to(
                    identity.encryption_key,
                    spec.contract_key,
                    key_release_aad(spec.contract_id, identity.identity_key),
                ),
                gatekeeper_key=b"\x00" * 32,
                deployer_commitment=spec.deployer_commitment,
                workers=spec.workers,
            )
        )
    roots: list[list[tuple[bytes, bytes]]] = []
    statuses: list[list[str]] = []
    results: list[list[tuple[bytes, str, int, bool, str, int]]] = []
    for raw in job.blocks:
        out = worker.process_block(decode(raw, BlockInput))
        statuses.append([r.status for r in out.receipts])
        roots.append(sorted((cid, runtime.state_root) for cid, runtime in worker.contracts.items()))
        results.append(
            sorted(
                (cid, sender, nonce, r.ok, r.error, r.gas_used)
                for cid, runtime in worker.contracts.items()
                for sender, (nonce, r) in runtime.last_results.items()
            )
        )
    return ReplayResult(roots=roots, statuses=statuses, results=results)


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (frame := read_frame(stdin)) is not None:
        write_frame(stdout, encode(replay(decode(frame, ReplayJob))))


if __name__ == "__main__":
    main()
