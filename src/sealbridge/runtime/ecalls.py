"""The worker enclave's ECALL surface: names and message types on both sides.

The host calls ``handle.ecall(name, canonical bytes)``; :class:`WorkerEnclaveClient` wraps
that in typed methods so node code never handles raw bytes.
"""

from __future__ import annotations

from typing import Protocol

from sealbridge.core.encoding import Message, decode, encode
from sealbridge.keyservice.messages import KeyRequest
from sealbridge.runtime.messages import (
    BlockInput,
    BlockOutput,
    ContractStatus,
    InstallContract,
    SignedQuery,
    SignOutput,
)


class MakeKeyRequest(Message, frozen=True):
    contract_id: bytes


class StatusList(Message, frozen=True):
    contracts: list[ContractStatus]


class Signature(Message, frozen=True):
    signature: bytes


class SealedAnswer(Message, frozen=True):
    sealed: bytes


class Ecaller(Protocol):
    def ecall(self, name: str, payload: bytes) -> bytes: ...


class WorkerEnclaveClient:
    """Typed host-side calls into the worker enclave."""

    def __init__(self, enclave: Ecaller) -> None:
        self.enclave = enclave

    def make_key_request(self, contract_id: bytes) -> KeyRequest:
        out = self.enclave.ecall(
            "make_key_request", encode(MakeKeyRequest(contract_id=contract_id))
        )
        return decode(out, KeyRequest)

    def install_contract(self, request: InstallContract) -> ContractStatus:
        return decode(self.enclave.ecall("install_contract", encode(request)), ContractStatus)

    def process_block(self, block: BlockInput) -> BlockOutput:
        return decode(self.enclave.ecall("process_block", encode(block)), BlockOutput)

    def sign_output(self, request: SignOutput) -> bytes:
        return decode(self.enclave.ecall("sign_output", encode(request)), Signature).signature

    def answer_query(self, query_bytes: bytes) -> bytes:
        return decode(self.enclave.ecall("query", query_bytes), SealedAnswer).sealed

    def get_status(self) -> list[ContractStatus]:
        return decode(self.enclave.ecall("get_status", b""), StatusList).contracts


def decode_query(data: bytes) -> SignedQuery:
    return decode(data, SignedQuery)
