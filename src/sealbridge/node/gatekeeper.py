"""The gatekeeper host: the untrusted half of a gatekeeper node.

Theory of operation
-------------------
At first start the host asks its enclave for genesis: the enclave fixes the attestation
policy and the committee contract it signs for and returns them sealed to its own
measurement. There is no root key to create: the root secret is generated, held and
rotated by the committee of gatekeepers, as shares (see
:mod:`sealbridge.keyservice.committee`); the enclave seals its committee state after
every change, and the host stores both blobs and hands them back at every restart.

A gatekeeper other than the genesis one registers like a worker: an approval from an
active gatekeeper's enclave after it verified its quote.

The host serves:

* ``POST /v1/attest``: a node's :class:`RegistrationRequest`; the enclave verifies the
  quote under the sealed policy and returns a signed approval.
* ``POST /v1/partial``: a :class:`KeyRequest` of a worker (or of the contract's own
  gatekeeper, to publish); the facts service core
  (:class:`~sealbridge.keyservice.facts_service.FactsServiceCore`, on an inline driver,
  one request at a time) brings the enclave's header chain up to the final block and
  fetches ``eth_getProof`` proofs of the request's facts there (again, at most three
  times, when a proof went stale under a moving chain); the enclave reads the facts
  from them itself and returns its partial signature encrypted to the requester's
  attested key. Its refusal is answered as it gave it.
* ``POST /v1/group``: the active era's public keys (threshold, group key, public shares).

and follows the chain:

* **Committee** (GatekeeperCommittee events, read with ``eth_getLogs`` when caught up):
  :class:`~sealbridge.node.committee.CommitteeDriver` takes the enclave through each
  era it is elected to (cards, dealings, the ready confirmation, activation, restarts).
* **Contract keys** (:class:`~sealbridge.keyservice.publisher.KeyPublisherCore`, on
  the network driver in inline mode, stepped from the follower loop): on each
  ``ContractDeployed`` naming this gatekeeper, and on each ``KeyRotationRequested`` of a
  contract naming it, the core has the enclave make a key request, collects ``t - 1``
  partials from the peers (``AskPeers``: ``POST /v1/partial`` to each until enough
  answered), has the enclave combine them with its own into the contract key and sign
  the contract's public keys, and sends ``publish_contract_key`` or
  ``rotate_contract_key``. For key requests the proofs also cover the contract's key
  version, whether a rotation is pending, whether a checkpoint at or after the rotation
  is recorded (until then the previous version is still released) and the committee's
  current era.

States: ``STARTING`` -> (``REGISTERING``) -> ``FOLLOWING`` (or ``FAILED`` with a reason).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from sealbridge.chain.abi import Role, canonical_address
from sealbridge.config.node import NodeConfig, write_atomic
from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import LocalProtocolError, SealbridgeError
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.committee import GatekeeperCommittee
from sealbridge.evm.follower import ObservedBlock
from sealbridge.keyservice.chainfacts import (
    FactsProof,
    HeaderTip,
    ManagementBinding,
    get_fact_slots,
)
from sealbridge.keyservice.committee import ChainBinding
from sealbridge.keyservice.ecalls import (
    COMMITTEE_STATUS,
    GATEKEEPER_APPROVE_REGISTRATION,
    GATEKEEPER_GENESIS,
    GATEKEEPER_RESTORE,
    Genesis,
    Restore,
)
from sealbridge.keyservice.facts_service import (
    FactsProofQuery,
    FactsServiceCore,
    FinalBlockQuery,
    HeaderFieldsQuery,
    ServeKeyRequest,
)
from sealbridge.keyservice.messages import (
    KeyRequest,
    KeyRequestBody,
    RegistrationApproval,
    RegistrationRequest,
)
from sealbridge.keyservice.publisher import (
    ContractDeployedSeen,
    ContractKeyQuery,
    ContractKeyView,
    KeyPublishedQuery,
    KeyPublisherCore,
    KeyRotationRequestedSeen,
    PublishKeyOnChain,
    RotateKeyOnChain,
)
from sealbridge.keyservice.threshold_messages import PartialKeyRelease
from sealbridge.net.http import NodeClient, TransportError
from sealbridge.node.committee import RETRY_SECONDS as COMMITTEE_RETRY_SECONDS
from sealbridge.node.committee import CommitteeDriver, CommitteeUnavailable
from sealbridge.node.driver import Executors, NetworkDriver
from sealbridge.node.host import HostPhase, NodeHost
from sealbridge.tee.backend import EnclaveHandle
from sealbridge.tee.ecall import NOTHING, call
from sealbridge.tee.policy import devnet_policy

log = logging.getLogger("sealbridge.gatekeeper")


class FactsUnavailable(TransportError):
    """A key request's facts could not be fetched (the chain unreachable, an answer
    that made no sense); the requester asks another gatekeeper or again."""

    code = "facts_unavailable"


class GatekeeperHost(NodeHost):
    def __init__(self, config: NodeConfig, enclave: EnclaveHandle, chain: ChainAdapter) -> None:
        super().__init__(config, enclave, chain)
        if not config.committee_address:
            raise LocalProtocolError("a gatekeeper needs committee_address in its config")
        self.committee = GatekeeperCommittee(chain, config.committee_address)
        self.released = 0
        self.approved = 0
        self.home = Path(config.home)
        self.committee_file = self.home / "committee.sealed"
        self.chain_tip_file = self.home / "chain-tip.sealed"
        self._facts_lock = threading.Lock()  # headers advance, then proofs at the tip
        self.committee_driver = CommitteeDriver(
            committee=self.committee,
            registry=self.mgmt.node_registry,
            registry_from_block=self.addresses.deployed_at_block,
            enclave=enclave,
            node_id=self.node_id,
            eth_key=self.eth_key,
            store=self.store_committee,
            peer_urls=config.peer_urls,
        )
        self.publisher_core = KeyPublisherCore(
            self.node_id,
            chain_id=chain.chain_id,
            contract_registry=self.addresses.contract_registry,
        )
        self.publisher = NetworkDriver(
            self.publisher_core,
            Executors(
                submit_tx=self.send_key_tx,
                read_chain=self.read_key_facts,
                call_enclave=lambda ecall, request: call(self.enclave, ecall, request),
                ask_peers=self.collect_partials,
                retry_seconds=COMMITTEE_RETRY_SECONDS,
            ),
            name="key-publisher",
            inline=True,
        )
        self.facts_core = FactsServiceCore()
        self._facts_error: SealbridgeError | None = None
        self.facts = NetworkDriver(
            self.facts_core,
            Executors(
                read_chain=self.read_facts,
                call_enclave=self.call_facts_enclave,
                persist=self.persist_facts,
                retry_seconds=COMMITTEE_RETRY_SECONDS,
            ),
            name="facts-service",
            inline=True,
        )
        self.start_enclave_state()

    def start_enclave_state(self) -> None:
        genesis_file = self.home / "genesis.sealed"
        if genesis_file.exists():
            committee = self.committee_file.read_bytes() if self.committee_file.exists() else b""
            tip = self.chain_tip_file.read_bytes() if self.chain_tip_file.exists() else b""
            restore = Restore(genesis=genesis_file.read_bytes(), committee=committee, chain_tip=tip)
            call(self.enclave, GATEKEEPER_RESTORE, restore)
            log.info("policy and committee state restored from %s", self.home)
            return
        policy = devnet_policy(
            from_hex(self.config.platform_public_key, size=32, what="platform_public_key"),
            [from_hex(m, size=32, what="measurement") for m in self.config.allowed_measurements],
        )
        chain = ChainBinding(chain_id=self.chain.chain_id, committee_address=self.committee.address)
        a = self.addresses
        management = ManagementBinding(
            node_registry=canonical_address(a.node_registry),
            contract_registry=canonical_address(a.contract_registry),
            execution_ledger=canonical_address(a.execution_ledger),
            committee=canonical_address(self.committee.address),
        )
        head = self.chain.get_block(
            max(self.chain.get_block_number() - self.config.confirmations, 0)
        )
        anchor = HeaderTip(number=head.number, block_hash=head.hash)
        genesis = Genesis(policy=policy, chain=chain, management=management, anchor=anchor)
        sealed = call(self.enclave, GATEKEEPER_GENESIS, genesis).sealed
        genesis_file.parent.mkdir(parents=True, exist_ok=True)
        genesis_file.write_bytes(sealed)
        log.info(
            "genesis: policy, committee and management contracts fixed inside the enclave and "
            "sealed; its header chain starts at block %d",
            head.number,
        )

    def store_committee(self, sealed: bytes) -> None:
        write_atomic(self.committee_file, sealed)

    # -- registration ---------------------------------------------------------------------
    def before_following(self) -> None:
        if self.mgmt.node_registry.is_active(self.node_id, Role.GATEKEEPER):
            self.register()  # learns the expiry, for renewals
            return
        if not self.config.gatekeeper_url:
            log.info("not registered yet; waiting for the genesis registration")
            return
        self.phase = HostPhase.REGISTERING
        self.register()

    def may_renew_now(self) -> bool:
        """Not while an era's key generation runs on chain: its members read each
        other's keys when it was elected and check dealings against them."""
        return self.committee.get_pending_era() == 0

    def get_approval(self, request: RegistrationRequest) -> RegistrationApproval:
        """The genesis gatekeeper (no attestor configured) approves its own renewals."""
        if self.config.gatekeeper_url:
            return super().get_approval(request)
        return call(self.enclave, GATEKEEPER_APPROVE_REGISTRATION, request)

    # -- HTTP handlers -------------------------------------------------------------------
    def on_attest(self, payload: bytes) -> bytes:
        request = decode(payload, RegistrationRequest)  # refuse malformed input first
        approval = call(self.enclave, GATEKEEPER_APPROVE_REGISTRATION, request)
        self.approved += 1
        return encode(approval)

    def on_partial_request(self, payload: bytes) -> bytes:
        """A key request: the facts service core (:class:`FactsServiceCore`) brings the
        enclave's headers up to the chain, fetches the state proofs of the request's
        facts at its newest header, and lets it decide."""
        request = decode(payload, KeyRequest)
        body = decode(request.body, KeyRequestBody)
        order = ServeKeyRequest(
            request=request, contract_id=body.contract_id, worker_id=body.worker_id
        )
        with self._facts_lock:
            self._facts_error = None
            self.facts.deliver(0, order)
            self.facts.step()
            result = self.facts_core.result
            if isinstance(result, PartialKeyRelease):
                self.released += 1
                return encode(result)
            if self._facts_error is not None and str(result).startswith("enclave:"):
                raise self._facts_error  # the enclave's refusal, as it gave it
            raise FactsUnavailable(str(result or "the key request was not served"))

    def call_facts_enclave(self, ecall: Any, request: Any) -> Any:
        try:
            return call(self.enclave, ecall, request)
        except SealbridgeError as exc:
            self._facts_error = exc
            raise

    def read_facts(self, query: Any) -> Any:
        if isinstance(query, FinalBlockQuery):
            return max(self.chain.get_block_number() - self.config.confirmations, 0)
        if isinstance(query, HeaderFieldsQuery):
            return self.chain.get_header_fields(query.numbers)
        if isinstance(query, FactsProofQuery):
            return self.get_facts_proof(query.contract_id, query.worker_id, query.number)
        raise LocalProtocolError(f"not a facts question: {type(query).__name__}")

    def persist_facts(self, key: str, data: bytes) -> None:
        write_atomic(self.chain_tip_file, data)

    def get_facts_proof(self, contract_id: bytes, requester: bytes, number: int) -> FactsProof:
        """``eth_getProof`` of every slot a key request's facts are read from."""
        slots = get_fact_slots(contract_id, requester)
        a = self.addresses
        return FactsProof(
            number=number,
            node_registry=self.chain.get_proof(a.node_registry, slots["node_registry"], number),
            contract_registry=self.chain.get_proof(
                a.contract_registry, slots["contract_registry"], number
            ),
            execution_ledger=self.chain.get_proof(
                a.execution_ledger, slots["execution_ledger"], number
            ),
            committee=self.chain.get_proof(self.committee.address, slots["committee"], number),
        )

    def on_group(self, payload: bytes) -> bytes:
        group = call(self.enclave, COMMITTEE_STATUS, NOTHING).group
        if group is None:
            raise CommitteeUnavailable("this gatekeeper holds no active share")
        return encode(group)

    # -- chain ---------------------------------------------------------------------------
    def on_block(self, block: ObservedBlock) -> None:
        for event in block.events:
            if event.name == "ContractDeployed":
                self.publisher.deliver(
                    0,
                    ContractDeployedSeen(
                        contract_id=bytes(event.args["contract_id"]),
                        gatekeeper_id=bytes(event.args["gatekeeper_id"]),
                    ),
                )
            elif event.name == "KeyRotationRequested":
                self.publisher.deliver(
                    0,
                    KeyRotationRequestedSeen(
                        contract_id=bytes(event.args["contract_id"]),
                        version=int(event.args["version"]),
                    ),
                )
        self.publisher.step()

    def on_caught_up(self) -> None:
        self.follow_committee()
        self.publisher.step()

    def on_idle(self) -> None:
        self.follow_committee()
        self.publisher.step()

    def follow_committee(self) -> None:
        """Handle the committee's events up to the followed height (see
        :class:`CommitteeDriver`). A failure is logged; the same events are read again
        next time."""
        try:
            self.committee_driver.process_events(self.height)
        except SealbridgeError as exc:
            self.error = f"committee: {exc.message}"
            log.warning(self.error)

    # -- contract keys (the key publisher core's effects) --------------------------------
    def read_key_facts(self, query: Any) -> Any:
        registry = self.mgmt.contract_registry
        if isinstance(query, KeyPublishedQuery):
            return registry.is_key_published(query.contract_id)
        if isinstance(query, ContractKeyQuery):
            record = registry.get_contract(query.contract_id)
            if record is None:
                return None
            return ContractKeyView(
                gatekeeper_id=record.gatekeeper_id,
                key_version=record.key_version,
                rotation_pending=record.rotation_pending,
            )
        raise LocalProtocolError(f"not a key question: {type(query).__name__}")

    def send_key_tx(self, tx: Any) -> int:
        registry = self.mgmt.contract_registry
        if isinstance(tx, PublishKeyOnChain):
            receipt = registry.publish_contract_key(
                tx.contract_id,
                tx.contract_public_key,
                tx.message_key,
                tx.wrapped_key,
                tx.signature,
                self.eth_key,
            )
            log.info("published contract key of %s", to_hex(tx.contract_id))
        elif isinstance(tx, RotateKeyOnChain):
            receipt = registry.rotate_contract_key(
                tx.contract_id,
                tx.version,
                tx.contract_public_key,
                tx.message_key,
                tx.signature,
                self.eth_key,
            )
            log.info("rotated the key of %s to version %d", to_hex(tx.contract_id), tx.version)
        else:
            raise LocalProtocolError(f"not a key transaction: {type(tx).__name__}")
        return receipt.block_number

    def collect_partials(self, request: Any, needed: int) -> tuple[list[Any], list[str]]:
        """Ask the peers, one after another, until ``needed`` partials were released."""
        releases: list[Any] = []
        errors: list[str] = []
        for url in self.config.peer_urls:
            if len(releases) >= needed:
                break
            try:
                with NodeClient(url) as peer:
                    releases.append(
                        decode(peer.post("/v1/partial", encode(request)), PartialKeyRelease)
                    )
            except (TransportError, SealbridgeError) as exc:
                log.info("no partial from %s: %s", url, exc.message)
                errors.append(f"{url}: {exc.message}")
        return releases, errors

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
        committee = call(self.enclave, COMMITTEE_STATUS, NOTHING)
        return {
            "role": "gatekeeper",
            "name": self.config.name,
            "node_id": to_hex(self.node_id),
            "phase": self.phase.value,
            "error": self.error,
            "height": self.height,
            "measurement": to_hex(self.enclave.measurement),
            "registrations_approved": self.approved,
            "keys_published": self.publisher_core.published,
            "keys_rotated": self.publisher_core.rotated,
            "key_publisher": self.publisher_core.get_status(),
            "partials_released": self.released,
            "facts_refetched": self.facts_core.refetched,
            "committee": {
                "current_era": committee.current_era,
                "eras": committee.phases,
                "holds_share": committee.group is not None,
                "threshold": committee.group.threshold if committee.group else 0,
                "group_public_key": to_hex(committee.group.group_public_key)
                if committee.group
                else "",
                "dealings_posted": self.committee_driver.dealings_posted,
                "confirmations_posted": self.committee_driver.confirmations_posted,
            },
        }
