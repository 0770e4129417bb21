"""The gatekeeper host: the untrusted half of a gatekeeper node.

Theory of operation
-------------------
At first start the host asks its enclave for genesis: the enclave draws the root key and
returns it sealed (with the attestation policy fixed at genesis) to the enclave's own
measurement; the host stores that blob and hands it back at every restart. The host
then serves two requests and follows the chain:

* ``POST /v1/attest``: a node's :class:`RegistrationRequest`; the enclave verifies the
  quote under the sealed policy and returns a signed approval.
* ``POST /v1/keys``: a worker's :class:`KeyRequest`; the host reads the facts the enclave
  needs from the chain (worker active, assigned, key published) and the enclave returns
  the contract key encrypted to the worker's attested key.
* On each ``ContractDeployed`` naming this gatekeeper, the enclave derives the contract
  key and the host publishes the enclave-signed public key and wrapped key on chain.

States: ``STARTING`` -> ``FOLLOWING`` (or ``FAILED`` with a reason).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sealbridge.chain.abi import Role
from sealbridge.chain.adapter import ChainAdapter
from sealbridge.chain.errors import TransactionReverted
from sealbridge.chain.follower import ChainEvent, ObservedBlock
from sealbridge.core.encoding import decode, encode
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.keyservice.ecalls import GatekeeperEnclaveClient
from sealbridge.keyservice.messages import ChainFacts, KeyRequest, KeyRequestBody, PublishKeyRequest
from sealbridge.node.config import NodeConfig
from sealbridge.node.host import NodeHost
from sealbridge.tee.backend import EnclaveHandle
from sealbridge.tee.policy import devnet_policy

log = logging.getLogger("sealbridge.gatekeeper")


class GatekeeperHost(NodeHost):
    def __init__(self, config: NodeConfig, enclave: EnclaveHandle, chain: ChainAdapter) -> None:
        super().__init__(config, enclave, chain)
        self.calls = GatekeeperEnclaveClient(enclave)
        self.published = 0
        self.released = 0
        self.approved = 0
        self.start_enclave_state()

    def start_enclave_state(self) -> None:
        sealed_file = Path(self.config.home) / "root.sealed"
        if sealed_file.exists():
            self.calls.restore(sealed_file.read_bytes())
            log.info("root key restored from %s", sealed_file)
            return
        policy = devnet_policy(
            from_hex(self.config.platform_public_key, size=32, what="platform_public_key"),
            [from_hex(m, size=32, what="measurement") for m in self.config.allowed_measurements],
        )
        sealed = self.calls.genesis(policy)
        sealed_file.parent.mkdir(parents=True, exist_ok=True)
        sealed_file.write_bytes(sealed)
        log.info("genesis: root key created inside the enclave and sealed")

    # -- HTTP handlers -------------------------------------------------------------------
    def on_attest(self, payload: bytes) -> bytes:
        out = self.calls.approve_registration(payload)
        self.approved += 1
        return out

    def on_key_request(self, payload: bytes) -> bytes:
        request = decode(payload, KeyRequest)
        body = decode(request.body, KeyRequestBody)
        record = self.mgmt.contract_registry.get_contract(body.contract_id)
        facts = ChainFacts(
            worker_active=self.mgmt.node_registry.is_active(body.worker_id, Role.WORKER),
            worker_assigned=self.mgmt.contract_registry.is_assigned(
                body.contract_id, body.worker_id
            ),
            key_published=record is not None and record.key_published,
        )
        release = self.calls.release_contract_key(request, facts)
        self.released += 1
        return encode(release)

    # -- chain ---------------------------------------------------------------------------
    def on_block(self, block: ObservedBlock) -> None:
        for event in block.events:
            if event.name == "ContractDeployed":
                self.on_contract_deployed(event)

    def on_contract_deployed(self, event: ChainEvent) -> None:
        contract_id = bytes(event.args["contract_id"])
        if bytes(event.args["gatekeeper_id"]) != self.node_id:
            return
        if self.mgmt.contract_registry.is_key_published(contract_id):
            return
        published = self.calls.publish_contract_key(
            PublishKeyRequest(
                contract_id=contract_id,
                chain_id=self.chain.chain_id,
                contract_registry_address=self.addresses.contract_registry,
            )
        )
        try:
            self.mgmt.contract_registry.publish_contract_key(
                contract_id,
                published.contract_public_key,
                published.message_key,
                published.wrapped_key,
                published.signature,
                self.eth_key,
            )
        except TransactionReverted as exc:  # e.g. published meanwhile; a passing RPC error retries
            log.warning("could not publish key of %s: %s", to_hex(contract_id), exc.message)
            return
        self.published += 1
        log.info("published contract key of %s", to_hex(contract_id))

    def get_info(self) -> dict[str, Any]:
        keys = self.enclave.node_keys
        return {
            "role": "gatekeeper",
            "name": self.config.name,
            "node_id": to_hex(keys.identity_key),
            "identity_key": to_hex(keys.identity_key),
            "encryption_key": to_hex(keys.encryption_key),
            "eth_address": to_hex(keys.eth_address),
            "measurement": to_hex(self.enclave.measurement),
            "quote": to_hex(self.enclave.get_quote()),
        }

    def get_status(self) -> dict[str, Any]:
        return {
            "role": "gatekeeper",
            "name": self.config.name,
            "node_id": to_hex(self.node_id),
            "phase": self.phase.value,
            "error": self.error,
            "height": self.height,
            "measurement": to_hex(self.enclave.measurement),
            "registrations_approved": self.approved,
            "keys_published": self.published,
            "keys_released": self.released,
        }
