"""The gatekeeper enclave's ECALL surface (names and message types on both sides)."""

from __future__ import annotations

from typing import Protocol

from sealbridge.core.encoding import Message, decode, encode
from sealbridge.keyservice.messages import (
    ChainFacts,
    KeyRelease,
    KeyRequest,
    PublishedContractKey,
    PublishKeyRequest,
    RegistrationApproval,
    RegistrationRequest,
)
from sealbridge.tee.policy import AttestationPolicy


class Genesis(Message, frozen=True):
    """Create the root key; the attestation policy is fixed with it."""

    policy: AttestationPolicy


class SealedRoot(Message, frozen=True):
    sealed: bytes  # root key and policy, sealed to the gatekeeper enclave's measurement


class ReleaseKey(Message, frozen=True):
    request: KeyRequest
    facts: ChainFacts


class Ecaller(Protocol):
    def ecall(self, name: str, payload: bytes) -> bytes: ...


class GatekeeperEnclaveClient:
    def __init__(self, enclave: Ecaller) -> None:
        self.enclave = enclave

    def genesis(self, policy: AttestationPolicy) -> bytes:
        out = self.enclave.ecall("genesis", encode(Genesis(policy=policy)))
        return decode(out, SealedRoot).sealed

    def restore(self, sealed: bytes) -> None:
        self.enclave.ecall("restore", encode(SealedRoot(sealed=sealed)))

    def approve_registration(self, payload: bytes) -> bytes:
        """Pass a RegistrationRequest (bytes from a peer) in; RegistrationApproval bytes out."""
        decode(payload, RegistrationRequest)  # refuse malformed input before the ECALL
        out = self.enclave.ecall("approve_registration", payload)
        decode(out, RegistrationApproval)
        return out

    def publish_contract_key(self, request: PublishKeyRequest) -> PublishedContractKey:
        out = self.enclave.ecall("publish_contract_key", encode(request))
        return decode(out, PublishedContractKey)

    def release_contract_key(self, request: KeyRequest, facts: ChainFacts) -> KeyRelease:
        out = self.enclave.ecall(
            "release_contract_key", encode(ReleaseKey(request=request, facts=facts))
        )
        return decode(out, KeyRelease)
