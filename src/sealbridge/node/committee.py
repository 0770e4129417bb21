"""The host's side of a TEE committee's key lifecycle on chain (gatekeepers, gateways).

Theory of operation
-------------------
Every decision a node's host makes about a committee's eras -- which events concern
it, what it reads, posts and when, when an era is given up or restarted -- is in the
committee host core (:class:`~sealbridge.keyservice.committee_host.CommitteeHostCore`,
with its state table); the enclave does every check
(:class:`~sealbridge.keyservice.committee.CommitteeMember`). This module is the wiring:
:class:`CommitteeDriver` runs that core on the network driver in inline mode
(:mod:`sealbridge.node.driver`), stepped from the node's follower loop, and carries out
its effects against one GatekeeperCommittee contract (deployed for the gatekeepers'
root key, or with the gateway role for a gateway committee):

* ``CommitteeLogs`` -- the contract's events, read with ``eth_getLogs`` and decoded; a
  ``DealingPosted`` carries the enclave's signature from the transaction's calldata;
* ``EraQuery`` / ``MembersQuery`` / ``DealtQuery`` / ``PendingQuery`` -- contract views;
* ``CardsQuery`` -- each node's keys from the NodeRegistry with the quote of its last
  ``NodeRegistered`` or ``NodeRenewed`` event;
* ``GroupQuery`` -- the active era's public keys from a peer (the enclave checks them);
* ``PostDealing`` / ``ConfirmReady`` / ``RestartEra`` -- transactions from the node's
  gas account; the committee ECALLs on the node's enclave; ``Persist("committee")``
  hands the sealed committee state to ``store``.

Passing failures are retried briefly by the driver's policy (the follower must not
stall) and then repeated by the core itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sealbridge.core.encoding import decode
from sealbridge.core.errors import LocalProtocolError, SealbridgeError
from sealbridge.core.ids import from_hex
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.evm.committee import GatekeeperCommittee
from sealbridge.evm.management import NodeRegistry
from sealbridge.keyservice.committee_host import (
    CardsQuery,
    CommitteeEvent,
    CommitteeHostCore,
    CommitteeLogs,
    ConfirmReady,
    DealingSeen,
    DealtQuery,
    EraElectedSeen,
    EraQuery,
    Followed,
    GroupQuery,
    MembersQuery,
    PendingEra,
    PendingQuery,
    PostDealing,
    RestartEra,
    RotationReadySeen,
    RotationRestartedSeen,
)
from sealbridge.net.http import NodeClient, TransportError
from sealbridge.node.driver import Executors, NetworkDriver
from sealbridge.tee.backend import EnclaveHandle
from sealbridge.tee.card import AttestedCard
from sealbridge.tee.ecall import call
from sealbridge.tee.enclave import NodeKeys

log = logging.getLogger("sealbridge.committee")
RETRY_SECONDS = 2.0  # the driver's own retries; the core repeats an effect after that


class CommitteeUnavailable(LocalProtocolError):
    code = "committee_unavailable"


class GroupUnavailable(TransportError):
    """No peer gave the committee's public keys (passing: the core asks again)."""

    code = "group_unavailable"


class CommitteeDriver:
    """Runs one node's committee host core against one committee contract."""

    def __init__(
        self,
        *,
        committee: GatekeeperCommittee,
        registry: NodeRegistry,
        registry_from_block: int,
        enclave: EnclaveHandle,
        node_id: bytes,
        eth_key: bytes,
        store: Callable[[bytes], None],
        peer_urls: list[str],
    ) -> None:
        self.committee = committee
        self.chain = committee.adapter
        self.registry = registry
        self.registry_from_block = registry_from_block
        self.enclave = enclave
        self.node_id = node_id
        self.eth_key = eth_key
        self.store = store
        self.peer_urls = peer_urls
        self.core = CommitteeHostCore(node_id, scanned=registry_from_block - 1)
        self.driver = NetworkDriver(
            self.core,
            Executors(
                submit_tx=self.submit,
                read_chain=self.read,
                call_enclave=lambda ecall, request: call(self.enclave, ecall, request),
                persist=lambda _key, data: self.store(data),
                retry_seconds=RETRY_SECONDS,
            ),
            name="committee",
            inline=True,
        )

    @property
    def dealings_posted(self) -> int:
        return self.core.dealings_posted

    @property
    def confirmations_posted(self) -> int:
        return self.core.confirmations_posted

    def process_events(self, high: int) -> None:
        """Tell the core the node followed the chain to ``high`` and carry out what it
        asks until nothing is due (on the calling thread)."""
        self.driver.deliver(0, Followed(height=high))
        self.driver.step()

    # -- executors -----------------------------------------------------------------------
    def read(self, query: Any) -> Any:
        committee = self.committee
        if isinstance(query, CommitteeLogs):
            return self.read_events(query.first, query.last)
        if isinstance(query, EraQuery):
            return committee.get_era(query.era)
        if isinstance(query, MembersQuery):
            return committee.get_members(query.era)
        if isinstance(query, DealtQuery):
            return committee.has_dealt(query.era, query.node_id)
        if isinstance(query, CardsQuery):
            return [self.get_card(node_id) for node_id in query.node_ids]
        if isinstance(query, GroupQuery):
            return self.fetch_group()
        if isinstance(query, PendingQuery):
            pending = committee.get_pending_era()
            record = committee.get_era(pending) if pending else None
            return PendingEra(
                era=pending if record is not None else 0,
                deadline=record.deadline if record is not None else 0,
                block_number=self.chain.get_block_number(),
            )
        raise CommitteeUnavailable(f"not a committee question: {type(query).__name__}")

    def submit(self, tx: Any) -> int:
        committee = self.committee
        if isinstance(tx, PostDealing):
            receipt = committee.post_dealing(
                tx.era, tx.dealer, tx.commitments, tx.shares, tx.signature, self.eth_key
            )
            log.info("era %d: dealing posted", tx.era)
        elif isinstance(tx, ConfirmReady):
            receipt = committee.confirm_ready(
                tx.era, tx.member, tx.group_public_key, tx.qualified, tx.signature, self.eth_key
            )
            log.info("era %d: ready confirmed", tx.era)
        elif isinstance(tx, RestartEra):
            receipt = committee.restart(tx.era, self.eth_key)
            log.warning("era %d timed out: restarted", tx.era)
        else:
            raise CommitteeUnavailable(f"not a committee transaction: {type(tx).__name__}")
        return receipt.block_number

    def read_events(self, first: int, last: int) -> list[CommitteeEvent]:
        """The committee's events in blocks ``first..last``, in chain order."""
        out: list[CommitteeEvent] = []
        codec = self.committee.codec
        for entry in self.chain.get_logs(first, last, [self.committee.address]):
            event = codec.events.get(entry.topics[0]) if entry.topics else None
            if event is None:
                continue
            args = event.decode(entry.topics, entry.data)
            if event.name == "EraElected":
                out.append(EraElectedSeen(era=int(args["era"])))
            elif event.name == "DealingPosted":
                posted = codec.function("post_dealing").decode_call(
                    self.chain.get_transaction_input(entry.tx_hash)
                )
                out.append(
                    DealingSeen(
                        era=int(args["era"]),
                        dealer=bytes(args["dealer_id"]),
                        commitments=[bytes(c) for c in args["commitments"]],
                        shares=[bytes(x) for x in args["shares"]],
                        signature=bytes(posted[4]),
                    )
                )
            elif event.name == "RotationReady":
                out.append(
                    RotationReadySeen(
                        era=int(args["era"]), group_public_key=bytes(args["group_public_key"])
                    )
                )
            elif event.name == "RotationRestarted":
                out.append(RotationRestartedSeen(failed_era=int(args["failed_era"])))
        return out

    def get_card(self, node_id: bytes) -> AttestedCard:
        node = self.registry.get_node(node_id)
        if node is None:
            raise CommitteeUnavailable(f"node 0x{node_id.hex()[:12]}… is not registered")
        # the quote of the node's current keys: its registration's, or its last renewal's
        entries = []
        for name in ("NodeRegistered", "NodeRenewed"):
            entries += self.chain.get_logs(
                self.registry_from_block,
                self.chain.get_block_number(),
                [self.registry.address],
                [self.registry.codec.event_by_name(name).topic, node_id],
            )
        quote = b""
        if entries:
            last = max(entries, key=lambda e: (e.block_number, e.tx_index, e.log_index))
            event = self.registry.codec.events[last.topics[0]]
            quote = bytes(event.decode(last.topics, last.data)["quote"])
        return AttestedCard(
            node=NodeKeys(
                identity_key=node.identity_key,
                encryption_key=node.encryption_key,
                eth_address=from_hex(node.enclave_address, size=20),
            ),
            quote=quote,
        )

    def fetch_group(self) -> GroupPublicKeys:
        """The active era's public keys, from a peer (the enclave checks them)."""
        for url in self.peer_urls:
            try:
                with NodeClient(url) as peer:
                    return decode(peer.post("/v1/group", b""), GroupPublicKeys)
            except (TransportError, SealbridgeError) as exc:
                log.info("no group keys from %s: %s", url, exc.message)
        raise GroupUnavailable("no peer gave the committee's public keys")
