"""The host's side of a TEE committee's key lifecycle on chain (gatekeepers, gateways).

Theory of operation
-------------------
:class:`CommitteeDriver` follows one GatekeeperCommittee contract (deployed for the
gatekeepers' root key, or with the gateway role for a gateway committee) and drives
its node's enclave through each era it takes part in; the enclave does every check
(:class:`~sealbridge.keyservice.committee.CommitteeMember`), the host only moves data:

* on ``EraElected`` naming this node (as member or dealer) it gives the enclave the
  attested cards of everyone involved (keys from the NodeRegistry, quotes from the last
  ``NodeRegistered`` or ``NodeRenewed`` event) and posts the dealing the enclave returns;
* on each ``DealingPosted`` it passes the dealing (signature from the transaction's
  calldata) to the enclave; once the era has its required number of dealings it has the
  enclave finish with exactly the first ones in chain order -- every member sees the
  same order, so all confirm the same qualified set -- and posts the confirmation;
* on ``RotationReady`` the enclave activates the era and erases older shares; on
  ``RotationRestarted`` it drops the failed era. After a pending era's deadline any host
  calls ``restart``.
* a *fresh* era (``elect_fresh``: a new key generation, gateway committees only) is
  followed like a genesis by its members; a member of the era it replaces that is not
  elected again follows it too, without an ECALL until its ``RotationReady``, which
  tells its enclave to keep the old share for the key's handover (the enclave's owner
  erases it once the new key is installed: :mod:`sealbridge.interop.evm_gateway`).

Events are read with ``eth_getLogs`` up to the height the node has followed, each once
in chain order; a failure leaves the same events to be read again (the ones already
handled are skipped). Every sealed committee state the enclave returns is handed to
``store`` before the next step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sealbridge.chain.errors import TransactionReverted
from sealbridge.core.encoding import decode
from sealbridge.core.errors import LocalProtocolError, SealbridgeError
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.evm.committee import CommitteePhase, EraRecord, GatekeeperCommittee
from sealbridge.evm.management import NodeRegistry
from sealbridge.keyservice.committee import Dealing, EraInfo
from sealbridge.keyservice.ecalls import (
    COMMITTEE_DEALING,
    COMMITTEE_ELECTED,
    COMMITTEE_FAILED,
    COMMITTEE_FINISH,
    COMMITTEE_READY,
    Activate,
    Elected,
    EraRef,
    Finish,
)
from sealbridge.net.http import NodeClient, TransportError
from sealbridge.tee.backend import EnclaveHandle
from sealbridge.tee.card import AttestedCard
from sealbridge.tee.ecall import call
from sealbridge.tee.enclave import NodeKeys

log = logging.getLogger("sealbridge.committee")
DEADLINE_CHECK_INTERVAL = 1.0  # seconds between looks at a pending era's deadline


class CommitteeUnavailable(LocalProtocolError):
    code = "committee_unavailable"


class EraTrack:
    """What the host follows of one era it takes part in."""

    def __init__(self, info: EraInfo, record: EraRecord) -> None:
        self.info = info
        self.record = record
        self.dealt: list[bytes] = []  # dealer ids in chain order
        self.finished = False


class CommitteeDriver:
    """Follows one committee contract for one node (see the module docstring)."""

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
        self.eras: dict[int, EraTrack] = {}
        self.scanned = registry_from_block - 1
        self.handled: set[tuple[bytes, int]] = set()  # events of the unfinished scan
        self.dealings_posted = 0
        self.confirmations_posted = 0
        self._deadline_checked = 0.0

    def process_events(self, high: int) -> None:
        """Handle the committee's events up to block ``high``; restart a pending era
        whose deadline passed."""
        if high > self.scanned:
            for name, args, key in self.read_events(self.scanned + 1, high):
                if key in self.handled:
                    continue
                self.on_event(name, args, key[0])
                self.handled.add(key)
            self.scanned = high
            self.handled.clear()
        now = time.monotonic()
        if now - self._deadline_checked < DEADLINE_CHECK_INTERVAL:
            return
        self._deadline_checked = now
        pending = self.committee.get_pending_era()
        if pending:
            record = self.committee.get_era(pending)
            if record is not None and self.chain.get_block_number() > record.deadline:
                try:
                    self.committee.restart(pending, self.eth_key)
                    log.warning("era %d timed out: restarted", pending)
                except TransactionReverted as exc:
                    log.info("restart of era %d refused: %s", pending, exc.reason)

    def read_events(
        self, first: int, last: int
    ) -> list[tuple[str, dict[str, Any], tuple[bytes, int]]]:
        """(name, args, (tx hash, log index)) of the committee's events, in chain order."""
        out: list[tuple[str, dict[str, Any], tuple[bytes, int]]] = []
        codec = self.committee.codec
        for entry in self.chain.get_logs(first, last, [self.committee.address]):
            event = codec.events.get(entry.topics[0]) if entry.topics else None
            if event is not None:
                key = (entry.tx_hash, entry.log_index)
                out.append((event.name, event.decode(entry.topics, entry.data), key))
        return out

    def on_event(self, name: str, args: dict[str, Any], tx_hash: bytes) -> None:
        era = int(args.get("era", args.get("failed_era", 0)))
        if name == "EraElected":
            self.on_era_elected(era)
        elif name == "DealingPosted":
            self.on_dealing_posted(era, bytes(args["dealer_id"]), args, tx_hash)
        elif name == "RotationReady":
            track = self.eras.get(era)
            if track is not None:
                activate = Activate(
                    info=track.info, group_public_key=bytes(args["group_public_key"])
                )
                self.store(call(self.enclave, COMMITTEE_READY, activate).sealed)
                log.info("era %d is active (rotation ready)", era)
        elif name == "RotationRestarted":
            if era in self.eras:
                self.store(call(self.enclave, COMMITTEE_FAILED, EraRef(era=era)).sealed)
                del self.eras[era]
                log.warning("era %d failed and was restarted", era)

    def on_era_elected(self, era: int) -> None:
        record = self.committee.get_era(era)
        if record is None or record.phase != CommitteePhase.ELECTED:
            return
        involved = [*record.members, *record.dealers]
        info = EraInfo(
            era=era,
            members=record.members,
            threshold=record.threshold,
            dealers=record.dealers,
            previous_era=record.previous_era,
            fresh=record.fresh,
        )
        if self.node_id not in involved:
            if record.fresh and self.node_id in self.committee.get_members(record.previous_era):
                # leaving with the replaced era: only its RotationReady concerns us
                track = EraTrack(info, record)
                track.finished = True  # it neither deals nor confirms
                self.eras[era] = track
                log.info("era %d: a fresh key replaces our era %d's", era, record.previous_era)
            return
        cards = [self.get_card(node_id) for node_id in dict.fromkeys(involved)]
        previous = None
        if record.is_resharing and self.node_id not in record.dealers:
            previous = self.fetch_group()
        out = call(
            self.enclave, COMMITTEE_ELECTED, Elected(info=info, cards=cards, previous=previous)
        )
        self.store(out.sealed)
        self.eras[era] = EraTrack(info, record)
        if out.dealing is not None and self.committee.has_dealt(era, self.node_id):
            # dealt before a restart: that dealing stands (the new one is dropped); without
            # the lost pending state this member cannot finish, and the era times out
            log.warning("era %d: already dealt before a restart; not dealing again", era)
        elif out.dealing is not None:
            dealing = out.dealing
            self.committee.post_dealing(
                era,
                dealing.dealer,
                dealing.commitments,
                dealing.shares,
                dealing.signature,
                self.eth_key,
            )
            self.dealings_posted += 1
            log.info("era %d: dealing posted", era)

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

    def on_dealing_posted(
        self, era: int, dealer: bytes, args: dict[str, Any], tx_hash: bytes
    ) -> None:
        track = self.eras.get(era)
        if track is None or track.finished or dealer in track.dealt:
            return
        if self.node_id not in track.info.members:
            track.dealt.append(dealer)
            return
        function = self.committee.codec.function("post_dealing")
        posted = function.decode_call(self.chain.get_transaction_input(tx_hash))
        dealing = Dealing(
            era=era,
            dealer=dealer,
            commitments=[bytes(c) for c in args["commitments"]],
            shares=[bytes(x) for x in args["shares"]],
            signature=bytes(posted[4]),
        )
        complaint = call(self.enclave, COMMITTEE_DEALING, dealing).complaint
        track.dealt.append(dealer)
        if complaint:
            log.warning("era %d: dealing of %s refused: %s", era, to_hex(dealer), complaint)
        if len(track.dealt) == track.record.required_dealings:
            self.finish_era(track)

    def finish_era(self, track: EraTrack) -> None:
        """Finish with exactly the first required dealings in chain order."""
        qualified = sorted(track.dealt[: track.record.required_dealings])
        out = call(self.enclave, COMMITTEE_FINISH, Finish(era=track.info.era, qualified=qualified))
        self.store(out.sealed)
        track.finished = True
        confirmation = out.confirmation
        self.committee.confirm_ready(
            confirmation.era,
            confirmation.member,
            confirmation.group_public_key,
            confirmation.qualified,
            confirmation.signature,
            self.eth_key,
        )
        self.confirmations_posted += 1
        log.info("era %d: ready confirmed", track.info.era)

    def fetch_group(self) -> GroupPublicKeys:
        """The active era's public keys, from a peer (the enclave checks them)."""
        for url in self.peer_urls:
            try:
                with NodeClient(url) as peer:
                    return decode(peer.post("/v1/group", b""), GroupPublicKeys)
            except (TransportError, SealbridgeError) as exc:
                log.info("no group keys from %s: %s", url, exc.message)
        raise CommitteeUnavailable("no peer gave the committee's public keys")
