"""The worker host's catch-up core (runtime/catchup.py), alone: where the enclave starts
(a state bundle, a checkpoint on the storage nodes or inline on chain, or fresh), which
contracts it installs with which key, which rotations it stages, and what hostile or
failed answers do. No processes, no chain: a small model of the chain, the enclave and
the gatekeepers answers the effects."""

from __future__ import annotations

from dataclasses import dataclass, field
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
from sealbridge.core.encoding import encode
from sealbridge.core.ids import keccak
from sealbridge.crypto.dkg import GroupPublicKeys
from sealbridge.crypto.keyschedule import compute_key_id
from sealbridge.keyservice.messages import KeyRequest
from sealbridge.keyservice.threshold_messages import PartialKeyRelease
from sealbridge.runtime.catchup import (
    BlockApplied,
    BlockHashQuery,
    CatchupCore,
    CatchupRefused,
    CatchupStep,
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
from sealbridge.runtime.ecalls import (
    MAKE_KEY_REQUEST,
    WORKER_CONFIGURE_CHAIN,
    WORKER_INSTALL_CONTRACT,
    WORKER_RESTORE_CHECKPOINT,
    WORKER_STAGE_CONTRACT_KEY,
    StatusList,
)
from sealbridge.runtime.messages import (
    ChainConfig,
    CheckpointBlob,
    ContractStatus,
    InstallContract,
)
from sealbridge.runtime.submission import BlockNumberQuery
from sealbridge.tee.ecall import NOTHING
from sealbridge.tee.enclave import NodeKeys

ME, OTHER = b"\x01" * 32, b"\x02" * 32
A, B, C = b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32
HOST, CHAIN, ENCLAVE, PEERS = 1, 2, 3, 4
START = 5  # the management contracts' block
CONFIG = ChainConfig(
    chain_id=31337,
    command_inbox=b"\x11" * 20,
    contract_registry=b"\x22" * 20,
    execution_ledger=b"\x33" * 20,
    anchor_number=0,
    anchor_hash=bytes(32),
)


def block_hash(number: int) -> bytes:
    return keccak(number.to_bytes(8, "big"))


def published(cid: bytes, at: int, key: bytes = b"k") -> KeyEvent:
    return KeyEvent(
        contract_id=cid, block_number=at, contract_public_key=key * 32, message_key=b"m" * 32
    )


def rotated(cid: bytes, at: int, version: int, key: bytes = b"r") -> KeyEvent:
    return KeyEvent(
        contract_id=cid,
        block_number=at,
        contract_public_key=key * 32,
        message_key=b"n" * 32,
        rotated=True,
        version=version,
    )


def view(workers: list[bytes], key_version: int = 0, rotated_at: int = 0) -> ContractView:
    return ContractView(
        code_hash=b"c" * 32,
        contract_public_key=b"p" * 32,
        deployer_commitment=b"d" * 32,
        workers=workers,
        key_version=key_version,
        rotated_at=rotated_at,
    )


def checkpoint(cids: list[bytes], height: int, *, sealed_at: int | None = None) -> bytes:
    at = height if sealed_at is None else sealed_at
    states = {cid.hex(): b"sealed-" + cid[:1] for cid in cids}
    return encode(CheckpointBlob(height=at, block_hash=block_hash(at), states=states))


def record(cid: bytes, blob: bytes, height: int, *, inline: bool = False) -> CheckpointView:
    return CheckpointView(
        contract_id=cid,
        height=height,
        block_hash=block_hash(height),
        blob_hash=keccak(blob),
        inline=inline,
        recorded_at=height + 1,
    )


@dataclass
class World:
    """The chain, the enclave and the committee's gatekeepers, as the core sees them."""

    tip: int = 40
    events: list[KeyEvent] = field(default_factory=list)
    contracts: dict[bytes, ContractView] = field(default_factory=dict)
    checkpoints: dict[bytes, CheckpointView] = field(default_factory=dict)
    blobs: dict[bytes, bytes] = field(default_factory=dict)  # blob hash -> bytes
    blob_error: str = ""  # the storage nodes' failure, when set
    threshold: int = 2
    gatekeepers_up: int = 3
    refuse_install: dict[bytes, str] = field(default_factory=dict)  # contract -> error
    calls: list[CallEnclave] = field(default_factory=list)
    reads: list[Any] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    key_for: bytes = b""  # the key id of the last key request
    stale_first: bool = False  # the first gatekeeper serves a retired era's public keys

    def answer(self, effect: Effect) -> tuple[int, Any]:
        if isinstance(effect, ReadChain):
            self.reads.append(effect.query)
            if isinstance(effect.query, CheckpointBlobQuery) and self.blob_error:
                return CHAIN, ChainRead(effect.tag, error=self.blob_error, passing=False)
            return CHAIN, ChainRead(effect.tag, self.read(effect.query))
        if isinstance(effect, CallEnclave):
            self.calls.append(effect)
            return ENCLAVE, self.ecall(effect)
        assert isinstance(effect, AskPeers)
        if isinstance(effect.request, GroupKeysRequest):
            group = GroupPublicKeys(threshold=self.threshold, group_public_key=b"g" * 48, shares=[])
            answers: tuple[Any, ...] = (group,) * min(self.gatekeepers_up, effect.needed)
            if self.stale_first and answers:
                stale = GroupPublicKeys(threshold=3, group_public_key=b"g" * 48, shares=[])
                answers = (stale, *answers[1:])
            return PEERS, PeerAnswers(effect.tag, answers, ("gk-9: down",))
        count = min(effect.needed, self.gatekeepers_up)
        releases = tuple(
            PartialKeyRelease(contract_id=self.key_for, worker_id=ME, index=i, ciphertext=b"x")
            for i in range(1, count + 1)
        )
        return PEERS, PeerAnswers(effect.tag, releases, ("gk-9: down",))

    def read(self, query: Any) -> Any:
        if isinstance(query, BlockNumberQuery):
            return self.tip
        if isinstance(query, BlockHashQuery):
            return block_hash(query.number)
        if isinstance(query, KeyEventsQuery):
            return KeyEvents(
                events=[e for e in self.events if query.first <= e.block_number <= query.last]
            )
        if isinstance(query, ContractRecordsQuery):
            return ContractViews(views=[self.contracts.get(c) for c in query.contract_ids])
        if isinstance(query, CheckpointRecordsQuery):
            return CheckpointViews(records=[self.checkpoints.get(c) for c in query.contract_ids])
        assert isinstance(query, CheckpointBlobQuery)
        return self.blobs[query.blob_hash]

    def ecall(self, effect: CallEnclave) -> EnclaveAnswer:
        request = effect.request
        if effect.ecall is MAKE_KEY_REQUEST:
            self.key_for = compute_key_id(request.contract_id, request.version)
            node = NodeKeys(identity_key=ME, encryption_key=ME, eth_address=ME[:20])
            body = request.contract_id + bytes([request.version])
            return EnclaveAnswer(
                effect.tag, KeyRequest(body=body, signature=b"s", node=node, quote=b"q")
            )
        if effect.ecall is WORKER_INSTALL_CONTRACT:
            refusal = self.refuse_install.get(request.contract_id)
            if refusal:
                return EnclaveAnswer(effect.tag, error=refusal)
            status = ContractStatus(request.contract_id, request.resume_height, b"r", 0)
            return EnclaveAnswer(effect.tag, status)
        if effect.ecall is WORKER_RESTORE_CHECKPOINT:
            statuses = [ContractStatus(i.contract_id, 0, b"r", 0) for i in request.installs]
            return EnclaveAnswer(effect.tag, StatusList(contracts=statuses))
        assert effect.ecall in (WORKER_CONFIGURE_CHAIN, WORKER_STAGE_CONTRACT_KEY)
        return EnclaveAnswer(effect.tag, NOTHING)


def new_core() -> CatchupCore:
    return CatchupCore(
        ME,
        chain_config=CONFIG,
        start_block=START,
        host=HOST,
        chain=CHAIN,
        enclave=ENCLAVE,
        peers=PEERS,
    )


def io(effects: list[Effect]) -> list[Effect]:
    return [e for e in effects if isinstance(e, ReadChain | CallEnclave | AskPeers)]


def run(core: CatchupCore, world: World, message: Any) -> None:
    """Hand the core a host input, then answer its effects until it asks for none."""
    effects = core.on_message(HOST, message, 0.0)
    while True:
        world.reports.extend(e for e in effects if isinstance(e, Report))
        pending = io(effects)
        if not pending:
            return
        (effect,) = pending  # one effect at a time
        sender, answer = world.answer(effect)
        effects = core.on_message(sender, answer, 0.0)


def ecalls(world: World, ecall: Any) -> list[Any]:
    return [c.request for c in world.calls if c.ecall is ecall]


def installs(world: World) -> list[InstallContract]:
    return ecalls(world, WORKER_INSTALL_CONTRACT)


# -- the start -----------------------------------------------------------------------------


def test_a_fresh_start_anchors_before_the_management_contracts() -> None:
    world = World(events=[published(A, 7)], contracts={A: view([ME])})
    core = new_core()
    run(core, world, StartCatchup(bundle=StateBundle()))
    assert core.started and core.failure is None
    assert core.anchor == core.last_delivered == START - 1 and core.recovered_from is None
    (config,) = ecalls(world, WORKER_CONFIGURE_CHAIN)
    assert (config.anchor_number, config.anchor_hash) == (START - 1, block_hash(START - 1))
    assert config.chain_id == CONFIG.chain_id and config.command_inbox == CONFIG.command_inbox
    assert world.reads[-1] == BlockHashQuery(number=START - 1)  # no scan of an empty range
    assert core.installed == {} and core.directory == []
    # the key event arrives with its block: installed at the version in force then
    run(core, world, BlockApplied(number=7))
    run(core, world, KeysPublished(events=[published(A, 7)]))
    (install,) = installs(world)
    assert install.contract_id == A and install.sealed_state == b"" and install.resume_height == 0
    assert install.workers == [ME] and len(install.releases) == 2 and install.group is not None
    assert core.installed == {A: [ME]}


def test_a_gatekeeper_serving_a_retired_eras_keys_is_outvoted() -> None:
    """Found by running the e2e suite in reverse: the worker took the first gatekeeper's
    view of the committee's public keys; a gatekeeper that still served a retired era's
    view (or lied) stalled every install of every worker that asked it first. The view
    most gatekeepers offer is taken."""
    world = World(events=[published(A, 7)], contracts={A: view([ME])}, stale_first=True)
    core = new_core()
    run(core, world, StartCatchup(bundle=StateBundle()))
    run(core, world, BlockApplied(number=7))
    run(core, world, KeysPublished(events=[published(A, 7)]))
    (install,) = installs(world)
    assert install.group is not None and install.group.threshold == world.threshold
    assert core.installed == {A: [ME]}


def test_resume_from_the_bundle_replays_from_its_oldest_state() -> None:
    world = World(
        events=[published(A, 6), rotated(A, 10, 1), published(B, 12), published(C, 13)],
        contracts={
            A: view([ME, OTHER], key_version=1, rotated_at=10),
            B: view([ME]),
            C: view([OTHER]),
        },
    )
    bundle = StateBundle(
        height=20,
        block_hash=block_hash(20),
        states={A.hex(): b"state-a", B.hex(): b"state-b"},
        heights={A.hex(): 15, B.hex(): 18},
    )
    core = new_core()
    run(core, world, StartCatchup(bundle=bundle))
    assert core.started and core.anchor == 15 and core.last_delivered == 15
    assert BlockNumberQuery() not in world.reads  # no recovery lookup with a bundle
    (config,) = ecalls(world, WORKER_CONFIGURE_CHAIN)
    assert (config.anchor_number, config.anchor_hash) == (15, block_hash(15))
    # the directory: every key up to the anchor, a rotation replacing the published key
    keys = {e.contract_id: e.command_key for e in core.directory}
    assert keys == {A: b"r" * 32, B: b"k" * 32, C: b"k" * 32}
    by_id = {i.contract_id: i for i in installs(world)}
    assert set(by_id) == {A, B}  # C is not assigned to this worker
    assert (by_id[A].sealed_state, by_id[A].resume_height, by_id[A].key_version) == (
        b"state-a",
        15,
        1,
    )
    assert (by_id[B].sealed_state, by_id[B].resume_height) == (b"state-b", 18)
    assert core.installed == {A: [ME, OTHER], B: [ME]}
    # the enclave took the directory with its first block
    run(core, world, BlockApplied(number=16))
    assert core.directory == [] and core.last_delivered == 16


def recovery_world(*, inline: bool = False) -> World:
    old = checkpoint([A], 20)
    new = checkpoint([A, B], 30)
    return World(
        events=[published(A, 6), published(B, 8), published(C, 9), rotated(B, 25, 1)],
        contracts={
            A: view([ME]),
            B: view([ME, OTHER], key_version=1, rotated_at=25),
            C: view([OTHER]),
        },
        checkpoints={A: record(A, old, 20), B: record(B, new, 30, inline=inline)},
        blobs={keccak(old): old, keccak(new): new},
    )


def test_a_worker_without_state_recovers_from_the_newest_checkpoint() -> None:
    world = recovery_world()
    core = new_core()
    run(core, world, StartCatchup(bundle=StateBundle()))
    assert core.started and core.failure is None
    assert core.recovered_from == core.anchor == core.last_delivered == 30
    # only this worker's contracts' checkpoints are read; the newest blob is fetched
    assert CheckpointRecordsQuery(contract_ids=[A, B]) in world.reads
    blob_query = next(q for q in world.reads if isinstance(q, CheckpointBlobQuery))
    assert blob_query.blob_hash == world.checkpoints[B].blob_hash and not blob_query.inline
    (restore,) = ecalls(world, WORKER_RESTORE_CHECKPOINT)
    assert restore.blob == world.blobs[blob_query.blob_hash]
    assert [i.contract_id for i in restore.installs] == [A, B]
    assert [i.key_version for i in restore.installs] == [0, 1]  # in force at block 30
    assert all(i.sealed_state == b"" and i.resume_height == 0 for i in restore.installs)
    assert ecalls(world, WORKER_CONFIGURE_CHAIN) == []  # the checkpoint is the anchor
    assert installs(world) == []  # restored, not installed again; C is not ours
    assert core.installed == {A: [ME], B: [ME, OTHER]}
    assert {e.contract_id for e in core.directory} == {A, B, C}
    assert any(r.kind == "catchup_recovered" for r in world.reports)


def test_a_checkpoint_stored_inline_is_read_from_the_chain() -> None:
    world = recovery_world(inline=True)
    core = new_core()
    run(core, world, StartCatchup(bundle=StateBundle()))
    blob_query = next(q for q in world.reads if isinstance(q, CheckpointBlobQuery))
    assert blob_query.inline and blob_query.recorded_at == 31
    assert core.started and core.recovered_from == 30


def test_a_blob_sealed_at_another_height_than_its_record_is_refused() -> None:
    world = recovery_world()
    lying = checkpoint([A, B], 30, sealed_at=29)
    world.checkpoints[B] = record(B, lying, 30)  # the record says 30, the blob 29
    world.blobs[keccak(lying)] = lying
    core = new_core()
    run(core, world, StartCatchup(bundle=StateBundle()))
    failure = core.failure
    assert failure is not None and not failure.passing and failure.code == "recovery_failed"
    assert "sealed at block 29" in failure.message
    assert isinstance(core.get_error(), RecoveryFailed)
    assert not core.started and core.recovered_from is None and core.installed == {}
    assert ecalls(world, WORKER_RESTORE_CHECKPOINT) == []
    assert ecalls(world, MAKE_KEY_REQUEST) == []


def test_a_blob_that_is_not_the_records_bytes_is_refused() -> None:
    world = recovery_world()
    blob_hash = world.checkpoints[B].blob_hash
    world.blobs[blob_hash] = checkpoint([A, B], 31)  # other bytes under the hash
    core = new_core()
    run(core, world, StartCatchup(bundle=StateBundle()))
    assert core.failure is not None and core.failure.code == "recovery_failed"
    assert core.installed == {} and ecalls(world, WORKER_RESTORE_CHECKPOINT) == []


def test_a_blob_no_storage_node_serves_intact_stops_the_start_and_says_why() -> None:
    world = recovery_world()
    world.blob_error = "BlobUnavailable: no storage node served blob (s1: tampered bytes)"
    core = new_core()
    run(core, world, StartCatchup(bundle=StateBundle()))
    error = core.get_error()
    assert isinstance(error, RecoveryFailed) and "tampered bytes" in error.message
    assert core.installed == {} and not core.started


# -- keys -----------------------------------------------------------------------------------


def test_too_few_partials_is_a_passing_failure_and_the_start_is_offered_again() -> None:
    world = recovery_world()
    world.gatekeepers_up = 1
    core = new_core()
    run(core, world, StartCatchup(bundle=StateBundle()))
    failure = core.failure
    assert failure is not None and failure.passing and failure.code == "key_unavailable"
    assert failure.message.startswith("got 1 partial key releases, need 2: gk-9: down")
    assert core.get_error() is None  # passing: the host retries the start
    assert not core.started and core.installed == {} and not core.backlog
    assert ecalls(world, WORKER_RESTORE_CHECKPOINT) == []
    # no gatekeeper at all: not even the group keys
    world.gatekeepers_up = 0
    run(core, world, StartCatchup(bundle=StateBundle()))
    assert core.failure is not None and "need ?" in core.failure.message
    # the gatekeepers are back: the same start succeeds
    world.gatekeepers_up = 3
    run(core, world, StartCatchup(bundle=StateBundle()))
    assert core.started and core.failure is None and core.recovered_from == 30


def test_an_install_refused_for_its_facts_leaves_the_contract_uninstalled() -> None:
    world = World(contracts={A: view([ME]), B: view([ME])})
    world.refuse_install[A] = "install_facts_unverified: deployed before the anchor"
    core = new_core()
    run(core, world, StartCatchup(bundle=StateBundle()))
    run(core, world, BlockApplied(number=9))
    run(core, world, KeysPublished(events=[published(A, 8), published(B, 9)]))
    assert core.failure is None  # not a failure: the worker goes on
    assert core.installed == {B: [ME]} and core.refused_installs == 1
    assert any(r.kind == "contract_not_installed" for r in world.reports)
    # any other refusal stops the host
    world.refuse_install[C] = "bad_release: a partial does not verify"
    world.contracts[C] = view([ME])
    run(core, world, KeysPublished(events=[published(C, 9)]))
    assert isinstance(core.get_error(), CatchupRefused) and C not in core.installed


def test_a_contract_installed_or_not_assigned_is_left_alone() -> None:
    world = World(contracts={A: view([ME]), B: view([OTHER])})
    core = new_core()
    run(core, world, StartCatchup(bundle=StateBundle()))
    run(core, world, KeysPublished(events=[published(A, 8), published(B, 8)]))
    run(core, world, KeysPublished(events=[published(A, 8)]))  # the block offered again
    assert [i.contract_id for i in installs(world)] == [A]
    assert core.installed == {A: [ME]}


def test_a_rotation_is_staged_only_for_an_installed_contract() -> None:
    world = World(contracts={A: view([ME])})
    core = new_core()
    run(core, world, StartCatchup(bundle=StateBundle()))
    calls = len(world.calls)
    run(core, world, KeysRotated(events=[rotated(B, 9, 1)]))  # not installed here
    assert len(world.calls) == calls and core.staged == 0
    run(core, world, KeysPublished(events=[published(A, 8)]))
    run(core, world, KeysRotated(events=[rotated(A, 12, 2, key=b"z")]))
    (stage,) = ecalls(world, WORKER_STAGE_CONTRACT_KEY)
    assert (stage.contract_id, stage.version, stage.contract_public_key) == (A, 2, b"z" * 32)
    assert len(stage.releases) == 2 and stage.group.threshold == 2
    assert ecalls(world, MAKE_KEY_REQUEST)[-1].version == 2
    assert core.staged == 1


# -- hostile answers ------------------------------------------------------------------------


def test_stale_forged_and_misdirected_answers_change_nothing() -> None:
    core = new_core()
    (tip,) = io(core.on_message(HOST, StartCatchup(bundle=StateBundle()), 0.0))
    assert isinstance(tip, ReadChain) and core.step == CatchupStep.READING_TIP
    hostile = [
        (CHAIN, ChainRead("catchup/999", 40)),  # an unknown tag
        (PEERS, ChainRead(tip.tag, 40)),  # a forged sender
        (CHAIN, EnclaveAnswer(tip.tag, 40)),  # not the kind awaited
        (ENCLAVE, EnclaveAnswer(tip.tag, NOTHING)),
        (CHAIN, PeerAnswers(tip.tag, (40,))),
        (PEERS, StartCatchup(bundle=StateBundle(height=9))),  # a host input from a peer
        (CHAIN, KeysPublished(events=[published(A, 6)])),
        (CHAIN, BlockApplied(number=99)),
    ]
    for sender, message in hostile:
        assert core.on_message(sender, message, 0.0) == []
    assert core.step == CatchupStep.READING_TIP and core.tag == tip.tag
    assert not core.backlog and core.last_delivered == 0
    # the real answer is still taken
    (scan,) = io(core.on_message(CHAIN, ChainRead(tip.tag, 40), 0.0))
    assert scan.query == KeyEventsQuery(first=START, last=40)
    # a replay of the answer already taken changes nothing either
    assert core.on_message(CHAIN, ChainRead(tip.tag, 40), 0.0) == []


def test_a_malformed_answer_fails_the_job_as_passing_and_installs_nothing() -> None:
    world = recovery_world()
    malformed: list[Any] = [
        "forty",
        -1,
        True,
        KeyEvents(events=[published(A, 999)]),  # outside the range asked
        ContractViews(views=[]),
    ]
    for value in malformed:
        core = new_core()
        (tip,) = io(core.on_message(HOST, StartCatchup(bundle=StateBundle()), 0.0))
        effects = core.on_message(CHAIN, ChainRead(tip.tag, value), 0.0)
        if value in ("forty", -1, True):
            assert io(effects) == [], value
        else:  # the tip was fine: the next answer is the malformed one
            core = new_core()
            (tip,) = io(core.on_message(HOST, StartCatchup(bundle=StateBundle()), 0.0))
            (scan,) = io(core.on_message(CHAIN, ChainRead(tip.tag, 40), 0.0))
            assert io(core.on_message(CHAIN, ChainRead(scan.tag, value), 0.0)) == []
        failure = core.failure
        assert failure is not None and failure.passing and failure.code == "unsound_answer"
        assert core.installed == {} and not core.started and core.step == CatchupStep.IDLE
    # peers' answers that are not partials for the contract in hand do not count
    world.gatekeepers_up = 3
    core = new_core()
    effects = core.on_message(HOST, StartCatchup(bundle=StateBundle()), 0.0)
    while True:
        (effect,) = io(effects)
        if isinstance(effect, AskPeers) and isinstance(effect.request, KeyRequest):
            junk = PartialKeyRelease(contract_id=C, worker_id=ME, index=1, ciphertext=b"x")
            answers = (junk, "garbage", junk)
            effects = core.on_message(PEERS, PeerAnswers(effect.tag, answers), 0.0)
            break
        sender, answer = world.answer(effect)
        effects = core.on_message(sender, answer, 0.0)
    assert core.failure is not None and core.failure.code == "key_unavailable"
    assert "got 0 partial" in core.failure.message and core.installed == {}


def test_a_chain_read_failure_is_passing_or_not_as_the_driver_says() -> None:
    core = new_core()
    (tip,) = io(core.on_message(HOST, StartCatchup(bundle=StateBundle()), 0.0))
    core.on_message(CHAIN, ChainRead(tip.tag, error="rpc down", passing=True), 0.0)
    assert core.failure is not None and core.failure.code == "chain_unavailable"
    assert core.get_error() is None
    (tip,) = io(core.on_message(HOST, StartCatchup(bundle=StateBundle()), 0.0))
    assert core.failure is None  # cleared by the next input
    core.on_message(CHAIN, ChainRead(tip.tag, error="bad abi", passing=False), 0.0)
    assert isinstance(core.get_error(), CatchupRefused)
