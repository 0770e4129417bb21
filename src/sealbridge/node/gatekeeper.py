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
  on ``EraElected`` naming it (as member or dealer) the host gives the enclave the
  attested cards of everyone involved (keys from the NodeRegistry, quotes from the last
  ``NodeRegistered`` or ``NodeRenewed`` event) and posts the dealing the enclave
  returns; on each ``DealingPosted`` it passes the dealing (signature from the
  transaction's calldata) to the enclave; once the era has its required number of
  dealings it has the enclave finish with exactly the first ones in chain order -- every
  member sees the same order, so all confirm the same qualified set -- and posts the
  confirmation; on ``RotationReady`` the enclave activates the era and erases older
  shares; on ``RotationRestarted`` it drops the failed era. After a pending era's
  deadline any host calls ``restart``.
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
import time
from pathlib import Path
from typing import Any

from sealbridge.chain.abi import Role, canonical_address
from sealbridge.chain.adapter import ChainAdapter
from sealbridge.chain.committee import CommitteePhase, EraRecord, GatekeeperCommittee
from sealbridge.chain.errors import TransactionReverted
from sealbridge.chain.follower import ChainEvent, ObservedBlock
from sealbridge.core.encoding import decode, encode
from sealbridge.core.errors import LocalProtocolError, SealbridgeError
from sealbridge.core.ids import from_hex, to_hex
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.keyservice.chainfacts import (
    FactsProof,
    HeaderTip,
    ManagementBinding,
    get_fact_slots,
)
from sealbridge.keyservice.committee import ChainBinding, Dealing, EraInfo, MemberCard
from sealbridge.keyservice.ecalls import GatekeeperEnclaveClient
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
from sealbridge.node.config import NodeConfig
from sealbridge.node.host import HostPhase, NodeHost
from sealbridge.tee.backend import EnclaveHandle
from sealbridge.tee.enclave import NodeKeys
from sealbridge.tee.policy import devnet_policy

log = logging.getLogger("sealbridge.gatekeeper")
DEADLINE_CHECK_INTERVAL = 1.0  # seconds between looks at a pending era's deadline


class CommitteeUnavailable(LocalProtocolError):
    code = "committee_unavailable"


class PartialsUnavailable(TransportError):
    """Too few peers answered with a partial (a passing condition: the block is retried)."""

    code = "partials_unavailable"


class EraTrack:
    """What the host follows of one era it takes part in."""

    def __init__(self, info: EraInfo, record: EraRecord) -> None:
        self.info = info
        self.record = record
        self.dealt: list[bytes] = []  # dealer ids in chain order
        self.finished = False


class GatekeeperHost(NodeHost):
    def __init__(self, config: NodeConfig, enclave: EnclaveHandle, chain: ChainAdapter) -> None:
        super().__init__(config, enclave, chain)
        self.calls = GatekeeperEnclaveClient(enclave)
        if not config.committee_address:
            raise LocalProtocolError("a gatekeeper needs committee_address in its config")
        self.committee = GatekeeperCommittee(chain, config.committee_address)
        self.published = 0
        self.rotated = 0
        self.released = 0
        self.approved = 0
        self.dealings_posted = 0
        self.confirmations_posted = 0
        self.home = Path(config.home)
        self.committee_file = self.home / "committee.sealed"
        self.chain_tip_file = self.home / "chain-tip.sealed"
        self._facts_lock = threading.Lock()  # headers advance, then proofs at the tip
        self.eras: dict[int, EraTrack] = {}
        self.scanned = self.addresses.deployed_at_block - 1
        self.handled: set[tuple[bytes, int]] = set()  # events of the unfinished scan
        self._deadline_checked = 0.0
        self.start_enclave_state()

    def start_enclave_state(self) -> None:
        genesis_file = self.home / "genesis.sealed"
        if genesis_file.exists():
            committee = self.committee_file.read_bytes() if self.committee_file.exists() else b""
            tip = self.chain_tip_file.read_bytes() if self.chain_tip_file.exists() else b""
            self.calls.restore(genesis_file.read_bytes(), committee, tip)
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
        sealed = self.calls.genesis(policy, chain, management, anchor)
        genesis_file.parent.mkdir(parents=True, exist_ok=True)
        genesis_file.write_bytes(sealed)
        log.info(
            "genesis: policy, committee and management contracts fixed inside the enclave and "
            "sealed; its header chain starts at block %d",
            head.number,
        )

    def store_committee(self, sealed: bytes) -> None:
        tmp = self.committee_file.with_suffix(".tmp")
        tmp.write_bytes(sealed)
        tmp.replace(self.committee_file)

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
        return decode(self.calls.approve_registration(encode(request)), RegistrationApproval)

    # -- HTTP handlers -------------------------------------------------------------------
    def on_attest(self, payload: bytes) -> bytes:
        out = self.calls.approve_registration(payload)
        self.approved += 1
        return out

    def on_partial_request(self, payload: bytes) -> bytes:
        """A key request: bring the enclave's headers up to the chain, fetch the state
        proofs of the request's facts at its newest header, and let it decide."""
        request = decode(payload, KeyRequest)
        body = decode(request.body, KeyRequestBody)
        with self._facts_lock:
            tip = self.sync_headers()
            proof = self.get_facts_proof(body.contract_id, body.worker_id, tip.number)
            release = self.calls.release_partial(request, proof)
        self.released += 1
        return encode(release)

    def sync_headers(self) -> HeaderTip:
        """Feed the enclave the headers after its newest, up to the final block."""
        final = max(self.chain.get_block_number() - self.config.confirmations, 0)
        out = self.calls.advance_headers([])
        while out.tip.number < final:
            numbers = list(range(out.tip.number + 1, min(final, out.tip.number + 256) + 1))
            out = self.calls.advance_headers(self.chain.get_header_fields(numbers))
            tmp = self.chain_tip_file.with_suffix(".tmp")
            tmp.write_bytes(out.sealed)
            tmp.replace(self.chain_tip_file)
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
        group = self.calls.committee_status().group
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
        """Handle the committee's events up to the followed height (each once, in chain
        order); restart a pending era whose deadline passed. A failure is logged and the
        same events are read again next time (the ones already handled are skipped)."""
        try:
            self.process_committee_events()
        except SealbridgeError as exc:
            self.error = f"committee: {exc.message}"
            log.warning(self.error)

    def process_committee_events(self) -> None:
        high = self.height
        if high > self.scanned:
            for name, args, key in self.read_committee_events(self.scanned + 1, high):
                if key in self.handled:
                    continue
                self.on_committee_event(name, args, key[0])
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

    def read_committee_events(
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

    def on_committee_event(self, name: str, args: dict[str, Any], tx_hash: bytes) -> None:
        era = int(args.get("era", args.get("failed_era", 0)))
        if name == "EraElected":
            self.on_era_elected(era)
        elif name == "DealingPosted":
            self.on_dealing_posted(era, bytes(args["dealer_id"]), args, tx_hash)
        elif name == "RotationReady":
            track = self.eras.get(era)
            if track is not None:
                sealed = self.calls.committee_ready(track.info, bytes(args["group_public_key"]))
                self.store_committee(sealed)
                log.info("era %d is active (rotation ready)", era)
        elif name == "RotationRestarted":
            if era in self.eras:
                self.store_committee(self.calls.committee_failed(era))
                del self.eras[era]
                log.warning("era %d failed and was restarted", era)

    def on_era_elected(self, era: int) -> None:
        record = self.committee.get_era(era)
        if record is None or record.phase != CommitteePhase.ELECTED:
            return
        involved = [*record.members, *record.dealers]
        if self.node_id not in involved:
            return
        info = EraInfo(
            era=era,
            members=record.members,
            threshold=record.threshold,
            dealers=record.dealers,
            previous_era=record.previous_era,
        )
        cards = [self.get_card(node_id) for node_id in dict.fromkeys(involved)]
        previous = None
        if record.previous_era and self.node_id not in record.dealers:
            previous = self.fetch_group()
        out = self.calls.committee_elected(info, cards, previous)
        self.store_committee(out.sealed)
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

    def get_card(self, node_id: bytes) -> MemberCard:
        node = self.mgmt.node_registry.get_node(node_id)
        if node is None:
            raise CommitteeUnavailable(f"node 0x{node_id.hex()[:12]}… is not registered")
        # the quote of the node's current keys: its registration's, or its last renewal's
        registry = self.mgmt.node_registry
        entries = []
        for name in ("NodeRegistered", "NodeRenewed"):
            entries += self.chain.get_logs(
                self.addresses.deployed_at_block,
                self.chain.get_block_number(),
                [self.addresses.node_registry],
                [registry.codec.event_by_name(name).topic, node_id],
            )
        quote = b""
        if entries:
            last = max(entries, key=lambda e: (e.block_number, e.tx_index, e.log_index))
            event = registry.codec.events[last.topics[0]]
            quote = bytes(event.decode(last.topics, last.data)["quote"])
        return MemberCard(
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
        else:
            function = self.committee.codec.function("post_dealing")
            call = function.decode_call(self.chain.get_transaction_input(tx_hash))
            dealing = Dealing(
                era=era,
                dealer=dealer,
                commitments=[bytes(c) for c in args["commitments"]],
                shares=[bytes(x) for x in args["shares"]],
                signature=bytes(call[4]),
            )
            complaint = self.calls.committee_dealing(dealing)
            track.dealt.append(dealer)
            if complaint:
                log.warning("era %d: dealing of %s refused: %s", era, to_hex(dealer), complaint)
            if len(track.dealt) == track.record.required_dealings:
                self.finish_era(track)

    def finish_era(self, track: EraTrack) -> None:
        """Finish with exactly the first required dealings in chain order."""
        qualified = sorted(track.dealt[: track.record.required_dealings])
        out = self.calls.committee_finish(track.info.era, qualified)
        self.store_committee(out.sealed)
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
        for url in self.config.peer_urls:
            try:
                with NodeClient(url) as peer:
                    return decode(peer.post("/v1/group", b""), GroupPublicKeys)
            except (TransportError, SealbridgeError) as exc:
                log.info("no group keys from %s: %s", url, exc.message)
        raise CommitteeUnavailable("no peer gave the committee's public keys")

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
        group = self.calls.committee_status().group
        if group is None:
            log.warning("cannot publish the key of %s: no active share", to_hex(contract_id))
            return None
        request = self.calls.make_key_request(contract_id, version)
        releases = self.collect_partials(request, group.threshold - 1)
        if len(releases) < group.threshold - 1:
            raise PartialsUnavailable(
                f"{len(releases)} of {group.threshold - 1} peer partials for "
                f"{to_hex(contract_id)[:14]}… (key version {version}); retrying"
            )
        return self.calls.publish_contract_key(
            PublishKeyRequest(
                contract_id=contract_id,
                chain_id=self.chain.chain_id,
                contract_registry_address=self.addresses.contract_registry,
                version=version,
            ),
            releases,
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
        committee = self.calls.committee_status()
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
                "dealings_posted": self.dealings_posted,
                "confirmations_posted": self.confirmations_posted,
            },
        }
