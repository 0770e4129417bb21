"""What every node host shares: wiring to its enclave and the chain, and the follow loop.

Theory of operation
-------------------
A host follows the chain with a :class:`BlockFollower` and hands each final block to
:meth:`NodeHost.on_block`, strictly in order. A block whose handling fails for a passing
reason (the chain or a peer briefly unreachable) is retried after ``RETRY_DELAY`` and is
never skipped; any other failure stops the loop and is kept in ``error`` for the status
endpoint. Once the host has caught up (no delivered block left), :meth:`on_caught_up`
runs, where a host batches work that need not happen per block.

Phases: ``STARTING`` -> (``REGISTERING``) -> ``FOLLOWING``, or ``FAILED`` with a reason.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from enum import Enum

from sealbridge.chain.adapter import ChainAdapter
from sealbridge.chain.errors import RpcError
from sealbridge.chain.follower import BlockFollower, ObservedBlock
from sealbridge.chain.management import ManagementAddresses, ManagementContracts
from sealbridge.core.ids import from_hex
from sealbridge.net.http import TransportError
from sealbridge.node.config import NodeConfig
from sealbridge.tee.backend import EnclaveHandle

log = logging.getLogger("sealbridge.node")
RETRY_DELAY = 1.0


class HostPhase(Enum):
    STARTING = "starting"
    REGISTERING = "registering"
    FOLLOWING = "following"
    FAILED = "failed"


class NodeHost:
    """Base of the worker and gatekeeper hosts (the untrusted half of a node)."""

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

    def run(self) -> None:
        """Follow the chain until stopped; failures are kept in ``phase`` and ``error``."""
        try:
            self.before_following()
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
