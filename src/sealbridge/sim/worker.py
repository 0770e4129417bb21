"""Workers in the simulator: the ExecutionLedger's rules and simulated worker hosts.

Theory of operation
-------------------
Competitive execution is a race between the hosts of one contract's workers: each
asks its enclave to sign the outputs of the blocks since the last accepted end, the
ExecutionLedger keeps the first valid one per range, and now and then a submission
carries a checkpoint that the storage nodes must confirm first. The worker's side of
it is a sans-I/O host core (:class:`~sealbridge.runtime.submission.SubmissionCore`);
this module runs that core, unchanged, in the deterministic simulator:

* :class:`LedgerModel` -- the ExecutionLedger's and CommandInbox's rules, held by the
  chain model (:class:`~sealbridge.sim.chain_model.ChainModel` hands it the ledger's
  transactions and questions): a submission is accepted only from an active worker
  assigned to every contract it names, for a range that starts at each contract's
  last accepted end, is not empty and ends in the past, with command counts that never
  go backwards; a checkpoint must come inline with a matching hash and size, or with at
  least ``storage_threshold`` distinct storage confirmations, each a storage receipt
  whose signature verifies (real secp256k1) and whose node is an active storage node of
  the registry model. Commands are the admin's (``Command``), one per contract per call.
* :class:`SimWorker` -- one worker host as a simulator node: its submission core; a
  follower that asks the chain for its height every ``poll`` seconds and tells the core
  it caught up (``CaughtUp``); ``StoreCheckpoint`` carried out as the network worker
  does it, by offering the blob to every storage node (the real
  :class:`~sealbridge.storage.host.StorageHostCore`, over simulated links) and answering
  with the first ``threshold`` receipts, sorted by node id, or a failure after
  ``store_timeout`` seconds.

**What is modelled, not run** (here; :mod:`sealbridge.sim.enclave_worker` runs the real
enclave instead). The worker's *enclave* is not run by :class:`SimWorker`:
:class:`OutputsModel` stands in for it and is labelled so: it signs what an honest
enclave would -- for each contract, the range from the ledger's accepted end to the
height its host reported, a state root that is a function of the commands applied up to
there, a checkpoint blob at that height when asked -- with a signature the ledger model
does not check (attestation and enclave keys are not modelled, as in the registry
model). It is cheap, for runs about the hosts' side: who submits what, when, what the
race and the faults (crashed or partitioned storage nodes, crashed workers) do to it.

**With real blocks** (``addresses`` and ``block_hash`` given, for enclave workers), the
ledger model also writes the management contracts' events into the chain's blocks -- a
``Command`` per command (its ciphertext as sent), ``ContractDeployed`` and
``ContractKeyPublished`` per :class:`DeployContract`, ``OutputAccepted`` per accepted
contract and ``CheckpointRecorded`` per checkpoint -- and accepts an output only if its
end hash is the chain's hash of its end block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sealbridge.chain.abi import Role
from sealbridge.chain.ledger import OutputSubmission
from sealbridge.chain.lightclient import EventLog
from sealbridge.core.effects import (
    CallEnclave,
    CheckpointStored,
    Effect,
    EnclaveAnswer,
    Send,
    SetTimer,
    StoreCheckpoint,
)
from sealbridge.core.encoding import Message, encode
from sealbridge.core.errors import ConfigError
from sealbridge.core.ids import keccak
from sealbridge.keyservice.publisher import (
    ContractDeployedSeen,
    ContractKeyQuery,
    ContractKeyView,
    KeyPublishedQuery,
    PublishKeyOnChain,
)
from sealbridge.runtime.catchup import (
    BlockHashQuery,
    CheckpointRecordsQuery,
    CheckpointView,
    CheckpointViews,
    ContractRecordsQuery,
    ContractView,
    ContractViews,
    KeyEvent,
    KeyEvents,
    KeyEventsQuery,
)
from sealbridge.runtime.ecalls import WORKER_SIGN_OUTPUTS
from sealbridge.runtime.messages import SignedOutputs, SignOutputs
from sealbridge.runtime.submission import (
    AcceptedEnds,
    AcceptedEndsQuery,
    BlockNumberQuery,
    CaughtUp,
    CheckpointFacts,
    CheckpointFactsQuery,
    StorageThresholdQuery,
    SubmissionCore,
)
from sealbridge.sim.committee import TipPoller
from sealbridge.sim.management_logs import (
    checkpoint_recorded_log,
    command_log,
    contract_deployed_log,
    key_published_log,
    output_accepted_log,
)
from sealbridge.storage.host import StoreBlob, StoreRefused
from sealbridge.storage.messages import StorageReceipt
from sealbridge.storage.node import is_valid_receipt

__all__ = [
    "LEDGER_QUERIES",
    "Command",
    "DeployContract",
    "LedgerModel",
    "ManagementEventSources",
    "OutputsModel",
    "SimWorker",
]

LEDGER_QUERIES = (
    KeyPublishedQuery,
    ContractKeyQuery,
    AcceptedEndsQuery,
    CheckpointFactsQuery,
    StorageThresholdQuery,
    BlockNumberQuery,
    BlockHashQuery,
    KeyEventsQuery,
    ContractRecordsQuery,
    CheckpointRecordsQuery,
)
CHECKPOINT_PAD = 4096  # bytes of a modelled checkpoint blob (over the inline limit)


class Command(Message, frozen=True):
    """The admin sends one command to ``contract_id`` (the CommandInbox's submit); with
    real blocks, ``ciphertext`` is the sealed command a user signed."""

    contract_id: bytes
    ciphertext: bytes = b""


class DeployContract(Message, frozen=True):
    """The admin records a contract's deployment in the ContractRegistry; its publishing
    gatekeeper (``gatekeeper_id``) publishes its keys later (``PublishKeyOnChain``)."""

    contract_id: bytes
    code_hash: bytes
    workers: list[bytes]
    deployer_commitment: bytes
    gatekeeper_id: bytes


@dataclass(frozen=True)
class ManagementEventSources:
    """Where the management contracts' events come from (20 bytes each), and the
    account the admin's transactions are sent from."""

    command_inbox: bytes
    contract_registry: bytes
    execution_ledger: bytes
    admin: bytes


@dataclass
class _Accepted:
    end: int = 0
    state_root: bytes = bytes(32)
    commands_applied: int = 0


@dataclass
class LedgerModel:
    """The ExecutionLedger's and CommandInbox's rules (see the module docstring)."""

    executors: dict[bytes, list[bytes]]  # contract id -> its workers' node ids
    storage_threshold: int
    ledger_address: str
    chain_id: int
    accepted: dict[bytes, _Accepted] = field(default_factory=dict)
    checkpoints: dict[bytes, int] = field(default_factory=dict)  # contract id -> height
    commands: list[tuple[int, bytes]] = field(default_factory=list)  # (block, contract id)
    accepted_by: dict[bytes, int] = field(default_factory=dict)  # node id -> submissions
    accepts: int = 0
    # with real blocks: the contracts' addresses, the chain's block hashes (an output's
    # end hash must be the chain's), and the logs of this block's transactions
    addresses: ManagementEventSources | None = None
    block_hash: Callable[[int], bytes] | None = None
    logs: list[list[EventLog]] = field(default_factory=list)
    seq: int = 0  # the inbox's command counter
    deployed: dict[bytes, DeployContract] = field(default_factory=dict)
    deployed_at: list[tuple[int, bytes]] = field(default_factory=list)  # (block, contract)
    published: dict[bytes, PublishKeyOnChain] = field(default_factory=dict)
    key_events: list[KeyEvent] = field(default_factory=list)
    checkpoint_records: dict[bytes, CheckpointView] = field(default_factory=dict)
    inline_blobs: dict[bytes, bytes] = field(default_factory=dict)  # hash -> inline blob

    def take_logs(self) -> list[list[EventLog]]:
        """The logs of the block being made, one list per transaction (and forget them)."""
        logs, self.logs = self.logs, []
        return logs

    def get_accepted(self, contract_id: bytes) -> _Accepted:
        return self.accepted.get(contract_id, _Accepted())

    def count_commands(self, contract_id: bytes, height: int) -> int:
        return sum(1 for block, cid in self.commands if cid == contract_id and block <= height)

    def apply(self, sender_id: bytes | None, tx: Any, block: int, is_active: Any) -> str:
        if isinstance(tx, DeployContract):
            return self._deploy(sender_id, tx, block)
        if isinstance(tx, PublishKeyOnChain):
            return self._publish(sender_id, tx, block)
        if isinstance(tx, Command):
            if sender_id is not None:
                return "only the admin sends commands here"
            if tx.contract_id not in self.executors:
                return "unknown contract"
            self.commands.append((block, tx.contract_id))
            if self.addresses is not None:
                log = command_log(
                    tx.contract_id,
                    self.seq,
                    tx.ciphertext,
                    sender=self.addresses.admin,
                    address=self.addresses.command_inbox,
                )
                self.seq += 1
                self.logs.append([log])
            return ""
        if sender_id is None or not isinstance(tx, OutputSubmission):
            return "unknown sender"
        return self._submit(sender_id, tx, block, is_active)

    def _deploy(self, sender_id: bytes | None, tx: DeployContract, block: int) -> str:
        if sender_id is not None:
            return "only the admin deploys here"
        if self.addresses is None:
            return "deployments are recorded only with real blocks"
        if tx.contract_id in self.deployed:
            return "contract already deployed"
        self.deployed[tx.contract_id] = tx
        self.deployed_at.append((block, tx.contract_id))
        deployed = contract_deployed_log(
            tx.contract_id,
            code_hash=tx.code_hash,
            workers=tx.workers,
            deployer_commitment=tx.deployer_commitment,
            gatekeeper_id=tx.gatekeeper_id,
            deployer=self.addresses.admin,
            address=self.addresses.contract_registry,
        )
        self.logs.append([deployed])
        return ""

    def _publish(self, sender_id: bytes | None, tx: PublishKeyOnChain, block: int) -> str:
        """``publish_contract_key``: by the contract's publishing gatekeeper, once (the
        enclave's signature over the keys is not checked here)."""
        deployed = self.deployed.get(tx.contract_id)
        if deployed is None or self.addresses is None:
            return "contract not registered"
        if sender_id != deployed.gatekeeper_id:
            return "not the contract's gatekeeper"
        if tx.contract_id in self.published:
            return "key already published"
        self.published[tx.contract_id] = tx
        self.key_events.append(
            KeyEvent(
                contract_id=tx.contract_id,
                block_number=block,
                contract_public_key=tx.contract_public_key,
                message_key=tx.message_key,
            )
        )
        published = key_published_log(
            tx.contract_id,
            tx.contract_public_key,
            tx.message_key,
            tx.wrapped_key,
            address=self.addresses.contract_registry,
        )
        self.logs.append([published])
        return ""

    def get_deployments(self, first: int, last: int) -> list[ContractDeployedSeen]:
        return [
            ContractDeployedSeen(contract_id=cid, gatekeeper_id=self.deployed[cid].gatekeeper_id)
            for block, cid in self.deployed_at
            if first <= block <= last
        ]

    def _submit(self, sender: bytes, tx: OutputSubmission, block: int, is_active: Any) -> str:
        count = len(tx.contract_ids)
        if count == 0:
            return "no contracts"
        if not len(tx.starts) == len(tx.state_roots) == len(tx.commands_applied) == count:
            return "arrays differ in length"
        if tx.node_id != sender:
            return "not the sender's node"
        if not is_active(sender, int(Role.WORKER)):
            return "node is not an active worker"
        if not tx.end < block:
            return "end block is not in the past"
        for cid, start, applied in zip(
            tx.contract_ids, tx.starts, tx.commands_applied, strict=True
        ):
            if sender not in self.executors.get(cid, []):
                return "worker not assigned to contract"
            previous = self.get_accepted(cid)
            if start != previous.end:
                return "range does not start at the last accepted end"
            if tx.end <= start:
                return "empty range"
            if applied < previous.commands_applied:
                return "command count went backwards"
        if self.block_hash is not None and tx.end_hash != self.block_hash(tx.end):
            return "end hash is not the chain's block hash"
        if tx.checkpoint_hash != bytes(32):
            reason = self._check_checkpoint(tx, is_active)
            if reason:
                return reason
        logs: list[EventLog] = []
        for cid, start, root, applied in zip(
            tx.contract_ids, tx.starts, tx.state_roots, tx.commands_applied, strict=True
        ):
            self.accepted[cid] = _Accepted(tx.end, bytes(root), applied)
            if tx.checkpoint_hash != bytes(32):
                self.checkpoints[cid] = tx.end
            if self.addresses is not None:
                logs.append(
                    output_accepted_log(
                        cid,
                        start=start,
                        end=tx.end,
                        end_hash=tx.end_hash,
                        state_root=bytes(root),
                        commands_applied=applied,
                        node_id=sender,
                        address=self.addresses.execution_ledger,
                    )
                )
        if self.addresses is not None and tx.checkpoint_hash != bytes(32):
            for cid in tx.contract_ids:
                self.checkpoint_records[cid] = CheckpointView(
                    contract_id=cid,
                    height=tx.end,
                    block_hash=tx.end_hash,
                    blob_hash=tx.checkpoint_hash,
                    inline=bool(tx.inline_blob),
                    recorded_at=block,
                )
                if tx.inline_blob:
                    self.inline_blobs[tx.checkpoint_hash] = bytes(tx.inline_blob)
            logs.append(
                checkpoint_recorded_log(
                    tx.checkpoint_hash,
                    height=tx.end,
                    block_hash=tx.end_hash,
                    size=tx.checkpoint_size,
                    contract_ids=tx.contract_ids,
                    inline_blob=tx.inline_blob,
                    node_id=sender,
                    address=self.addresses.execution_ledger,
                )
            )
        if logs:
            self.logs.append(logs)
        self.accepts += 1
        self.accepted_by[sender] = self.accepted_by.get(sender, 0) + 1
        return ""

    def _check_checkpoint(self, tx: OutputSubmission, is_active: Any) -> str:
        if tx.inline_blob:
            if keccak(tx.inline_blob) != tx.checkpoint_hash:
                return "inline checkpoint hash mismatch"
            if len(tx.inline_blob) != tx.checkpoint_size:
                return "inline checkpoint size mismatch"
            return ""
        confirmed = set()
        for node_id, signature in zip(tx.storage_ids, tx.storage_sigs, strict=False):
            receipt = StorageReceipt(
                node_id=node_id,
                blob_hash=tx.checkpoint_hash,
                size=tx.checkpoint_size,
                signature=signature,
            )
            valid = is_valid_receipt(receipt, self.ledger_address, self.chain_id)
            if valid and is_active(node_id, int(Role.STORAGE)):
                confirmed.add(node_id)
        if len(confirmed) < self.storage_threshold:
            return "too few storage confirmations"
        return ""

    def read(self, query: Any, number: int) -> Any:
        if isinstance(query, AcceptedEndsQuery):
            ends = [self.get_accepted(c).end for c in query.contract_ids]
            return AcceptedEnds(tip=number, ends=ends)
        if isinstance(query, CheckpointFactsQuery):
            return CheckpointFacts(
                rotated_at=[0] * len(query.contract_ids),
                checkpoint_heights=[self.checkpoints.get(c, 0) for c in query.contract_ids],
            )
        if isinstance(query, StorageThresholdQuery):
            return self.storage_threshold
        if isinstance(query, BlockHashQuery):
            found = self.block_hash(query.number) if self.block_hash is not None else b""
            if not found:
                raise ConfigError(f"no block {query.number}")
            return found
        if isinstance(query, KeyEventsQuery):
            events = [e for e in self.key_events if query.first <= e.block_number <= query.last]
            return KeyEvents(events=events)
        if isinstance(query, ContractRecordsQuery):
            return ContractViews(views=[self._view(c) for c in query.contract_ids])
        if isinstance(query, KeyPublishedQuery):
            return query.contract_id in self.published
        if isinstance(query, ContractKeyQuery):
            deployed = self.deployed.get(query.contract_id)
            if deployed is None:
                return None
            return ContractKeyView(
                gatekeeper_id=deployed.gatekeeper_id, key_version=0, rotation_pending=False
            )
        if isinstance(query, CheckpointRecordsQuery):
            records = [self.checkpoint_records.get(c) for c in query.contract_ids]
            return CheckpointViews(records=records)
        return number  # BlockNumberQuery

    def _view(self, contract_id: bytes) -> ContractView | None:
        deployed = self.deployed.get(contract_id)
        published = self.published.get(contract_id)
        if deployed is None:
            return None
        return ContractView(
            code_hash=deployed.code_hash,
            contract_public_key=published.contract_public_key if published else bytes(32),
            deployer_commitment=deployed.deployer_commitment,
            workers=list(deployed.workers),
        )


class OutputsModel:
    """A stand-in for a worker enclave's ``sign_outputs`` (see the module docstring:
    modelled, not run)."""

    def __init__(self, ledger: LedgerModel) -> None:
        self.ledger = ledger

    def get_state_root(self, contract_id: bytes, height: int) -> tuple[bytes, int]:
        applied = self.ledger.count_commands(contract_id, height)
        return keccak(contract_id + applied.to_bytes(8, "big")), applied

    def sign(self, request: SignOutputs, height: int) -> SignedOutputs:
        ids: list[bytes] = []
        starts: list[int] = []
        roots: list[bytes] = []
        counts: list[int] = []
        for cid in request.contract_ids:
            previous = self.ledger.get_accepted(cid)
            if previous.end >= height:
                continue  # nothing new since the accepted end
            root, applied = self.get_state_root(cid, height)
            unchanged = (root, applied) == (previous.state_root, previous.commands_applied)
            if request.only_changed and unchanged and not request.with_checkpoint:
                continue
            ids.append(cid)
            starts.append(previous.end)
            roots.append(root)
            counts.append(applied)
        blob = b""
        if ids and request.with_checkpoint:
            blob = encode({c.hex(): r for c, r in zip(ids, roots, strict=True)})
            blob = blob.ljust(CHECKPOINT_PAD, b"\0")
        return SignedOutputs(
            contract_ids=ids,
            starts=starts,
            end=height,
            end_hash=keccak(b"block" + height.to_bytes(8, "big")),
            state_roots=roots,
            commands_applied=counts,
            checkpoint_hash=keccak(blob) if blob else bytes(32),
            checkpoint_size=len(blob),
            signature=b"modelled",
            checkpoint=blob,
        )


@dataclass
class _Store:
    tag: str
    blob_hash: bytes
    threshold: int
    receipts: dict[bytes, bytes] = field(default_factory=dict)  # node id -> signature
    refused: int = 0


class SimWorker:
    """One worker host in the simulator (see the module docstring)."""

    def __init__(
        self,
        address: int,
        *,
        chain: int,
        worker_id: bytes,
        contracts: list[bytes],
        executors: list[list[bytes]],
        storage: tuple[int, ...],
        ledger: LedgerModel,
        checkpoint_interval: int,
        inline_checkpoint_max: int = 1024,
        poll: float = 1.0,
        store_timeout: float = 5.0,
        incarnation: int = 0,
    ) -> None:
        if poll <= 0 or store_timeout <= 0:
            raise ConfigError("a simulated worker needs poll > 0 and store_timeout > 0")
        self.address = address
        self.chain = chain
        self.worker_id = bytes(worker_id)
        self.contracts = list(contracts)
        self.executors = [list(e) for e in executors]
        self.storage = tuple(storage)
        self.enclave = OutputsModel(ledger)
        self.store_timeout = store_timeout
        self.core = SubmissionCore(
            self.worker_id,
            checkpoint_interval=checkpoint_interval,
            inline_checkpoint_max=inline_checkpoint_max,
            address=address,
            host=address,
            chain=chain,
            enclave=address,
            storage=address,
            incarnation=incarnation,
        )
        self.height = 0
        self.follower = TipPoller(chain, poll)
        self.store: _Store | None = None
        self.stores_failed = 0

    @property
    def node_id(self) -> int:
        return self.address

    def on_start(self, now: float) -> list[Effect]:
        return self._run([*self.core.on_start(now), self.follower.start()], now)

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name == TipPoller.TIMER:
            return self.follower.ask()
        if name == "store-timeout":
            return self._finish_store(now, timed_out=True)
        return self._run(self.core.on_timer(name, now), now)

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if self.follower.claims(message):
            height = self.follower.take(sender, message)
            if height is None:
                return []
            self.height = height
            update = CaughtUp(height=height, contract_ids=self.contracts, executors=self.executors)
            return self._run(self.core.on_message(self.address, update, now), now)
        if isinstance(message, StorageReceipt | StoreRefused):
            return self._on_storage(sender, message, now)
        return self._run(self.core.on_message(sender, message, now), now)

    # -- effects carried out on the node ---------------------------------------------
    def _run(self, effects: list[Effect], now: float) -> list[Effect]:
        out: list[Effect] = []
        queue = list(effects)
        while queue:
            effect = queue.pop(0)
            if isinstance(effect, CallEnclave):
                queue += self.core.on_message(self.address, self._ecall(effect), now)
            elif isinstance(effect, StoreCheckpoint):
                out += self._start_store(effect)
            else:
                out.append(effect)
        return out

    def _ecall(self, effect: CallEnclave) -> EnclaveAnswer:
        if effect.ecall is not WORKER_SIGN_OUTPUTS or not isinstance(effect.request, SignOutputs):
            return EnclaveAnswer(effect.tag, error="unknown_ecall: not modelled")
        return EnclaveAnswer(effect.tag, self.enclave.sign(effect.request, self.height))

    def _start_store(self, effect: StoreCheckpoint) -> list[Effect]:
        self.store = _Store(effect.tag, keccak(effect.blob), effect.threshold)
        return [
            Send(self.storage, StoreBlob(bytes(effect.blob))),
            SetTimer("store-timeout", self.store_timeout),
        ]

    def _on_storage(self, sender: int, message: Any, now: float) -> list[Effect]:
        store = self.store
        if store is None or sender not in self.storage:
            return []
        if isinstance(message, StoreRefused):
            store.refused += 1
        elif bytes(message.blob_hash) == store.blob_hash:
            store.receipts[bytes(message.node_id)] = bytes(message.signature)
        if len(store.receipts) >= store.threshold:
            return self._finish_store(now, timed_out=False)
        if len(store.receipts) + store.refused >= len(self.storage):
            return self._finish_store(now, timed_out=False)
        return []

    def _finish_store(self, now: float, *, timed_out: bool) -> list[Effect]:
        store = self.store
        if store is None:
            return []
        self.store = None
        if len(store.receipts) < store.threshold:
            self.stores_failed += 1
            why = "no answer in time" if timed_out else "refused"
            answer = CheckpointStored(
                store.tag,
                error=f"{len(store.receipts)} of {store.threshold} confirmations ({why})",
            )
        else:
            chosen = sorted(store.receipts)[: store.threshold]
            answer = CheckpointStored(
                store.tag,
                node_ids=tuple(chosen),
                signatures=tuple(store.receipts[n] for n in chosen),
            )
        return self._run(self.core.on_message(self.address, answer, now), now)
