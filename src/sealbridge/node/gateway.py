"""A gateway node's host: one member of a cross-chain gateway committee, run by its own
operator with its own account.

Theory of operation
-------------------
The host is untrusted; its enclave (:class:`~sealbridge.interop.evm_gateway.GatewayProgram`)
decides what to sign. The host:

* **Sets the enclave up once** (``<home>/gateway-setup.sealed``): the attestation policy,
  the gateway committee contract, and an anchor for every chain it bridges -- the block
  ``confirmations`` below each chain's tip *as this host's own RPC node reports it* when
  the node first starts. A restart restores the sealed setup, the sealed committee state
  and the sealed signing record; the anchor cannot be moved afterwards.
* **Registers by attestation** on the NodeRegistry with the gateway role, with an
  approval from a gatekeeper enclave (like a worker), and keeps the registration
  renewed over fresh node keys.
* **Takes part in the committee's key generation** on chain
  (:class:`~sealbridge.node.committee.CommitteeDriver`): dealings, confirmations, and
  reshares or fresh key generations when the operator elects a new committee.
* **Names the escrows** once the operator has written them to ``escrows_file`` (they
  are deployed with the committee's group key, so after its first era); the enclave
  seals them and never takes others.
* **Follows every bridged chain** (:class:`~sealbridge.interop.chain_feed.ChainFeedCore`
  on the network driver in inline mode): it hands the enclave each block from its anchor
  up to ``confirmations`` below the tip, with its header fields and receipts
  (``eth_getBlockReceipts``); the enclave verifies the hash links and receipts roots.
* **Answers** ``POST /v1/sign`` (a :class:`SignRequest`; it first brings the enclave up to
  the chains) with the enclave's :class:`SignedPartial`, ``POST /v1/handover`` (a
  :class:`HandoverRequest`, likewise) with the enclave's :class:`HandoverPartial` of an
  escrow's key rotation after a fresh era, ``POST /v1/group`` with the committee's
  public keys (for a newcomer to a reshare), ``GET /v1/info`` and ``GET /v1/status``.
  When following erases a share kept for a handover, the enclave returns its committee
  state sealed again, and the host replaces ``committee.sealed`` with it.

Phases: ``STARTING`` -> ``REGISTERING`` -> ``FOLLOWING`` (or ``FAILED`` with a reason).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from sealbridge.chain.abi import Role
from sealbridge.config.node import NodeConfig, write_atomic
from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import ConfigError, LocalProtocolError, SealbridgeError
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.committee import GatekeeperCommittee
from sealbridge.evm.follower import ObservedBlock
from sealbridge.interop.chain_feed import (
    BridgedTipQuery,
    ChainFeedCore,
    EscrowsNamed,
    EvidenceQuery,
    SyncChains,
)
from sealbridge.interop.evm_gateway import (
    GATEWAY_HANDOVER,
    GATEWAY_RESTORE,
    GATEWAY_SETUP,
    GATEWAY_SIGN,
    GATEWAY_STATUS,
    GATEWAY_WATCH,
    ChainAnchor,
    EscrowRef,
    GatewayRestore,
    GatewaySetup,
    GatewayStatus,
    HandoverRequest,
    SignRequest,
    Watch,
)
from sealbridge.keyservice.committee import ChainBinding
from sealbridge.keyservice.ecalls import COMMITTEE_STATUS
from sealbridge.node.committee import RETRY_SECONDS as COMMITTEE_RETRY_SECONDS
from sealbridge.node.committee import CommitteeDriver, CommitteeUnavailable
from sealbridge.node.driver import Executors, NetworkDriver
from sealbridge.node.host import HostPhase, NodeHost
from sealbridge.tee.backend import EnclaveHandle
from sealbridge.tee.ecall import NOTHING, call
from sealbridge.tee.policy import devnet_policy

log = logging.getLogger("sealbridge.gateway")


class GatewayHost(NodeHost):
    def __init__(self, config: NodeConfig, enclave: EnclaveHandle, chain: ChainAdapter) -> None:
        super().__init__(config, enclave, chain)
        if not config.committee_address:
            raise LocalProtocolError("a gateway needs committee_address (its committee contract)")
        self.committee = GatekeeperCommittee(chain, config.committee_address)
        self.chains: dict[int, ChainAdapter] = {chain.chain_id: chain}
        for url in config.bridged_rpc_urls:
            other = ChainAdapter.rpc(url)
            if other.chain_id in self.chains:
                raise ConfigError(f"chain {other.chain_id} is named twice")
            self.chains[other.chain_id] = other
        self.home = Path(config.home)
        self.setup_file = self.home / "gateway-setup.sealed"
        self.committee_file = self.home / "committee.sealed"
        self.state_file = self.home / "gateway-state.sealed"
        self._follow_lock = threading.Lock()  # one feed round at a time
        self.escrows_named = False  # the enclave serves its escrows (named once, for good)
        self.signed = 0
        self.refused = 0
        self.handovers_signed = 0
        self.committee_driver = CommitteeDriver(
            committee=self.committee,
            registry=self.mgmt.node_registry,
            registry_from_block=self.addresses.deployed_at_block,
            enclave=enclave,  # the committee ECALLs: the gatekeeper's
            node_id=self.node_id,
            eth_key=self.eth_key,
            store=lambda sealed: write_atomic(self.committee_file, sealed),
            peer_urls=config.peer_urls,
        )
        self.start_enclave_state()

    # -- the enclave's sealed state -------------------------------------------------------
    def start_enclave_state(self) -> None:
        if self.setup_file.exists():
            restore = GatewayRestore(
                setup=self.setup_file.read_bytes(),
                committee=self._read(self.committee_file),
                state=self._read(self.state_file),
            )
            call(self.enclave, GATEWAY_RESTORE, restore)
            log.info("setup, committee share and signing record restored from %s", self.home)
        else:
            anchors = []
            for chain_id, adapter in sorted(self.chains.items()):
                block = adapter.get_block(
                    max(adapter.get_block_number() - self.config.confirmations, 0)
                )
                anchors.append(
                    ChainAnchor(chain_id=chain_id, number=block.number, block_hash=block.hash)
                )
            setup = GatewaySetup(
                policy=devnet_policy(
                    from_hex(self.config.platform_public_key, size=32, what="platform_public_key"),
                    [
                        from_hex(m, size=32, what="measurement")
                        for m in self.config.allowed_measurements
                    ],
                ),
                committee=ChainBinding(
                    chain_id=self.chain.chain_id, committee_address=self.committee.address
                ),
                anchors=anchors,
                confirmations=max(self.config.release_confirmations, 1),
            )
            out = call(self.enclave, GATEWAY_SETUP, setup)
            self.setup_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.setup_file, out.sealed)
            log.info(
                "setup sealed: light clients anchored at %s",
                ", ".join(f"chain {a.chain_id} block {a.number}" for a in anchors),
            )
        status = self.get_enclave_status()
        self.feed_core = ChainFeedCore(
            {int(cid): height for cid, height in status.heights.items()},
            confirmations=self.config.confirmations,
        )
        self.feed = NetworkDriver(
            self.feed_core,
            Executors(
                read_chain=self.read_chains,
                call_enclave=lambda ecall, request: call(self.enclave, ecall, request),
                persist=lambda _key, data: self.store_committee(data),
                retry_seconds=COMMITTEE_RETRY_SECONDS,
            ),
            name="chain-feed",
            inline=True,
        )
        self.escrows_named = bool(status.escrows)
        if self.escrows_named:
            self.feed.deliver(0, EscrowsNamed())

    @staticmethod
    def _read(path: Path) -> bytes:
        return path.read_bytes() if path.exists() else b""

    def get_enclave_status(self) -> GatewayStatus:
        return call(self.enclave, GATEWAY_STATUS, NOTHING)

    # -- registration ---------------------------------------------------------------------
    def before_following(self) -> None:
        if not self.mgmt.node_registry.is_active(self.node_id, Role.GATEWAY):
            self.phase = HostPhase.REGISTERING
        self.register()

    def may_renew_now(self) -> bool:
        """Not while an era's key generation runs (its members know us by our keys)."""
        return self.committee.get_pending_era() == 0

    # -- following ------------------------------------------------------------------------
    def on_block(self, block: ObservedBlock) -> None:
        """Management events are not a gateway's business; its committee is read when
        caught up (:meth:`on_caught_up`)."""

    def on_caught_up(self) -> None:
        self.follow_everything()

    def on_idle(self) -> None:
        self.follow_everything()

    def follow_everything(self) -> None:
        try:
            self.committee_driver.process_events(self.height)
            self.name_escrows()
            self.sync_chains()
        except SealbridgeError as exc:
            self.error = f"gateway: {exc.message}"
            log.warning(self.error)
            return
        if self.feed_core.last_error:  # a round that stopped: say why in the status
            self.error = f"gateway: {self.feed_core.last_error}"
            log.warning(self.error)

    def name_escrows(self) -> None:
        """Name the escrows to the enclave once the operator's file lists them."""
        if self.escrows_named or not self.config.escrows_file:
            return
        path = Path(self.config.escrows_file)
        if not path.exists():
            return
        try:
            listed = json.loads(path.read_text())
            refs = [EscrowRef(chain_id=int(cid), escrow=str(a)) for cid, a in listed.items()]
        except (ValueError, AttributeError, TypeError) as exc:
            raise ConfigError(f"{path}: not a JSON object of chain id -> escrow") from exc
        out = call(self.enclave, GATEWAY_WATCH, Watch(escrows=refs))
        write_atomic(self.state_file, out.sealed)
        self.escrows_named = True
        self.feed.deliver(0, EscrowsNamed())
        log.info("serving the escrows %s", listed)

    def sync_chains(self) -> None:
        """Run a round of the chain feed (:class:`ChainFeedCore`): the enclave gets every
        block it has not verified, up to ``confirmations`` below each chain's tip."""
        with self._follow_lock:
            self.feed.deliver(0, SyncChains())
            self.feed.step()

    def read_chains(self, query: Any) -> Any:
        if isinstance(query, BridgedTipQuery | EvidenceQuery):
            adapter = self.chains.get(query.chain_id)
            if adapter is None:
                raise ConfigError(f"chain {query.chain_id} is not bridged by this gateway")
            if isinstance(query, BridgedTipQuery):
                return adapter.get_block_number()
            return adapter.get_block_evidence(query.numbers)
        raise ConfigError(f"not a chain feed question: {type(query).__name__}")

    def store_committee(self, sealed: bytes) -> None:
        write_atomic(self.committee_file, sealed)
        log.info("the new committee key is installed: old share erased")

    # -- HTTP handlers ---------------------------------------------------------------------
    def on_sign(self, payload: bytes) -> bytes:
        """A partial signature for one phase of a transfer, if the enclave agrees after
        seeing the chains up to now."""
        request = decode(payload, SignRequest)
        self.sync_chains()
        try:
            out = call(self.enclave, GATEWAY_SIGN, request)
        except SealbridgeError:
            self.refused += 1
            raise
        write_atomic(self.state_file, out.sealed)
        self.signed += 1
        return encode(out.signed)

    def on_handover(self, payload: bytes) -> bytes:
        """A partial signature of an escrow's key rotation to a fresh era's key, by the
        share of the era it replaced, if the enclave agrees after seeing the chains."""
        request = decode(payload, HandoverRequest)
        self.sync_chains()
        try:
            signed = call(self.enclave, GATEWAY_HANDOVER, request)
        except SealbridgeError:
            self.refused += 1
            raise
        self.handovers_signed += 1
        return encode(signed)

    def on_group(self, payload: bytes) -> bytes:
        group = call(self.enclave, COMMITTEE_STATUS, NOTHING).group
        if group is None:
            raise CommitteeUnavailable("this gateway holds no active share")
        return encode(group)

    def get_info(self) -> dict[str, Any]:
        keys = self.enclave.node_keys
        return {
            "role": "gateway",
            "name": self.config.name,
            "node_id": to_hex(keys.identity_key),
            "identity_key": to_hex(keys.identity_key),
            "encryption_key": to_hex(keys.encryption_key),
            "eth_address": to_hex(keys.eth_address),
            "account": ChainAdapter.address_of(self.eth_key),
            "measurement": to_hex(self.enclave.measurement),
        }

    def get_status(self) -> dict[str, Any]:
        status = self.get_enclave_status()
        return {
            "role": "gateway",
            "name": self.config.name,
            "node_id": to_hex(self.node_id),
            "account": ChainAdapter.address_of(self.eth_key),
            "phase": self.phase.value,
            "error": self.error,
            "height": self.height,
            "registered": self.mgmt.node_registry.is_active(self.node_id, Role.GATEWAY),
            "measurement": to_hex(self.enclave.measurement),
            "member": status.member,
            "index": status.index,
            "era": status.era,
            "group_public_key": to_hex(status.group_public_key) if status.member else "",
            "heights": status.heights,
            "chain_feed": {
                "rounds": self.feed_core.rounds,
                "blocks_fed": self.feed_core.blocks_fed,
                "error": self.feed_core.last_error,
            },
            "escrows": status.escrows,
            "locks_seen": status.locks,
            "releases_seen": status.released,
            "partials_signed": self.signed,
            "handover_partials_signed": self.handovers_signed,
            "handover_eras": status.handover,
            "key_epochs": status.key_epochs,
            "requests_refused": self.refused,
            "dealings_posted": self.committee_driver.dealings_posted,
            "confirmations_posted": self.committee_driver.confirmations_posted,
        }
