"""The committee host core alone: the era state table, driven by hand-written answers.

No chain and no enclave: every effect the core asks for is answered here, as the
network driver or the simulator would, and some answers are hostile (from a peer, with
a stale tag, twice, malformed, refused). A refused or forged input changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from sealbridge.chain.eras import CommitteePhase, EraRecord
from sealbridge.core.effects import (
    CallEnclave,
    ChainRead,
    EnclaveAnswer,
    Persist,
    ReadChain,
    Report,
    SetTimer,
    SubmitTx,
    TxOutcome,
)
from sealbridge.keyservice.committee import Dealing, ReadyConfirmation
from sealbridge.keyservice.committee_host import (
    MAX_ATTEMPTS,
    TRANSITIONS,
    CardsQuery,
    CommitteeHostCore,
    CommitteeLogs,
    CommitteeStepError,
    ConfirmReady,
    DealingSeen,
    DealtQuery,
    EraElectedSeen,
    EraQuery,
    EraStep,
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
from sealbridge.keyservice.ecalls import (
    COMMITTEE_DEALING,
    COMMITTEE_ELECTED,
    COMMITTEE_FAILED,
    COMMITTEE_FINISH,
    COMMITTEE_READY,
    DealingOut,
    ElectedOut,
    FinishOut,
    SealedBlob,
)
from sealbridge.tee.card import AttestedCard
from sealbridge.tee.enclave import NodeKeys

ME, B, C, D = (bytes([i]) * 32 for i in (1, 2, 3, 4))
CHAIN = 0
PEER = 7


def record(
    era: int,
    members: list[bytes],
    dealers: list[bytes] | None = None,
    *,
    threshold: int = 2,
    dealer_threshold: int = 0,
    previous: int = 0,
    fresh: bool = False,
    phase: CommitteePhase = CommitteePhase.ELECTED,
) -> EraRecord:
    return EraRecord(
        era=era,
        members=members,
        threshold=threshold,
        dealers=dealers if dealers is not None else members,
        dealer_threshold=dealer_threshold,
        group_public_key=b"",
        phase=phase,
        elected_at=1,
        deadline=100,
        previous_era=previous,
        dealing_count=0,
        confirmation_count=0,
        fresh=fresh,
    )


def card(node_id: bytes) -> AttestedCard:
    return AttestedCard(
        node=NodeKeys(identity_key=node_id, encryption_key=node_id, eth_address=node_id[:20]),
        quote=b"q",
    )


def dealing(era: int, dealer: bytes) -> Dealing:
    return Dealing(era=era, dealer=dealer, commitments=[b"c"], shares=[b"s"], signature=b"sig")


def seen(era: int, dealer: bytes) -> DealingSeen:
    d = dealing(era, dealer)
    return DealingSeen(
        era=era, dealer=dealer, commitments=d.commitments, shares=d.shares, signature=d.signature
    )


def io(effects: list[Any]) -> list[ReadChain | SubmitTx | CallEnclave]:
    return [e for e in effects if isinstance(e, ReadChain | SubmitTx | CallEnclave)]


def one(effects: list[Any]) -> ReadChain | SubmitTx | CallEnclave:
    (effect,) = io(effects)
    return effect


def answer(effect: ReadChain | SubmitTx | CallEnclave, value: Any = None, **kw: Any) -> Any:
    if isinstance(effect, ReadChain):
        return ChainRead(effect.tag, value, **kw)
    if isinstance(effect, SubmitTx):
        return TxOutcome(effect.tag, kw.get("status", "mined"), block_number=5, **_reason(kw))
    return EnclaveAnswer(effect.tag, value, **kw)


def _reason(kw: dict[str, Any]) -> dict[str, Any]:
    return {"reason": kw["reason"]} if "reason" in kw else {}


def feed_logs(core: CommitteeHostCore, height: int, events: list[Any]) -> list[Any]:
    read = one(core.on_message(CHAIN, Followed(height=height), 0.0))
    assert isinstance(read, ReadChain) and isinstance(read.query, CommitteeLogs)
    assert read.query.last == height
    return core.on_message(CHAIN, answer(read, events), 0.0)


def reply(core: CommitteeHostCore, effect: Any, value: Any = None, **kw: Any) -> list[Any]:
    return core.on_message(CHAIN, answer(effect, value, **kw), 0.0)


def elect_me(core: CommitteeHostCore, era: int = 2, members: list[bytes] | None = None) -> Any:
    """Run an era's election to the posted dealing; return the last effect list."""
    members = members or [ME, B]
    read = one(feed_logs(core, 10, [EraElectedSeen(era=era)]))
    assert isinstance(read, ReadChain) and read.query == EraQuery(era)
    cards = one(reply(core, read, record(era, members)))
    assert isinstance(cards, ReadChain) and cards.query == CardsQuery(members)
    ecall = one(reply(core, cards, [card(m) for m in members]))
    assert isinstance(ecall, CallEnclave) and ecall.ecall is COMMITTEE_ELECTED
    effects = reply(core, ecall, ElectedOut(dealing=dealing(era, ME), sealed=b"s1"))
    assert Persist("committee", b"s1") in effects
    dealt = one(effects)
    assert isinstance(dealt, ReadChain) and dealt.query == DealtQuery(era, ME)
    post = one(reply(core, dealt, False))
    assert isinstance(post, SubmitTx) and isinstance(post.tx, PostDealing)
    effects = reply(core, post)
    assert core.eras[era].step == EraStep.COLLECTING and core.dealings_posted == 1
    return effects


def confirmation(era: int, qualified: list[bytes]) -> FinishOut:
    c = ReadyConfirmation(
        era=era,
        member=ME,
        group_public_key=b"g" * 48,
        public_share=b"p",
        qualified=qualified,
        signature=b"sig",
    )
    return FinishOut(confirmation=c, sealed=b"s2")


def test_a_member_deals_checks_finishes_confirms_and_activates() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    elect_me(core)
    effects = feed_logs(core, 12, [seen(2, ME), seen(2, B)])
    check = one(effects)
    assert isinstance(check, CallEnclave) and check.ecall is COMMITTEE_DEALING
    check2 = one(reply(core, check, DealingOut()))
    assert isinstance(check2, CallEnclave) and check2.request.dealer == B
    finish = one(reply(core, check2, DealingOut()))
    assert isinstance(finish, CallEnclave) and finish.ecall is COMMITTEE_FINISH
    assert finish.request.qualified == sorted([ME, B])
    effects = reply(core, finish, confirmation(2, sorted([ME, B])))
    assert Persist("committee", b"s2") in effects
    confirm = one(effects)
    assert isinstance(confirm.tx, ConfirmReady) and confirm.tx.qualified == sorted([ME, B])
    reply(core, confirm)
    assert core.eras[2].step == EraStep.WAITING and core.confirmations_posted == 1
    ready = one(feed_logs(core, 13, [RotationReadySeen(era=2, group_public_key=b"g" * 48)]))
    assert isinstance(ready, CallEnclave) and ready.ecall is COMMITTEE_READY
    effects = reply(core, ready, SealedBlob(sealed=b"s3"))
    assert Persist("committee", b"s3") in effects
    assert Report("committee_active", 2) in effects
    assert 2 not in core.eras


def test_the_qualified_set_is_the_first_dealings_in_chain_order() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    elect_me(core, members=[ME, B, C])
    effects = feed_logs(core, 12, [seen(2, C), seen(2, B), seen(2, ME)])
    first = one(effects)
    second = one(reply(core, first, DealingOut()))
    finish = one(reply(core, second, DealingOut()))
    assert finish.request.qualified == sorted([C, B])  # the third came too late
    assert io(feed_logs(core, 13, [seen(2, D)])) == []  # not a dealer: not counted


def test_a_dealer_that_dealt_before_a_restart_does_not_deal_again() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    read = one(feed_logs(core, 10, [EraElectedSeen(era=3)]))
    cards = one(reply(core, read, record(3, [ME, B])))
    ecall = one(reply(core, cards, [card(ME), card(B)]))
    dealt = one(reply(core, ecall, ElectedOut(dealing=dealing(3, ME), sealed=b"s")))
    effects = reply(core, dealt, True)
    assert io(effects) == [] and Report("committee_already_dealt", 3) in effects
    assert core.eras[3].step == EraStep.COLLECTING and core.dealings_posted == 0


def test_a_newcomer_to_a_resharing_fetches_the_group_keys_first() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    read = one(feed_logs(core, 10, [EraElectedSeen(era=4)]))
    cards = one(reply(core, read, record(4, [ME, B], [B, C], dealer_threshold=2, previous=3)))
    group = one(reply(core, cards, [card(ME), card(B), card(C)]))
    assert isinstance(group, ReadChain) and group.query == GroupQuery()
    effects = reply(core, group, "not group keys")
    assert Report("committee_era_dropped", core.last_note) in effects and 4 not in core.eras


def test_a_member_of_a_replaced_era_waits_for_the_fresh_eras_ready() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    read = one(feed_logs(core, 10, [EraElectedSeen(era=5)]))
    members = one(reply(core, read, record(5, [B, C], fresh=True, previous=4)))
    assert isinstance(members, ReadChain) and members.query == MembersQuery(4)
    reply(core, members, [ME, B])
    assert core.eras[5].step == EraStep.WAITING


def test_an_era_not_involving_the_node_or_failed_is_left_alone() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    read = one(feed_logs(core, 10, [EraElectedSeen(era=2), EraElectedSeen(era=3)]))
    nxt = one(reply(core, read, record(2, [B, C])))  # not ours: the next job starts
    assert nxt.query == EraQuery(3)
    assert io(reply(core, nxt, record(3, [ME, B], phase=CommitteePhase.FAILED))) == []
    assert core.eras == {}


def test_an_era_that_formed_while_the_node_was_down_still_retires_its_old_share() -> None:
    """Found by running the e2e suite in reverse: a gatekeeper restarted after an era it
    was in formed without it dropped that era (no longer ELECTED) and never told its
    enclave of the era's activation, so it kept serving the retired era's group keys
    and workers that asked it first could not install. Now the era waits for its
    RotationReady, which reaches the enclave (it retires the older shares)."""
    core = CommitteeHostCore(ME, scanned=0)
    read = one(feed_logs(core, 10, [EraElectedSeen(era=3)]))
    effects = reply(core, read, record(3, [B, C], [ME, B, C], phase=CommitteePhase.ACTIVE))
    assert io(effects) == [] and core.eras[3].step == EraStep.WAITING
    ready = one(feed_logs(core, 20, [RotationReadySeen(era=3, group_public_key=b"g" * 48)]))
    assert isinstance(ready, CallEnclave) and ready.ecall is COMMITTEE_READY
    assert ready.request.info.era == 3 and ready.request.info.members == [B, C]
    effects = reply(core, ready, SealedBlob(sealed=b"s9"))
    assert Persist("committee", b"s9") in effects and 3 not in core.eras


def test_a_restart_drops_the_failed_era_in_the_enclave() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    elect_me(core)
    drop = one(feed_logs(core, 20, [RotationRestartedSeen(failed_era=2)]))
    assert isinstance(drop, CallEnclave) and drop.ecall is COMMITTEE_FAILED
    effects = reply(core, drop, SealedBlob(sealed=b"s4"))
    assert Persist("committee", b"s4") in effects and 2 not in core.eras


def test_a_pending_era_past_its_deadline_is_restarted() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    assert core.on_start(0.0) == [SetTimer("deadline", 1.0)]
    read = one(core.on_timer("deadline", 1.0))
    assert isinstance(read, ReadChain) and read.query == PendingQuery()
    assert io(reply(core, read, PendingEra(era=2, deadline=50, block_number=50))) == []
    read = one(core.on_timer("deadline", 2.0))
    restart = one(reply(core, read, PendingEra(era=2, deadline=50, block_number=51)))
    assert isinstance(restart, SubmitTx) and restart.tx == RestartEra(2)
    assert io(core.on_timer("deadline", 3.0)) == []  # not twice while one is in flight
    effects = reply(core, restart, status="reverted", reason="era is not pending")
    assert Report("committee_restart_refused", "era is not pending") in effects


# -- hostile and faulty inputs ---------------------------------------------------------


def test_answers_from_a_peer_or_with_a_wrong_tag_change_nothing() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    read = one(feed_logs(core, 10, [EraElectedSeen(era=2)]))
    forged = answer(read, record(2, [ME, B]))
    assert core.on_message(PEER, forged, 0.0) == []
    assert core.on_message(PEER, Followed(height=99), 0.0) == []
    assert core.height == 10
    wrong = ChainRead("committee:era2:999", record(2, [ME, B]))
    assert core.on_message(CHAIN, wrong, 0.0) == []
    assert core.eras[2].step == EraStep.RECORD and core.eras[2].record is None
    # the real answer still works, once; the same answer again is stale
    cards = one(core.on_message(CHAIN, forged, 0.0))
    assert isinstance(cards.query, CardsQuery)
    assert core.on_message(CHAIN, forged, 0.0) == []
    assert core.eras[2].step == EraStep.CARDS


def test_a_replayed_or_malformed_log_read_changes_nothing() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    read = one(core.on_message(CHAIN, Followed(height=10), 0.0))
    assert core.on_message(CHAIN, answer(read, "junk"), 0.0) == [SetTimer("logs", 1.0)]
    assert core.scanned == 0 and not core.backlog
    again = one(core.on_timer("logs", 1.0))
    assert again.query == CommitteeLogs(1, 10)
    core.on_message(CHAIN, answer(again, [EraElectedSeen(era=2)]), 0.0)
    assert core.scanned == 10
    assert core.on_message(CHAIN, answer(again, [EraElectedSeen(era=9)]), 0.0) == []
    assert set(core.eras) == {2}
    # events before the cursor are never asked for again
    assert io(core.on_message(CHAIN, Followed(height=10), 0.0)) == []


def test_a_passing_failure_is_repeated_then_given_up_and_the_next_job_runs() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    read = one(feed_logs(core, 10, [EraElectedSeen(era=2), EraElectedSeen(era=3)]))
    for _ in range(MAX_ATTEMPTS - 1):
        assert reply(core, read, error="rpc down", passing=True) == [SetTimer("retry", 1.0)]
        stale = read
        read = one(core.on_timer("retry", 1.0))
        assert read.query == EraQuery(2) and read.tag != stale.tag
        assert core.on_message(CHAIN, answer(stale, record(2, [ME, B])), 0.0) == []
    effects = reply(core, read, error="rpc down", passing=True)
    assert Report("committee_gave_up", core.last_note) in effects and core.gave_up == 1
    assert one(effects).query == EraQuery(3)  # era 3 is not held behind era 2


def test_an_enclave_refusal_drops_the_era_without_a_crash() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    read = one(feed_logs(core, 10, [EraElectedSeen(era=2)]))
    cards = one(reply(core, read, record(2, [ME, B])))
    ecall = one(reply(core, cards, [card(ME), card(B)]))
    effects = reply(core, ecall, error="bad_quote: quote refused")
    assert io(effects) == [] and 2 not in core.eras
    assert any(isinstance(e, Report) and e.kind == "committee_era_dropped" for e in effects)


def test_reverted_dealing_and_confirmation_are_reported_and_the_era_waits() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    read = one(feed_logs(core, 10, [EraElectedSeen(era=2)]))
    cards = one(reply(core, read, record(2, [ME, B])))
    ecall = one(reply(core, cards, [card(ME), card(B)]))
    dealt = one(reply(core, ecall, ElectedOut(dealing=dealing(2, ME), sealed=b"s")))
    post = one(reply(core, dealt, False))
    effects = reply(core, post, status="reverted", reason="era deadline passed")
    assert Report("committee_dealing_refused", "era deadline passed") in effects
    assert core.eras[2].step == EraStep.COLLECTING and core.dealings_posted == 0
    check = one(feed_logs(core, 12, [seen(2, B), seen(2, ME)]))
    check = one(reply(core, check, DealingOut(complaint="share does not match")))
    finish = one(reply(core, check, DealingOut()))
    confirm = one(reply(core, finish, confirmation(2, sorted([ME, B]))))
    effects = reply(core, confirm, status="reverted", reason="era deadline passed")
    assert Report("committee_confirmation_refused", "era deadline passed") in effects
    assert core.eras[2].step == EraStep.WAITING and core.confirmations_posted == 0


def test_duplicate_dealings_and_events_of_unknown_eras_are_ignored() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    elect_me(core, members=[ME, B, C])
    check = one(feed_logs(core, 12, [seen(2, B), seen(2, B), seen(9, C)]))
    assert io(reply(core, check, DealingOut())) == []
    assert core.eras[2].dealt == [B] and core.eras[2].step == EraStep.COLLECTING
    assert io(feed_logs(core, 13, [RotationReadySeen(era=9, group_public_key=b"")])) == []
    assert io(feed_logs(core, 14, [RotationRestartedSeen(failed_era=9)])) == []


def test_the_state_table_refuses_any_move_it_does_not_list() -> None:
    assert set(TRANSITIONS) == set(EraStep)
    core = CommitteeHostCore(ME, scanned=0)
    one(feed_logs(core, 10, [EraElectedSeen(era=2)]))
    with pytest.raises(CommitteeStepError):
        core._move(core.eras[2], EraStep.CONFIRMING)
    assert core.eras[2].step == EraStep.RECORD


def test_an_answer_of_another_kind_with_the_awaited_tag_changes_nothing() -> None:
    core = CommitteeHostCore(ME, scanned=0)
    read = one(feed_logs(core, 10, [EraElectedSeen(era=2)]))
    for wrong in (
        EnclaveAnswer(read.tag, record(2, [ME, B])),
        TxOutcome(read.tag, "mined", block_number=3),
    ):
        assert core.on_message(CHAIN, wrong, 0.0) == []
        assert core.eras[2].step == EraStep.RECORD and core.eras[2].record is None
    cards = one(reply(core, read, record(2, [ME, B])))
    ecall = one(reply(core, cards, [card(ME), card(B)]))
    elected = ElectedOut(dealing=dealing(2, ME), sealed=b"s")
    for wrong_kind in (ChainRead(ecall.tag, elected), TxOutcome(ecall.tag, "mined")):
        assert core.on_message(CHAIN, wrong_kind, 0.0) == []
        assert core.eras[2].step == EraStep.ELECTED
    # the awaited kind still works
    assert isinstance(one(reply(core, ecall, elected)).query, DealtQuery)


@pytest.mark.parametrize("members", [["x"], [None], [10**9], [[b"x"]], "xx"])
def test_malformed_member_lists_drop_the_era_without_a_crash(members: Any) -> None:
    core = CommitteeHostCore(ME, scanned=0)
    read = one(feed_logs(core, 10, [EraElectedSeen(era=3)]))
    leavers = one(reply(core, read, record(3, [B, C], fresh=True, previous=2)))
    assert leavers.query == MembersQuery(2)
    effects = reply(core, leavers, members)
    assert io(effects) == [] and 3 not in core.eras
    # a record whose member or dealer list is not node ids is not acted on either
    core = CommitteeHostCore(ME, scanned=0)
    read = one(feed_logs(core, 10, [EraElectedSeen(era=2)]))
    bad = record(2, members)
    assert io(reply(core, read, bad)) == [] and 2 not in core.eras


@pytest.mark.parametrize(
    "pending",
    [
        PendingEra(era="2", deadline=1, block_number=5),  # type: ignore[arg-type]
        PendingEra(era=2, deadline=None, block_number=5),  # type: ignore[arg-type]
        PendingEra(era=2, deadline=1, block_number="5"),  # type: ignore[arg-type]
        PendingEra(era=True, deadline=1, block_number=5),
    ],
)
def test_a_malformed_pending_era_sends_no_restart(pending: PendingEra) -> None:
    core = CommitteeHostCore(ME, scanned=0)
    (read,) = io(core.on_timer("deadline", 1.0))
    assert core.on_message(CHAIN, answer(read, pending), 1.0) == []
    assert core.deadline_read == "" and core.restarts_sent == 0


def ticks(core: CommitteeHostCore, count: int) -> list[Any]:
    """The deadline timer firing ``count`` times (the chain's pending reads answered
    with nothing pending only when asked for)."""
    effects: list[Any] = []
    for _ in range(count):
        effects += core.on_timer("deadline", 0.0)
    return effects


def test_a_lost_answer_is_asked_again_after_the_answer_timeout() -> None:
    """A link or a chain that drops an effect or its answer (the simulator's partitions)
    must not leave the core waiting forever: every awaited answer has a deadline."""
    from sealbridge.keyservice.committee_host import ANSWER_TIMEOUT, DEADLINE_CHECK

    late = int(ANSWER_TIMEOUT / DEADLINE_CHECK)
    core = CommitteeHostCore(ME, scanned=0)
    lost_logs = one(core.on_message(CHAIN, Followed(height=10), 0.0))
    lost_pending = one(core.on_timer("deadline", 0.0))
    assert lost_pending.query == PendingQuery()
    assert io(ticks(core, late - 2)) == []
    effects = io(ticks(core, 2))
    logs = [e for e in effects if isinstance(e.query, CommitteeLogs)]
    pending = [e for e in effects if isinstance(e.query, PendingQuery)]
    assert [e.query for e in logs] == [CommitteeLogs(1, 10)] and logs[0].tag != lost_logs.tag
    assert len(pending) == 1 and pending[0].tag != lost_pending.tag
    assert core.on_message(CHAIN, answer(lost_logs, [EraElectedSeen(era=9)]), 0.0) == []
    # a job's lost answer is a passing failure: the same effect again, under a new tag
    lost_era = one(core.on_message(CHAIN, answer(logs[0], [EraElectedSeen(era=2)]), 0.0))
    assert lost_era.query == EraQuery(2)
    assert SetTimer("retry", 1.0) in ticks(core, late)
    again = one(core.on_timer("retry", 0.0))
    assert again.query == EraQuery(2) and again.tag != lost_era.tag
    assert core.on_message(CHAIN, answer(lost_era, record(2, [ME, B])), 0.0) == []
    assert isinstance(one(reply(core, again, record(2, [ME, B]))).query, CardsQuery)


def test_a_lost_restart_outcome_does_not_stop_the_deadline_checks() -> None:
    from sealbridge.keyservice.committee_host import ANSWER_TIMEOUT, DEADLINE_CHECK

    core = CommitteeHostCore(ME, scanned=0)
    read = one(core.on_timer("deadline", 0.0))
    restart = one(reply(core, read, PendingEra(era=2, deadline=10, block_number=11)))
    assert isinstance(restart, SubmitTx) and restart.tx == RestartEra(2)
    effects = io(ticks(core, int(ANSWER_TIMEOUT / DEADLINE_CHECK)))
    assert [e.query for e in effects] == [PendingQuery()]
    assert core.on_message(CHAIN, answer(restart), 0.0) == []


def test_a_restarted_host_does_not_take_a_log_read_of_the_previous_incarnation() -> None:
    old = CommitteeHostCore(ME, scanned=0)
    old.on_start(0.0)
    stale = one(old.on_message(CHAIN, Followed(height=10), 0.0))  # blocks 1..10, in flight
    fresh = CommitteeHostCore(ME, scanned=0)  # the restarted process
    fresh.on_start(5.0)
    read = one(fresh.on_message(CHAIN, Followed(height=30), 5.0))  # blocks 1..30
    assert read.query == CommitteeLogs(1, 30) and stale.query == CommitteeLogs(1, 10)
    # the old answer for 1..10 must not pass for 1..30 (events 11..30 would be skipped)
    assert fresh.on_message(CHAIN, answer(stale, []), 5.0) == []
    assert fresh.scanned == 0 and fresh.reading_logs == read.tag
    fresh.on_message(CHAIN, answer(read, [EraElectedSeen(era=2)]), 5.0)
    assert fresh.scanned == 30 and 2 in fresh.eras
