"""The worker host: the untrusted half of a worker node.

Theory of operation
-------------------
The host only moves bytes between the chain, the network, the storage nodes and its
enclave; the enclave checks everything it is given.

1. **Registration.** It asks its enclave for a quote over the enclave's keys, sends the
   quote to the gatekeeper (``POST /v1/attest``) for an approval signature, and registers
   on the NodeRegistry with that approval and its stake.
2. **Where to start** and **installs** are decided by the catch-up core
   (:class:`~sealbridge.runtime.catchup.CatchupCore`, sans-I/O; run by a network driver
   in inline mode, stepped from :meth:`WorkerHost.before_following` and
   :meth:`WorkerHost.on_block`): resume from the state bundle on disk (the anchor is
   the oldest block a state in it was sealed at), else *recover* from the newest
   checkpoint recorded for this worker's contracts (the blob from the storage nodes or
   inline on chain, checked against its record; each contract's key released by ``t``
   gatekeepers; the enclave resumes from the blob, which is the anchor), else start at
   the block before the management contracts (trust on first use). Keys published
   before the anchor are installed, and handed to the enclave as its directory. This
   module carries out the core's effects: chain reads (one ``eth_getLogs`` scan for key
   events, registry and ledger records, the blob), the ECALLs under the host's lock,
   and ``/v1/group`` and ``/v1/partial`` to the gatekeepers in turn. A failure the core
   calls passing (too few partials, the chain unreachable) is raised as a
   :class:`KeyUnavailable` or :class:`CatchupDelayed` (transport errors): the follow loop
   offers the same start or block again; any other stops the loop.
3. **Following.** A :class:`BlockFollower` delivers every block after the anchor with its
   evidence (full header and all receipts). The ``ContractKeyRotated`` events of a fresh
   block go to the catch-up core first (it stages an installed contract's new key
   version in the enclave, which switches after that block); then the block goes to the
   follow core (:class:`~sealbridge.runtime.follow.WorkerFollowCore`, sans-I/O, run by
   an inline driver on the follow loop), which hands it to the enclave with the
   catch-up core's directory -- the enclave verifies it and applies the commands it
   finds in it as one unit --, proves a message source the enclave does not know
   (``directory_incomplete``: this module reads the ContractRegistry state proof at the
   block) and offers the block again, at most 64 sources; then its ``Command``
   ciphertexts go to the posting core, and its ``ContractKeyPublished`` events to the
   catch-up core (it installs a contract assigned to this worker, with the facts the
   enclave has just verified). A passing failure of the follow core (a full release
   backlog, the chain unreachable for a proof) is raised as :class:`BacklogFull` or
   :class:`FollowDelayed` (transport errors): the follow loop offers the same block
   again; any other (:class:`~sealbridge.runtime.follow.FollowRefused`) stops it.
4. **State at rest.** After a block that changed contracts the follow core has the
   host store their sealed states in one state bundle file (``Persist``, replaced
   atomically), keeps the receipts (each command's outcome sealed for its sender) for
   ``POST /v1/result``, and hands the messages the block's contracts sent on to the
   posting core (:class:`~sealbridge.runtime.posting.MessagePostingCore`, sans-I/O, run
   by an inline driver on the follow loop; this module adds each source's executors):
   the sending contract's first worker posts them at once; every worker of the sending
   contract keeps them until it sees them in the inbox (all of them make the same
   ciphertext for a message); one still missing
   ``message_repost_blocks`` blocks later is posted by whichever worker notices, so a
   stalled or dead first worker delays messages but never loses them. A second copy is
   refused by the target as a replay, without effect.
5. **Outputs and checkpoints** (competitive execution). When caught up, the follow core
   tells the submission core (:class:`~sealbridge.runtime.submission.SubmissionCore`,
   sans-I/O: every decision is there) the verified height and the installed contracts.
   For each domain (contracts with the same executor set) the core has the enclave sign
   outputs for the range from the last accepted end to the newest block and submits
   them to the ExecutionLedger; every worker of the domain does the same, and the ledger
   keeps the first valid one. Every ``checkpoint_interval`` blocks, and at once after a
   contract's key rotation, the submission carries a checkpoint, stored on the storage
   nodes with their signed confirmations (or inline on chain when small). This module
   only carries out the core's effects, through a
   :class:`~sealbridge.node.driver.NetworkDriver` on its own loop thread (never the
   follow loop; one submission at a time): ECALLs under the host's lock, ledger reads,
   :func:`store_blob`, the ledger transaction.
6. **Witnesses** (the enclave's fork rule, :mod:`sealbridge.runtime.witness`). The
   enclave holds back every receipt and message until a majority of the contract's
   executors vouched for the block, and answers a query only once they vouched for the
   block its state is at. The host serves its enclave's witnesses to its peers
   (``POST /v1/witness``). The follow core asks for theirs (``peer_urls``: the other
   workers; this module asks them in parallel) when caught up with something held,
   after a full release backlog and before each query, and hands them to the enclave;
   a peer that does not answer is skipped for a while. The follow core is stepped by
   one caller at a time (the follow loop, or a query collecting witnesses).
7. **Queries.** ``POST /v1/query`` passes the caller's signed query to the enclave with
   the peers' witnesses and returns the enclave's answer, which is encrypted to the caller.

States: ``STARTING`` -> ``REGISTERING`` -> ``FOLLOWING`` (or ``FAILED`` with a reason).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from sealbridge.chain.abi import canonical_address
from sealbridge.chain.ledger import OutputSubmission
from sealbridge.config.node import NodeConfig, write_atomic
from sealbridge.core.encoding import Message, decode, encode
from sealbridge.core.errors import ConfigError, LocalProtocolError, SealbridgeError
from sealbridge.core.ids import keccak, to_hex
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.follower import ChainEvent, ObservedBlock, decode_event
from sealbridge.evm.management import CheckpointRecord, ContractRecord
from sealbridge.keyservice.chainfacts import get_key_slots
from sealbridge.keyservice.messages import KeyRequest
from sealbridge.keyservice.threshold_messages import PartialKeyRelease
from sealbridge.net.http import NodeClient, TransportError
from sealbridge.node.checkpoint_store import BlobUnavailable, fetch_blob, store_blob
from sealbridge.node.driver import Executors, NetworkDriver
from sealbridge.node.host import HostPhase, NodeHost
from sealbridge.runtime.block_steps import ObservedWorkerBlock, StepTarget, plan_block_steps
from sealbridge.runtime.catchup import (
    BlockApplied,
    BlockHashQuery,
    CatchupCore,
    CheckpointBlobQuery,
    CheckpointRecordsQuery,
    CheckpointView,
    CheckpointViews,
    ContractRecordsQuery,
    ContractView,
    ContractViews,
    GroupKeysRequest,
    KeyEvent,
    KeyEvents,
    KeyEventsQuery,
    KeysPublished,
    KeysRotated,
    RecoveryFailed,
    StartCatchup,
    StateBundle,
)
from sealbridge.runtime.ecalls import WORKER_QUERY, WORKER_STATUS, WORKER_WITNESS_BLOCK
from sealbridge.runtime.follow import (
    BUNDLE_KEY,
    ApplyBlock,
    CollectWitnesses,
    FollowCaughtUp,
    FollowFailure,
    FollowRefused,
    KeyProofQuery,
    MessagesReleased,
    PeerWitness,
    WitnessAsk,
    WorkerFollowCore,
)
from sealbridge.runtime.messages import (
    BlockWitness,
    ChainConfig,
    WitnessedQuery,
    WitnessRequest,
)
from sealbridge.runtime.posting import MessagePostingCore, MessagesOut, PostMessage
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
from sealbridge.tee.backend import EnclaveHandle
from sealbridge.tee.ecall import NOTHING, call

log = logging.getLogger("sealbridge.worker")
LOG_SCAN_CHUNK = 10_000
STORAGE_TIMEOUT = 10.0
WITNESS_TIMEOUT = 2.0  # seconds a peer has to answer for its witness


def _get_key_event(event: ChainEvent) -> KeyEvent:
    """A ContractKeyPublished or ContractKeyRotated event, for the catch-up core."""
    return KeyEvent(
        contract_id=bytes(event.args["contract_id"]),
        block_number=event.block_number,
        contract_public_key=bytes(event.args["contract_public_key"]),
        message_key=bytes(event.args["message_key"]),
        rotated=event.name == "ContractKeyRotated",
        version=int(event.args.get("version", 0)),
    )


def _get_view(record: ContractRecord | None) -> ContractView | None:
    if record is None:
        return None
    return ContractView(
        code_hash=record.code_hash,
        contract_public_key=record.contract_public_key,
        deployer_commitment=record.deployer_commitment,
        workers=record.workers,
        key_version=record.key_version,
        rotated_at=record.rotated_at,
    )


def _get_record(record: CheckpointRecord | None) -> CheckpointView | None:
    if record is None:
        return None
    return CheckpointView(
        contract_id=record.contract_id,
        height=record.height,
        block_hash=record.block_hash,
        blob_hash=record.blob_hash,
        inline=record.inline,
        recorded_at=record.recorded_at,
    )


class ResultRequest(Message, frozen=True):
    contract_id: bytes
    seq: int


class ResultNotFound(LocalProtocolError):
    code = "result_not_found"


class BacklogFull(TransportError):
    """The enclave holds too much for witnesses to apply the block (retried)."""

    code = "release_backlog_full"


class FollowDelayed(TransportError):
    """The follow core's block failed for a passing reason (the chain briefly
    unreachable for a state proof, an unsound answer): the same block is offered again."""

    code = "follow_delayed"


class CatchupDelayed(TransportError):
    """The catch-up core's job failed for a passing reason (the chain or the storage
    nodes briefly unreachable): the follow loop offers the same start or block again."""

    code = "catchup_delayed"


class KeyUnavailable(CatchupDelayed):
    """Too few gatekeepers released their partial (a passing condition: retried)."""

    code = "key_unavailable"


class WorkerHost(NodeHost):
    with_evidence = True

    def __init__(self, config: NodeConfig, enclave: EnclaveHandle, chain: ChainAdapter) -> None:
        super().__init__(config, enclave, chain)
        self.state_dir = Path(config.home) / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.bundle_file = self.state_dir / "bundle.sealed"
        bundle = (
            decode(self.bundle_file.read_bytes(), StateBundle)
            if self.bundle_file.exists()
            else StateBundle()
        )
        self._lock = threading.Lock()  # one ECALL at a time
        # start and installs: CatchupCore decides, an inline driver on the follow loop
        # carries out its effects (a passing failure is raised: the loop retries)
        self.catchup = CatchupCore(
            self.node_id,
            chain_config=ChainConfig(  # the core fills in each start's anchor
                chain_id=self.chain.chain_id,
                command_inbox=canonical_address(self.addresses.command_inbox),
                contract_registry=canonical_address(self.addresses.contract_registry),
                execution_ledger=canonical_address(self.addresses.execution_ledger),
                anchor_number=0,
                anchor_hash=bytes(32),
            ),
            start_block=self.addresses.deployed_at_block,
        )
        self._catchup_started = time.perf_counter()
        self.catchup_driver = NetworkDriver(
            self.catchup,
            Executors(
                read_chain=self.read_catchup,
                call_enclave=self.call_enclave,
                ask_peers=self.ask_gatekeepers,
                report=self.on_catchup_report,
                retry_seconds=0.0,
            ),
            name=f"worker {config.name} catch-up",
            inline=True,
        )
        # messages: MessagePostingCore decides, an inline driver on the follow loop posts
        self.posting = MessagePostingCore(
            self.node_id,
            repost_blocks=config.message_repost_blocks,
            post=config.post_messages,
        )
        self.posting_driver = NetworkDriver(
            self.posting,
            Executors(submit_tx=self.post_message_tx, retry_seconds=0.0),
            name=f"worker {config.name} messages",
            inline=True,
        )
        # outputs: SubmissionCore decides, a network driver on its own loop thread carries
        # out its effects (one submission at a time, never on the follow loop)
        self.submission = SubmissionCore(
            self.node_id,
            checkpoint_interval=config.checkpoint_interval,
            inline_checkpoint_max=config.inline_checkpoint_max,
        )
        self.submission_driver = NetworkDriver(
            self.submission,
            Executors(
                submit_tx=self.submit_outputs_tx,
                read_chain=self.read_ledger,
                call_enclave=self.call_enclave,
                store_checkpoint=self.store_checkpoint,
            ),
            name=f"worker {config.name} outputs",
        )
        # blocks and witnesses: WorkerFollowCore decides, an inline driver carries out its
        # effects, stepped from the follow loop and (to collect witnesses) from queries,
        # one caller at a time (a passing failure is raised: the loop retries the block)
        self.peers = {url: NodeClient(url, timeout=WITNESS_TIMEOUT) for url in config.peer_urls}
        self._peer_pool = ThreadPoolExecutor(
            max_workers=max(1, min(8, len(self.peers))), thread_name_prefix="witness"
        )
        self.follow = WorkerFollowCore(
            bundle=bundle, peers=list(self.peers), submit_outputs=config.submit_outputs
        )
        self.follow_driver = NetworkDriver(
            self.follow,
            Executors(
                read_chain=self.read_key_proof,
                call_enclave=self.call_enclave,
                ask_peers=self.ask_witnesses,
                persist=self.persist_bundle,
                send=self.hand_on,
                retry_seconds=0.0,
            ),
            name=f"worker {config.name} follow",
            inline=True,
        )
        self._follow_lock = threading.Lock()  # one caller steps the follow core at a time

    # -- registration and start ---------------------------------------------------------
    def before_following(self) -> None:
        self.phase = HostPhase.REGISTERING
        self.register()
        started = time.perf_counter()
        self.run_catchup(StartCatchup(bundle=self.follow.bundle))
        if not self.catchup.started:  # never inline: every effect was answered
            raise CatchupDelayed("the start did not finish")
        log.info(
            "following from block %d (started in %.2fs)",
            self.anchor + 1,
            time.perf_counter() - started,
        )
        if self.submission_driver.status.phase == "starting":
            self.submission_driver.start()

    def get_start_block(self) -> int:
        return self.anchor + 1

    # The decisions are CatchupCore's (runtime/catchup.py); these run it and carry out
    # its effects on the follow loop.
    @property
    def anchor(self) -> int:
        return self.catchup.anchor

    @property
    def last_delivered(self) -> int:
        """The newest block handed to the enclave."""
        return self.catchup.last_delivered

    def run_catchup(
        self, update: StartCatchup | KeysRotated | KeysPublished | BlockApplied
    ) -> None:
        """Hand the catch-up core an input and carry out its effects on this thread. A
        failure that may pass raises a TransportError (the follow loop offers the same
        start or block again); any other stops the loop."""
        if isinstance(update, StartCatchup):
            self._catchup_started = time.perf_counter()
        self.catchup_driver.deliver(0, update)
        self.catchup_driver.step()
        failure = self.catchup.failure
        if failure is not None and failure.passing:
            delayed = KeyUnavailable if failure.code == "key_unavailable" else CatchupDelayed
            raise delayed(failure.message)
        error = self.catchup.get_error()
        if error is not None:
            raise error

    def on_catchup_report(self, kind: str, data: Any) -> None:
        """The operator's log lines for the catch-up's milestones (tools read them)."""
        if kind == "catchup_resuming" and isinstance(data, dict):
            log.info(
                "resuming from the state bundle of block %d (replaying from block %d, where "
                "its oldest state was sealed)",
                data["bundle"],
                data["replay_from"],
            )
        elif kind == "catchup_recovered" and isinstance(data, dict):
            log.info(
                "recovered %d contracts from the checkpoint at block %d (%d bytes) in %.2fs",
                data["contracts"],
                data["height"],
                data["bytes"],
                time.perf_counter() - self._catchup_started,
            )

    def read_catchup(self, query: object) -> object:
        """Answer one of the catch-up core's chain queries."""
        if isinstance(query, BlockNumberQuery):
            return self.chain.get_block_number()
        if isinstance(query, BlockHashQuery):
            return self.chain.get_block(query.number).hash
        if isinstance(query, KeyEventsQuery):
            return KeyEvents(events=self.scan_key_events(query.first, query.last))
        if isinstance(query, ContractRecordsQuery):
            registry = self.mgmt.contract_registry
            return ContractViews(
                views=[_get_view(registry.get_contract(c)) for c in query.contract_ids]
            )
        if isinstance(query, CheckpointRecordsQuery):
            ledger = self.mgmt.execution_ledger
            return CheckpointViews(
                records=[_get_record(ledger.get_checkpoint(c)) for c in query.contract_ids]
            )
        if isinstance(query, CheckpointBlobQuery):
            return self.fetch_checkpoint_blob(query)
        raise ConfigError(f"the worker reads no {type(query).__name__}")

    def scan_key_events(self, first: int, last: int) -> list[KeyEvent]:
        """ContractKeyPublished and ContractKeyRotated events in [first, last], by
        eth_getLogs in chunks."""
        events: list[KeyEvent] = []
        codecs = self.mgmt.get_codecs()
        for low in range(first, last + 1, LOG_SCAN_CHUNK):
            high = min(last, low + LOG_SCAN_CHUNK - 1)
            for entry in self.chain.get_logs(low, high, [self.addresses.contract_registry]):
                event = decode_event(codecs, entry)
                if event.name in ("ContractKeyPublished", "ContractKeyRotated"):
                    events.append(_get_key_event(event))
        return events

    def fetch_checkpoint_blob(self, query: CheckpointBlobQuery) -> bytes:
        """A checkpoint blob from the storage nodes, or from its CheckpointRecorded
        event when it was stored inline."""
        if not query.inline:
            try:
                urls = list(self.config.storage_urls)
                return fetch_blob(urls, query.blob_hash, timeout=STORAGE_TIMEOUT)
            except BlobUnavailable as exc:  # name it: the operator sees why
                raise RecoveryFailed(f"BlobUnavailable: {exc.message}") from exc
        codecs = self.mgmt.get_codecs()
        ledger = self.addresses.execution_ledger
        for entry in self.chain.get_logs(query.recorded_at, query.recorded_at, [ledger]):
            event = decode_event(codecs, entry)
            if event.name == "CheckpointRecorded" and (
                bytes(event.args["blob_hash"]) == query.blob_hash
            ):
                blob = bytes(event.args["inline_blob"])
                if keccak(blob) == query.blob_hash:
                    return blob
        raise RecoveryFailed(f"inline checkpoint 0x{query.blob_hash.hex()} not found on chain")

    def ask_gatekeepers(self, request: object, needed: int) -> tuple[list[Any], list[str]]:
        """Ask the committee's gatekeepers in turn (group keys, or a contract key's
        partial release) until ``needed`` answered; the core checks the answers."""
        urls = list(self.config.gatekeeper_urls) or [self.config.gatekeeper_url]
        kind: type[GroupPublicKeys] | type[PartialKeyRelease]
        if isinstance(request, GroupKeysRequest):
            path, body, kind = "/v1/group", b"", GroupPublicKeys
        elif isinstance(request, KeyRequest):
            path, body, kind = "/v1/partial", encode(request), PartialKeyRelease
        else:
            raise ConfigError(f"the worker asks its gatekeepers no {type(request).__name__}")
        answers: list[Any] = []
        problems: list[str] = []
        for url in urls:
            if len(answers) >= needed:
                break
            try:
                with NodeClient(url) as gk:
                    answers.append(decode(gk.post(path, body), kind))
            except SealbridgeError as exc:
                problems.append(f"{url}: {exc.message}")
        return answers, problems

    # -- following ------------------------------------------------------------------
    # The decisions are WorkerFollowCore's (runtime/follow.py) and CatchupCore's; this
    # calls them in order and carries out the follow core's effects on this thread.
    def on_block(self, block: ObservedBlock) -> None:
        """Run the block's steps across the cores in their one order
        (:func:`~sealbridge.runtime.block_steps.plan_block_steps`): a block retried after
        a later step failed (e.g. too few gatekeepers answered for an install) is in the
        enclave already, and only the steps after it run again."""
        observed = ObservedWorkerBlock(
            number=block.number,
            block_hash=block.hash,
            evidence=block.evidence,
            rotated=[_get_key_event(e) for e in block.events if e.name == "ContractKeyRotated"],
            published=[_get_key_event(e) for e in block.events if e.name == "ContractKeyPublished"],
            ciphertexts=[bytes(e.args["ciphertext"]) for e in block.events if e.name == "Command"],
        )
        for step in plan_block_steps(observed, self.last_delivered):
            message = step.message
            if step.target is StepTarget.FOLLOW and isinstance(message, ApplyBlock):
                message = msgspec.structs.replace(message, directory=self.catchup.directory)
                self.raise_for(self.run_follow(message))
            elif step.target is StepTarget.POSTING:
                self.posting_driver.deliver(0, message)
                self.posting_driver.step()
            elif isinstance(message, KeysRotated | BlockApplied | KeysPublished):
                self.run_catchup(message)

    def on_caught_up(self) -> None:
        # the core releases held outputs, then tells the submission core (which decides,
        # on its own thread, whether a round starts)
        installed = self.catchup.installed
        update = FollowCaughtUp(
            height=self.last_delivered,
            contract_ids=list(installed),
            executors=[list(workers) for workers in installed.values()],
        )
        failure = self.run_follow(update)
        if failure is not None:
            log.warning("could not release held outputs: %s", failure.message)

    def on_idle(self) -> None:
        self.on_caught_up()

    def run_follow(self, update: ApplyBlock | FollowCaughtUp) -> FollowFailure | None:
        """Hand the follow core an input and carry out its effects on this thread; the
        failure of its job, if any."""
        with self._follow_lock:
            self.follow_driver.deliver(0, update)
            self.follow_driver.step()
            return self.follow.failure

    def raise_for(self, failure: FollowFailure | None) -> None:
        """A passing failure raises a TransportError (the follow loop offers the same
        block again); any other stops the loop."""
        if failure is None:
            return
        if failure.passing:
            delayed = BacklogFull if failure.code == "release_backlog_full" else FollowDelayed
            raise delayed(failure.message)
        raise FollowRefused(failure.message)

    def read_key_proof(self, query: object) -> object:
        """A state proof, at a block, of the ContractRegistry records of the message
        sources the enclave asked about (key published, command key, message key)."""
        if not isinstance(query, KeyProofQuery):
            raise ConfigError(f"the worker's follow core reads no {type(query).__name__}")
        slots = [slot for cid in query.contract_ids for slot in get_key_slots(cid)]
        return self.chain.get_proof(self.addresses.contract_registry, slots, query.number)

    def persist_bundle(self, key: str, data: bytes) -> None:
        if key != BUNDLE_KEY:
            raise ConfigError(f"the worker keeps no record {key!r}")
        write_atomic(self.bundle_file, data)

    def hand_on(self, to: tuple[int, ...], message: object) -> None:
        """The follow core's messages: released ones to the posting core (with each
        source's executors), caught up to the submission core (on its own thread)."""
        if isinstance(message, MessagesReleased):
            installed = self.catchup.installed
            executors = [list(installed.get(m.source, [])) for m in message.messages]
            update = MessagesOut(
                number=message.number, messages=list(message.messages), executors=executors
            )
            self.posting_driver.deliver(0, update)
            self.posting_driver.step()
        elif isinstance(message, CaughtUp):
            self.submission_driver.deliver(0, message)
        else:
            raise ConfigError(f"the worker hands on no {type(message).__name__}")

    # -- witnesses (the enclave's fork rule) ---------------------------------------------
    def on_witness(self, payload: bytes) -> bytes:
        """A peer asks for our enclave's witness of a block."""
        request = decode(payload, WitnessRequest)
        with self._lock:
            witness = call(
                self.enclave, WORKER_WITNESS_BLOCK, WitnessRequest(height=request.height)
            )
            return encode(witness)

    def ask_witnesses(self, request: object, needed: int) -> tuple[list[Any], list[str]]:
        """Ask the peers the follow core names for their witnesses, in parallel."""
        if not isinstance(request, WitnessAsk):
            raise ConfigError(f"the worker asks its peers no {type(request).__name__}")
        payload = encode(WitnessRequest(height=request.height))

        def ask(url: str) -> PeerWitness | str:
            peer = self.peers.get(url)
            if peer is None:
                return f"{url}: not a peer"
            try:
                witness = decode(peer.post("/v1/witness", payload), BlockWitness)
            except SealbridgeError as exc:
                log.debug("no witness from %s: %s", url, exc.message)
                return f"{url}: {exc.message}"
            return PeerWitness(peer=url, witness=witness)

        if self._stop.is_set():  # the pool is shut down
            return [], [f"{url}: stopping" for url in request.peers]
        got = list(self._peer_pool.map(ask, request.peers))
        errors = [a for a in got if isinstance(a, str)]
        return [a for a in got if isinstance(a, PeerWitness)], errors

    def collect_witnesses(self, height: int) -> list[BlockWitness]:
        """Our peers' witnesses of block ``height`` (or of their newest, if lower); the
        follow core skips a peer that failed for a while."""
        with self._follow_lock:
            self.follow_driver.deliver(0, CollectWitnesses(height=height))
            self.follow_driver.step()
            return list(self.follow.collected)

    def post_message_tx(self, tx: object) -> None:
        """Send one of the posting core's messages (relayed; no wait for the receipt)."""
        if not isinstance(tx, PostMessage):
            raise ConfigError(f"the worker posts no {type(tx).__name__}")
        self.mgmt.command_inbox.send_submit(tx.target, tx.ciphertext, self.eth_key)

    # -- outputs and checkpoints (competitive execution) ---------------------------------
    # The decisions are SubmissionCore's (runtime/submission.py); these carry out its
    # effects on the submission driver's I/O threads.
    def call_enclave(self, ecall: Any, request: Any) -> Any:
        with self._lock:
            return call(self.enclave, ecall, request)

    def read_ledger(self, query: object) -> object:
        """Answer one of the submission core's chain queries."""
        ledger = self.mgmt.execution_ledger
        if isinstance(query, AcceptedEndsQuery):
            ends = []
            for cid in query.contract_ids:
                accepted = ledger.get_output(cid)
                ends.append(accepted.end if accepted is not None else 0)
            # the tip after the ends: it covers the block of any output they show
            return AcceptedEnds(tip=self.chain.get_block_number(), ends=ends)
        if isinstance(query, CheckpointFactsQuery):
            rotated: list[int] = []
            heights: list[int] = []
            for cid in query.contract_ids:
                contract = self.mgmt.contract_registry.get_contract(cid)
                record = ledger.get_checkpoint(cid)
                rotated.append(contract.rotated_at if contract is not None else 0)
                heights.append(record.height if record is not None else 0)
            return CheckpointFacts(rotated_at=rotated, checkpoint_heights=heights)
        if isinstance(query, StorageThresholdQuery):
            return ledger.get_storage_threshold()
        if isinstance(query, BlockNumberQuery):
            return self.chain.get_block_number()
        raise ConfigError(f"the worker reads no {type(query).__name__}")

    def store_checkpoint(self, blob: bytes, threshold: int) -> list[tuple[bytes, bytes]]:
        receipts = store_blob(
            list(self.config.storage_urls),
            blob,
            threshold=threshold,
            ledger_address=self.addresses.execution_ledger,
            chain_id=self.chain.chain_id,
            timeout=STORAGE_TIMEOUT,
        )
        return [(receipt.node_id, receipt.signature) for receipt in receipts]

    def submit_outputs_tx(self, tx: object) -> int:
        if not isinstance(tx, OutputSubmission):
            raise ConfigError(f"the worker sends no {type(tx).__name__}")
        return self.mgmt.execution_ledger.submit(tx, self.eth_key).block_number

    def stop(self) -> None:
        """Stop following; the submission in hand and witness requests are dropped."""
        super().stop()
        self.submission_driver.stop()
        self._peer_pool.shutdown(wait=False, cancel_futures=True)

    # -- queries and status -------------------------------------------------------------
    def on_query(self, payload: bytes) -> bytes:
        witnesses = self.collect_witnesses(self.last_delivered)
        with self._lock:
            query = WitnessedQuery(query=payload, witnesses=witnesses)
            return call(self.enclave, WORKER_QUERY, query).sealed

    def on_result(self, payload: bytes) -> bytes:
        """The receipt of one command: its outcome sealed for the sender (opaque here)."""
        request = decode(payload, ResultRequest)
        receipt = self.follow.get_receipt(request.contract_id, request.seq)
        if receipt is None:
            raise ResultNotFound(
                f"no receipt for inbox seq {request.seq} (not applied yet, or too old)"
            )
        return encode(receipt)

    def get_status(self) -> dict[str, Any]:
        with self._lock:
            status = call(self.enclave, WORKER_STATUS, NOTHING)
        return {
            "role": "worker",
            "name": self.config.name,
            "node_id": to_hex(self.node_id),
            "phase": self.phase.value,
            "error": self.error,
            "height": self.height,
            "verified_height": status.chain_height,
            "anchor": self.anchor,
            "recovered_from": self.catchup.recovered_from,
            "measurement": to_hex(self.enclave.measurement),
            "held": self.follow.held,
            "witnessed": self.follow.witnessed,
            **self.submission.get_status(),
            "submission_driver": self.submission_driver.status.phase,
            "awaiting_checkpoint_record": status.awaiting_checkpoint_record,
            "diverged": status.diverged,
            **self.posting.get_status(),
            **self.catchup.get_status(),
            "contracts": [
                {
                    "contract_id": to_hex(c.contract_id),
                    "height": c.height,
                    "state_root": to_hex(c.state_root),
                    "commands_applied": c.commands_applied,
                    "phase": c.phase,
                    "key_version": c.key_version,
                }
                for c in status.contracts
            ],
        }
