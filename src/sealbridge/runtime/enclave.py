"""The worker's enclave program: the ECALL table around :class:`WorkerRuntime`.

Runs inside the enclave process (``sealbridge.runtime.enclave:WorkerProgram``). Every
ECALL decodes its canonical input (malformed bytes become a typed EncodingError), calls
the runtime core and encodes the answer. Time comes from the enclave's platform clock.

The runtime core also has an *unverified* mode (no chain view: the host's lists of
commands and its install facts are taken as given), which tests and benchmarks drive
directly. :class:`WorkerProgram` does not offer it: it installs contracts and applies
blocks only after ``configure_chain`` (or ``restore_checkpoint``) started the verified
view, so a host cannot skip verification by never configuring it.
:class:`UnverifiedWorkerProgram` does offer it, for replay benchmarks; it is another
program with another measurement, which no key-release policy should name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sealbridge.core.encoding import decode, encode
from sealbridge.keyservice.ecalls import sign_heartbeat
from sealbridge.keyservice.messages import make_key_request
from sealbridge.runtime.ecalls import Blob, Empty, MakeKeyRequest, SealedAnswer, StatusList
from sealbridge.runtime.errors import ChainNotConfigured
from sealbridge.runtime.messages import (
    BlockInput,
    ChainConfig,
    InstallContract,
    MakeCheckpoint,
    RestoreCheckpoint,
    SignedQuery,
    SignOutputs,
    StageContractKey,
    WitnessedQuery,
    Witnesses,
    WitnessRequest,
)
from sealbridge.runtime.worker import WorkerRuntime
from sealbridge.tee.enclave import EnclaveContext


class WorkerProgram:
    requires_chain = True  # install and apply only with a verified chain view

    def __init__(self, ctx: EnclaveContext, clock: Callable[[], float] | None = None) -> None:
        clock = ctx.now if clock is None else clock
        self.ctx = ctx
        self.clock = clock
        self.runtime = WorkerRuntime(ctx)

    def get_ecalls(self) -> Mapping[str, Callable[[bytes], bytes]]:
        return {
            "make_key_request": self.make_key_request,
            "install_contract": self.install_contract,
            "stage_contract_key": self.stage_contract_key,
            "process_block": self.process_block,
            "configure_chain": self.configure_chain,
            "sign_outputs": self.sign_outputs,
            "make_checkpoint": self.make_checkpoint,
            "restore_checkpoint": self.restore_checkpoint,
            "query": self.query,
            "witness_block": self.witness_block,
            "release_outputs": self.release_outputs,
            "get_status": self.get_status,
            "sign_heartbeat": self.sign_heartbeat,
        }

    def make_key_request(self, payload: bytes) -> bytes:
        request = decode(payload, MakeKeyRequest)
        return encode(
            make_key_request(self.ctx, request.contract_id, int(self.clock()), request.version)
        )

    def require_chain(self) -> None:
        if self.requires_chain and self.runtime.view is None:
            raise ChainNotConfigured(
                "configure the verified chain view (configure_chain) before installing "
                "contracts or applying blocks"
            )

    def install_contract(self, payload: bytes) -> bytes:
        request = decode(payload, InstallContract)
        self.require_chain()
        return encode(self.runtime.install_contract(request))

    def stage_contract_key(self, payload: bytes) -> bytes:
        request = decode(payload, StageContractKey)
        self.require_chain()
        self.runtime.stage_contract_key(request)
        return encode(Empty())

    def process_block(self, payload: bytes) -> bytes:
        block = decode(payload, BlockInput)
        self.require_chain()
        return encode(self.runtime.process_block(block))

    def configure_chain(self, payload: bytes) -> bytes:
        self.runtime.configure_chain(decode(payload, ChainConfig))
        return encode(Empty())

    def sign_outputs(self, payload: bytes) -> bytes:
        return encode(self.runtime.sign_outputs(decode(payload, SignOutputs)))

    def make_checkpoint(self, payload: bytes) -> bytes:
        return encode(Blob(data=self.runtime.make_checkpoint(decode(payload, MakeCheckpoint))))

    def restore_checkpoint(self, payload: bytes) -> bytes:
        statuses = self.runtime.restore_checkpoint(decode(payload, RestoreCheckpoint))
        return encode(StatusList(contracts=statuses))

    def query(self, payload: bytes) -> bytes:
        request = decode(payload, WitnessedQuery)
        query = decode(request.query, SignedQuery)
        sealed = self.runtime.answer_query(query, int(self.clock()), request.witnesses)
        return encode(SealedAnswer(sealed=sealed))

    def witness_block(self, payload: bytes) -> bytes:
        return encode(self.runtime.witness_block(decode(payload, WitnessRequest)))

    def release_outputs(self, payload: bytes) -> bytes:
        return encode(self.runtime.release_outputs(decode(payload, Witnesses)))

    def get_status(self, payload: bytes) -> bytes:
        runtime = self.runtime
        return encode(
            StatusList(
                contracts=runtime.get_status(),
                chain_height=runtime.view.number if runtime.view is not None else 0,
                diverged={cid.hex(): why for cid, why in runtime.diverged.items()},
                awaiting_checkpoint_record=runtime.pending_checkpoint is not None,
                outputs_signed=runtime.outputs_signed,
                held=runtime.gate.held_items,
                dropped_receipts=runtime.gate.dropped_receipts,
            )
        )

    def sign_heartbeat(self, payload: bytes) -> bytes:
        """Sign this worker's NodeRegistry heartbeat (:func:`keyservice.ecalls.sign_heartbeat`)."""
        return sign_heartbeat(self.ctx, payload)


class UnverifiedWorkerProgram(WorkerProgram):
    """The worker runtime without a chain view: blocks and install facts are taken from
    the host as given. For replay benchmarks only; its measurement differs from
    :class:`WorkerProgram`'s, and no key-release policy should allow it."""

    requires_chain = False
