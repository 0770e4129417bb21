"""The worker enclave's ECALL surface: names and message types on both sides.

The host calls ``handle.ecall(name, canonical bytes)``; :class:`WorkerEnclaveClient` wraps
that in typed methods so node code never handles raw bytes.
"""

from __future__ import annotations

from typing import Protocol

from sealbridge.core.encoding import Message, decode, encode
from sealbridge.keyservice.ecalls import (
    MakeKeyRequest,
    SignedHeartbeat,
    SignHeartbeat,
    call_sign_heartbeat,
)
from sealbridge.keyservice.messages import KeyRequest
from sealbridge.runtime.messages import (
    BlockInput,
    BlockOutput,
    BlockWitness,
    ChainConfig,
    ContractStatus,
    InstallContract,
    MakeCheckpoint,
    ReleasedOutputs,
    RestoreCheckpoint,
    SignedOutputs,
    SignedQuery,
    SignOutputs,
    StageContractKey,
    WitnessedQuery,
    Witnesses,
    WitnessRequest,
)

__all__ = ["MakeKeyRequest", "StatusList", "WorkerEnclaveClient", "decode_query"]


class StatusList(Message, frozen=True):
    contracts: list[ContractStatus]
    chain_height: int = 0  # the newest verified block (0: no verified view)
    diverged: dict[str, str] = {}  # contract hex -> why its outputs are withheld
    awaiting_checkpoint_record: bool = False
    outputs_signed: int = 0
    held: int = 0  # receipts and messages waiting for witnesses
    dropped_receipts: int = 0  # held receipts dropped for room


class Blob(Message, frozen=True):
    data: bytes


class Empty(Message, frozen=True):
    pass


class SealedAnswer(Message, frozen=True):
    sealed: bytes


class Ecaller(Protocol):
    def ecall(self, name: str, payload: bytes) -> bytes: ...


class WorkerEnclaveClient:
    """Typed host-side calls into the worker enclave."""

    def __init__(self, enclave: Ecaller) -> None:
        self.enclave = enclave

    def make_key_request(self, contract_id: bytes, version: int = 0) -> KeyRequest:
        request = MakeKeyRequest(contract_id=contract_id, version=version)
        return decode(self.enclave.ecall("make_key_request", encode(request)), KeyRequest)

    def stage_contract_key(self, request: StageContractKey) -> None:
        self.enclave.ecall("stage_contract_key", encode(request))

    def install_contract(self, request: InstallContract) -> ContractStatus:
        return decode(self.enclave.ecall("install_contract", encode(request)), ContractStatus)

    def process_block(self, block: BlockInput) -> BlockOutput:
        return decode(self.enclave.ecall("process_block", encode(block)), BlockOutput)

    def configure_chain(self, config: ChainConfig) -> None:
        self.enclave.ecall("configure_chain", encode(config))

    def sign_outputs(self, request: SignOutputs) -> SignedOutputs:
        return decode(self.enclave.ecall("sign_outputs", encode(request)), SignedOutputs)

    def make_checkpoint(self, contract_ids: list[bytes]) -> bytes:
        out = self.enclave.ecall(
            "make_checkpoint", encode(MakeCheckpoint(contract_ids=contract_ids))
        )
        return decode(out, Blob).data

    def restore_checkpoint(self, request: RestoreCheckpoint) -> list[ContractStatus]:
        return decode(
            self.enclave.ecall("restore_checkpoint", encode(request)), StatusList
        ).contracts

    def sign_heartbeat(self, request: SignHeartbeat) -> SignedHeartbeat:
        """The enclave signs this worker's NodeRegistry heartbeat for (era, slot)."""
        return call_sign_heartbeat(self.enclave, request)

    def answer_query(
        self, query_bytes: bytes, witnesses: list[BlockWitness] | None = None
    ) -> bytes:
        """The enclave's sealed answer to a caller's signed query (bytes as the caller
        sent them), with the peers' witnesses the witness rule needs."""
        request = WitnessedQuery(query=query_bytes, witnesses=witnesses or [])
        return decode(self.enclave.ecall("query", encode(request)), SealedAnswer).sealed

    def witness_block(self, height: int) -> BlockWitness:
        """The enclave's signed word for block ``height`` (or its newest, if lower)."""
        out = self.enclave.ecall("witness_block", encode(WitnessRequest(height=height)))
        return decode(out, BlockWitness)

    def release_outputs(self, witnesses: list[BlockWitness]) -> ReleasedOutputs:
        """Hand peers' witnesses over; get the receipts and messages they release."""
        out = self.enclave.ecall("release_outputs", encode(Witnesses(witnesses=witnesses)))
        return decode(out, ReleasedOutputs)

    def get_status(self) -> list[ContractStatus]:
        return self.get_runtime_status().contracts

    def get_runtime_status(self) -> StatusList:
        return decode(self.enclave.ecall("get_status", b""), StatusList)


def decode_query(data: bytes) -> SignedQuery:
    return decode(data, SignedQuery)
