"""Atomicity of InterTrust cross-chain transfers, on the simulator, under faults.

Every test runs two ASes of BFT replicas and gateway pairs (real threshold BLS, Ed25519,
ECIES, sim quotes) under the deterministic simulator (``ZeroCpu``), runs to quiescence and
checks, for every transfer, that it committed on both chains (source RELEASED, destination
PAID) or on neither, that each AS's supply is unchanged, and that value is conserved
across the two chains. The property test draws the fault schedules; the others pin down
one path each.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealbridge.consensus.ledger import CrossState
from sealbridge.interop.setup import KeyMode
from sealbridge.sim.delays import Fixed, Uniform
from sealbridge.sim.interop_run import (
    FaultPlan,
    GatewayCrash,
    InteropRun,
    ReplicaCrash,
    TransferPlan,
    run_interop,
)
from sealbridge.sim.interop_scenario import AS_A, AS_B, ByzantineMode, InteropSpec, gateway_id

SCHEDULES_RUN = {"count": 0, "committed": 0, "aborted": 0}


@pytest.fixture(scope="module", autouse=True)
def report_schedule_count(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print how many random fault schedules the property test ran (visible with -q)."""
    yield
    if SCHEDULES_RUN["count"]:
        plugins = request.config.pluginmanager
        reporter: Any = plugins.get_plugin("terminalreporter")
        capture: Any = plugins.get_plugin("capturemanager")
        line = (
            f"interop atomicity: {SCHEDULES_RUN['count']} random fault schedules ran, "
            f"{SCHEDULES_RUN['committed']} transfers committed on both chains, "
            f"{SCHEDULES_RUN['aborted']} on neither, 0 violations"
        )
        if reporter is None or capture is None:  # pragma: no cover -- plugins disabled
            print(line)
            return
        with capture.global_and_fixture_disabled():  # past the output capture, even with -q
            reporter.write("\n")
            reporter.write_line(line)


def assert_atomic(run: InteropRun) -> None:
    assert run.quiescent, "did not reach quiescence"
    assert run.violations == [], run.violations
    for result in run.results:
        assert result.outcome in ("committed", "aborted"), result


def plan(src: int = AS_A, amount: int = 10, **kwargs: Any) -> TransferPlan:
    sender, recipient = ("alice", "bob") if src == AS_A else ("bob", "alice")
    return TransferPlan(src_as=src, sender=sender, recipient=recipient, amount=amount, **kwargs)


# --- one path each -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(KeyMode))
def test_transfers_commit_on_both_chains(mode: KeyMode) -> None:
    spec = InteropSpec(seed=b"commit", mode=mode, pairs=2)
    plans = [plan(AS_A, 10, submit_at=0.5), plan(AS_B, 20, submit_at=0.5), plan(AS_A, 5)]
    run = run_interop(spec, plans)
    assert_atomic(run)
    assert [r.outcome for r in run.results] == ["committed"] * 3
    a = run.deployment.get_replicas(AS_A, honest=True)[0].replica.ledger
    b = run.deployment.get_replicas(AS_B, honest=True)[0].replica.ledger
    # A -> B: alice (on A) sends 15 to bob (on B); B -> A: bob (on B) sends 20 to alice (on A)
    assert a.get_balance("alice") == 1_000 - 15 + 20 and b.get_balance("bob") == 1_000 + 15 - 20
    assert a.get_balance("@bridge") == spec.reserve + 15 - 20
    assert b.get_balance("@bridge") == spec.reserve - 15 + 20
    for result in run.results:
        assert {"accepted", "setup", "lock", "verify", "release"} <= set(result.phases)
        phases = result.phases
        assert phases["accepted"] <= phases["lock"] <= phases["verify"] <= phases["release"]
    # each transfer: sigma_A(LOCKED) and sigma_B(PAID), recorded for outside verification
    claims = sorted(s["claim"] for s in run.signatures)
    assert claims.count("locked") >= 3 and claims.count("paid") >= 3


def test_timeout_unlocks_and_never_pays() -> None:
    """The source gateway's link to its replicas is slow: the deadline passes before the
    lock executes, so the gateway aborts; the destination refuses and the source unlocks."""
    spec = InteropSpec(seed=b"timeout")
    plans = [plan(AS_A, 10, submit_at=0.2, timeout=0.4)]
    slow = {(gateway_id(AS_A, 0), r): Fixed(1.5) for r in range(100, 104)}
    run = run_interop(spec, plans, delay=Uniform(0.005, 0.01), links=slow)
    assert_atomic(run)
    result = run.results[0]
    assert result.outcome == "aborted"
    assert result.dest_state is CrossState.REFUSED
    assert result.source_state in (CrossState.UNLOCKED, CrossState.ABORTED)
    assert "abort" in result.phases and "lock" not in result.phases
    b = run.deployment.get_replicas(AS_B, honest=True)[0].replica.ledger
    assert b.get_balance("bob") == 1_000  # never paid
    a = run.deployment.get_replicas(AS_A, honest=True)[0].replica.ledger
    assert a.get_balance("alice") == 1_000  # unlocked


def test_lock_refused_aborts_and_an_empty_reserve_refuses() -> None:
    spec = InteropSpec(seed=b"refusals", reserve=15)
    plans = [plan(AS_A, 5_000), plan(AS_A, 10, submit_at=0.3), plan(AS_A, 10, submit_at=0.3)]
    run = run_interop(spec, plans)
    assert_atomic(run)
    outcomes = [r.outcome for r in run.results]
    assert outcomes[0] == "aborted" and run.results[0].source_state is CrossState.ABORTED
    assert sorted(outcomes[1:]) == ["aborted", "committed"]  # the reserve pays only one


def test_duplicates_are_filtered_by_transfer_id() -> None:
    spec = InteropSpec(seed=b"duplicates", pairs=2)
    plans = [plan(AS_A, 10, copies=3, copy_gap=0.02), plan(AS_B, 7, copies=2, pair=0)]
    run = run_interop(spec, plans)
    assert_atomic(run)
    assert [r.outcome for r in run.results] == ["committed", "committed"]
    b = run.deployment.get_replicas(AS_B, honest=True)[0].replica.ledger
    assert b.get_balance("bob") == 1_000 + 10 - 7  # paid once, locked once
    assert run.get_gateway_totals()["duplicates"] >= 1


SOURCE_PHASES = ["accepted", "setup", "lock", "verify"]
DEST_PHASES = ["decide", "attest"]


@pytest.mark.parametrize("restart", [True, False])
@pytest.mark.parametrize(
    ("side", "phase"), [("source", p) for p in SOURCE_PHASES] + [("dest", p) for p in DEST_PHASES]
)
def test_gateway_crash_between_phases_is_recovered(side: str, phase: str, restart: bool) -> None:
    spec = InteropSpec(seed=b"crash-" + phase.encode(), pairs=1 if restart else 2)
    node = gateway_id(AS_A if side == "source" else AS_B, 0)
    crash = GatewayCrash(node=node, after_phase=phase, restart_after=0.7 if restart else None)
    plans = [plan(AS_A, 10, pair=0, submit_at=0.3), plan(AS_A, 11, pair=0, submit_at=0.3)]
    run = run_interop(spec, plans, faults=FaultPlan(gateway_crashes=(crash,)), timeout=90)
    assert_atomic(run)
    assert all(r.outcome == "committed" for r in run.results)
    assert not run.simulator.is_up(node) or restart


@pytest.mark.parametrize("mode", [ByzantineMode.SILENT, ByzantineMode.FORGE, ByzantineMode.GARBAGE])
def test_byzantine_replicas_up_to_f_are_tolerated(mode: ByzantineMode) -> None:
    # n = 7, f = 2 on both sides: two Byzantine replicas each, the primary of view 0 included
    byzantine = {100: mode, 103: mode, 201: mode, 206: mode}
    spec = InteropSpec(seed=b"byzantine", n=(7, 7), byzantine=byzantine, mode=KeyMode.PER_TX)
    plans = [plan(AS_A, 10, submit_at=0.2), plan(AS_B, 10, submit_at=0.4)]
    run = run_interop(spec, plans, timeout=90)
    assert_atomic(run)
    assert [r.outcome for r in run.results] == ["committed", "committed"]
    if mode is ByzantineMode.GARBAGE:
        assert run.get_gateway_totals()["bad_shares"] >= 1


def test_replica_crashes_and_a_destination_reserve_race() -> None:
    faults = FaultPlan(
        replica_crashes=(ReplicaCrash(200, at=0.1, restart_at=2.0), ReplicaCrash(101, at=0.4))
    )
    spec = InteropSpec(seed=b"crashes", reserve=25)
    plans = [plan(AS_A, 10, submit_at=0.2 + 0.1 * i, timeout=4.0) for i in range(4)]
    run = run_interop(spec, plans, faults=faults, timeout=90)
    assert_atomic(run)
    assert sorted(r.outcome for r in run.results) == [
        "aborted",
        "aborted",
        "committed",
        "committed",
    ]


# --- random fault schedules ----------------------------------------------------------------------


@st.composite
def schedules(draw: st.DrawFn) -> tuple[InteropSpec, list[TransferPlan], FaultPlan, Any]:
    sizes = draw(st.tuples(st.sampled_from([4, 4, 5, 7]), st.sampled_from([4, 4, 5, 7])))
    pairs = draw(st.integers(1, 2))
    mode = draw(st.sampled_from(list(KeyMode)))
    reserve = draw(st.sampled_from([1_000_000, 1_000_000, 60]))
    byzantine: dict[int, ByzantineMode] = {}
    crashes: list[ReplicaCrash] = []
    for as_id, n in zip((AS_A, AS_B), sizes, strict=True):
        f = (n - 1) // 3
        faulty = draw(st.lists(st.integers(0, n - 1), max_size=f, unique=True))
        for index in faulty:
            node = 100 * as_id + index
            kind = draw(st.sampled_from(["crash", "restart", "silent", "forge", "garbage"]))
            if kind in ("crash", "restart"):
                at = draw(st.floats(0.0, 5.0))
                back = at + draw(st.floats(0.3, 5.0)) if kind == "restart" else None
                crashes.append(ReplicaCrash(node, at=at, restart_at=back))
            else:
                byzantine[node] = ByzantineMode(kind)
    plans = []
    for number in range(draw(st.integers(1, 4))):
        src = draw(st.sampled_from([AS_A, AS_B]))
        plans.append(
            plan(
                src,
                draw(st.sampled_from([1, 10, 40, 40, 250, 5_000])),
                submit_at=draw(st.floats(0.1, 3.0)),
                timeout=draw(st.sampled_from([0.3, 1.0, 3.0, 20.0, 20.0, 20.0])),
                copies=draw(st.integers(1, 2)),
                salt=bytes([number]),
            )
        )
    gateway_crashes: tuple[GatewayCrash, ...] = ()
    if draw(st.booleans()):
        node = gateway_id(draw(st.sampled_from([AS_A, AS_B])), draw(st.integers(0, pairs - 1)))
        restart_after: float | None = draw(st.floats(0.2, 4.0))
        if pairs == 2 and draw(st.booleans()):
            restart_after = None  # the other pair has to recover its transfers
        if draw(st.booleans()):
            crash = GatewayCrash(node, at=draw(st.floats(0.0, 5.0)), restart_after=restart_after)
        else:
            phase = draw(st.sampled_from(SOURCE_PHASES + DEST_PHASES + ["abort"]))
            crash = GatewayCrash(node, after_phase=phase, restart_after=restart_after)
        gateway_crashes = (crash,)
    low = draw(st.floats(0.001, 0.03))
    delay = Uniform(low, low + draw(st.floats(0.0, 0.15)))
    spec = InteropSpec(
        seed=draw(st.binary(min_size=4, max_size=4)),
        n=sizes,
        pairs=pairs,
        mode=mode,
        reserve=reserve,
        byzantine=byzantine,
    )
    return spec, plans, FaultPlan(tuple(crashes), gateway_crashes), delay


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(schedules())
def test_every_transfer_commits_on_both_chains_or_on_neither(
    schedule: tuple[InteropSpec, list[TransferPlan], FaultPlan, Any],
) -> None:
    spec, plans, faults, delay = schedule
    run = run_interop(spec, plans, faults=faults, delay=delay, timeout=200.0)
    assert_atomic(run)
    SCHEDULES_RUN["count"] += 1
    SCHEDULES_RUN["committed"] += run.committed
    SCHEDULES_RUN["aborted"] += run.aborted
