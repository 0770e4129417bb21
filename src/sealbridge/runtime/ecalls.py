"""The worker enclave's ECALL surface: its messages and typed ECALL declarations
(:class:`~sealbridge.tee.ecall.Ecall`), read by the enclave
(:class:`~sealbridge.runtime.enclave.WorkerProgram`) and by its host alike.

The host calls ``tee.ecall.call(enclave, WORKER_PROCESS_BLOCK, block)`` and gets a
:class:`~sealbridge.runtime.messages.BlockOutput` back; node code never handles an
ECALL's bytes. The worker also serves the shared :data:`MAKE_KEY_REQUEST` and
:data:`SIGN_HEARTBEAT` (``keyservice/ecalls.py``).
"""

from __future__ import annotations

from sealbridge.core.encoding import Message, decode
from sealbridge.keyservice.ecalls import MAKE_KEY_REQUEST, SIGN_HEARTBEAT, MakeKeyRequest
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
from sealbridge.tee.ecall import Ecall, Nothing

__all__ = [
    "MAKE_KEY_REQUEST",
    "SIGN_HEARTBEAT",
    "WORKER_CONFIGURE_CHAIN",
    "WORKER_INSTALL_CONTRACT",
    "WORKER_MAKE_CHECKPOINT",
    "WORKER_PROCESS_BLOCK",
    "WORKER_QUERY",
    "WORKER_RELEASE_OUTPUTS",
    "WORKER_RESTORE_CHECKPOINT",
    "WORKER_SIGN_OUTPUTS",
    "WORKER_STAGE_CONTRACT_KEY",
    "WORKER_STATUS",
    "WORKER_WITNESS_BLOCK",
    "Blob",
    "MakeKeyRequest",
    "SealedAnswer",
    "StatusList",
    "decode_query",
]


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


class SealedAnswer(Message, frozen=True):
    sealed: bytes


# --- the ECALLs (names and types, for both sides) -----------------------------------------

WORKER_CONFIGURE_CHAIN = Ecall("configure_chain", ChainConfig, Nothing)
WORKER_INSTALL_CONTRACT = Ecall("install_contract", InstallContract, ContractStatus)
WORKER_STAGE_CONTRACT_KEY = Ecall("stage_contract_key", StageContractKey, Nothing)
WORKER_PROCESS_BLOCK = Ecall("process_block", BlockInput, BlockOutput)
WORKER_SIGN_OUTPUTS = Ecall("sign_outputs", SignOutputs, SignedOutputs)
WORKER_MAKE_CHECKPOINT = Ecall("make_checkpoint", MakeCheckpoint, Blob)  # the sealed blob
# the contracts a checkpoint restored (``StatusList.contracts``)
WORKER_RESTORE_CHECKPOINT = Ecall("restore_checkpoint", RestoreCheckpoint, StatusList)
# a caller's signed query (bytes as the caller sent them) with the peers' witnesses the
# witness rule needs -> the enclave's answer, sealed to the caller
WORKER_QUERY = Ecall("query", WitnessedQuery, SealedAnswer)
# the enclave's signed word for a block (or its newest, if lower)
WORKER_WITNESS_BLOCK = Ecall("witness_block", WitnessRequest, BlockWitness)
# peers' witnesses handed over -> the receipts and messages they release
WORKER_RELEASE_OUTPUTS = Ecall("release_outputs", Witnesses, ReleasedOutputs)
WORKER_STATUS = Ecall("get_status", Nothing, StatusList)


def decode_query(data: bytes) -> SignedQuery:
    return decode(data, SignedQuery)
