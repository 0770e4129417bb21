"""The registration upkeep core (chain/registration.py), driven by hand: every role's
rules for registering, renewing and heartbeating, as inputs and effects."""

from __future__ import annotations

import pytest

from sealbridge.chain.registration import (
    Heartbeat,
    Register,
    RegistrationCore,
    RegistrationPhase,
    RegistryQuery,
    RegistryView,
    Renew,
)
from sealbridge.core.effects import ChainRead, ReadChain, Report, SetTimer, SubmitTx, TxOutcome
from sealbridge.core.errors import ConfigError

NODE = b"\x07" * 32
ROLE = 3
TTL = 400


def view(*, tip: int = 10, active: bool, expiry: int = 0, era: int = 0, slot: int = 1) -> ChainRead:
    return ChainRead(
        "registry",
        RegistryView(tip=tip, active=active, expiry=expiry, next_era=era, next_slot=slot),
    )


def txs(effects: list[object]) -> dict[str, object]:
    return {e.tag.split("/")[0]: e.tx for e in effects if isinstance(e, SubmitTx)}


def tag(core: RegistrationCore, kind: str) -> str:
    """The tag of the transaction of ``kind`` in flight."""
    return core.in_flight[kind][0]


def make(**kwargs: object) -> RegistrationCore:
    core = RegistrationCore(NODE, ROLE, ttl=TTL, **kwargs)  # type: ignore[arg-type]
    effects = core.on_start(1000.0)
    assert effects == [
        ReadChain("registry", RegistryQuery(node_id=NODE, role=ROLE)),
        SetTimer("upkeep", 1.0),
    ]
    return core


def test_an_inactive_node_registers_once_and_becomes_ready() -> None:
    core = make()
    sent = txs(core.on_message(view(active=False), 1000.0))
    assert sent == {"register": Register(role=ROLE, expiry=1400)}
    assert txs(core.on_message(view(active=False), 1001.0)) == {}  # one in flight
    effects = core.on_message(TxOutcome(tag(core, "register"), "mined", 11), 1002.0)
    assert core.phase == RegistrationPhase.READY
    assert Report("registered", 1400) in effects
    # a view from before the registration was mined does not register again
    assert txs(core.on_message(view(tip=10, active=False), 1003.0)) == {}


def test_a_registration_that_reverts_fails_unless_the_node_is_active() -> None:
    core = make()
    core.on_message(view(active=False), 1000.0)
    assert (
        core.on_message(
            TxOutcome(tag(core, "register"), "reverted", reason="stake too low"), 1001.0
        )
        == []
    )
    assert core.phase == RegistrationPhase.REGISTERING
    assert core.on_message(view(active=False), 1002.0) == []  # not after the revert: wait
    effects = core.on_message(view(tip=11, active=False), 1002.0)
    assert core.phase == RegistrationPhase.FAILED
    assert effects == [Report("registration_failed", "stake too low")]
    assert core.on_message(view(tip=12, active=False), 1003.0) == []  # failed: nothing more

    raced = make()
    raced.on_message(view(active=False), 1000.0)
    raced.on_message(
        TxOutcome(tag(raced, "register"), "reverted", reason="already registered"), 1001.0
    )
    raced.on_message(view(tip=11, active=True, expiry=1400), 1002.0)
    assert raced.phase == RegistrationPhase.READY  # another process of this node won


def test_a_registration_never_sent_is_tried_again() -> None:
    core = make()
    core.on_message(view(active=False), 1000.0)
    core.on_message(TxOutcome(tag(core, "register"), "failed", reason="chain unreachable"), 1001.0)
    assert core.phase == RegistrationPhase.REGISTERING
    assert "register" in txs(core.on_message(view(active=False), 1002.0))


def test_renewal_comes_when_a_quarter_is_left_and_lapsing_registers_again() -> None:
    core = make(heartbeats=False)
    assert txs(core.on_message(view(active=True, expiry=1400), 1000.0)) == {}
    assert txs(core.on_message(view(active=True, expiry=1400), 1299.0)) == {}  # 101 left
    sent = txs(core.on_message(view(active=True, expiry=1400), 1301.0))  # 99 left
    assert sent == {"renew": Renew(role=ROLE, expiry=1701, previous_expiry=1400)}
    core.on_message(TxOutcome(tag(core, "renew"), "mined", 20), 1302.0)
    assert core.expiry == 1701 and core.renewals == 1
    # a view from before the renewal was mined is stale: no second renewal
    assert txs(core.on_message(view(tip=15, active=True, expiry=1400), 1303.0)) == {}
    # a renewal refused as lapsed falls back to a new registration at once
    core.on_message(view(tip=30, active=True, expiry=1701), 1700.0)
    effects = core.on_message(
        TxOutcome(tag(core, "renew"), "reverted", reason="registration lapsed"), 1701.0
    )
    assert txs(effects) == {"register": Register(role=ROLE, expiry=2101)}


def test_a_failed_renewal_waits_and_a_deferred_one_waits_for_its_role() -> None:
    allowed = [False]
    core = make(heartbeats=False, retry_delay=30.0, may_renew=lambda: allowed[0])
    assert txs(core.on_message(view(active=True, expiry=1400), 1350.0)) == {}  # deferred
    allowed[0] = True
    assert "renew" in txs(core.on_message(view(active=True, expiry=1400), 1351.0))
    core.on_message(
        TxOutcome(tag(core, "renew"), "reverted", reason="renewal needs fresh keys"), 1352.0
    )
    assert txs(core.on_message(view(active=True, expiry=1400), 1360.0)) == {}
    assert "renew" in txs(core.on_message(view(active=True, expiry=1400), 1383.0))


def test_one_heartbeat_per_slot_and_none_while_inactive() -> None:
    core = make()
    core.on_message(view(active=True, expiry=5000), 1000.0)  # sends (0, 1)
    assert core.in_flight["heartbeat"][1] == Heartbeat(role=ROLE, era=0, slot=1)
    core.on_message(TxOutcome(tag(core, "heartbeat"), "sent"), 1000.5)
    assert "heartbeat" not in txs(core.on_message(view(active=True, expiry=5000), 1001.0))
    assert txs(core.on_message(view(active=True, expiry=5000, slot=2), 1002.0)) == {
        "heartbeat": Heartbeat(role=ROLE, era=0, slot=2)
    }
    # a heartbeat never sent is tried again while its slot is next
    core.on_message(TxOutcome(tag(core, "heartbeat"), "failed", reason="down"), 1003.0)
    assert "heartbeat" in txs(core.on_message(view(active=True, expiry=5000, slot=2), 1004.0))
    assert core.heartbeats_sent == 1
    quiet = make()
    assert "heartbeat" not in txs(quiet.on_message(view(active=False), 1000.0))


def test_a_failed_read_changes_nothing_and_foreign_messages_are_ignored() -> None:
    core = make()
    assert core.on_message(ChainRead("registry", error="timeout"), 1000.0) == []
    assert core.phase == RegistrationPhase.REGISTERING and "timeout" in core.error
    assert core.on_message(ChainRead("registry", value="junk"), 1000.0) == []
    assert core.on_message(TxOutcome("register/1", "mined", 3), 1000.0) == []  # not in flight
    assert core.on_message(object(), 1000.0) == []
    assert core.on_timer("other", 1000.0) == []
    assert core.phase == RegistrationPhase.REGISTERING


def test_a_read_that_cannot_pass_fails_the_node() -> None:
    core = make()
    wrong = ChainRead("registry", error="chain 1 is not the addresses' chain", passing=False)
    assert core.on_message(wrong, 1000.0) == [
        Report(
            "registration_failed", "cannot read the registry: chain 1 is not the addresses' chain"
        )
    ]
    assert core.phase == RegistrationPhase.FAILED
    assert txs(core.on_message(view(active=False), 1001.0)) == {}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        RegistrationCore(NODE, ROLE, ttl=0)
    with pytest.raises(ConfigError):
        RegistrationCore(NODE, ROLE, ttl=10, tick=0)


def test_a_restarted_core_does_not_take_an_outcome_of_the_previous_incarnation() -> None:
    old = make()
    old.on_message(view(active=False), 1000.0)
    stale = tag(old, "register")  # in flight when the node crashed
    fresh = RegistrationCore(NODE, ROLE, ttl=TTL)  # the restarted process
    fresh.on_start(1005.0)
    fresh.on_message(view(active=False), 1005.0)
    assert "register" in fresh.in_flight
    # the old registration's revert (a race it lost) is not the new one's outcome
    assert fresh.on_message(TxOutcome(stale, "reverted", reason="stake too low"), 1006.0) == []
    assert fresh.revert is None and "register" in fresh.in_flight
    effects = fresh.on_message(TxOutcome(tag(fresh, "register"), "mined", 11), 1007.0)
    assert fresh.phase == RegistrationPhase.READY and Report("registered", 1405) in effects
