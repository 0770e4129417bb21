"""The gatekeeper's enclave program: genesis, sealing, and the ECALL table around
:class:`Gatekeeper` and its committee member.

Runs inside the enclave process (``sealbridge.keyservice.enclave:GatekeeperProgram``).
At genesis the enclave fixes the attestation policy and the committee contract it signs
for, sealed to this program's measurement (so a host cannot loosen the policy later).
There is no root key: the enclave's part of the root secret is a committee share, which
it seals after every change of the committee state (the host stores the blob and hands it
back on restart).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from sealbridge.core.encoding import Message, decode, encode
from sealbridge.core.errors import LocalProtocolError
from sealbridge.keyservice.committee import ChainBinding, CommitteeState, Dealing
from sealbridge.keyservice.ecalls import (
    Activate,
    CommitteeStatus,
    DealingOut,
    Elected,
    ElectedOut,
    EraRef,
    Finish,
    FinishOut,
    Genesis,
    MakeKeyRequest,
    PublishKey,
    ReleaseKey,
    Restore,
    SealedBlob,
    sign_heartbeat,
)
from sealbridge.keyservice.gatekeeper import Gatekeeper
from sealbridge.keyservice.messages import RegistrationRequest, make_key_request
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.policy import AttestationPolicy

GENESIS_SEAL_LABEL = "sealbridge/gatekeeper-genesis/v2"
COMMITTEE_SEAL_LABEL = "sealbridge/gatekeeper-committee/v1"


class GenesisRecord(Message, frozen=True):
    policy: AttestationPolicy
    chain: ChainBinding


class GatekeeperNotReady(LocalProtocolError):
    code = "gatekeeper_not_ready"


class GatekeeperProgram:
    def __init__(self, ctx: EnclaveContext, clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.clock = clock
        self.core: Gatekeeper | None = None

    def get_ecalls(self) -> Mapping[str, Callable[[bytes], bytes]]:
        return {
            "genesis": self.genesis,
            "restore": self.restore,
            "approve_registration": self.approve_registration,
            "make_key_request": self.make_key_request,
            "release_partial": self.release_partial,
            "publish_contract_key": self.publish_contract_key,
            "committee_elected": self.committee_elected,
            "committee_dealing": self.committee_dealing,
            "committee_finish": self.committee_finish,
            "committee_ready": self.committee_ready,
            "committee_failed": self.committee_failed,
            "committee_status": self.committee_status,
            "sign_heartbeat": self.sign_heartbeat,
        }

    def _start(self, record: GenesisRecord) -> Gatekeeper:
        self.core = Gatekeeper(
            enclave=self.ctx, policy=record.policy, measurement=self.ctx.measurement
        )
        self.core.committee.chain = record.chain
        return self.core

    def _ready(self) -> Gatekeeper:
        if self.core is None:
            raise GatekeeperNotReady("the gatekeeper is not set up yet (genesis or restore)")
        return self.core

    def _seal_committee(self) -> bytes:
        state = self._ready().committee.export_state()
        return self.ctx.seal(encode(state), COMMITTEE_SEAL_LABEL)

    def genesis(self, payload: bytes) -> bytes:
        if self.core is not None:
            raise GatekeeperNotReady("genesis already happened in this enclave")
        request = decode(payload, Genesis)
        record = GenesisRecord(policy=request.policy, chain=request.chain)
        self._start(record)
        return encode(SealedBlob(sealed=self.ctx.seal(encode(record), GENESIS_SEAL_LABEL)))

    def restore(self, payload: bytes) -> bytes:
        request = decode(payload, Restore)
        core = self._start(
            decode(self.ctx.unseal(request.genesis, GENESIS_SEAL_LABEL), GenesisRecord)
        )
        if request.committee:
            state = decode(self.ctx.unseal(request.committee, COMMITTEE_SEAL_LABEL), CommitteeState)
            core.committee.restore_state(state)
        return b""

    def approve_registration(self, payload: bytes) -> bytes:
        request = decode(payload, RegistrationRequest)
        return encode(self._ready().approve_registration(request, int(self.clock())))

    def make_key_request(self, payload: bytes) -> bytes:
        request = decode(payload, MakeKeyRequest)
        return encode(
            make_key_request(self.ctx, request.contract_id, int(self.clock()), request.version)
        )

    def release_partial(self, payload: bytes) -> bytes:
        request = decode(payload, ReleaseKey)
        return encode(
            self._ready().release_partial(request.request, request.facts, int(self.clock()))
        )

    def publish_contract_key(self, payload: bytes) -> bytes:
        request = decode(payload, PublishKey)
        return encode(self._ready().publish_contract_key(request.request, request.releases))

    # -- the committee ------------------------------------------------------------------
    def committee_elected(self, payload: bytes) -> bytes:
        request = decode(payload, Elected)
        committee = self._ready().committee
        info = request.info
        if request.previous is not None and info.previous_era not in committee.publics:
            committee.learn_public(info.previous_era, info.dealers, request.previous)
        dealing = committee.process_era_elected(info, request.cards, int(self.clock()))
        return encode(ElectedOut(dealing=dealing, sealed=self._seal_committee()))

    def committee_dealing(self, payload: bytes) -> bytes:
        complaint = self._ready().committee.process_dealing(decode(payload, Dealing))
        return encode(DealingOut(complaint=complaint.reason if complaint else ""))

    def committee_finish(self, payload: bytes) -> bytes:
        request = decode(payload, Finish)
        confirmation = self._ready().committee.finish(request.era, request.qualified)
        return encode(FinishOut(confirmation=confirmation, sealed=self._seal_committee()))

    def committee_ready(self, payload: bytes) -> bytes:
        request = decode(payload, Activate)
        self._ready().committee.process_rotation_ready(request.info, request.group_public_key)
        return encode(SealedBlob(sealed=self._seal_committee()))

    def committee_failed(self, payload: bytes) -> bytes:
        self._ready().committee.process_era_failed(decode(payload, EraRef).era)
        return encode(SealedBlob(sealed=self._seal_committee()))

    def committee_status(self, payload: bytes) -> bytes:
        committee = self._ready().committee
        holder = committee.active.get(committee.current_era)
        return encode(
            CommitteeStatus(
                current_era=committee.current_era,
                phases={str(era): phase.value for era, phase in committee.phases.items()},
                group=holder.public if holder is not None and not holder.is_erased else None,
                acceptable={
                    str(era): committee.get_acceptable_dealers(era) for era in committee.pending
                },
            )
        )

    def sign_heartbeat(self, payload: bytes) -> bytes:
        """Sign this gatekeeper's heartbeat (see :func:`keyservice.ecalls.sign_heartbeat`)."""
        return sign_heartbeat(self.ctx, payload)
