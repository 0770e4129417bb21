"""The worker host's submission core (runtime/submission.py), alone: rounds, domains,
checkpoints, refusals and hostile answers, as inputs and effects. No processes, no
chain: a small model of the ledger, the enclave and the storage nodes answers the
effects."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from sealbridge.chain.ledger import MAX_OUTPUT_BATCH, OutputSubmission
from sealbridge.core.effects import (
    CallEnclave,
    CancelTimer,
    ChainRead,
    CheckpointStored,
    Effect,
    EnclaveAnswer,
    ReadChain,
    Report,
    SetTimer,
    StoreCheckpoint,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.errors import ConfigError
from sealbridge.runtime.ecalls import WORKER_SIGN_OUTPUTS
from sealbridge.runtime.messages import SignedOutputs, SignOutputs
from sealbridge.runtime.submission import (
    ANSWER_TIMER,
    AcceptedEnds,
    AcceptedEndsQuery,
    BadCaughtUp,
    BlockNumberQuery,
    CaughtUp,
    CheckpointFacts,
    CheckpointFactsQuery,
    StorageThresholdQuery,
    SubmissionCore,
    SubmissionPhase,
    compute_domains,
)

ME = b"\x01" * 32
PEER = b"\x02" * 32
A, B, C = b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32
NOW = 1000.0


@dataclass
class World:
    """The ledger, the enclave and the storage nodes, as far as the core can tell."""

    tip: int = 10
    verified: int = 10  # the enclave's newest verified block
    accepted: dict[bytes, int] = field(default_factory=dict)  # contract -> accepted end
    rotated: dict[bytes, int] = field(default_factory=dict)
    checkpoints: dict[bytes, int] = field(default_factory=dict)
    changed: set[bytes] = field(default_factory=lambda: {A, B, C})
    blob_size: int = 100
    threshold: int = 2
    store_error: str = ""
    refuse_signing: set[bytes] = field(default_factory=set)  # domains (first id) refused
    race: bool = False  # another worker's output lands just before ours
    signed: list[SignOutputs] = field(default_factory=list)
    submitted: list[OutputSubmission] = field(default_factory=list)
    stored: list[StoreCheckpoint] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)

    def answer(self, effect: Effect) -> Any:
        if isinstance(effect, ReadChain):
            return ChainRead(effect.tag, self.read(effect.query))
        if isinstance(effect, CallEnclave):
            assert effect.ecall is WORKER_SIGN_OUTPUTS
            request = effect.request
            self.signed.append(request)
            if request.contract_ids[0] in self.refuse_signing:
                return EnclaveAnswer(effect.tag, error="outputs_refused: diverged")
            return EnclaveAnswer(effect.tag, self.sign(request))
        if isinstance(effect, StoreCheckpoint):
            self.stored.append(effect)
            if self.store_error:
                return CheckpointStored(effect.tag, error=self.store_error)
            ids = tuple(bytes([i]) * 32 for i in range(1, effect.threshold + 1))
            return CheckpointStored(effect.tag, ids, tuple(b"s" * 65 for _ in ids))
        if isinstance(effect, SubmitTx):
            tx = effect.tx
            self.submitted.append(tx)
            self.tip += 1
            if self.race:
                for cid in tx.contract_ids:
                    self.accepted[cid] = tx.end
                return TxOutcome(effect.tag, "reverted", reason="range already accepted")
            ends = [self.accepted.get(cid, 0) for cid in tx.contract_ids]
            if ends != tx.starts:
                return TxOutcome(effect.tag, "reverted", reason="start is not the accepted end")
            for cid in tx.contract_ids:
                self.accepted[cid] = tx.end
            return TxOutcome(effect.tag, "mined", block_number=self.tip)
        raise AssertionError(f"not an I/O effect: {effect}")

    def read(self, query: Any) -> Any:
        if isinstance(query, CheckpointFactsQuery):
            return CheckpointFacts(
                rotated_at=[self.rotated.get(c, 0) for c in query.contract_ids],
                checkpoint_heights=[self.checkpoints.get(c, 0) for c in query.contract_ids],
            )
        if isinstance(query, AcceptedEndsQuery):
            return AcceptedEnds(
                tip=self.tip, ends=[self.accepted.get(c, 0) for c in query.contract_ids]
            )
        if isinstance(query, StorageThresholdQuery):
            return self.threshold
        if isinstance(query, BlockNumberQuery):
            return self.tip
        raise AssertionError(f"unknown query {query}")

    def sign(self, request: SignOutputs) -> SignedOutputs:
        ids = [c for c in request.contract_ids if not request.only_changed or c in self.changed]
        blob = b"x" * self.blob_size if request.with_checkpoint and ids else b""
        return SignedOutputs(
            contract_ids=ids,
            starts=[self.accepted.get(c, 0) for c in ids],
            end=self.verified,
            end_hash=b"\x0e" * 32,
            state_roots=[b"\x05" * 32 for _ in ids],
            commands_applied=[1 for _ in ids],
            checkpoint_hash=b"\x0c" * 32 if blob else bytes(32),
            checkpoint_size=len(blob),
            signature=b"\x51" * 65 if ids else b"",
            checkpoint=blob,
        )


def make(**kwargs: Any) -> SubmissionCore:
    options: dict[str, Any] = {"checkpoint_interval": 0, "inline_checkpoint_max": 1024}
    options.update(kwargs)
    core = SubmissionCore(ME, **options)
    assert core.on_start(NOW) == []
    return core


def caught_up(height: int, *contracts: bytes, workers: list[bytes] | None = None) -> CaughtUp:
    ids = list(contracts) or [A]
    return CaughtUp(
        height=height, contract_ids=ids, executors=[list(workers or [ME, PEER]) for _ in ids]
    )


def io(effects: list[Effect]) -> list[Effect]:
    """The effects that ask the outside world for an answer."""
    kinds = (ReadChain, CallEnclave, StoreCheckpoint, SubmitTx)
    return [e for e in effects if isinstance(e, kinds)]


def pump(core: SubmissionCore, world: World, effects: list[Effect], sender: int = 0) -> None:
    """Answer every effect until the core asks for nothing more (at most 100 steps)."""
    for _ in range(100):
        world.reports.extend(e for e in effects if isinstance(e, Report))
        asked = io(effects)
        if not asked:
            return
        assert len(asked) == 1  # one effect at a time
        effects = core.on_message(sender, world.answer(asked[0]), NOW)
    raise AssertionError("the core never settled")


def snapshot(core: SubmissionCore) -> dict[str, Any]:
    state = {k: copy.deepcopy(v) for k, v in vars(core).items() if not k.startswith("_")}
    state["stats"] = copy.deepcopy(core.stats)
    return state


# -- the normal path -------------------------------------------------------------------------
def test_one_round_signs_checks_the_range_and_submits() -> None:
    core = make()
    effects = core.on_message(0, caught_up(10, A, B), NOW)
    assert core.phase == SubmissionPhase.CHECKING_DUE
    (read,) = io(effects)
    assert isinstance(read, ReadChain) and read.query == CheckpointFactsQuery([A, B])
    assert SetTimer(ANSWER_TIMER, core.answer_timeout) in effects

    world = World()
    effects = core.on_message(0, world.answer(read), NOW)
    (sign,) = io(effects)
    assert core.phase == SubmissionPhase.SIGNING
    assert isinstance(sign, CallEnclave) and sign.request == SignOutputs(
        contract_ids=[A, B], only_changed=True, with_checkpoint=False
    )
    effects = core.on_message(0, world.answer(sign), NOW)
    (ends,) = io(effects)
    assert core.phase == SubmissionPhase.CHECKING_RANGE
    assert isinstance(ends, ReadChain) and ends.query == AcceptedEndsQuery([A, B])
    effects = core.on_message(0, world.answer(ends), NOW)
    (submit,) = io(effects)
    assert core.phase == SubmissionPhase.SUBMITTING
    assert isinstance(submit, SubmitTx) and isinstance(submit.tx, OutputSubmission)
    tx = submit.tx
    assert (tx.contract_ids, tx.starts, tx.end, tx.node_id) == ([A, B], [0, 0], 10, ME)
    assert (tx.storage_ids, tx.inline_blob, tx.checkpoint_size) == ([], b"", 0)
    effects = core.on_message(0, world.answer(submit), NOW)
    assert core.phase == SubmissionPhase.IDLE and core.tag == ""
    assert CancelTimer(ANSWER_TIMER) in effects
    assert [r.kind for r in effects if isinstance(r, Report)] == ["outputs_accepted"]
    assert (core.stats.accepted, core.stats.refused, core.stats.skipped) == (1, 0, 0)
    assert core.submit_after == 11  # the block our submission was mined in
    assert world.accepted == {A: 10, B: 10}


def test_rounds_wait_for_newer_blocks_and_for_the_submission_block() -> None:
    core, world = make(), World()
    pump(core, world, core.on_message(0, caught_up(10), NOW))
    assert core.stats.accepted == 1 and core.submit_after == 11
    assert core.on_message(0, caught_up(10), NOW) == []  # nothing new
    world.verified = 11
    assert core.on_message(0, caught_up(10), NOW) == []  # still not past the last attempt
    world.verified = 11
    pump(core, world, core.on_message(0, caught_up(11), NOW))  # the block it was mined in
    assert core.stats.accepted == 2 and world.accepted[A] == 11


def test_a_round_runs_alone_and_later_news_only_moves_the_height() -> None:
    core = make()
    first = core.on_message(0, caught_up(10), NOW)
    assert io(first)
    assert core.on_message(0, caught_up(12), NOW) == []  # a round is running
    assert core.height == 12 and core.attempted_at == 10


def test_nothing_installed_starts_no_round() -> None:
    core = make()
    assert core.on_message(0, CaughtUp(height=5, contract_ids=[], executors=[]), NOW) == []
    assert core.attempted_at == 0 and core.phase == SubmissionPhase.IDLE


def test_unchanged_contracts_end_the_domain_without_a_transaction() -> None:
    core, world = make(), World(changed=set())
    pump(core, world, core.on_message(0, caught_up(10, A), NOW))
    assert world.submitted == [] and core.phase == SubmissionPhase.IDLE
    assert (core.stats.accepted, core.stats.skipped, core.stats.rounds_failed) == (0, 0, 0)


def test_domains_are_executor_sets_in_batches() -> None:
    other = [ME, b"\x09" * 32]
    cids = [bytes([i]) * 32 for i in range(40, 40 + MAX_OUTPUT_BATCH + 2)]
    executors = [[PEER, ME] for _ in cids] + [other]
    domains = compute_domains([*cids, C], executors)
    assert [len(d) for d in domains] == [MAX_OUTPUT_BATCH, 2, 1]
    assert domains[0] == sorted(cids)[:MAX_OUTPUT_BATCH] and domains[2] == [C]
    # one submission per domain, one after the other
    core, world = make(), World(changed={A, B, C})
    update = CaughtUp(height=10, contract_ids=[A, B, C], executors=[[ME], [ME, PEER], [ME]])
    pump(core, world, core.on_message(0, update, NOW))
    assert [tx.contract_ids for tx in world.submitted] == [[A, C], [B]]
    assert core.stats.accepted == 2


# -- range taken, refusals ---------------------------------------------------------------------
def test_a_range_already_taken_is_skipped_without_storing_or_sending() -> None:
    core = make(checkpoint_interval=5, inline_checkpoint_max=10)
    world = World(blob_size=500)
    effects = core.on_message(0, caught_up(10, A), NOW)
    effects = core.on_message(0, world.answer(io(effects)[0]), NOW)  # a checkpoint is due
    effects = core.on_message(0, world.answer(io(effects)[0]), NOW)  # signed from start 0
    world.accepted[A] = 8  # another worker's output lands meanwhile
    world.tip = 14
    pump(core, world, effects)
    assert world.stored == [] and world.submitted == []
    assert (core.stats.skipped, core.stats.accepted, core.stats.refused) == (1, 0, 0)
    assert core.submit_after == 14 and core.phase == SubmissionPhase.IDLE
    assert core.on_message(0, caught_up(13, A), NOW) == []  # before the enclave saw it


def test_a_reverted_submission_counts_as_refused_and_waits_for_the_tip() -> None:
    core, world = make(), World(race=True)
    effects = core.on_message(0, caught_up(10, A), NOW)
    for _ in range(3):
        effects = core.on_message(0, world.answer(io(effects)[0]), NOW)
    (submit,) = io(effects)
    effects = core.on_message(0, world.answer(submit), NOW)
    assert core.phase == SubmissionPhase.NOTING_REFUSAL
    assert core.stats.refused == 1 and core.stats.last_refusal == "range already accepted"
    assert any(isinstance(r, Report) and r.kind == "outputs_refused" for r in effects)
    (read,) = io(effects)
    assert isinstance(read, ReadChain) and isinstance(read.query, BlockNumberQuery)
    world.tip = 15
    core.on_message(0, world.answer(read), NOW)
    assert core.submit_after == 15 and core.phase == SubmissionPhase.IDLE
    assert core.stats.accepted == 0


def test_an_enclave_refusal_ends_its_domain_and_the_round_goes_on() -> None:
    core, world = make(), World(refuse_signing={A})
    update = CaughtUp(height=10, contract_ids=[A, B], executors=[[ME], [ME, PEER]])
    pump(core, world, core.on_message(0, update, NOW))
    assert [r.contract_ids for r in world.signed] == [[A], [B]]
    assert [tx.contract_ids for tx in world.submitted] == [[B]]
    assert any(r.kind == "outputs_not_signed" for r in world.reports)
    assert core.stats.accepted == 1 and core.phase == SubmissionPhase.IDLE


# -- checkpoints ---------------------------------------------------------------------------------
def test_a_due_checkpoint_goes_to_storage_with_the_ledgers_threshold() -> None:
    core = make(checkpoint_interval=5, inline_checkpoint_max=10)
    world = World(blob_size=500, threshold=3, checkpoints={A: 4})
    pump(core, world, core.on_message(0, caught_up(10, A), NOW))
    assert world.signed == [SignOutputs(contract_ids=[A], only_changed=False, with_checkpoint=True)]
    (store,) = world.stored
    assert store.threshold == 3 and len(store.blob) == 500
    (tx,) = world.submitted
    assert len(tx.storage_ids) == 3 and tx.storage_ids == sorted(tx.storage_ids)
    assert tx.inline_blob == b"" and tx.checkpoint_size == 500
    assert (core.stats.accepted, core.stats.checkpoints_stored) == (1, 1)


def test_a_small_checkpoint_travels_inline() -> None:
    core = make(checkpoint_interval=5, inline_checkpoint_max=1024)
    world = World(blob_size=100)
    pump(core, world, core.on_message(0, caught_up(10, A), NOW))
    (tx,) = world.submitted
    assert world.stored == [] and tx.inline_blob == b"x" * 100 and tx.storage_ids == []
    assert core.stats.checkpoints_stored == 1


def test_storage_failure_signs_again_without_the_checkpoint() -> None:
    core = make(checkpoint_interval=5, inline_checkpoint_max=10)
    world = World(blob_size=500, store_error="1 of 3 storage nodes confirmed; 2 needed")
    pump(core, world, core.on_message(0, caught_up(10, A), NOW))
    assert world.signed == [
        SignOutputs(contract_ids=[A], only_changed=False, with_checkpoint=True),
        SignOutputs(contract_ids=[A], only_changed=True, with_checkpoint=False),
    ]
    (tx,) = world.submitted
    assert tx.checkpoint_size == 0 and tx.inline_blob == b"" and tx.storage_ids == []
    assert (core.stats.accepted, core.stats.checkpoints_stored) == (1, 0)
    assert core.stats.checkpoints_failed == 1
    assert any(r.kind == "checkpoint_not_stored" for r in world.reports)


@pytest.mark.parametrize(
    ("rotated", "checkpoint", "height", "interval", "due"),
    [
        (0, 0, 10, 0, False),  # no interval, never rotated
        (0, 4, 10, 5, True),  # the interval passed
        (0, 6, 10, 5, False),
        (8, 4, 10, 0, True),  # rotated after the last checkpoint
        (8, 9, 10, 0, False),  # checkpointed since the rotation
        (12, 4, 10, 0, False),  # the enclave has not reached the rotation yet
    ],
)
def test_when_a_checkpoint_is_due(
    rotated: int, checkpoint: int, height: int, interval: int, due: bool
) -> None:
    core = make(checkpoint_interval=interval)
    core.height = height
    facts = CheckpointFacts(rotated_at=[rotated], checkpoint_heights=[checkpoint])
    assert core.is_checkpoint_due(facts) is due


def test_a_rotation_of_any_contract_makes_the_checkpoint_due() -> None:
    core = make()
    core.height = 10
    facts = CheckpointFacts(rotated_at=[0, 7], checkpoint_heights=[9, 3])
    assert core.is_checkpoint_due(facts)


# -- failures end the round ----------------------------------------------------------------------
def test_a_failed_read_or_send_ends_the_round_and_counts_nothing() -> None:
    core = make()
    effects = core.on_message(0, caught_up(10, A), NOW)
    effects = core.on_message(0, ChainRead(io(effects)[0].tag, error="rpc down"), NOW)  # type: ignore[attr-defined]
    assert core.phase == SubmissionPhase.IDLE and core.stats.rounds_failed == 1
    assert any(isinstance(e, Report) and e.kind == "submission_failed" for e in effects)
    # tried again at the next newer block
    world = World(verified=11)
    effects = core.on_message(0, caught_up(11, A), NOW)
    for _ in range(3):
        effects = core.on_message(0, world.answer(io(effects)[0]), NOW)
    submit = io(effects)[0]
    core.on_message(0, TxOutcome(submit.tag, "failed", reason="chain unreachable"), NOW)  # type: ignore[attr-defined]
    assert core.phase == SubmissionPhase.IDLE and core.stats.rounds_failed == 2
    assert (core.stats.accepted, core.stats.refused) == (0, 0)


def test_no_answer_in_time_ends_the_round_and_a_late_answer_is_ignored() -> None:
    core = make(answer_timeout=5.0)
    effects = core.on_message(0, caught_up(10, A), NOW)
    read = io(effects)[0]
    assert core.on_timer("other", NOW) == []
    effects = core.on_timer(ANSWER_TIMER, NOW + 5)
    assert core.phase == SubmissionPhase.IDLE and core.stats.rounds_failed == 1
    before = snapshot(core)
    assert core.on_message(0, World().answer(read), NOW) == []
    assert snapshot(core) == before
    assert core.on_timer(ANSWER_TIMER, NOW + 10) == []  # idle: nothing to end


# -- hostile and wrong answers change nothing ----------------------------------------------------
def test_answers_with_unknown_tags_or_kinds_change_nothing() -> None:
    core = make()
    core.on_message(0, caught_up(10, A), NOW)
    before = snapshot(core)
    hostile: list[Any] = [
        ChainRead("outputs/999", CheckpointFacts(rotated_at=[0], checkpoint_heights=[0])),
        ChainRead("registry", None),
        TxOutcome(core.tag, "mined", block_number=99),  # the right tag, the wrong kind
        EnclaveAnswer(core.tag, error="nope"),
        CheckpointStored(core.tag, error="nope"),
        "garbage",
        None,
        SignedOutputs([], [], 0, b"", [], [], bytes(32), 0, b""),
    ]
    for message in hostile:
        assert core.on_message(0, message, NOW) == []
        assert snapshot(core) == before


def test_answers_from_a_sender_that_does_not_serve_them_are_ignored() -> None:
    core = make(chain=7, enclave=8, storage=9, host=3)
    assert core.on_message(0, caught_up(10, A), NOW) == []  # only the host says caught up
    effects = core.on_message(3, caught_up(10, A), NOW)
    world = World()
    (read,) = io(effects)
    answer = world.answer(read)
    before = snapshot(core)
    for forger in (0, 3, 8, 9, 12):
        assert core.on_message(forger, answer, NOW) == []
        assert snapshot(core) == before
    effects = core.on_message(7, answer, NOW)
    (sign,) = io(effects)
    signed = world.answer(sign)
    assert core.on_message(7, signed, NOW) == []  # the chain does not answer for the enclave
    effects = core.on_message(8, signed, NOW)
    assert core.phase == SubmissionPhase.CHECKING_RANGE


def test_an_impossible_caught_up_is_refused_and_changes_nothing() -> None:
    core = make()
    before = snapshot(core)
    with pytest.raises(BadCaughtUp):
        core.on_message(0, CaughtUp(height=10, contract_ids=[A, B], executors=[[ME]]), NOW)
    with pytest.raises(BadCaughtUp):
        core.on_message(0, CaughtUp(height=-1, contract_ids=[A], executors=[[ME]]), NOW)
    assert snapshot(core) == before


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        CheckpointFacts(rotated_at=[0, 0], checkpoint_heights=[0]),  # the wrong length
        CheckpointFacts(rotated_at=[-1], checkpoint_heights=[0]),
        CheckpointFacts(rotated_at=["x"], checkpoint_heights=[0]),  # type: ignore[list-item]
    ],
)
def test_an_unsound_chain_answer_ends_the_round_without_a_crash(value: Any) -> None:
    core = make()
    effects = core.on_message(0, caught_up(10, A), NOW)
    tag = io(effects)[0].tag  # type: ignore[attr-defined]
    effects = core.on_message(0, ChainRead(tag, value), NOW)
    assert core.phase == SubmissionPhase.IDLE and core.stats.rounds_failed == 1
    assert io(effects) == []


@pytest.mark.parametrize(
    "value",
    [
        AcceptedEnds(tip=12, ends=[0, 0]),  # two ends for one contract
        AcceptedEnds(tip=-3, ends=[0]),
        AcceptedEnds(tip=12, ends=[True]),  # not a block number
        b"\x00",
    ],
)
def test_an_unsound_accepted_end_sends_nothing(value: Any) -> None:
    core, world = make(), World()
    effects = core.on_message(0, caught_up(10, A), NOW)
    for _ in range(2):
        effects = core.on_message(0, world.answer(io(effects)[0]), NOW)
    (ends,) = io(effects)
    effects = core.on_message(0, ChainRead(ends.tag, value), NOW)  # type: ignore[attr-defined]
    assert io(effects) == [] and world.submitted == []
    assert core.phase == SubmissionPhase.IDLE and core.stats.skipped == 0


@pytest.mark.parametrize(
    "response",
    [
        None,
        b"signed",
        SignedOutputs([A], [0, 0], 10, b"", [], [], bytes(32), 0, b""),  # lengths differ
        SignedOutputs([C], [0], 10, b"", [b""], [1], bytes(32), 0, b""),  # not in the domain
    ],
)
def test_an_unsound_enclave_answer_ends_its_domain(response: Any) -> None:
    core = make()
    effects = core.on_message(0, caught_up(10, A), NOW)
    effects = core.on_message(0, World().answer(io(effects)[0]), NOW)
    sign = io(effects)[0]
    effects = core.on_message(0, EnclaveAnswer(sign.tag, response), NOW)  # type: ignore[attr-defined]
    assert io(effects) == [] and core.phase == SubmissionPhase.IDLE
    assert core.stats.accepted == 0


@pytest.mark.parametrize(
    ("ids", "sigs"),
    [
        ((b"\x02" * 32, b"\x01" * 32), (b"s" * 65, b"s" * 65)),  # not sorted
        ((b"\x01" * 32,), (b"s" * 65,)),  # fewer than the threshold
        ((b"\x01" * 32, b"\x02" * 32), (b"s" * 65,)),  # a signature missing
        ((b"\x01" * 32, 7), (b"s" * 65, b"s" * 65)),  # not an id
        (None, None),
    ],
)
def test_an_unsound_storage_answer_is_a_storage_failure(ids: Any, sigs: Any) -> None:
    core = make(checkpoint_interval=5, inline_checkpoint_max=10)
    world = World(blob_size=500, threshold=2)
    effects = core.on_message(0, caught_up(10, A), NOW)
    for _ in range(4):  # facts, signed, ends, threshold
        effects = core.on_message(0, world.answer(io(effects)[0]), NOW)
    (store,) = io(effects)
    assert isinstance(store, StoreCheckpoint)
    effects = core.on_message(0, CheckpointStored(store.tag, ids, sigs), NOW)
    assert core.stats.checkpoints_failed == 1
    pump(core, world, effects)
    (tx,) = world.submitted
    assert tx.checkpoint_size == 0 and core.stats.accepted == 1


def test_a_mined_outcome_with_a_block_that_is_not_a_number_sends_nothing_more() -> None:
    core, world = make(), World()
    effects = core.on_message(0, caught_up(10, A), NOW)
    for _ in range(3):
        effects = core.on_message(0, world.answer(io(effects)[0]), NOW)
    (submit,) = io(effects)
    effects = core.on_message(0, TxOutcome(submit.tag, "mined", block_number="x"), NOW)  # type: ignore[attr-defined, arg-type]
    assert io(effects) == [] and core.phase == SubmissionPhase.IDLE
    assert core.stats.accepted == 0 and core.submit_after == 0


def test_a_core_needs_sane_options() -> None:
    with pytest.raises(ConfigError):
        SubmissionCore(ME, checkpoint_interval=0, inline_checkpoint_max=-1)
    with pytest.raises(ConfigError):
        SubmissionCore(ME, checkpoint_interval=0, inline_checkpoint_max=0, answer_timeout=0)
