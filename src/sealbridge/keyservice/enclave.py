"""The gatekeeper's enclave program: genesis, sealing, and the ECALL table around
:class:`Gatekeeper` and its committee member.

Runs inside the enclave process (``sealbridge.keyservice.enclave:GatekeeperProgram``).
At genesis the enclave fixes the attestation policy, the committee contract it signs
for, the management contracts whose storage it reads and the block its header chain
starts from, sealed to this program's measurement (so a host cannot loosen the policy
later). The host feeds it the chain's headers (``advance_headers``; the newest one comes
back sealed, for restarts) and hands every key request in with ``eth_getProof`` proofs,
from which the enclave reads the request's chain facts itself
(:mod:`sealbridge.keyservice.chainfacts`).
There is no root key: the enclave's part of the root secret is a committee share, which
it seals after every change of the committee state (the host stores the blob and hands it
back on restart).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sealbridge.core.encoding import Message, decode, decode_canonical, encode
from sealbridge.core.errors import EncodingError, LocalProtocolError
from sealbridge.keyservice.chainfacts import (
    DEFAULT_MAX_FACTS_AGE,
    HeaderTip,
    HeaderTrack,
    ManagementBinding,
    read_chain_facts,
)
from sealbridge.keyservice.committee import ChainBinding, CommitteeState
from sealbridge.keyservice.ecalls import (
    GATEKEEPER_ADVANCE_HEADERS,
    GATEKEEPER_APPROVE_REGISTRATION,
    GATEKEEPER_GENESIS,
    GATEKEEPER_PUBLISH_CONTRACT_KEY,
    GATEKEEPER_RELEASE_PARTIAL,
    GATEKEEPER_RESTORE,
    MAKE_KEY_REQUEST,
    SIGN_HEARTBEAT,
    AdvanceHeaders,
    ChainTip,
    CommitteeEcalls,
    Genesis,
    MakeKeyRequest,
    PublishKey,
    ReleaseKey,
    Restore,
    SealedBlob,
    SignedHeartbeat,
    SignHeartbeat,
    sign_heartbeat,
)
from sealbridge.keyservice.gatekeeper import Gatekeeper, KeyRequestRefused
from sealbridge.keyservice.messages import (
    KeyRequest,
    KeyRequestBody,
    PublishedContractKey,
    RegistrationApproval,
    RegistrationRequest,
    make_key_request,
)
from sealbridge.keyservice.threshold_messages import PartialKeyRelease
from sealbridge.tee.ecall import NOTHING, Nothing, get_ecall_table
from sealbridge.tee.enclave import EnclaveContext, RawEcall
from sealbridge.tee.policy import AttestationPolicy

GENESIS_SEAL_LABEL = "sealbridge/gatekeeper-genesis/v3"
COMMITTEE_SEAL_LABEL = "sealbridge/gatekeeper-committee/v1"
CHAIN_TIP_SEAL_LABEL = "sealbridge/gatekeeper-chain-tip/v1"


class GenesisRecord(Message, frozen=True):
    policy: AttestationPolicy
    chain: ChainBinding
    management: ManagementBinding
    anchor: HeaderTip
    max_facts_age: int = DEFAULT_MAX_FACTS_AGE


class GatekeeperNotReady(LocalProtocolError):
    code = "gatekeeper_not_ready"


class GatekeeperProgram:
    def __init__(self, ctx: EnclaveContext, clock: Callable[[], float] | None = None) -> None:
        clock = ctx.now if clock is None else clock
        self.ctx = ctx
        self.clock = clock
        self.core: Gatekeeper | None = None
        self.record: GenesisRecord | None = None
        self.headers: HeaderTrack | None = None
        self.committee_calls = CommitteeEcalls(
            lambda: self._ready().committee, self._seal_committee, clock
        )

    def get_ecalls(self) -> Mapping[str, RawEcall]:
        return get_ecall_table(self, self.committee_calls)

    def _start(self, record: GenesisRecord) -> Gatekeeper:
        self.core = Gatekeeper(
            enclave=self.ctx, policy=record.policy, measurement=self.ctx.measurement
        )
        self.core.committee.chain = record.chain
        self.record = record
        self.headers = HeaderTrack(record.anchor)
        return self.core

    def _ready(self) -> Gatekeeper:
        if self.core is None:
            raise GatekeeperNotReady("the gatekeeper is not set up yet (genesis or restore)")
        return self.core

    def _seal_committee(self, state: CommitteeState) -> bytes:
        return self.ctx.seal(encode(state), COMMITTEE_SEAL_LABEL)

    @GATEKEEPER_GENESIS.handler
    def genesis(self, request: Genesis) -> SealedBlob:
        if self.core is not None:
            raise GatekeeperNotReady("genesis already happened in this enclave")
        if request.max_facts_age <= 0:
            raise GatekeeperNotReady("max_facts_age must be positive")
        record = GenesisRecord(
            policy=request.policy,
            chain=request.chain,
            management=request.management,
            anchor=request.anchor,
            max_facts_age=request.max_facts_age,
        )
        self._start(record)
        return SealedBlob(sealed=self.ctx.seal(encode(record), GENESIS_SEAL_LABEL))

    @GATEKEEPER_RESTORE.handler
    def restore(self, request: Restore) -> Nothing:
        if self.core is not None:
            raise GatekeeperNotReady("this enclave is set up already (restore once, at start)")
        core = self._start(
            decode(self.ctx.unseal(request.genesis, GENESIS_SEAL_LABEL), GenesisRecord)
        )
        if request.committee:
            state = decode(self.ctx.unseal(request.committee, COMMITTEE_SEAL_LABEL), CommitteeState)
            core.committee.restore_state(state)
        if request.chain_tip:
            # an older tip than the newest is harmless: the headers after it come again
            tip = decode(self.ctx.unseal(request.chain_tip, CHAIN_TIP_SEAL_LABEL), HeaderTip)
            if tip.number > self._track().tip.number:
                self.headers = HeaderTrack(tip)
        return NOTHING

    def _track(self) -> HeaderTrack:
        if self.headers is None:
            raise GatekeeperNotReady("the gatekeeper is not set up yet (genesis or restore)")
        return self.headers

    @GATEKEEPER_ADVANCE_HEADERS.handler
    def advance_headers(self, request: AdvanceHeaders) -> ChainTip:
        """Verify and take the next headers of the chain; the new tip comes back sealed."""
        tip = self._track().advance(request.headers)
        return ChainTip(tip=tip, sealed=self.ctx.seal(encode(tip), CHAIN_TIP_SEAL_LABEL))

    @GATEKEEPER_APPROVE_REGISTRATION.handler
    def approve_registration(self, request: RegistrationRequest) -> RegistrationApproval:
        return self._ready().approve_registration(request, int(self.clock()))

    @MAKE_KEY_REQUEST.handler
    def make_key_request(self, request: MakeKeyRequest) -> KeyRequest:
        return make_key_request(self.ctx, request.contract_id, int(self.clock()), request.version)

    @GATEKEEPER_RELEASE_PARTIAL.handler
    def release_partial(self, request: ReleaseKey) -> PartialKeyRelease:
        """Read the request's chain facts from its state proofs (at a header this enclave
        verified), then release the partial if they entitle the requester."""
        core = self._ready()
        if self.record is None:
            raise GatekeeperNotReady("the gatekeeper is not set up yet (genesis or restore)")
        try:
            body = decode_canonical(request.request.body, KeyRequestBody)
        except EncodingError as exc:
            raise KeyRequestRefused(f"key request is malformed: {exc.message}") from exc
        verified = read_chain_facts(
            self.record.management,
            self._track(),
            request.proof,
            body.contract_id,
            body.worker_id,
            requester_keys=request.request.node,
            now=int(self.clock()),
            max_age=self.record.max_facts_age,
        )
        return core.release_partial(
            request.request,
            verified.facts,
            int(self.clock()),
            committee_era=verified.committee_era,
        )

    @GATEKEEPER_PUBLISH_CONTRACT_KEY.handler
    def publish_contract_key(self, request: PublishKey) -> PublishedContractKey:
        return self._ready().publish_contract_key(request.request, request.releases)

    @SIGN_HEARTBEAT.handler
    def sign_heartbeat(self, request: SignHeartbeat) -> SignedHeartbeat:
        """Sign this gatekeeper's heartbeat (see :func:`keyservice.ecalls.sign_heartbeat`)."""
        return sign_heartbeat(self.ctx, request)
