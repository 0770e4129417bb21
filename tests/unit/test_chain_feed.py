"""The gateway's chain feed core alone: rounds over the bridged chains, driven by
hand-written answers, some hostile (from a peer, stale, malformed, refused)."""

from __future__ import annotations

from typing import Any

from sealbridge.core.effects import CallEnclave, ChainRead, EnclaveAnswer, Persist, ReadChain
from sealbridge.interop.chain_feed import (
    EVIDENCE_BATCH,
    BridgedTipQuery,
    ChainFeedCore,
    EscrowsNamed,
    EvidenceQuery,
    SyncChains,
)
from sealbridge.interop.evm_gateway import GATEWAY_FOLLOW, Height


def one(effects: list[Any]) -> Any:
    (effect,) = [e for e in effects if isinstance(e, ReadChain | CallEnclave)]
    return effect


def read(core: ChainFeedCore, effect: ReadChain, value: Any = None, **kw: Any) -> list[Any]:
    return core.on_message(0, ChainRead(effect.tag, value, **kw), 0.0)


def follow(core: ChainFeedCore, effect: CallEnclave, number: int, committee: bytes = b"") -> Any:
    assert effect.ecall is GATEWAY_FOLLOW
    return core.on_message(0, EnclaveAnswer(effect.tag, Height(number, committee)), 0.0)


def started(heights: dict[int, int], confirmations: int = 2) -> ChainFeedCore:
    core = ChainFeedCore(heights, confirmations=confirmations)
    core.on_message(0, EscrowsNamed(), 0.0)
    return core


def test_nothing_is_followed_before_the_escrows_are_named() -> None:
    core = ChainFeedCore({1: 10}, confirmations=0)
    assert core.on_message(0, SyncChains(), 0.0) == []
    assert core.on_message(5, EscrowsNamed(), 0.0) == []  # not from the node's own side
    assert not core.active


def test_a_round_feeds_each_chain_up_to_the_confirmations_below_its_tip() -> None:
    core = started({1: 10, 2: 5})
    tip = one(core.on_message(0, SyncChains(), 0.0))
    assert tip.query == BridgedTipQuery(1)
    ask = one(read(core, tip, 14))
    assert ask.query == EvidenceQuery(1, [11, 12])
    call = one(read(core, ask, ["e11", "e12"]))
    assert call.request.evidence == "e11"
    call = one(follow(core, call, 11))
    tip2 = one(follow(core, call, 12))
    assert tip2.query == BridgedTipQuery(2) and core.heights[1] == 12
    assert read(core, tip2, 7) == []  # chain 2: 5 is already 7 - 2: the round ends
    assert core.round is None and core.blocks_fed == 2


def test_evidence_comes_in_batches_and_a_sync_during_a_round_runs_one_more() -> None:
    core = started({1: 0}, confirmations=0)
    tip = one(core.on_message(0, SyncChains(), 0.0))
    ask = one(read(core, tip, EVIDENCE_BATCH + 3))
    assert ask.query.numbers == list(range(1, EVIDENCE_BATCH + 1))
    assert core.on_message(0, SyncChains(), 0.0) == []  # remembered, not started twice
    effects = read(core, ask, [f"e{n}" for n in ask.query.numbers])
    for n in range(1, EVIDENCE_BATCH + 1):
        effects = follow(core, one(effects), n)
    ask2 = one(effects)
    assert ask2.query.numbers == [EVIDENCE_BATCH + 1, EVIDENCE_BATCH + 2, EVIDENCE_BATCH + 3]
    effects = read(core, ask2, ["a", "b", "c"])
    for n in ask2.query.numbers:
        effects = follow(core, one(effects), n)
    again = one(effects)  # the remembered sync: a new round reads the tip again
    assert again.query == BridgedTipQuery(1) and core.rounds == 2


def test_an_erased_handover_share_is_persisted() -> None:
    core = started({1: 0}, confirmations=0)
    tip = one(core.on_message(0, SyncChains(), 0.0))
    call = one(read(core, one(read(core, tip, 1)), ["e1"]))
    effects = follow(core, call, 1, committee=b"sealed")
    assert Persist("committee", b"sealed") in effects


def test_failures_stop_the_round_and_keep_the_heights_reached() -> None:
    core = started({1: 0}, confirmations=0)
    tip = one(core.on_message(0, SyncChains(), 0.0))
    call = one(read(core, one(read(core, tip, 3)), ["e1", "e2", "e3"]))
    call = one(follow(core, call, 1))
    refused = core.on_message(0, EnclaveAnswer(call.tag, error="bad_block: hash link"), 0.0)
    assert refused and core.round is None and core.heights[1] == 1
    assert "hash link" in core.last_error
    tip = one(core.on_message(0, SyncChains(), 0.0))
    assert read(core, tip, error="rpc down", passing=True) and core.round is None


def test_forged_stale_and_malformed_answers_change_nothing() -> None:
    core = started({1: 0}, confirmations=0)
    tip = one(core.on_message(0, SyncChains(), 0.0))
    assert core.on_message(4, ChainRead(tip.tag, 100), 0.0) == []  # a peer's "answer"
    assert core.on_message(0, ChainRead("feed:999", 100), 0.0) == []
    ask = one(read(core, tip, 2))
    assert read(core, tip, 100) == []  # replayed
    effects = read(core, ask, "not evidence")
    assert core.round is None and core.heights[1] == 0 and effects
    tip = one(core.on_message(0, SyncChains(), 0.0))
    assert read(core, tip, -5) and core.heights[1] == 0


def test_an_answer_of_another_kind_with_the_awaited_tag_changes_nothing() -> None:
    core = started({1: 0}, confirmations=0)
    tip = one(core.on_message(0, SyncChains(), 0.0))
    # a Height where the chain's tip is awaited: the round had no evidence to pop
    assert core.on_message(0, EnclaveAnswer(tip.tag, Height(5, b"")), 0.0) == []
    assert core.round is not None and core.heights[1] == 0
    call = one(read(core, one(read(core, tip, 2)), ["e1", "e2"]))
    # evidence where the enclave's answer is awaited would replace the evidence fetched
    assert core.on_message(0, ChainRead(call.tag, ["forged"] * 40), 0.0) == []
    assert core.round is not None and core.round.evidence == ["e1", "e2"]
    follow(core, one(follow(core, call, 1)), 2)
    assert core.heights[1] == 2 and core.round is None


def test_more_evidence_than_the_blocks_asked_for_is_refused() -> None:
    core = started({1: 0}, confirmations=0)
    tip = one(core.on_message(0, SyncChains(), 0.0))
    ask = one(read(core, tip, 2))
    effects = read(core, ask, ["e1", "e2"] + ["junk"] * 10_000)
    assert [e for e in effects if isinstance(e, CallEnclave)] == []
    assert core.round is None and core.heights[1] == 0 and "evidence" in core.last_error


def test_a_restarted_feed_does_not_take_an_answer_to_the_previous_incarnation() -> None:
    old = ChainFeedCore({1: 0}, confirmations=0)
    old.on_start(0.0)
    old.on_message(0, EscrowsNamed(), 0.0)
    stale = one(old.on_message(0, SyncChains(), 0.0))  # in flight when the node crashed
    fresh = ChainFeedCore({1: 0}, confirmations=0)  # the restarted process
    fresh.on_start(5.0)
    fresh.on_message(0, EscrowsNamed(), 5.0)
    tip = one(fresh.on_message(0, SyncChains(), 5.0))
    assert tip.query == stale.query
    assert fresh.on_message(0, ChainRead(stale.tag, 100), 5.0) == []
    assert fresh.round is not None and fresh.round.final == -1
    ask = one(read(fresh, tip, 2))  # its own answer is taken
    assert ask.query == EvidenceQuery(1, [1, 2])
