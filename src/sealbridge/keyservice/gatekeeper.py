"""The gatekeeper: attestor of nodes, member of the key committee, source of key shares.

Theory of operation
-------------------
No gatekeeper holds a root key. The root secret exists only as Shamir shares held by the
current era's committee (:mod:`sealbridge.keyservice.committee`: genesis key generation,
rotation by resharing, erasure); the key of a contract is derived from a threshold BLS
signature on its id, which the requester combines from ``t`` partial signatures.

* **Registration** (the trust argument). The chain cannot verify an SGX/TDX quote
  cheaply, so an attested gatekeeper does: it verifies the node's quote under its policy
  (allowed measurements, TCB status, freshness, report data binding the node's keys) and
  signs an approval with its enclave's secp256k1 key. The NodeRegistry accepts a node only
  with an approval recovered to an active gatekeeper's enclave address, and keeps the
  quote hash and the quote (in the event) so anyone can re-verify it. The first
  gatekeeper is registered by the registry admin after the operator verified its quote
  (genesis bootstrap).
* **Partial key release**. A requester sends a signed key request with its quote. The
  gatekeeper verifies the quote again and that the request is signed by the identity key
  the quote binds, checks the chain facts (read from state proofs), and returns its partial
  signature of the contract's PRF message ECIES-encrypted to the requester's attested
  encryption key (bound to contract, requester and share index). Two kinds of requester:
  an assigned, active worker once the contract's key is published; and the contract's
  own gatekeeper before that, which needs the key to publish its public half. The facts
  come from state proofs the enclave checks itself.
* **Deployment**. For each contract assigned to it the gatekeeper collects ``t - 1``
  partials from its peers, adds its own, combines them into the contract key, derives the
  contract's public command and message keys and signs them for the ContractRegistry.
  Nothing of the key goes on chain (``wrapped_key`` is empty: no root key exists to wrap
  it under).
* **Contract key rotation**. Key version ``v`` is the PRF of
  :func:`~sealbridge.crypto.keyschedule.compute_key_id` ``(contract_id, v)``. When the
  deployer asks for a rotation, the contract's gatekeeper publishes version ``v + 1``
  the same way (signed for ``rotate_contract_key``). Partials are released for the
  current version, for the previous one only while no checkpoint sealed under the current
  one is recorded, and for the next one only to the publisher of a pending rotation; any
  older version is refused, so once the workers erased it the old key is gone.

The chain facts come in as :class:`ChainFacts`; the enclave program reads them itself from
state proofs at a header it verified (:mod:`sealbridge.keyservice.chainfacts`), with the
committee's current era, so a share the committee retired is never used. The core is
sans-I/O: time (``now``) and randomness are inputs.
"""

from __future__ import annotations

from collections.abc import Callable

from sealbridge.chain.abi import (
    compute_contract_key_digest,
    compute_key_rotation_digest,
    compute_registration_digest,
)
from sealbridge.core.encoding import decode_canonical
from sealbridge.core.errors import EncodingError, InvalidSignature, RemoteProtocolError
from sealbridge.core.ids import keccak
from sealbridge.crypto.keyschedule import compute_contract_keys, compute_key_id
from sealbridge.crypto.shamir import ThresholdError
from sealbridge.crypto.signing import ed25519_verify, to_checksum_address
from sealbridge.keyservice.committee import CommitteeMember
from sealbridge.keyservice.messages import (
    KEY_REQUEST_SIGN_TAG,
    ChainFacts,
    KeyRequest,
    KeyRequestBody,
    PublishedContractKey,
    PublishKeyRequest,
    RegistrationApproval,
    RegistrationRequest,
)
from sealbridge.keyservice.threshold import combine_released_key
from sealbridge.keyservice.threshold_messages import PartialKeyRelease
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
        enclave: EnclaveKeys,
        policy: AttestationPolicy,
        measurement: bytes,
    ) -> None:
        self.enclave = enclave
        self.identity_key = enclave.identity.identity_key
        self.policy = policy
        self.random_bytes: RandomBytes = enclave.random_bytes
        self.committee = CommitteeMember(enclave=enclave, policy=policy, measurement=measurement)

    def _check_node_quote(self, node: NodeKeys, quote: bytes, now: int) -> bytes:
        verdict = verify_quote(
            quote, policy=self.policy, now=now, expected_report_data=compute_report_data(node)
        )
        return verdict.measurement

    def approve_registration(self, request: RegistrationRequest, now: int) -> RegistrationApproval:
        """Verify a node's quote under policy (a DCAP quote with the collateral the request
        carries) and sign the registry's approval digest, for a lifetime no longer than
        the policy allows."""
        verdict = verify_quote(
            request.quote,
            policy=self.policy,
            now=now,
            collateral=request.collateral or None,
            expected_report_data=compute_report_data(request.node),
        )
        if request.expiry <= now:
            raise KeyRequestRefused("registration expiry is in the past")
        if request.expiry - now > self.policy.max_registration_seconds:
            raise KeyRequestRefused(
                f"registration expiry is {request.expiry - now}s away; this gatekeeper's "
                f"policy approves at most {self.policy.max_registration_seconds}s"
            )
        measurement = verdict.measurement
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

    def check_key_request(self, request: KeyRequest, now: int) -> KeyRequestBody:
        """Decode and authenticate a key request (signature, freshness, attestation)."""
        try:
            body = decode_canonical(request.body, KeyRequestBody)
        except EncodingError as exc:
            raise KeyRequestRefused(f"key request is malformed: {exc.message}") from exc
        if body.worker_id != request.node.identity_key:
            raise KeyRequestRefused("key request names another node than its quote binds")
        try:
            ed25519_verify(
                request.node.identity_key, KEY_REQUEST_SIGN_TAG + request.body, request.signature
            )
        except InvalidSignature as exc:
            raise KeyRequestRefused("key request signature does not verify") from exc
        if abs(now - body.issued_at) > KEY_REQUEST_MAX_AGE:
            raise KeyRequestRefused("key request is stale")
        self._check_node_quote(request.node, request.quote, now)
        return body

    def release_partial(
        self, request: KeyRequest, facts: ChainFacts, now: int, *, committee_era: int | None = None
    ) -> PartialKeyRelease:
        """This gatekeeper's partial of a contract key, for an entitled, attested requester.
        ``committee_era``: the committee's current era as the chain names it; a share of
        another era (one the committee retired, restored by the host) is never used."""
        body = self.check_key_request(request, now)
        if committee_era is not None and committee_era != self.committee.current_era:
            raise KeyRequestRefused(
                f"the chain's committee is in era {committee_era}; this enclave's share is "
                f"of era {self.committee.current_era}"
            )
        if facts.requester_keys_retired:
            raise KeyRequestRefused(
                "the request's node keys are not the ones the NodeRegistry names for this "
                "node (retired by a renewal over fresh keys)"
            )
        version = body.version
        if version < 0:
            raise KeyRequestRefused(f"key version {version} is negative")
        current = facts.key_version
        if facts.requester_is_publisher and version == 0:
            if facts.key_published:
                raise KeyRequestRefused("the contract key is already published")
        elif facts.requester_is_publisher and version > 0 and version == current + 1:
            if not facts.rotation_pending:
                raise KeyRequestRefused(f"no rotation to key version {version} is pending")
        else:
            if not facts.worker_active:
                raise KeyRequestRefused("worker is not an active registered worker")
            if not facts.worker_assigned:
                raise KeyRequestRefused("worker is not assigned to this contract")
            if not facts.key_published:
                raise KeyRequestRefused("contract key is not published yet")
            if version > current:
                raise KeyRequestRefused(
                    f"key version {version} is not published (the current one is {current})"
                )
            if version < current and not (version == current - 1 and facts.previous_version_open):
                raise KeyRequestRefused(
                    f"key version {version} is retired (the current one is {current})"
                )
        key_id = compute_key_id(body.contract_id, version)
        if facts.requester_is_publisher and version in (0, current + 1):
            # to publish: the gatekeeper's own enclave, which installs nothing
            return self.committee.release_partial(key_id, request.node, self.random_bytes)
        if not facts.install_binding:
            raise KeyRequestRefused("the contract's install facts are not known")
        return self.committee.release_partial(
            key_id, request.node, self.random_bytes, facts.install_binding
        )

    def publish_contract_key(
        self, request: PublishKeyRequest, releases: list[PartialKeyRelease]
    ) -> PublishedContractKey:
        """Combine peers' partials (released to this enclave) with our own into the
        contract key, and sign what the chain records of it (public keys only)."""
        holder = self.committee.get_active()
        key_id = compute_key_id(request.contract_id, request.version)
        own = self.committee.release_partial(key_id, self.enclave.identity, self.random_bytes)
        try:
            contract_key = combine_released_key(
                [own, *releases],
                self.enclave.decrypt_for_identity,
                contract_id=key_id,
                worker_id=self.identity_key,
                group=holder.public,
                drop_bad=True,
            )
        except (ThresholdError, InvalidSignature) as exc:
            raise KeyRequestRefused(f"cannot combine the contract key: {exc}") from exc
        keys = compute_contract_keys(request.contract_id, contract_key)
        if request.version == 0:
            digest = compute_contract_key_digest(
                contract_registry=request.contract_registry_address,
                chain_id=request.chain_id,
                contract_id=request.contract_id,
                contract_public_key=keys.command_public_key,
                message_key=keys.message_public_key,
                wrapped_key=b"",
            )
        else:
            digest = compute_key_rotation_digest(
                contract_registry=request.contract_registry_address,
                chain_id=request.chain_id,
                contract_id=request.contract_id,
                version=request.version,
                contract_public_key=keys.command_public_key,
                message_key=keys.message_public_key,
            )
        return PublishedContractKey(
            contract_id=request.contract_id,
            contract_public_key=keys.command_public_key,
            message_key=keys.message_public_key,
            wrapped_key=b"",
            signature=self.enclave.sign_eth_digest(digest),
            version=request.version,
        )
