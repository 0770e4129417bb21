"""The worker's enclave program: the ECALL table around :class:`WorkerRuntime`.

Runs inside the enclave process (``sealbridge.runtime.enclave:WorkerProgram``). Every
ECALL is declared in ``runtime/ecalls.py`` (:class:`~sealbridge.tee.ecall.Ecall`); its
handler here takes the decoded request (malformed bytes are refused with a typed
EncodingError before it runs), calls the runtime core and returns the answer. Time comes
from the enclave's platform clock.

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

from sealbridge.core.encoding import decode
from sealbridge.keyservice.ecalls import SignedHeartbeat, SignHeartbeat, sign_heartbeat
from sealbridge.keyservice.messages import KeyRequest, make_key_request
from sealbridge.runtime.ecalls import (
    MAKE_KEY_REQUEST,
    SIGN_HEARTBEAT,
    WORKER_CONFIGURE_CHAIN,
    WORKER_INSTALL_CONTRACT,
    WORKER_MAKE_CHECKPOINT,
    WORKER_PROCESS_BLOCK,
    WORKER_QUERY,
    WORKER_RELEASE_OUTPUTS,
    WORKER_RESTORE_CHECKPOINT,
    WORKER_SIGN_OUTPUTS,
    WORKER_STAGE_CONTRACT_KEY,
    WORKER_STATUS,
    WORKER_WITNESS_BLOCK,
    Blob,
    MakeKeyRequest,
    SealedAnswer,
    StatusList,
)
from sealbridge.runtime.errors import ChainNotConfigured
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
from sealbridge.runtime.worker import WorkerRuntime
from sealbridge.tee.ecall import NOTHING, Nothing, get_ecall_table
from sealbridge.tee.enclave import EnclaveContext, RawEcall


class WorkerProgram:
    requires_chain = True  # install and apply only with a verified chain view

    def __init__(self, ctx: EnclaveContext, clock: Callable[[], float] | None = None) -> None:
        clock = ctx.now if clock is None else clock
        self.ctx = ctx
        self.clock = clock
        self.runtime = WorkerRuntime(ctx)

    def get_ecalls(self) -> Mapping[str, RawEcall]:
        return get_ecall_table(self)

    @MAKE_KEY_REQUEST.handler
    def make_key_request(self, request: MakeKeyRequest) -> KeyRequest:
        return make_key_request(self.ctx, request.contract_id, int(self.clock()), request.version)

    def require_chain(self) -> None:
        if self.requires_chain and self.runtime.view is None:
            raise ChainNotConfigured(
                "configure the verified chain view (configure_chain) before installing "
                "contracts or applying blocks"
            )

    @WORKER_INSTALL_CONTRACT.handler
    def install_contract(self, request: InstallContract) -> ContractStatus:
        self.require_chain()
        return self.runtime.install_contract(request)

    @WORKER_STAGE_CONTRACT_KEY.handler
    def stage_contract_key(self, request: StageContractKey) -> Nothing:
        self.require_chain()
        self.runtime.stage_contract_key(request)
        return NOTHING

    @WORKER_PROCESS_BLOCK.handler
    def process_block(self, block: BlockInput) -> BlockOutput:
        self.require_chain()
        return self.runtime.process_block(block)

    @WORKER_CONFIGURE_CHAIN.handler
    def configure_chain(self, config: ChainConfig) -> Nothing:
        self.runtime.configure_chain(config)
        return NOTHING

    @WORKER_SIGN_OUTPUTS.handler
    def sign_outputs(self, request: SignOutputs) -> SignedOutputs:
        return self.runtime.sign_outputs(request)

    @WORKER_MAKE_CHECKPOINT.handler
    def make_checkpoint(self, request: MakeCheckpoint) -> Blob:
        return Blob(data=self.runtime.make_checkpoint(request))

    @WORKER_RESTORE_CHECKPOINT.handler
    def restore_checkpoint(self, request: RestoreCheckpoint) -> StatusList:
        return StatusList(contracts=self.runtime.restore_checkpoint(request))

    @WORKER_QUERY.handler
    def query(self, request: WitnessedQuery) -> SealedAnswer:
        query = decode(request.query, SignedQuery)
        sealed = self.runtime.answer_query(query, int(self.clock()), request.witnesses)
        return SealedAnswer(sealed=sealed)

    @WORKER_WITNESS_BLOCK.handler
    def witness_block(self, request: WitnessRequest) -> BlockWitness:
        return self.runtime.witness_block(request)

    @WORKER_RELEASE_OUTPUTS.handler
    def release_outputs(self, request: Witnesses) -> ReleasedOutputs:
        return self.runtime.release_outputs(request)

    @WORKER_STATUS.handler
    def get_status(self, _: Nothing) -> StatusList:
        runtime = self.runtime
        return StatusList(
            contracts=runtime.get_status(),
            chain_height=runtime.view.number if runtime.view is not None else 0,
            diverged={cid.hex(): why for cid, why in runtime.diverged.items()},
            awaiting_checkpoint_record=runtime.pending_checkpoint is not None,
            outputs_signed=runtime.outputs_signed,
            held=runtime.gate.held_items,
            dropped_receipts=runtime.gate.dropped_receipts,
        )

    @SIGN_HEARTBEAT.handler
    def sign_heartbeat(self, request: SignHeartbeat) -> SignedHeartbeat:
        """Sign this worker's NodeRegistry heartbeat (:func:`keyservice.ecalls.sign_heartbeat`)."""
        return sign_heartbeat(self.ctx, request)


class UnverifiedWorkerProgram(WorkerProgram):
    """The worker runtime without a chain view: blocks and install facts are taken from
    the host as given. For replay benchmarks only; its measurement differs from
    :class:`WorkerProgram`'s, and no key-release policy should allow it."""

    requires_chain = False
