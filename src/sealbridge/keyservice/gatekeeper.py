"""The gatekeeper: holder of the root key, attestor of nodes, source of contract keys.

Theory of operation
-------------------
At genesis the gatekeeper's enclave draws a 32-byte root key from enclave randomness. It
never leaves the enclave except sealed to the enclave's own measurement.

* **Registration** (the trust argument). The chain cannot verify an SGX/TDX quote
  cheaply, so an attested gatekeeper does: it verifies the node's quote under its policy
  (allowed measurements, TCB status, freshness, report data binding the node's keys) and
  signs an approval with its enclave's secp256k1 key. The NodeRegistry accepts a node only
  with an approval recovered to an active gatekeeper's enclave address, and keeps the
  quote hash and the quote (in the event) so anyone can re-verify it. The first
  gatekeeper is registered by the registry admin after the operator verified its quote
  (genesis bootstrap).
* **Deployment**. For each contract assigned to it the gatekeeper derives the contract key
  ``HKDF(root, salt=contract_id)``, and returns the contract's public command key, the
  contract key wrapped under a root-derived key (recorded on chain), and a signature the
  ContractRegistry checks.
* **Key release**. A worker sends a signed key request with its quote. The gatekeeper
  verifies the quote again and that the request is signed by the identity key the quote
  binds, checks the chain facts its host supplies (worker active and assigned, key
  published), and returns the contract key ECIES-encrypted to the worker's attested
  encryption key, with associated data binding contract and worker. Only that enclave can
  open it. (The host's chain facts are trusted here; the light-client checks that remove
  this trust come with the availability work.)

The core is sans-I/O: time (``now``) and randomness are inputs.
"""

from __future__ import annotations

from collections.abc import Callable

from sealbridge.chain.abi import compute_contract_key_digest, compute_registration_digest
from sealbridge.core.encoding import decode_canonical
from sealbridge.core.errors import EncodingError, InvalidSignature, RemoteProtocolError
from sealbridge.core.ids import keccak
from sealbridge.crypto import aead, ecies
from sealbridge.crypto.keyschedule import (
    compute_contract_key,
    compute_contract_keys,
    compute_root_wrap_key,
    key_release_aad,
    wrapped_key_aad,
)
from sealbridge.crypto.signing import ed25519_verify, to_checksum_address
from sealbridge.keyservice.messages import (
    KEY_REQUEST_SIGN_TAG,
    ChainFacts,
    KeyRelease,
    KeyRequest,
    KeyRequestBody,
    PublishedContractKey,
    PublishKeyRequest,
    RegistrationApproval,
    RegistrationRequest,
)
from sealbridge.tee.attestation import verify_quote
from sealbridge.tee.enclave import EnclaveKeys, NodeKeys, compute_report_data
from sealbridge.tee.policy import AttestationPolicy

RandomBytes = Callable[[int], bytes]
KEY_REQUEST_MAX_AGE = 300


class KeyRequestRefused(RemoteProtocolError):
    code = "key_request_refused"


class Gatekeeper:
    """The gatekeeper's trusted core."""

    def __init__(
        self,
        *,
        root_key: bytes,
        enclave: EnclaveKeys,
        policy: AttestationPolicy,
    ) -> None:
        self._root_key = root_key
        self._wrap_key = compute_root_wrap_key(root_key)
        self.enclave = enclave
        self.identity_key = enclave.identity.identity_key
        self.policy = policy
        self.random_bytes: RandomBytes = enclave.random_bytes

    def _check_node_quote(self, node: NodeKeys, quote: bytes, now: int) -> bytes:
        verdict = verify_quote(
            quote, policy=self.policy, now=now, expected_report_data=compute_report_data(node)
        )
        return verdict.measurement

    def approve_registration(self, request: RegistrationRequest, now: int) -> RegistrationApproval:
        """Verify a node's quote under policy and sign the registry's approval digest."""
        measurement = self._check_node_quote(request.node, request.quote, now)
        if request.expiry <= now:
            raise KeyRequestRefused("registration expiry is in the past")
        quote_hash = keccak(request.quote)
        digest = compute_registration_digest(
            registry=request.registry_address,
            chain_id=request.chain_id,
            role=request.role,
            identity_key=request.node.identity_key,
            encryption_key=request.node.encryption_key,
            enclave_address=to_checksum_address(request.node.eth_address),
            quote_hash=quote_hash,
            measurement=measurement,
            expiry=request.expiry,
        )
        return RegistrationApproval(
            attestor_id=self.identity_key,
            measurement=measurement,
            quote_hash=quote_hash,
            expiry=request.expiry,
            signature=self.enclave.sign_eth_digest(digest),
        )

    def publish_contract_key(self, request: PublishKeyRequest) -> PublishedContractKey:
        """Derive a deployed contract's key and what the chain records of it."""
        contract_key = compute_contract_key(self._root_key, request.contract_id)
        keys = compute_contract_keys(request.contract_id, contract_key)
        wrapped = aead.seal(
            self._wrap_key,
            contract_key,
            wrapped_key_aad(request.contract_id),
            nonce=self.random_bytes(aead.NONCE_SIZE),
        )
        digest = compute_contract_key_digest(
            contract_registry=request.contract_registry_address,
            chain_id=request.chain_id,
            contract_id=request.contract_id,
            contract_public_key=keys.command_public_key,
            message_key=keys.message_public_key,
            wrapped_key=wrapped,
        )
        return PublishedContractKey(
            contract_id=request.contract_id,
            contract_public_key=keys.command_public_key,
            message_key=keys.message_public_key,
            wrapped_key=wrapped,
            signature=self.enclave.sign_eth_digest(digest),
        )

    def release_contract_key(self, request: KeyRequest, facts: ChainFacts, now: int) -> KeyRelease:
        """Release a contract key to an attested, registered, assigned worker."""
        try:
            body = decode_canonical(request.body, KeyRequestBody)
        except EncodingError as exc:
            raise KeyRequestRefused(f"key request is malformed: {exc.message}") from exc
        if body.worker_id != request.node.identity_key:
            raise KeyRequestRefused("key request names another worker than its quote binds")
        try:
            ed25519_verify(
                request.node.identity_key, KEY_REQUEST_SIGN_TAG + request.body, request.signature
            )
        except InvalidSignature as exc:
            raise KeyRequestRefused("key request signature does not verify") from exc
        if abs(now - body.issued_at) > KEY_REQUEST_MAX_AGE:
            raise KeyRequestRefused("key request is stale")
        self._check_node_quote(request.node, request.quote, now)
        if not facts.worker_active:
            raise KeyRequestRefused("worker is not an active registered worker")
        if not facts.worker_assigned:
            raise KeyRequestRefused("worker is not assigned to this contract")
        if not facts.key_published:
            raise KeyRequestRefused("contract key is not published yet")
        contract_key = compute_contract_key(self._root_key, body.contract_id)
        wrapped = ecies.encrypt_to(
            request.node.encryption_key,
            contract_key,
            key_release_aad(body.contract_id, body.worker_id),
            ephemeral_seed=self.random_bytes(32),
        )
        return KeyRelease(
            contract_id=body.contract_id,
            worker_id=body.worker_id,
            wrapped_key=wrapped,
            gatekeeper_key=self.identity_key,
        )
