"""What every node host shares: wiring to its enclave and the chain, and the follow loop.

Theory of operation
-------------------
A host follows the chain with a :class:`BlockFollower` and hands each final block to
:meth:`NodeHost.on_block`, strictly in order. A block whose handling fails for a passing
reason (the chain or a peer briefly unreachable) is retried after ``RETRY_DELAY`` and is
never skipped; any other failure stops the loop and is kept in ``error`` for the status
endpoint. Once the host has caught up (no delivered block left), :meth:`on_caught_up`
runs, where a host batches work that need not happen per block.

Lifecycle upkeep runs from the same loop (:meth:`NodeHost.on_tick`): the rules are the
sans-I/O :class:`~sealbridge.chain.registration.RegistrationCore` every role shares
(register when inactive, renew once less than a quarter of the TTL is left, one
heartbeat per slot), run by the network driver in inline mode, so its timers fire and
its effects are carried out on this thread between blocks, about once every
``TICK_INTERVAL`` seconds. This module carries out its transactions: an attested
registration (:meth:`NodeHost.register_attested`), a renewal over fresh node keys
(:meth:`NodeHost.send_renewal`, then the switch; a renewal refused because an earlier
attempt was mined after all adopts the staged keys), and heartbeats signed by the
enclave (ECALL ``sign_heartbeat``: it builds the digest itself) and relayed without
waiting for the receipt. A heartbeat is aimed at the slot of the *next* block, where
the transaction lands; the registry also accepts the slot before, so a heartbeat mined
a little late still counts. Upkeep never stops the loop: a failure is an answer the
core decides on (a renewal tried again after ``UPKEEP_RETRY_DELAY``).

Phases: ``STARTING`` -> (``REGISTERING``) -> ``FOLLOWING``, or ``FAILED`` with a reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from enum import Enum
from pathlib import Path

from sealbridge.chain.abi import Role
from sealbridge.chain.errors import RpcError, TransactionReverted
from sealbridge.chain.registration import (
    Heartbeat,
    Register,
    RegistrationCore,
    RegistrationNode,
    RegistryQuery,
    RegistryView,
    Renew,
)
from sealbridge.config.node import GATEKEEPER, GATEWAY, STORAGE, WORKER, NodeConfig
from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import ConfigError, SealbridgeError
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.follower import BlockFollower, ObservedBlock
from sealbridge.evm.management import ManagementAddresses, ManagementContracts, NodeRegistry
from sealbridge.keyservice.ecalls import SIGN_HEARTBEAT, SignHeartbeat
from sealbridge.keyservice.messages import RegistrationApproval, RegistrationRequest
from sealbridge.net.http import NodeClient, TransportError
from sealbridge.node.driver import Executors, NetworkDriver
from sealbridge.tee.backend import EnclaveHandle, StagedKeys
from sealbridge.tee.ecall import call

log = logging.getLogger("sealbridge.node")
RETRY_DELAY = 1.0
TICK_INTERVAL = 1.0  # seconds between lifecycle checks (heartbeat, renewal)
UPKEEP_RETRY_DELAY = 30.0  # seconds before a failed renewal is tried again
ROLES = {
    GATEKEEPER: Role.GATEKEEPER,
    WORKER: Role.WORKER,
    STORAGE: Role.STORAGE,
    GATEWAY: Role.GATEWAY,
}


def read_registry_view(registry: NodeRegistry, query: RegistryQuery) -> RegistryView:
    """The registry's view of one node at the chain's tip (what its upkeep decides on)."""
    tip = registry.adapter.get_block_number()
    params = registry.get_era_params()
    record = registry.get_node(query.node_id)
    return RegistryView(
        tip=tip,
        active=registry.is_active(query.node_id, query.role),
        expiry=record.expiry if record is not None else 0,
        next_era=params.get_era(tip + 1),
        next_slot=params.get_slot(tip + 1),
    )


class HostPhase(Enum):
    STARTING = "starting"
    REGISTERING = "registering"
    FOLLOWING = "following"
    FAILED = "failed"


class NodeHost:
    """Base of the worker, gatekeeper and gateway hosts (the untrusted half of a node)."""

    with_evidence = False  # deliver each block's header fields and receipts too

    def __init__(self, config: NodeConfig, enclave: EnclaveHandle, chain: ChainAdapter) -> None:
        self.config = config
        self.enclave = enclave
        self.chain = chain
        self.addresses = ManagementAddresses.load(config.addresses_file)
        self.mgmt = ManagementContracts(chain, self.addresses)
        self.eth_key = from_hex(config.eth_private_key, size=32, what="eth_private_key")
        self.node_id = enclave.node_keys.identity_key
        self.phase = HostPhase.STARTING
        self.error = ""
        self.height = 0
        self.registration_expiry = 0  # of this node's registration, once known
        # registration upkeep: the rules in chain/registration.py, run from the follow loop
        self.upkeep = RegistrationCore(
            self.node_id,
            int(ROLES[config.role]),
            ttl=config.registration_ttl,
            heartbeats=config.heartbeats,
            tick=TICK_INTERVAL,
            retry_delay=UPKEEP_RETRY_DELAY,
            may_renew=self.may_renew_now,
        )
        self.upkeep_driver = NetworkDriver(
            RegistrationNode(self.upkeep),
            Executors(
                submit_tx=self.submit_registry_tx,
                read_chain=lambda query: read_registry_view(self.mgmt.node_registry, query),
            ),
            name=f"{config.role} {config.name} upkeep",
            inline=True,
        )
        self._next_tick = 0.0
        self._next_upkeep = 0.0
        self._stop = threading.Event()

    def before_following(self) -> None:
        """Work to do once before the follow loop (e.g. registration)."""

    def get_start_block(self) -> int:
        """The first block to follow (called after :meth:`before_following`)."""
        return self.addresses.deployed_at_block

    def on_block(self, block: ObservedBlock) -> None:
        """Handle one final block (override)."""

    def on_caught_up(self) -> None:
        """Called when no delivered block is left to handle (override)."""

    def on_idle(self) -> None:
        """Called after a poll that found no new block (override)."""

    # -- attested registration (workers and gatekeepers) ---------------------------------
    def get_approval(self, request: RegistrationRequest) -> RegistrationApproval:
        """An attested gatekeeper's approval of ``request`` (over HTTP by default)."""
        with NodeClient(self.config.gatekeeper_url) as gk:
            return decode(gk.post("/v1/attest", encode(request)), RegistrationApproval)

    def request_approval(
        self, expiry: int, *, staged: StagedKeys | None = None
    ) -> tuple[bytes, RegistrationApproval]:
        """A fresh quote of the enclave's keys (or of the keys ``staged`` for a renewal)
        and a gatekeeper's approval of it."""
        keys = self.enclave.node_keys if staged is None else staged.node_keys
        quote = self.enclave.get_quote() if staged is None else staged.quote
        request = RegistrationRequest(
            role=int(ROLES[self.config.role]),
            node=keys,
            quote=quote,
            expiry=expiry,
            chain_id=self.chain.chain_id,
            registry_address=self.addresses.node_registry,
            # a hardware quote's collateral, fetched by the operator from Intel PCS or a
            # PCCS (the gatekeeper verifies the quote with it; sim quotes need none)
            collateral=(
                Path(self.config.collateral_file).read_bytes()
                if self.config.collateral_file
                else b""
            ),
        )
        return quote, self.get_approval(request)

    def register(self) -> None:
        """Register by attestation unless already active (then learn the expiry, finish
        a key switch a crash interrupted, and renew at once if the registry names keys
        the enclave does not hold)."""
        registry = self.mgmt.node_registry
        role = ROLES[self.config.role]
        if registry.is_active(self.node_id, role):
            record = registry.get_node(self.node_id)
            self.registration_expiry = record.expiry if record is not None else 0
            log.info("already registered as %s", to_hex(self.node_id))
            if record is not None and not self.adopt_registered_keys(
                record.encryption_key, record.enclave_address
            ):
                # the registry names keys this enclave does not hold (a lost staged-keys
                # file, a restored identity): renew over fresh ones now, not when due
                self.renew_registration()
            return
        self.register_attested(int(time.time()) + self.config.registration_ttl)

    def register_attested(self, expiry: int) -> int:
        """Register over a fresh quote and a gatekeeper's approval of it; the block it
        was mined in."""
        registry = self.mgmt.node_registry
        role = ROLES[self.config.role]
        quote, approval = self.request_approval(expiry)
        keys = self.enclave.node_keys
        receipt = registry.register(
            int(role),
            keys.identity_key,
            keys.encryption_key,
            to_hex(keys.eth_address),
            approval.measurement,
            approval.expiry,
            approval.attestor_id,
            approval.signature,
            quote,
            self.eth_key,
            stake=self.config.stake_wei,
        )
        self.registration_expiry = approval.expiry
        log.info("registered %s %s", self.config.role, to_hex(self.node_id))
        return receipt.block_number

    def adopt_registered_keys(self, encryption_key: bytes, enclave_address: str) -> bool:
        """Whether the enclave holds the keys the registry names, switching to them if
        they are its staged keys (the renewal was mined but the switch was not made:
        the host stopped, or lost the transaction's receipt)."""
        keys = self.enclave.node_keys
        if keys.encryption_key == encryption_key and to_hex(keys.eth_address) == (
            enclave_address.lower()
        ):
            return True
        staged = self.enclave.stage_fresh_keys().node_keys
        if staged.encryption_key == encryption_key and to_hex(staged.eth_address) == (
            enclave_address.lower()
        ):
            self.enclave.switch_keys(staged)
            log.info("switched to the node keys of the last renewal")
            return True
        log.warning("the registry names other node keys than this enclave holds")
        return False

    def may_renew_now(self) -> bool:
        """Whether a key switch is safe now (a gatekeeper defers it while an era's key
        generation runs: its committee peers know it by its current keys)."""
        return True

    def submit_registry_tx(self, tx: object) -> int | None:
        """Carry out one of the upkeep's transactions (the executor of ``SubmitTx``)."""
        if isinstance(tx, Register):
            return self.register_attested(tx.expiry)
        if isinstance(tx, Renew):
            try:
                staged, expiry, block = self.send_renewal(tx.expiry)
            except TransactionReverted as exc:
                if exc.reason == "renewal needs fresh node keys":
                    # an earlier attempt was mined after all (its receipt was lost): the
                    # registry names the staged keys already
                    record = self.mgmt.node_registry.get_node(self.node_id)
                    if record is not None and self.adopt_registered_keys(
                        record.encryption_key, record.enclave_address
                    ):
                        self.registration_expiry = record.expiry
                        return self.chain.get_block_number()
                raise
            self.enclave.switch_keys(staged.node_keys)
            self.registration_expiry = expiry
            log.info("renewed the registration of %s over fresh node keys", self.config.name)
            return block
        if isinstance(tx, Heartbeat):
            self.mgmt.node_registry.send_heartbeat(
                self.node_id, tx.era, tx.slot, self.sign_heartbeat(tx.era, tx.slot), self.eth_key
            )
            return None
        raise ConfigError(f"the registration upkeep sends no {type(tx).__name__}")

    def renew_registration(self) -> None:
        """Renew over fresh node keys (PODG's rule): the enclave stages new keys and a
        quote over them, a gatekeeper approves them, the renewal transaction names them,
        and once it is mined the enclave switches to them (retiring the old secrets)."""
        staged, expiry, _ = self.send_renewal()
        self.enclave.switch_keys(staged.node_keys)
        self.registration_expiry = expiry
        log.info(
            "renewed the registration of %s %s over fresh node keys",
            self.config.role,
            to_hex(self.node_id),
        )

    def send_renewal(self, expiry: int = 0) -> tuple[StagedKeys, int, int]:
        """The renewal's transaction over the enclave's staged keys (approved by a
        gatekeeper), without the switch to them; returns the keys, the new expiry and
        the block it was mined in. ``expiry`` 0: now + ``registration_ttl``."""
        staged = self.enclave.stage_fresh_keys()
        # the registry wants a later expiry than the current one, even within a second
        expiry = max(
            expiry or int(time.time()) + self.config.registration_ttl,
            self.registration_expiry + 1,
        )
        quote, approval = self.request_approval(expiry, staged=staged)
        receipt = self.mgmt.node_registry.renew(
            self.node_id,
            staged.node_keys.encryption_key,
            to_hex(staged.node_keys.eth_address),
            approval.expiry,
            approval.measurement,
            approval.attestor_id,
            approval.signature,
            quote,
            self.eth_key,
        )
        return staged, approval.expiry, receipt.block_number

    def on_tick(self) -> None:
        """Lifecycle upkeep (see the module docstring): the registration core's due
        timers and answers, on this thread. Failures are logged, never raised: they must
        not stop the loop."""
        try:
            self.upkeep_driver.step()
        except SealbridgeError as exc:
            log.warning("registration upkeep failed (tried again later): %s", exc.message)

    def sign_heartbeat(self, era: int, slot: int) -> bytes:
        """The enclave's signature of this node's heartbeat for (era, slot)."""
        request = SignHeartbeat(
            registry=self.addresses.node_registry,
            chain_id=self.chain.chain_id,
            era=era,
            slot=slot,
        )
        return call(self.enclave, SIGN_HEARTBEAT, request).signature

    def run(self) -> None:
        """Follow the chain until stopped; failures are kept in ``phase`` and ``error``."""
        try:
            while True:
                try:
                    self.before_following()
                    break
                except (TransportError, RpcError) as exc:
                    # a peer or the chain briefly unreachable (e.g. too few gatekeepers or
                    # storage nodes answer a recovering worker): try again
                    self.error = f"retrying start: {exc.message}"
                    log.warning(self.error)
                    if self._stop.wait(RETRY_DELAY):
                        return
            self.error = ""
            follower = BlockFollower(
                self.chain,
                self.addresses,
                start_block=self.get_start_block(),
                confirmations=self.config.confirmations,
                with_evidence=self.with_evidence,
            )
            self.phase = HostPhase.FOLLOWING
            pending: deque[ObservedBlock] = deque()
            while not self._stop.is_set():
                self.on_tick()
                if not pending:
                    pending.extend(follower.poll())
                    if not pending:
                        self.on_idle()
                        self._stop.wait(self.config.poll_interval)
                        continue
                try:
                    self.on_block(pending[0])
                except (TransportError, RpcError) as exc:
                    # The chain or a peer is briefly unreachable: retry this same block.
                    self.error = f"retrying block {pending[0].number}: {exc.message}"
                    log.warning(self.error)
                    self._stop.wait(RETRY_DELAY)
                    continue
                self.error = ""
                self.height = pending.popleft().number
                if not pending:
                    self.on_caught_up()
        except Exception as exc:  # keep the process up to report the failure in status
            self.phase = HostPhase.FAILED
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("%s %s stopped", self.config.role, self.config.name)

    def stop(self) -> None:
        self._stop.set()
