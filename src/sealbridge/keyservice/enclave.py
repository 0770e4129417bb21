"""The gatekeeper's enclave program: genesis, sealing of the root key, and the ECALL table
around :class:`Gatekeeper`.

Runs inside the enclave process (``sealbridge.keyservice.enclave:GatekeeperProgram``).
The root key is drawn from enclave randomness at genesis and leaves the enclave only
sealed to this program's measurement, together with the attestation policy fixed at
genesis (so a host cannot loosen the policy later).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from sealbridge.core.encoding import Message, decode, encode
from sealbridge.core.errors import LocalProtocolError
from sealbridge.keyservice.ecalls import Genesis, ReleaseKey, SealedRoot
from sealbridge.keyservice.gatekeeper import Gatekeeper
from sealbridge.keyservice.messages import PublishKeyRequest, RegistrationRequest
from sealbridge.tee.enclave import EnclaveContext
from sealbridge.tee.policy import AttestationPolicy

ROOT_SEAL_LABEL = "sealbridge/gatekeeper-root/v1"
ROOT_KEY_SIZE = 32


class RootRecord(Message, frozen=True):
    root_key: bytes
    policy: AttestationPolicy


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
            "publish_contract_key": self.publish_contract_key,
            "release_contract_key": self.release_contract_key,
        }

    def _start(self, record: RootRecord) -> None:
        self.core = Gatekeeper(root_key=record.root_key, enclave=self.ctx, policy=record.policy)

    def _ready(self) -> Gatekeeper:
        if self.core is None:
            raise GatekeeperNotReady("the gatekeeper has no root key yet (genesis or restore)")
        return self.core

    def genesis(self, payload: bytes) -> bytes:
        if self.core is not None:
            raise GatekeeperNotReady("genesis already happened in this enclave")
        request = decode(payload, Genesis)
        record = RootRecord(root_key=self.ctx.random_bytes(ROOT_KEY_SIZE), policy=request.policy)
        self._start(record)
        return encode(SealedRoot(sealed=self.ctx.seal(encode(record), ROOT_SEAL_LABEL)))

    def restore(self, payload: bytes) -> bytes:
        sealed = decode(payload, SealedRoot).sealed
        self._start(decode(self.ctx.unseal(sealed, ROOT_SEAL_LABEL), RootRecord))
        return b""

    def approve_registration(self, payload: bytes) -> bytes:
        request = decode(payload, RegistrationRequest)
        return encode(self._ready().approve_registration(request, int(self.clock())))

    def publish_contract_key(self, payload: bytes) -> bytes:
        return encode(self._ready().publish_contract_key(decode(payload, PublishKeyRequest)))

    def release_contract_key(self, payload: bytes) -> bytes:
        request = decode(payload, ReleaseKey)
        return encode(
            self._ready().release_contract_key(request.request, request.facts, int(self.clock()))
        )
