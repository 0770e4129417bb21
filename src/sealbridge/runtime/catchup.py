"""The worker host's catch-up and contract installs, sans-I/O.

Theory of operation
-------------------
A worker's enclave follows a verified chain of headers from an *anchor* block, and
runs the contracts the host installed in it. :class:`CatchupCore` is what the worker's
untrusted *host* decides about both -- where the enclave starts, which contracts it
installs with which key version, which rotated keys it stages -- and nothing else: the
driver (:mod:`sealbridge.node.driver`, inline on the worker's follow loop, wired by
:mod:`sealbridge.node.worker`) reads the chain, fetches checkpoint blobs, asks the
committee's gatekeepers and calls the enclave. The enclave checks everything again
(headers, the install facts, each partial key release against the committee's public
shares); the worst a wrong decision here does is a contract not installed.

**Inputs** (from the host, address ``host``): :class:`StartCatchup` (with the state
bundle read from disk), then, while following, :class:`KeysRotated` (a fresh block's
``ContractKeyRotated`` events, before the enclave gets the block), :class:`BlockApplied`
(the enclave verified and applied that block) and :class:`KeysPublished` (the block's
``ContractKeyPublished`` events, after the enclave applied it: it installs a contract
only with facts it verified itself). Each becomes one *job*; jobs run one at a time, in
order, and each step waits for one effect's answer.

**The start** (one job):

* *resume* -- with a state bundle, the anchor is the oldest block a state in it was
  sealed at (the enclave must verify the block each state names);
* *recover* -- with none: read the tip, find the contracts whose key was published
  (:class:`KeyEventsQuery`), keep those assigned to this worker
  (:class:`ContractRecordsQuery`), read their checkpoint records
  (:class:`CheckpointRecordsQuery`) and fetch the newest one's blob
  (:class:`CheckpointBlobQuery`: from the storage nodes, or from the chain when it was
  stored inline). Its hash, height and block hash must be the record's, or the start is
  refused (``recovery_failed``) with nothing installed. Each of its contracts' keys is
  fetched (below) at the version in force at the blob's height, and the enclave
  restores them all at once (``WORKER_RESTORE_CHECKPOINT``); the blob's height is the
  anchor;
* *fresh* -- with no checkpoint either: the anchor is the block before the management
  contracts (trust on first use).

Resume and fresh read the anchor's hash (:class:`BlockHashQuery`) and configure the
enclave's chain (``WORKER_CONFIGURE_CHAIN``). Then keys published or rotated up to the
anchor are read in one scan: they form the *directory* the host hands the enclave with
its first block (the latest event of a contract wins), and every published one becomes
an install job; the start is done (:attr:`CatchupCore.started`) once they are.

**Installs** (``ContractKeyPublished``): a contract installed already, or not assigned
to this worker, is left alone. Otherwise its sealed state comes from the bundle (if
there is one), the key version is the one in force after that state's block (after the
followed height without one), and the key is fetched: ``MAKE_KEY_REQUEST`` (the
enclave signs a request), ``AskPeers`` for the committee's group keys
(:class:`GroupKeysRequest`, of up to :data:`GROUP_VIEWS` gatekeepers: the view most of
them offer is taken, so one that serves a retired era's keys, or lies, cannot stall the
install) and for ``t`` partial releases; then ``WORKER_INSTALL_CONTRACT`` with all the
releases that came (the enclave drops one that does not verify). An install the
enclave refuses for its facts (``install_facts_unverified`` /
``install_facts_mismatch``: e.g. deployed before its anchor with no sealed state to
vouch for it) leaves the contract uninstalled and the
worker going (other workers serve it). **Rotations** (``ContractKeyRotated``) of an
installed contract fetch the new version the same way and stage it
(``WORKER_STAGE_CONTRACT_KEY``; the enclave switches after that block).

**Failures.** A job that fails ends, drops the jobs behind it and leaves
:attr:`CatchupCore.failure` (a :class:`CatchupFailure`) for the host: *passing*
(``key_unavailable``: fewer than ``t`` partials or no group keys; ``chain_unavailable``;
``unsound_answer``) -- the host offers the same start or block again later, and work
done (installs) is kept; or not (``recovery_failed``, ``read_refused``,
``enclave_refused``) -- the host stops. The failure is cleared by the next input that
finds the core idle.

**Hostile answers change nothing.** An answer is taken only if it is of the type the
current step waits for (:data:`ANSWERS`), carries the current tag and comes from the
address serving that kind of effect (``chain`` for reads, ``enclave``, ``peers``); host
inputs only from ``host``. Anything else is ignored.
Tags come from a :class:`~sealbridge.core.tags.TagSource` that ``on_start`` begins
anew: an answer to an effect of the node's previous incarnation (in flight when it
crashed) never carries a restarted core's tag. An answer of the right kind that
cannot be true (a list of the wrong length, events outside the range asked, a hash of
the wrong size) fails the job as a passing ``unsound_answer``: nothing is installed.
Peers' answers are filtered: only group keys and partial releases for the key in hand
(the contract's key id at that version) count.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sealbridge.core.effects import (
    AskPeers,
    CallEnclave,
    ChainRead,
    Effect,
    EnclaveAnswer,
    PeerAnswers,
    ReadChain,
    Report,
)
from sealbridge.core.encoding import Message, decode, encode
from sealbridge.core.errors import LocalProtocolError, SealbridgeError
from sealbridge.core.ids import keccak
from sealbridge.core.tags import TagSource
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.crypto.keyschedule import compute_key_id
from sealbridge.keyservice.messages import KeyRequest
from sealbridge.keyservice.threshold_messages import PartialKeyRelease
from sealbridge.runtime.ecalls import (
    MAKE_KEY_REQUEST,
    WORKER_CONFIGURE_CHAIN,
    WORKER_INSTALL_CONTRACT,
    WORKER_RESTORE_CHECKPOINT,
    WORKER_STAGE_CONTRACT_KEY,
    MakeKeyRequest,
    StatusList,
)
from sealbridge.runtime.messages import (
    ChainConfig,
    CheckpointBlob,
    ContractStatus,
    DirectoryEntry,
    InstallContract,
    RestoreCheckpoint,
    StageContractKey,
)
from sealbridge.runtime.submission import BlockNumberQuery

__all__ = [
    "ANSWERS",
    "INSTALL_REFUSALS",
    "BlockApplied",
    "BlockHashQuery",
    "CatchupCore",
    "CatchupFailure",
    "CatchupRefused",
    "CatchupStep",
    "CheckpointBlobQuery",
    "CheckpointRecordsQuery",
    "CheckpointView",
    "CheckpointViews",
    "ContractRecordsQuery",
    "ContractView",
    "ContractViews",
    "GroupKeysRequest",
    "KeyEvent",
    "KeyEvents",
    "KeyEventsQuery",
    "KeysPublished",
    "KeysRotated",
    "RecoveryFailed",
    "StartCatchup",
    "StateBundle",
]

# enclave refusals of an install that leave the contract uninstalled (not a failure)
INSTALL_REFUSALS = frozenset({"install_facts_unverified", "install_facts_mismatch"})


class RecoveryFailed(LocalProtocolError):
    """The checkpoint to recover from cannot be used (not found, not the record's)."""

    code = "recovery_failed"


class CatchupRefused(LocalProtocolError):
    """The start or an install cannot go on (the enclave refused, a read that will not
    pass failed): the host stops."""

    code = "catchup_refused"


# -- the host's state file and its inputs ----------------------------------------------
class StateBundle(Message, frozen=True):
    """The host's file of sealed contract states, all valid at ``height``."""

    height: int = 0
    block_hash: bytes = b""  # hash of block ``height``
    states: dict[str, bytes] = {}  # contract id hex -> state sealed under its state key
    # contract id hex -> the block its state was sealed at: the enclave's anchor on
    # restart is the lowest of them (it must verify the block each state names)
    heights: dict[str, int] = {}


class KeyEvent(Message, frozen=True):
    """A ``ContractKeyPublished`` (or, ``rotated``, ``ContractKeyRotated``) event."""

    contract_id: bytes
    block_number: int
    contract_public_key: bytes
    message_key: bytes
    rotated: bool = False
    version: int = 0  # the new key version of a rotation


class StartCatchup(Message, frozen=True):
    """Choose the anchor and install what was published before it (see the module
    docstring); ``bundle`` is the host's state file (empty: none)."""

    bundle: StateBundle


class KeysRotated(Message, frozen=True):
    """A fresh block's key rotations (before the enclave gets the block)."""

    events: list[KeyEvent]


class KeysPublished(Message, frozen=True):
    """A block's published keys (after the enclave applied the block)."""

    events: list[KeyEvent]


class BlockApplied(Message, frozen=True):
    """The enclave verified and applied block ``number`` (it took the directory)."""

    number: int


# -- what the core asks: chain reads (answered by the host) and peer requests ----------
class KeyEventsQuery(Message, frozen=True):
    """Key events of the ContractRegistry in blocks [first, last], in chain order."""

    first: int
    last: int


class KeyEvents(Message, frozen=True):
    events: list[KeyEvent]


class ContractRecordsQuery(Message, frozen=True):
    """The ContractRegistry records of these contracts (answer: :class:`ContractViews`)."""

    contract_ids: list[bytes]


class ContractView(Message, frozen=True):
    """What an install needs of a contract's registry record."""

    code_hash: bytes
    contract_public_key: bytes
    deployer_commitment: bytes
    workers: list[bytes]
    key_version: int = 0  # the contract key's version (0 until the first rotation)
    rotated_at: int = 0  # the block of the latest rotation (0: never rotated)

    def get_version_at(self, height: int) -> int:
        """The key version that seals the contract's state after block ``height`` (the
        switch happens after the rotation's block; the registry keeps only the latest
        rotation, so a height before it gives the version just before it)."""
        if self.key_version > 0 and height < self.rotated_at:
            return self.key_version - 1
        return self.key_version


class ContractViews(Message, frozen=True):
    views: list[ContractView | None]  # None: not registered


class CheckpointRecordsQuery(Message, frozen=True):
    """The latest checkpoint records of these contracts (answer: :class:`CheckpointViews`)."""

    contract_ids: list[bytes]


class CheckpointView(Message, frozen=True):
    """A contract's latest checkpoint, as the ExecutionLedger records it."""

    contract_id: bytes
    height: int
    block_hash: bytes
    blob_hash: bytes
    inline: bool
    recorded_at: int


class CheckpointViews(Message, frozen=True):
    records: list[CheckpointView | None]  # None: no checkpoint recorded


class BlockHashQuery(Message, frozen=True):
    """The hash of block ``number`` (answer: 32 bytes)."""

    number: int


class CheckpointBlobQuery(Message, frozen=True):
    """The bytes of a checkpoint blob: from the storage nodes, or from the
    ``CheckpointRecorded`` event at ``recorded_at`` when stored ``inline``."""

    blob_hash: bytes
    inline: bool
    recorded_at: int


class GroupKeysRequest(Message, frozen=True):
    """Asked of the gatekeepers: the committee's group public keys (``GroupPublicKeys``)."""


GROUP_VIEWS = 16  # gatekeepers asked for the committee's public keys (all, in a devnet)
MAX_RELEASES = 64  # partial releases handed to the enclave at most


def get_most_offered(groups: Sequence[GroupPublicKeys]) -> GroupPublicKeys:
    """The view of the committee's public keys the most gatekeepers offered (the first
    offered among equals): a gatekeeper that serves an era it no longer belongs to, or
    lies, is outvoted by the committee's members instead of stalling every install."""
    counts: dict[bytes, int] = {}
    first: dict[bytes, GroupPublicKeys] = {}
    for group in groups:
        key = encode(group)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, group)
    best = max(counts, key=lambda k: (counts[k], -list(first).index(k)))
    return first[best]


@dataclass(frozen=True)
class CatchupFailure:
    """Why the last job failed; ``passing``: the host offers it again later."""

    code: str
    message: str
    passing: bool


# -- steps -------------------------------------------------------------------------------
class CatchupStep(Enum):
    IDLE = "idle"
    READING_TIP = "reading_tip"  # recover: how far to look for published contracts
    FINDING_CONTRACTS = "finding_contracts"  # recover: contracts with a published key
    READING_ASSIGNED = "reading_assigned"  # recover: which of them are ours
    READING_CHECKPOINTS = "reading_checkpoints"  # recover: their checkpoint records
    FETCHING_BLOB = "fetching_blob"  # recover: the newest checkpoint's blob
    READING_HASH = "reading_hash"  # resume / fresh: the anchor's hash
    CONFIGURING = "configuring"  # resume / fresh: the enclave's chain
    SCANNING = "scanning"  # keys published or rotated up to the anchor
    READING_RECORD = "reading_record"  # a contract's registry record
    MAKING_REQUEST = "making_request"  # the enclave's key request
    READING_GROUP = "reading_group"  # the committee's group keys
    COLLECTING = "collecting"  # t partial releases
    RESTORING = "restoring"  # recover: the enclave resumes from the blob
    INSTALLING = "installing"
    STAGING = "staging"


# the answer each step waits for (IDLE waits for none)
ANSWERS: dict[CatchupStep, type] = {
    CatchupStep.READING_TIP: ChainRead,
    CatchupStep.FINDING_CONTRACTS: ChainRead,
    CatchupStep.READING_ASSIGNED: ChainRead,
    CatchupStep.READING_CHECKPOINTS: ChainRead,
    CatchupStep.FETCHING_BLOB: ChainRead,
    CatchupStep.READING_HASH: ChainRead,
    CatchupStep.CONFIGURING: EnclaveAnswer,
    CatchupStep.SCANNING: ChainRead,
    CatchupStep.READING_RECORD: ChainRead,
    CatchupStep.MAKING_REQUEST: EnclaveAnswer,
    CatchupStep.READING_GROUP: PeerAnswers,
    CatchupStep.COLLECTING: PeerAnswers,
    CatchupStep.RESTORING: EnclaveAnswer,
    CatchupStep.INSTALLING: EnclaveAnswer,
    CatchupStep.STAGING: EnclaveAnswer,
}


class _JobKind(Enum):
    START = "start"
    INSTALL = "install"
    ROTATE = "rotate"
    STARTED = "started"  # the start's last job: its installs are done


@dataclass
class _CatchupJob:
    kind: _JobKind
    event: KeyEvent | None = None  # of an install or a rotation
    anchor: int = 0  # the start's anchor, once chosen
    record: CheckpointView | None = None  # the checkpoint recovered from
    blob: bytes = b""
    blob_height: int = 0
    pending: list[bytes] = field(default_factory=list)  # contracts still to fetch keys for
    installs: list[InstallContract] = field(default_factory=list)  # built for the restore
    # the key fetch in hand
    contract_id: bytes = b""
    view: ContractView | None = None
    version: int = 0
    key_id: bytes = b""  # what the partials of that version are released for
    sealed: bytes = b""
    resume_height: int = 0
    request: KeyRequest | None = None
    group: GroupPublicKeys | None = None


_HOST_INPUTS = (StartCatchup, KeysRotated, KeysPublished, BlockApplied)


class CatchupCore:
    """A worker host's start-up and install decisions (see the module docstring)."""

    def __init__(
        self,
        worker_id: bytes,
        *,
        chain_config: ChainConfig,
        start_block: int,
        address: int = 0,
        host: int = 0,
        chain: int = 0,
        enclave: int = 0,
        peers: int = 0,
        incarnation: int = 0,
    ) -> None:
        self.worker_id = bytes(worker_id)
        self.chain_config = chain_config  # its anchor fields are filled in per start
        self.start_block = int(start_block)  # the management contracts' block
        self.address = address
        self.host = host
        # who answers each kind of effect (any other sender is ignored)
        self.answerers: dict[type, int] = {
            ChainRead: chain,
            EnclaveAnswer: enclave,
            PeerAnswers: peers,
        }
        self.step = CatchupStep.IDLE
        self.tag = ""  # the tag of the answer awaited ("" when idle)
        self.tags = TagSource("catchup", sep="/", incarnation=incarnation)
        self.job: _CatchupJob | None = None
        self.backlog: deque[_CatchupJob] = deque()
        self.failure: CatchupFailure | None = None
        self.started = False  # the start and its installs are done
        self.bundle = StateBundle()
        self.anchor = 0  # the enclave's verified chain starts after this block
        self.last_delivered = 0  # the newest block the enclave applied
        self.recovered_from: int | None = None  # checkpoint height, when recovered
        self.directory: list[DirectoryEntry] = []  # keys published before the anchor
        self.installed: dict[bytes, list[bytes]] = {}  # contract id -> its executor set
        self.refused_installs = 0
        self.staged = 0
        self._handlers: dict[CatchupStep, Callable[[_CatchupJob, Any], list[Effect]]] = {
            CatchupStep.READING_TIP: self._on_tip,
            CatchupStep.FINDING_CONTRACTS: self._on_published_contracts,
            CatchupStep.READING_ASSIGNED: self._on_assigned,
            CatchupStep.READING_CHECKPOINTS: self._on_checkpoints,
            CatchupStep.FETCHING_BLOB: self._on_blob,
            CatchupStep.READING_HASH: self._on_anchor_hash,
            CatchupStep.CONFIGURING: self._on_configured,
            CatchupStep.SCANNING: self._on_scanned,
            CatchupStep.READING_RECORD: self._on_record,
            CatchupStep.MAKING_REQUEST: self._on_key_request,
            CatchupStep.READING_GROUP: self._on_group,
            CatchupStep.COLLECTING: self._on_partials,
            CatchupStep.RESTORING: self._on_restored,
            CatchupStep.INSTALLING: self._on_installed,
            CatchupStep.STAGING: self._on_staged,
        }

    # -- ProtocolNode ------------------------------------------------------------------
    @property
    def node_id(self) -> int:
        return self.address

    def on_start(self, now: float) -> list[Effect]:
        self.tags.start(now)  # no answer to an earlier incarnation's effect is taken
        return []

    def on_timer(self, name: str, now: float) -> list[Effect]:
        return []

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if isinstance(message, _HOST_INPUTS):
            return self._on_host(message) if sender == self.host else []
        expected = ANSWERS.get(self.step)
        job = self.job
        if job is None or expected is None or type(message) is not expected:
            return []  # no answer awaited, or not the kind awaited
        if getattr(message, "tag", None) != self.tag or sender != self.answerers[expected]:
            return []  # an old or unknown tag, or a forged sender
        self.tag = ""
        if isinstance(message, ChainRead) and message.error:
            effects = self._on_read_error(message)
        elif (
            isinstance(message, EnclaveAnswer)
            and message.error
            and (self.step != CatchupStep.INSTALLING)
        ):
            effects = self._fail(
                "enclave_refused", f"{self.step.value}: the enclave refused: {message.error}"
            )
        else:
            effects = self._handlers[self.step](job, message)
        return effects + self._pump()

    # -- host inputs ---------------------------------------------------------------------
    def _on_host(self, message: Any) -> list[Effect]:
        if self.job is None and not self.backlog:
            self.failure = None  # a fresh unit of work
        if isinstance(message, BlockApplied):
            if _is_count(message.number) and message.number > self.last_delivered:
                self.last_delivered = message.number
                self.directory = []  # the enclave has it now
            return []
        if isinstance(message, StartCatchup):
            self.started = False
            self.bundle = message.bundle
            self.backlog.append(_CatchupJob(_JobKind.START))
        elif isinstance(message, KeysRotated):
            self.backlog.extend(
                _CatchupJob(_JobKind.ROTATE, event=e)
                for e in message.events
                if _is_key_event(e, True)
            )
        else:
            for event in message.events:
                if _is_key_event(event, False):
                    self._note_directory(event)
                    self.backlog.append(_CatchupJob(_JobKind.INSTALL, event=event))
        return self._pump()

    def _note_directory(self, event: KeyEvent) -> None:
        """Keys published (or rotated) up to the anchor go to the enclave as the host's
        directory (verified events after the anchor replace them); the latest wins."""
        if event.block_number > self.anchor:
            return
        cid = event.contract_id
        self.directory = [e for e in self.directory if e.contract_id != cid]
        self.directory.append(
            DirectoryEntry(
                contract_id=cid,
                command_key=event.contract_public_key,
                message_key=event.message_key,
            )
        )

    # -- jobs ----------------------------------------------------------------------------
    def _pump(self) -> list[Effect]:
        effects: list[Effect] = []
        while self.job is None and self.backlog:
            job = self.job = self.backlog.popleft()
            effects += self._begin(job)
        return effects

    def _begin(self, job: _CatchupJob) -> list[Effect]:
        if job.kind == _JobKind.STARTED:
            self.started = True
            return self._done(Report("catchup_started", {"anchor": self.anchor}))
        if job.kind == _JobKind.START:
            return self._begin_start(job)
        event = job.event
        if event is None:  # never: installs and rotations carry their event
            return self._done()
        job.contract_id = event.contract_id
        if job.kind == _JobKind.ROTATE:
            if event.contract_id not in self.installed:
                return self._done()  # only an installed contract's key is staged
            job.version = event.version
            return self._make_request(job)
        if event.contract_id in self.installed:
            return self._done()
        return self._read_record(job)

    def _ask(self, step: CatchupStep, make: Callable[[str], Effect]) -> list[Effect]:
        self.tag = self.tags.issue()
        self.step = step
        return [make(self.tag)]

    def _read(self, step: CatchupStep, query: Any) -> list[Effect]:
        return self._ask(step, lambda tag: ReadChain(tag, query))

    def _ecall(self, step: CatchupStep, ecall: Any, request: Any) -> list[Effect]:
        return self._ask(step, lambda tag: CallEnclave(tag, ecall, request))

    def _done(self, *effects: Effect) -> list[Effect]:
        self.job = None
        self.step = CatchupStep.IDLE
        self.tag = ""
        return list(effects)

    def _fail(self, code: str, message: str, *, passing: bool = False) -> list[Effect]:
        """End the job and drop the ones behind it (the host offers them again)."""
        self.failure = CatchupFailure(code, message, passing)
        self.backlog.clear()
        kind = "catchup_delayed" if passing else "catchup_failed"
        return self._done(Report(kind, message))

    def _unsound(self, what: str) -> list[Effect]:
        return self._fail("unsound_answer", f"{self.step.value}: {what}", passing=True)

    def _on_read_error(self, read: ChainRead) -> list[Effect]:
        what = f"{self.step.value}: {read.error}"
        if read.passing:
            return self._fail("chain_unavailable", what, passing=True)
        if self.step == CatchupStep.FETCHING_BLOB:
            record = self.job.record if self.job is not None else None
            name = f"0x{record.blob_hash.hex()}" if record is not None else "?"
            return self._fail("recovery_failed", f"cannot fetch checkpoint {name}: {read.error}")
        return self._fail("read_refused", what)

    # -- the start -----------------------------------------------------------------------
    def _begin_start(self, job: _CatchupJob) -> list[Effect]:
        self.directory = []
        bundle = self.bundle
        if bundle.height > 0:
            anchor = min(bundle.heights.values(), default=bundle.height)
            note = {"bundle": bundle.height, "replay_from": anchor}
            return [Report("catchup_resuming", note), *self._configure(job, anchor)]
        return self._read(CatchupStep.READING_TIP, BlockNumberQuery())

    def _fresh(self, job: _CatchupJob) -> list[Effect]:
        return self._configure(job, max(self.start_block - 1, 0))

    def _configure(self, job: _CatchupJob, anchor: int) -> list[Effect]:
        if not _is_count(anchor):
            return self._fail("unsound_answer", f"no block {anchor!r} to start from", passing=True)
        job.anchor = anchor
        return self._read(CatchupStep.READING_HASH, BlockHashQuery(number=anchor))

    def _on_anchor_hash(self, job: _CatchupJob, read: ChainRead) -> list[Effect]:
        block_hash = read.value
        if not isinstance(block_hash, bytes) or len(block_hash) != 32:
            return self._unsound("not a block hash")
        config = self._get_chain_config(job.anchor, block_hash)
        return self._ecall(CatchupStep.CONFIGURING, WORKER_CONFIGURE_CHAIN, config)

    def _on_configured(self, job: _CatchupJob, answer: EnclaveAnswer) -> list[Effect]:
        return self._scan(job)

    def _get_chain_config(self, anchor: int, anchor_hash: bytes) -> ChainConfig:
        c = self.chain_config
        return ChainConfig(
            chain_id=c.chain_id,
            command_inbox=c.command_inbox,
            contract_registry=c.contract_registry,
            execution_ledger=c.execution_ledger,
            anchor_number=anchor,
            anchor_hash=anchor_hash,
        )

    def _scan(self, job: _CatchupJob) -> list[Effect]:
        """The anchor is set: read the keys published or rotated up to it."""
        self.anchor = job.anchor
        self.last_delivered = job.anchor
        if self.anchor < self.start_block:
            return self._after_scan(job, [])
        query = KeyEventsQuery(first=self.start_block, last=self.anchor)
        return self._read(CatchupStep.SCANNING, query)

    def _on_scanned(self, job: _CatchupJob, read: ChainRead) -> list[Effect]:
        events = _get_events(read.value, self.start_block, self.anchor)
        if events is None:
            return self._unsound("not the key events asked for")
        return self._after_scan(job, events)

    def _after_scan(self, job: _CatchupJob, events: list[KeyEvent]) -> list[Effect]:
        installs: list[_CatchupJob] = []
        for event in events:
            self._note_directory(event)
            if not event.rotated:
                installs.append(_CatchupJob(_JobKind.INSTALL, event=event))
        # the start's installs run before anything else; then it is done
        self.backlog.extendleft(reversed([*installs, _CatchupJob(_JobKind.STARTED)]))
        return self._done()

    # -- recovery from a checkpoint ------------------------------------------------------
    def _on_tip(self, job: _CatchupJob, read: ChainRead) -> list[Effect]:
        tip = read.value
        if not _is_count(tip):
            return self._unsound("not a block number")
        if tip < self.start_block:
            return self._fresh(job)
        job.anchor = tip  # the range looked at, for the check of the answer
        query = KeyEventsQuery(first=self.start_block, last=tip)
        return self._read(CatchupStep.FINDING_CONTRACTS, query)

    def _on_published_contracts(self, job: _CatchupJob, read: ChainRead) -> list[Effect]:
        events = _get_events(read.value, self.start_block, job.anchor)
        if events is None:
            return self._unsound("not the key events asked for")
        ids = list(dict.fromkeys(e.contract_id for e in events if not e.rotated))
        if not ids:
            return self._fresh(job)
        job.pending = ids
        return self._read(CatchupStep.READING_ASSIGNED, ContractRecordsQuery(contract_ids=ids))

    def _on_assigned(self, job: _CatchupJob, read: ChainRead) -> list[Effect]:
        views = _get_views(read.value, len(job.pending))
        if views is None:
            return self._unsound("not the contract records asked for")
        ours = [
            cid
            for cid, view in zip(job.pending, views, strict=True)
            if view is not None and self.worker_id in view.workers
        ]
        job.pending = []
        if not ours:
            return self._fresh(job)
        query = CheckpointRecordsQuery(contract_ids=ours)
        job.pending = ours
        return self._read(CatchupStep.READING_CHECKPOINTS, query)

    def _on_checkpoints(self, job: _CatchupJob, read: ChainRead) -> list[Effect]:
        value = read.value
        if (
            not isinstance(value, CheckpointViews)
            or len(value.records) != len(job.pending)
            or not all(r is None or _is_record(r) for r in value.records)
        ):
            return self._unsound("not the checkpoint records asked for")
        job.pending = []
        best: CheckpointView | None = None
        for record in value.records:
            if record is not None and (best is None or record.height > best.height):
                best = record
        if best is None:
            return self._fresh(job)
        job.record = best
        query = CheckpointBlobQuery(
            blob_hash=best.blob_hash, inline=best.inline, recorded_at=best.recorded_at
        )
        return self._read(CatchupStep.FETCHING_BLOB, query)

    def _on_blob(self, job: _CatchupJob, read: ChainRead) -> list[Effect]:
        record = job.record
        blob = read.value
        if record is None or not isinstance(blob, bytes):
            return self._unsound("not a checkpoint blob")
        if keccak(blob) != record.blob_hash:
            return self._fail(
                "recovery_failed", f"checkpoint blob 0x{record.blob_hash.hex()} has other bytes"
            )
        try:
            content = decode(blob, CheckpointBlob)
            contract_ids = [bytes.fromhex(h) for h in content.states]
        except (SealbridgeError, ValueError) as exc:
            return self._fail("recovery_failed", f"unreadable checkpoint blob: {exc}")
        if (content.height, content.block_hash) != (record.height, record.block_hash):
            return self._fail(
                "recovery_failed",
                f"checkpoint blob is sealed at block {content.height}, its record says "
                f"{record.height}",
            )
        job.blob = blob
        job.blob_height = content.height
        job.pending = contract_ids
        job.installs = []
        return self._next_restore(job)

    def _next_restore(self, job: _CatchupJob) -> list[Effect]:
        if job.pending:
            job.contract_id = job.pending.pop(0)
            return self._read_record(job)
        restore = RestoreCheckpoint(
            blob=job.blob, installs=list(job.installs), chain=self._get_chain_config(0, bytes(32))
        )
        return self._ecall(CatchupStep.RESTORING, WORKER_RESTORE_CHECKPOINT, restore)

    def _on_restored(self, job: _CatchupJob, answer: EnclaveAnswer) -> list[Effect]:
        restored = answer.response
        record = job.record
        if (
            record is None
            or not isinstance(restored, StatusList)
            or len(restored.contracts) != len(job.installs)
            or not all(isinstance(s, ContractStatus) for s in restored.contracts)
        ):
            return self._unsound("not the restored contracts")
        for status, install in zip(restored.contracts, job.installs, strict=True):
            self.installed[status.contract_id] = list(install.workers)
        self.recovered_from = record.height
        job.anchor = record.height
        note = {"contracts": len(job.installs), "height": record.height, "bytes": len(job.blob)}
        return [Report("catchup_recovered", note), *self._scan(job)]

    # -- keys: install, restore, stage ---------------------------------------------------
    def _read_record(self, job: _CatchupJob) -> list[Effect]:
        query = ContractRecordsQuery(contract_ids=[job.contract_id])
        return self._read(CatchupStep.READING_RECORD, query)

    def _on_record(self, job: _CatchupJob, read: ChainRead) -> list[Effect]:
        views = _get_views(read.value, 1)
        if views is None:
            return self._unsound("not the contract record asked for")
        view = views[0]
        cid = job.contract_id
        if job.kind == _JobKind.START:  # a contract of the checkpoint
            if view is None:
                return self._fail("recovery_failed", f"contract 0x{cid.hex()} is not registered")
            job.view = view
            job.sealed, job.resume_height = b"", 0
            job.version = view.get_version_at(job.blob_height)
            return self._make_request(job)
        if view is None or self.worker_id not in view.workers:
            return self._done()  # not assigned to this worker
        job.view = view
        sealed = self.bundle.states.get(cid.hex(), b"")
        height = self.bundle.heights.get(cid.hex(), self.bundle.height) if sealed else 0
        job.sealed, job.resume_height = sealed, height
        # the version in force after the sealed state's block (else the followed height)
        job.version = view.get_version_at(height or self.last_delivered)
        return self._make_request(job)

    def _make_request(self, job: _CatchupJob) -> list[Effect]:
        try:
            job.key_id = compute_key_id(job.contract_id, job.version)
        except SealbridgeError:  # a version out of range: the enclave refuses it
            job.key_id = b""
        make = MakeKeyRequest(contract_id=job.contract_id, version=job.version)
        return self._ecall(CatchupStep.MAKING_REQUEST, MAKE_KEY_REQUEST, make)

    def _on_key_request(self, job: _CatchupJob, answer: EnclaveAnswer) -> list[Effect]:
        if not isinstance(answer.response, KeyRequest):
            return self._unsound("not a key request")
        job.request = answer.response
        job.group = None
        return self._ask(
            CatchupStep.READING_GROUP,
            lambda tag: AskPeers(tag, GroupKeysRequest(), GROUP_VIEWS),
        )

    def _on_group(self, job: _CatchupJob, answer: PeerAnswers) -> list[Effect]:
        groups = [g for g in answer.answers if isinstance(g, GroupPublicKeys) and _is_threshold(g)]
        request = job.request
        if not groups or request is None:
            return self._key_unavailable(0, "?", answer.errors)
        job.group = get_most_offered(groups[:GROUP_VIEWS])
        needed = job.group.threshold
        return self._ask(CatchupStep.COLLECTING, lambda tag: AskPeers(tag, request, needed))

    def _on_partials(self, job: _CatchupJob, answer: PeerAnswers) -> list[Effect]:
        group = job.group
        if group is None:  # never: COLLECTING follows READING_GROUP
            return self._unsound("no group keys")
        releases = [
            r
            for r in answer.answers
            if isinstance(r, PartialKeyRelease) and r.contract_id == job.key_id
        ]
        if len(releases) < group.threshold:
            return self._key_unavailable(len(releases), str(group.threshold), answer.errors)
        # all of them: the enclave drops a release that does not verify and combines t
        return self._on_key_released(job, group, releases[:MAX_RELEASES])

    def _key_unavailable(self, got: int, need: str, errors: Sequence[Any]) -> list[Effect]:
        why = "; ".join(str(e) for e in errors) or "no gatekeeper"
        message = f"got {got} partial key releases, need {need}: {why}"
        return self._fail("key_unavailable", message, passing=True)

    def _on_key_released(
        self, job: _CatchupJob, group: GroupPublicKeys, releases: list[PartialKeyRelease]
    ) -> list[Effect]:
        event = job.event
        if job.kind == _JobKind.ROTATE and event is not None:
            stage = StageContractKey(
                contract_id=job.contract_id,
                version=job.version,
                contract_public_key=event.contract_public_key,
                releases=releases,
                group=group,
            )
            return self._ecall(CatchupStep.STAGING, WORKER_STAGE_CONTRACT_KEY, stage)
        view = job.view
        if view is None:  # never: installs and restores read the record first
            return self._unsound("no contract record")
        install = InstallContract(
            contract_id=job.contract_id,
            code_hash=view.code_hash,
            contract_public_key=view.contract_public_key,
            wrapped_key=b"",
            gatekeeper_key=b"",
            deployer_commitment=view.deployer_commitment,
            workers=list(view.workers),
            sealed_state=job.sealed,
            resume_height=job.resume_height,
            releases=releases,
            group=group,
            key_version=job.version,
        )
        if job.kind == _JobKind.START:
            job.installs.append(install)
            return self._next_restore(job)
        return self._ecall(CatchupStep.INSTALLING, WORKER_INSTALL_CONTRACT, install)

    def _on_installed(self, job: _CatchupJob, answer: EnclaveAnswer) -> list[Effect]:
        cid = job.contract_id
        if answer.error:
            code = answer.error.split(":", 1)[0].strip()
            if code not in INSTALL_REFUSALS:
                return self._fail("enclave_refused", f"install_contract refused: {answer.error}")
            # e.g. deployed before this enclave's anchor, with no sealed state to vouch
            # for it: the contract stays uninstalled here (other workers serve it)
            self.refused_installs += 1
            return self._done(Report("contract_not_installed", f"0x{cid.hex()}: {answer.error}"))
        if not isinstance(answer.response, ContractStatus) or job.view is None:
            return self._unsound("not a contract status")
        self.installed[cid] = list(job.view.workers)
        return self._done(Report("contract_installed", f"0x{cid.hex()}"))

    def _on_staged(self, job: _CatchupJob, answer: EnclaveAnswer) -> list[Effect]:
        self.staged += 1
        note = f"0x{job.contract_id.hex()} v{job.version}"
        return self._done(Report("contract_key_staged", note))

    # -- reads ---------------------------------------------------------------------------
    def get_error(self) -> LocalProtocolError | None:
        """The failure of the last job as the typed error a host raises for a failure
        that will not pass (None when there is none, or it may pass)."""
        failure = self.failure
        if failure is None or failure.passing:
            return None
        if failure.code == "recovery_failed":
            return RecoveryFailed(failure.message)
        return CatchupRefused(failure.message)

    def get_status(self) -> dict[str, Any]:
        return {
            "catchup_step": self.step.value,
            "installs_refused": self.refused_installs,
            "keys_staged": self.staged,
        }


def _is_count(value: Any) -> bool:
    """A non-negative int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_threshold(group: GroupPublicKeys) -> bool:
    return _is_count(group.threshold) and group.threshold >= 1


def _is_key_event(event: Any, rotated: bool) -> bool:
    return (
        isinstance(event, KeyEvent)
        and event.rotated is rotated
        and isinstance(event.contract_id, bytes)
        and _is_count(event.block_number)
        and _is_count(event.version)
    )


def _is_record(record: Any) -> bool:
    return (
        isinstance(record, CheckpointView)
        and _is_count(record.height)
        and isinstance(record.blob_hash, bytes)
        and len(record.blob_hash) == 32
    )


def _get_events(value: Any, first: int, last: int) -> list[KeyEvent] | None:
    """The key events of an answer, if every one is well formed and in [first, last]."""
    if not isinstance(value, KeyEvents):
        return None
    events = list(value.events)
    for event in events:
        if not _is_key_event(event, bool(getattr(event, "rotated", False))):
            return None
        if not first <= event.block_number <= last:
            return None
    return events


def _get_views(value: Any, count: int) -> list[ContractView | None] | None:
    if not isinstance(value, ContractViews) or len(value.views) != count:
        return None
    if not all(v is None or isinstance(v, ContractView) for v in value.views):
        return None
    return list(value.views)
