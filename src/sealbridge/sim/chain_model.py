"""An in-process model of the chain, as a simulator node: blocks and the NodeRegistry.

Theory of operation
-------------------
In the simulator the chain is a node like the others (:class:`ChainModel`): node hosts'
``SubmitTx`` and ``ReadChain`` effects reach it as messages (the simulator routes them,
:meth:`~sealbridge.sim.engine.Simulator.set_service`), so link delays, partitions and
crashes apply between a node and the chain exactly as between two nodes.

* **Blocks.** A block every ``block_time`` seconds of virtual time (timer ``block``).
  Its timestamp is the virtual time. Transactions that arrived since the last block are
  applied in arrival order when the block is made; each sender gets a ``TxOutcome``
  (``mined`` with the block number, or ``reverted`` with a reason, as the contract
  would revert).
* **Reads** are answered at once, about the newest block (``ChainRead``).
* **The NodeRegistry model** keeps what the upkeep of every role depends on, by the
  contract's rules: a registration (role, expiry) per node id, not registered twice
  while active; a renewal needs a later expiry and is refused with ``registration
  lapsed`` after ``grace`` seconds past expiry; a heartbeat counts once per (era, slot)
  and only for the slot of the block it lands in; era ``e`` is blocks
  ``[e * era_length, (e + 1) * era_length)``, cut into ``HEARTBEAT_SLOTS`` slots.
  Attestation is not modelled (a node id is the sender's, given at build time): the
  model is for schedules, losses and liveness, not for the checks of the real contract,
  which the integration tests run on anvil.
* **Bridged chains** (``bridged``, :class:`~sealbridge.sim.bridged.BridgedChain`): EVM
  chains in real block formats, each with a GatewayEscrow model; a block of each is made
  with every block of this chain (so their numbers are this chain's), from the escrow
  transactions that arrived for it. ``BridgedTipQuery``, ``EvidenceQuery`` and
  ``EscrowKeyQuery`` are answered about them.
* **Two committees**: the gatekeepers' (``committee``) and, when modelled, the gateways'
  (``gateway_committee``, a second GatekeeperCommittee deployed with the gateway role).
  A member's transactions and questions go to the committee whose cards name it; the
  admin's ``Elect`` names its committee.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sealbridge.chain.abi import Role
from sealbridge.chain.ledger import OutputSubmission
from sealbridge.chain.registration import (
    EraParams,
    Heartbeat,
    Register,
    RegistryQuery,
    RegistryView,
    Renew,
)
from sealbridge.core.effects import (
    ChainRead,
    Effect,
    ReadChain,
    Send,
    SetTimer,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.errors import ConfigError, SealbridgeError
from sealbridge.interop.chain_feed import BridgedTipQuery, EvidenceQuery
from sealbridge.keyservice.messages import ChainFacts
from sealbridge.keyservice.publisher import PublishKeyOnChain
from sealbridge.keyservice.threshold_messages import compute_install_binding
from sealbridge.sim.bridged import BRIDGED_TXS, BridgedChain, EscrowKeyQuery
from sealbridge.sim.committee import (
    ADMIN,
    COMMITTEE_QUERIES,
    COMMITTEE_TXS,
    CommitteeModel,
    Elect,
    TipQuery,
)
from sealbridge.sim.evm_blocks import EvmChain
from sealbridge.sim.gatekeeper import DeploymentsQuery, KeyFactsQuery
from sealbridge.sim.worker import LEDGER_QUERIES, Command, DeployContract, LedgerModel

__all__ = ["ChainModel", "RegistryEntry"]

BLOCK_TIMER = "block"
MAX_EVIDENCE = 64  # blocks per EvidenceQuery


@dataclass
class RegistryEntry:
    role: int
    expiry: int
    registered_at: int  # block number
    renewals: int = 0
    heartbeats: set[tuple[int, int]] = field(default_factory=set)  # (era, slot)


class ChainModel:
    """The chain as a simulator node (see the module docstring)."""

    def __init__(
        self,
        address: int,
        identities: dict[int, bytes],
        *,
        block_time: float = 1.0,
        era_length: int = 64,
        grace: int = 3600,
        committee: CommitteeModel | None = None,
        ledger: LedgerModel | None = None,
        gateway_committee: CommitteeModel | None = None,
        bridged: list[BridgedChain] | None = None,
        evm: EvmChain | None = None,
    ) -> None:
        if block_time <= 0 or era_length <= 0 or grace < 0:
            raise ConfigError("a chain model needs block_time > 0, era_length > 0, grace >= 0")
        self.address = address
        self.identities = dict(identities)  # simulator address -> node id (bytes)
        self.block_time = float(block_time)
        self.params = EraParams(genesis_block=0, era_length=era_length)
        self.grace = int(grace)
        self.number = 0  # the newest block
        self.timestamp = 0
        self.pending: list[tuple[int, SubmitTx]] = []
        self.registry: dict[bytes, RegistryEntry] = {}
        self.txs_mined = 0
        self.txs_reverted = 0
        self.committee = committee  # the GatekeeperCommittee's rules, when modelled
        self.ledger = ledger  # the ExecutionLedger's and CommandInbox's, when modelled
        self.gateway_committee = gateway_committee
        self.bridged = {b.chain_id: b for b in bridged or []}
        self.evm = evm  # this chain's own blocks in the real formats, when modelled
        self.admin_outcomes: list[tuple[Any, str]] = []  # (tx, revert reason or "")

    @property
    def node_id(self) -> int:
        return self.address

    def on_start(self, now: float) -> list[Effect]:
        self.timestamp = int(now)
        return [SetTimer(BLOCK_TIMER, self.block_time)]

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name != BLOCK_TIMER:
            return []
        self.number += 1
        self.timestamp = int(now)
        effects: list[Effect] = []
        pending, self.pending = self.pending, []
        for sender, submit in pending:
            reason = self.apply(sender, submit.tx)
            if sender == ADMIN:
                self.admin_outcomes.append((submit.tx, reason))
                continue
            if reason:
                self.txs_reverted += 1
                outcome = TxOutcome(submit.tag, "reverted", self.number, reason)
            else:
                self.txs_mined += 1
                outcome = TxOutcome(submit.tag, "mined", self.number)
            effects.append(Send((sender,), outcome))
        if self.evm is not None:
            self.evm.seal(self.ledger.take_logs() if self.ledger else [], self.timestamp)
        for chain in self.bridged.values():
            chain.seal(self.timestamp)
        effects.append(SetTimer(BLOCK_TIMER, self.block_time))
        return effects

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if isinstance(message, SubmitTx):
            self.pending.append((sender, message))
            return []
        if isinstance(message, ReadChain):
            return [Send((sender,), self.read(message, sender))]
        return []

    def submit_admin(self, tx: Any) -> None:
        """An admin transaction (``Elect``), applied with the next block; its outcome is
        kept in ``admin_outcomes``."""
        self.pending.append((ADMIN, SubmitTx("admin", tx)))

    # -- the registry --------------------------------------------------------------------
    def is_active(self, node_id: bytes, role: int) -> bool:
        entry = self.registry.get(node_id)
        return entry is not None and entry.role == role and entry.expiry >= self.timestamp

    def committee_of(self, sender: int) -> CommitteeModel | None:
        """The committee whose member ``sender`` is (the gatekeepers' by default)."""
        gateways = self.gateway_committee
        if gateways is not None and self.identities.get(sender) in gateways.cards:
            return gateways
        return self.committee

    def read(self, read: ReadChain, sender: int = ADMIN) -> ChainRead:
        query = read.query
        if isinstance(query, TipQuery):
            return ChainRead(read.tag, self.number)
        if isinstance(query, BridgedTipQuery | EvidenceQuery | EscrowKeyQuery):
            return self._read_bridged(read)
        if isinstance(query, KeyFactsQuery):
            return ChainRead(read.tag, self.get_key_facts(query))
        if isinstance(query, DeploymentsQuery) and self.ledger is not None:
            return ChainRead(read.tag, self.ledger.get_deployments(query.first, query.last))
        if self.ledger is not None and isinstance(query, LEDGER_QUERIES):
            try:
                return ChainRead(read.tag, self.ledger.read(query, self.number))
            except ConfigError as exc:
                return ChainRead(read.tag, error=exc.message, passing=False)
        committee = self.committee_of(sender)
        if committee is not None and isinstance(query, COMMITTEE_QUERIES):
            try:
                return ChainRead(read.tag, committee.read(query, self.number))
            except SealbridgeError as exc:
                return ChainRead(read.tag, error=exc.message, passing=False)
        if not isinstance(query, RegistryQuery):
            return ChainRead(
                read.tag, error=f"the chain model answers no {type(query).__name__}", passing=False
            )
        entry = self.registry.get(query.node_id)
        after = self.number + 1
        view = RegistryView(
            tip=self.number,
            active=self.is_active(query.node_id, query.role),
            expiry=entry.expiry if entry is not None else 0,
            next_era=self.params.get_era(after),
            next_slot=self.params.get_slot(after),
        )
        return ChainRead(read.tag, view)

    def get_key_facts(self, query: KeyFactsQuery) -> ChainFacts:
        """What the registries say about a worker's key request (the real gatekeeper's
        enclave reads the same from state proofs it verifies)."""
        ledger = self.ledger
        deployed = ledger.deployed.get(query.contract_id) if ledger is not None else None
        if ledger is None or deployed is None:
            return ChainFacts(worker_active=False, worker_assigned=False, key_published=False)
        return ChainFacts(
            worker_active=self.is_active(query.worker_id, int(Role.WORKER)),
            worker_assigned=query.worker_id in deployed.workers,
            key_published=query.contract_id in ledger.published,
            requester_is_publisher=query.worker_id == deployed.gatekeeper_id,
            install_binding=compute_install_binding(
                deployed.code_hash, deployed.deployer_commitment, list(deployed.workers)
            ),
        )

    def _read_bridged(self, read: ReadChain) -> ChainRead:
        query = read.query
        if self.evm is not None and query.chain_id == self.evm.chain_id:
            if not isinstance(query, EvidenceQuery):
                return ChainRead(read.tag, self.number)
            return self._read_evidence(read, self.evm)
        chain = self.bridged.get(query.chain_id)
        if chain is None:
            return ChainRead(read.tag, error=f"no chain {query.chain_id}", passing=False)
        if isinstance(query, BridgedTipQuery):
            return ChainRead(read.tag, chain.number)
        if isinstance(query, EscrowKeyQuery):
            return ChainRead(read.tag, chain.escrow.group_key)
        return self._read_evidence(read, chain.chain)

    @staticmethod
    def _read_evidence(read: ReadChain, chain: EvmChain) -> ChainRead:
        numbers = read.query.numbers
        if not isinstance(numbers, list) or len(numbers) > MAX_EVIDENCE:
            return ChainRead(read.tag, error="too many blocks asked for", passing=False)
        try:
            return ChainRead(read.tag, chain.get_evidence(numbers))
        except ConfigError as exc:
            return ChainRead(read.tag, error=exc.message, passing=False)

    def apply(self, sender: int, tx: Any) -> str:
        """Apply one transaction at the current block; the revert reason, or ``""``."""
        node_id = self.identities.get(sender)
        if isinstance(tx, BRIDGED_TXS):
            bridged = self.bridged.get(tx.chain_id)
            if bridged is None:
                return f"no chain {tx.chain_id}"
            return bridged.apply(tx, self.timestamp, admin=sender == ADMIN)
        if self.ledger is not None and isinstance(
            tx, Command | DeployContract | OutputSubmission | PublishKeyOnChain
        ):
            sender_id = None if sender == ADMIN else node_id
            return self.ledger.apply(sender_id, tx, self.number, self.is_active)
        if isinstance(tx, Elect):
            model = self.gateway_committee if tx.committee == "gateways" else self.committee
            if model is None:
                return f"no {tx.committee} committee"
            return model.apply(None if sender == ADMIN else node_id, tx, self.number)
        committee = self.committee_of(sender)
        if committee is not None and isinstance(tx, COMMITTEE_TXS):
            return committee.apply(None if sender == ADMIN else node_id, tx, self.number)
        if node_id is None:
            return "unknown sender"
        entry = self.registry.get(node_id)
        if isinstance(tx, Register):
            if entry is not None and self.is_active(node_id, entry.role):
                return "already registered"
            if tx.expiry <= self.timestamp:
                return "expiry in the past"
            self.registry[node_id] = RegistryEntry(tx.role, tx.expiry, self.number)
            return ""
        if isinstance(tx, Renew | Heartbeat) and entry is not None and tx.role != entry.role:
            return "wrong role"
        if isinstance(tx, Renew):
            if entry is None:
                return "not registered"
            if self.timestamp > entry.expiry + self.grace:
                return "registration lapsed"
            if tx.expiry <= entry.expiry:
                return "expiry must grow"
            entry.expiry = tx.expiry
            entry.renewals += 1
            return ""
        if isinstance(tx, Heartbeat):
            if entry is None or not self.is_active(node_id, entry.role):
                return "not an active node"
            slot = (self.params.get_era(self.number), self.params.get_slot(self.number))
            if (tx.era, tx.slot) != slot:
                return "wrong slot"
            if slot in entry.heartbeats:
                return "heartbeat already counted"
            entry.heartbeats.add(slot)
            return ""
        return f"the chain model runs no {type(tx).__name__}"
