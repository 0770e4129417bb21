"""Attacks on the registration upkeep core (chain/registration.py): reordered, duplicated,
stale and contradictory chain answers.

The network driver runs reads and transactions on a pool of I/O threads, each with its
own retries, and the upkeep asks for a view every tick whether or not the last one came
back: views and outcomes *do* arrive out of order. In the simulator, link delays reorder
them the same way.

Tests whose docstring starts with "Fixed --" demonstrated a weakness (they failed on
the code as first written; each one's fix is in the same change); the others
are regression tests of what holds."""

from __future__ import annotations

from typing import Any

from sealbridge.chain.registration import (
    Heartbeat,
    Register,
    RegistrationCore,
    RegistrationPhase,
    RegistryView,
    Renew,
)
from sealbridge.core.effects import ChainRead, Effect, SubmitTx, TxOutcome

NODE = b"\x07" * 32
ROLE = 3
TTL = 400


def view(*, tip: int = 10, active: bool, expiry: int = 0, era: int = 0, slot: int = 1) -> ChainRead:
    return ChainRead(
        "registry",
        RegistryView(tip=tip, active=active, expiry=expiry, next_era=era, next_slot=slot),
    )


def txs(effects: list[Effect]) -> list[Any]:
    return [e.tx for e in effects if isinstance(e, SubmitTx)]


def t(core: RegistrationCore, kind: str) -> str:
    """The tag of the transaction of ``kind`` in flight (each has a tag of its own)."""
    return core.in_flight[kind][0]


def make(**kwargs: Any) -> RegistrationCore:
    core = RegistrationCore(NODE, ROLE, ttl=TTL, **kwargs)
    core.on_start(1000.0)
    return core


def ready(core: RegistrationCore, *, expiry: int = 1400, tip: int = 10) -> list[Any]:
    """Bring ``core`` to READY through an active view at t=1000 (a heartbeat it sends is
    answered); the other transactions it sends (a renewal, when one is due)."""
    sent = []
    for effect in core.on_message(view(tip=tip, active=True, expiry=expiry, slot=0), 1000.0):
        if isinstance(effect, SubmitTx) and effect.tag.startswith("heartbeat/"):
            core.on_message(TxOutcome(t(core, "heartbeat"), "sent"), 1000.0)
        elif isinstance(effect, SubmitTx):
            sent.append(effect.tx)
    assert core.phase == RegistrationPhase.READY
    return sent


# -- what holds ---------------------------------------------------------------------------


def test_outcomes_for_tags_not_in_flight_change_nothing() -> None:
    core = make(heartbeats=False)
    ready(core)
    before = core.get_status()
    for outcome in (
        TxOutcome("renew", "mined", 99),
        TxOutcome("register", "mined", 99),
        TxOutcome("heartbeat", "sent"),
        TxOutcome("bogus", "mined", 1),
        TxOutcome("register", "reverted", reason="stake too low"),
    ):
        assert core.on_message(outcome, 1001.0) == []
    assert core.get_status() == before
    assert core.revert is None


def test_a_mined_renewal_answered_twice_counts_once() -> None:
    core = make(heartbeats=False)
    sent = ready(core, expiry=1050)  # less than ttl/4 left at t=1000: renewal due
    assert sent == [Renew(role=ROLE, expiry=1400, previous_expiry=1050)]
    tag = t(core, "renew")
    core.on_message(TxOutcome(tag, "mined", 12), 1001.0)
    assert core.on_message(TxOutcome(tag, "mined", 12), 1001.5) == []
    assert core.renewals == 1 and core.expiry == 1400


def test_garbage_answers_change_nothing() -> None:
    core = make()
    ready(core)
    before = core.get_status()
    for message in (
        ChainRead("registry", "not a view"),
        ChainRead("registry", None),
        ChainRead("other", RegistryView(tip=1, active=False, expiry=0, next_era=0, next_slot=0)),
        "junk",
        None,
        TxOutcome("upkeep", "mined"),
    ):
        assert core.on_message(message, 1001.0) == []
    after = core.get_status()
    after.pop("error")
    before.pop("error")
    assert after == before


def test_no_renewal_storm_after_a_failed_renewal() -> None:
    core = make(heartbeats=False, retry_delay=30.0)
    sent = ready(core, expiry=1050)
    assert len(sent) == 1
    core.on_message(TxOutcome(t(core, "renew"), "reverted", reason="approval refused"), 1001.0)
    renewals = 0
    for second in range(1002, 1031):
        renewals += len(txs(core.on_message(view(tip=second, active=True, expiry=1050), second)))
    assert renewals == 0  # nothing before retry_delay has passed
    assert len(txs(core.on_message(view(tip=1031, active=True, expiry=1050), 1031.5))) == 1


# -- reordered and stale views -----------------------------------------------------------


def test_a_stale_view_after_a_mined_renewal_renews_again() -> None:
    """Fixed -- after a renewal is mined, a view read before it (older tip, old expiry)
    puts the old expiry back (``self.expiry = view.expiry``), the renewal looks due
    again, and a second renewal is sent; each late view can cost one more (a renewal
    storm when the RPC is slow and reads pile up). A view older than the newest one
    seen, or than a mined transaction, must change nothing."""
    core = make(heartbeats=False)
    first = ready(core, expiry=1050, tip=20)
    assert first == [Renew(role=ROLE, expiry=1400, previous_expiry=1050)]
    core.on_message(TxOutcome(t(core, "renew"), "mined", 21), 1000.5)
    assert core.expiry == 1400
    stale = core.on_message(view(tip=20, active=True, expiry=1050), 1001.0)
    assert txs(stale) == [], "a view from before the mined renewal renewed again"
    assert core.expiry == 1400


def test_a_stale_view_sends_a_heartbeat_for_a_past_slot_and_then_twice() -> None:
    """Fixed -- the heartbeat rule is ``due != slot_done``, not ``due > slot_done``: a late
    view whose next slot is already handled and past sends a heartbeat for that past
    slot, its answer moves ``slot_done`` back, and the next fresh view sends a second
    heartbeat for the slot already handled."""
    core = make()
    ready(core)
    sent: list[Any] = []

    def answer(effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, SubmitTx) and effect.tag.startswith("heartbeat/"):
                sent.append(effect.tx)
                core.on_message(TxOutcome(t(core, "heartbeat"), "sent"), 1002.0)

    answer(core.on_message(view(tip=20, active=True, expiry=1400, slot=2), 1001.0))
    answer(core.on_message(view(tip=24, active=True, expiry=1400, slot=3), 1002.0))
    answer(core.on_message(view(tip=20, active=True, expiry=1400, slot=2), 1002.5))  # late
    answer(core.on_message(view(tip=25, active=True, expiry=1400, slot=3), 1003.0))
    slots = [(hb.era, hb.slot) for hb in sent]
    assert slots == [(0, 2), (0, 3)], f"heartbeats sent for slots {slots}"


def test_a_stale_view_after_a_lost_race_fails_the_node_for_good() -> None:
    """Fixed -- a registration reverted because another process of this node registered
    first is meant to be decided by the next view. A view read *before* the winner was
    mined (there is no tip guard on this path) shows the node inactive, the core goes
    FAILED, and FAILED ignores every later view -- the fresh one that shows the node
    active included. The node never heartbeats or renews again."""
    core = make()
    assert txs(core.on_message(view(tip=10, active=False), 1000.0)) == [
        Register(role=ROLE, expiry=1400)
    ]
    core.on_message(TxOutcome(t(core, "register"), "reverted", 12, "already registered"), 1001.0)
    core.on_message(view(tip=10, active=False), 1001.5)  # read before block 12
    effects = core.on_message(view(tip=13, active=True, expiry=1399, slot=2), 1002.0)
    assert core.phase == RegistrationPhase.READY, core.get_status()
    assert any(isinstance(e, SubmitTx) and e.tag.startswith("heartbeat/") for e in effects)


def test_one_non_passing_read_error_stops_a_ready_node_for_good() -> None:
    """Fixed -- a READY node that gets one read the driver classes as not passing (any
    SealbridgeError other than RpcError/TransportError: an RPC node answering ``0x``
    while it resyncs is a web3 decode error -> ChainError) goes FAILED, and FAILED
    ignores every later good view: no renewal, no heartbeat, the registration lapses.
    A permanent failure from a read fits a misconfiguration found before the first good
    view, not a node that has already read the registry successfully."""
    core = make(heartbeats=False)
    ready(core, expiry=1400)
    core.on_message(ChainRead("registry", error="web3 error: cannot decode", passing=False), 1001)
    effects = core.on_message(view(tip=30, active=True, expiry=1050), 1001.0)
    assert txs(effects) == [Renew(role=ROLE, expiry=1401, previous_expiry=1050)], (
        f"phase {core.phase.value}: a READY node stopped renewing after one bad read"
    )


def test_a_contradictory_view_is_accepted() -> None:
    """Fixed -- a view is taken as it comes. ``active`` with an expiry of 0 or below is a
    contradiction (an expiry 0 means "not registered"), yet the core goes READY with it,
    reports ``registered`` and, since ``is_renewal_due`` requires ``expiry > 0``, never
    renews. A malformed chain answer should be refused and change nothing."""
    core = make(heartbeats=False)
    effects = core.on_message(view(tip=10, active=True, expiry=-5), 1000.0)
    assert core.phase != RegistrationPhase.READY and effects == [], (
        f"accepted: phase {core.phase.value}, expiry {core.expiry}, effects {effects}"
    )


def test_a_lapsed_renewal_registers_twice() -> None:
    """Fixed -- a renewal refused with ``registration lapsed`` registers again at once,
    without looking whether a registration is already in flight (a view showing the
    node inactive may have sent one): two registrations in flight, and the second one
    reverts (gas spent, and its revert reason is recorded against the node)."""
    core = make(heartbeats=False)
    assert ready(core, expiry=1050, tip=10)  # a renewal is due and sent
    assert txs(core.on_message(view(tip=20, active=False, expiry=1050), 1060.0)) == [
        Register(role=ROLE, expiry=1460)
    ]
    again = core.on_message(
        TxOutcome(t(core, "renew"), "reverted", 21, "registration lapsed"), 1061.0
    )
    assert txs(again) == [], "a second registration while one is in flight"


def test_status_says_registered_while_the_chain_says_inactive() -> None:
    """Fixed -- a READY node whose registration is gone (expired past the grace, or
    slashed) sends a new registration but stays READY: get_status says
    ``registered: True`` while the chain says the node is inactive."""
    core = make(heartbeats=False)
    ready(core, expiry=1400, tip=10)
    effects = core.on_message(view(tip=500, active=False, expiry=1400), 1500.0)
    assert txs(effects) == [Register(role=ROLE, expiry=1900)]
    assert core.get_status()["registered"] is False


def test_a_replayed_outcome_is_taken_for_the_transaction_in_flight() -> None:
    """Fixed -- tags name the kind of transaction ("renew"), not the transaction. An old
    answer that comes again (a duplicate from a link, a forged answer) while the next
    renewal is in flight is taken as that renewal's outcome: the expiry moves to a value
    the chain never mined, and the real outcome is then dropped (tag not in flight)."""
    core = make(heartbeats=False)
    assert ready(core, expiry=1050)  # the first renewal
    old = TxOutcome(t(core, "renew"), "mined", 12)
    core.on_message(old, 1001.0)
    assert core.renewals == 1
    # 300 s later the next renewal is due and sent
    second = txs(core.on_message(view(tip=300, active=True, expiry=1400), 1310.0))
    assert second == [Renew(role=ROLE, expiry=1710, previous_expiry=1400)]
    core.on_message(old, 1310.5)  # the first renewal's answer, once more
    assert core.renewals == 1 and core.expiry == 1400, (
        f"renewals {core.renewals}, expiry {core.expiry}: an old answer settled a new tx"
    )


def test_heartbeat_is_aimed_at_the_next_slot_once() -> None:
    """Regression: in order, one heartbeat per slot, none while one is in flight."""
    core = make()
    ready(core)
    first = txs(core.on_message(view(tip=20, active=True, expiry=1400, slot=2), 1001.0))
    assert first == [Heartbeat(role=ROLE, era=0, slot=2)]
    assert txs(core.on_message(view(tip=21, active=True, expiry=1400, slot=2), 1001.5)) == []
    core.on_message(TxOutcome(t(core, "heartbeat"), "failed", reason="unreachable"), 1002.0)
    retry = txs(core.on_message(view(tip=21, active=True, expiry=1400, slot=2), 1002.5))
    assert retry == [Heartbeat(role=ROLE, era=0, slot=2)]
    core.on_message(TxOutcome(t(core, "heartbeat"), "sent"), 1003.0)
    assert txs(core.on_message(view(tip=22, active=True, expiry=1400, slot=2), 1003.5)) == []
