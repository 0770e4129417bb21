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
  gatekeeper, to publish); the host brings the enclave's header chain up to the final
  block and fetches ``eth_getProof`` proofs of the request's facts there; the enclave
  reads the facts from them itself and returns its partial signature encrypted to the
  requester's attested key.
* ``POST /v1/group``: the active era's public keys (threshold, group key, public shares).

and follows the chain:

* **Committee** (GatekeeperCommittee events, read with ``eth_getLogs`` when caught up):
  :class:`~sealbridge.node.committee.CommitteeDriver` takes the enclave through each
  era it is elected to (cards, dealings, the ready confirmation, activation, restarts).
* **Deployments**: on each ``ContractDeployed`` naming this gatekeeper, it collects
  ``t - 1`` partials from its peers, the enclave combines them with its own into the
  contract key and signs the contract's public keys, and the host publishes them.
* **Key rotations**: on each ``KeyRotationRequested`` of a contract naming this
  gatekeeper, the same for the next key version, published with ``rotate_contract_key``.
  For key requests the proofs also cover the contract's key version, whether a rotation
  is pending, whether a checkpoint at or after the rotation is recorded (until then the
  previous version is still released) and the committee's current era.

States: ``STARTING`` -> (``REGISTERING``) -> ``FOLLOWING`` (or ``FAILED`` with a reason).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from sealbridge.chain.abi import Role, canonical_address
from sealbridge.chain.errors import TransactionReverted
from sealbridge.config.node import NodeConfig, write_atomic
from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import LocalProtocolError, SealbridgeError
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.committee import GatekeeperCommittee
from sealbridge.evm.follower import ChainEvent, ObservedBlock
from sealbridge.keyservice.chainfacts import (
    FactsProof,
    HeaderTip,
    ManagementBinding,
    get_fact_slots,
)
from sealbridge.keyservice.committee import ChainBinding
from sealbridge.keyservice.ecalls import (
    COMMITTEE_STATUS,
    GATEKEEPER_ADVANCE_HEADERS,
    GATEKEEPER_APPROVE_REGISTRATION,
    GATEKEEPER_GENESIS,
    GATEKEEPER_PUBLISH_CONTRACT_KEY,
    GATEKEEPER_RELEASE_PARTIAL,
    GATEKEEPER_RESTORE,
    MAKE_KEY_REQUEST,
    AdvanceHeaders,
    ChainTip,
    Genesis,
    MakeKeyRequest,
    PublishKey,
    ReleaseKey,
    Restore,
)
from sealbridge.keyservice.messages import (
    KeyRequest,
    KeyRequestBody,
    PublishedContractKey,
    PublishKeyRequest,
    RegistrationApproval,
    RegistrationRequest,
)
from sealbridge.keyservice.threshold_messages import PartialKeyRelease
from sealbridge.net.http import NodeClient, TransportError
from sealbridge.node.committee import CommitteeDriver, CommitteeUnavailable
from sealbridge.node.host import HostPhase, NodeHost
from sealbridge.tee.backend import EnclaveHandle
from sealbridge.tee.ecall import NOTHING, call
from sealbridge.tee.errors import EnclaveCallError
from sealbridge.tee.policy import devnet_policy

log = logging.getLogger("sealbridge.gatekeeper")


PROOF_ATTEMPTS = 3  # reads of a key request's facts, while the chain moves under them


class PartialsUnavailable(TransportError):
    """Too few peers answered with a partial (a passing condition: the block is retried)."""

    code = "partials_unavailable"


class GatekeeperHost(NodeHost):
    def __init__(self, config: NodeConfig, enclave: EnclaveHandle, chain: ChainAdapter) -> None:
        super().__init__(config, enclave, chain)
        if not config.committee_address:
            raise LocalProtocolError("a gatekeeper needs committee_address in its config")
        self.committee = GatekeeperCommittee(chain, config.committee_address)
        self.published = 0
        self.rotated = 0
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
        """A key request: bring the enclave's headers up to the chain, fetch the state
        proofs of the request's facts at its newest header, and let it decide."""
        request = decode(payload, KeyRequest)
        body = decode(request.body, KeyRequestBody)
        with self._facts_lock:
            for attempt in range(PROOF_ATTEMPTS):
                tip = self.sync_headers()
                proof = self.get_facts_proof(body.contract_id, body.worker_id, tip.number)
                try:
                    release = call(
                        self.enclave,
                        GATEKEEPER_RELEASE_PARTIAL,
                        ReleaseKey(request=request, proof=proof),
                    )
                    break
                except EnclaveCallError as exc:
                    # seen in the e2e suite: a proof fetched for the enclave's newest
                    # header failed against that header's root while blocks were being
                    # mined (cause not pinned down; anvil serves a plain past-block proof
                    # correctly). If the chain moved on, read the facts again at its tip
                    moved = self.chain.get_block_number() - self.config.confirmations > tip.number
                    if exc.remote_code != "proof_invalid" or not moved:
                        raise
                    if attempt == PROOF_ATTEMPTS - 1:
                        raise
                    log.info("facts proof at block %d went stale; reading again", tip.number)
        self.released += 1
        return encode(release)

    def sync_headers(self) -> HeaderTip:
        """Feed the enclave the headers after its newest, up to the final block."""
        final = max(self.chain.get_block_number() - self.config.confirmations, 0)
        out: ChainTip = call(self.enclave, GATEKEEPER_ADVANCE_HEADERS, AdvanceHeaders(headers=[]))
        while out.tip.number < final:
            numbers = list(range(out.tip.number + 1, min(final, out.tip.number + 256) + 1))
            headers = AdvanceHeaders(headers=self.chain.get_header_fields(numbers))
            out = call(self.enclave, GATEKEEPER_ADVANCE_HEADERS, headers)
            write_atomic(self.chain_tip_file, out.sealed)
        return out.tip

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
                self.on_contract_deployed(event)
            elif event.name == "KeyRotationRequested":
                self.on_rotation_requested(event)

    def on_caught_up(self) -> None:
        self.follow_committee()

    def on_idle(self) -> None:
        self.follow_committee()

    def follow_committee(self) -> None:
        """Handle the committee's events up to the followed height (see
        :class:`CommitteeDriver`). A failure is logged; the same events are read again
        next time."""
        try:
            self.committee_driver.process_events(self.height)
        except SealbridgeError as exc:
            self.error = f"committee: {exc.message}"
            log.warning(self.error)

    def collect_partials(self, request: KeyRequest, needed: int) -> list[PartialKeyRelease]:
        releases: list[PartialKeyRelease] = []
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
        return releases

    def on_contract_deployed(self, event: ChainEvent) -> None:
        contract_id = bytes(event.args["contract_id"])
        if bytes(event.args["gatekeeper_id"]) != self.node_id:
            return
        if self.mgmt.contract_registry.is_key_published(contract_id):
            return
        published = self.derive_public_keys(contract_id, 0)
        if published is None:
            return
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

    def derive_public_keys(self, contract_id: bytes, version: int) -> PublishedContractKey | None:
        """Version ``version`` of a contract's key, combined in the enclave from our
        partial and ``t - 1`` of our peers'; what the registry records of it, signed."""
        group = call(self.enclave, COMMITTEE_STATUS, NOTHING).group
        if group is None:
            log.warning("cannot publish the key of %s: no active share", to_hex(contract_id))
            return None
        request = call(
            self.enclave, MAKE_KEY_REQUEST, MakeKeyRequest(contract_id=contract_id, version=version)
        )
        releases = self.collect_partials(request, group.threshold - 1)
        if len(releases) < group.threshold - 1:
            raise PartialsUnavailable(
                f"{len(releases)} of {group.threshold - 1} peer partials for "
                f"{to_hex(contract_id)[:14]}… (key version {version}); retrying"
            )
        publish = PublishKeyRequest(
            contract_id=contract_id,
            chain_id=self.chain.chain_id,
            contract_registry_address=self.addresses.contract_registry,
            version=version,
        )
        return call(
            self.enclave,
            GATEKEEPER_PUBLISH_CONTRACT_KEY,
            PublishKey(request=publish, releases=releases),
        )

    def on_rotation_requested(self, event: ChainEvent) -> None:
        """The deployer asked for a new key version: publish it if the contract names us."""
        contract_id = bytes(event.args["contract_id"])
        version = int(event.args["version"])
        record = self.mgmt.contract_registry.get_contract(contract_id)
        if record is None or record.gatekeeper_id != self.node_id:
            return
        if not record.rotation_pending or record.key_version + 1 != version:
            return  # rotated meanwhile (this event is being read again)
        published = self.derive_public_keys(contract_id, version)
        if published is None:
            return
        try:
            self.mgmt.contract_registry.rotate_contract_key(
                contract_id,
                version,
                published.contract_public_key,
                published.message_key,
                published.signature,
                self.eth_key,
            )
        except TransactionReverted as exc:
            log.warning("could not rotate the key of %s: %s", to_hex(contract_id), exc.message)
            return
        self.rotated += 1
        log.info("rotated the key of %s to version %d", to_hex(contract_id), version)

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
            "keys_published": self.published,
            "keys_rotated": self.rotated,
            "partials_released": self.released,
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
