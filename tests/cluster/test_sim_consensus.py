"""Closed-loop consensus rounds in the simulator (sealbridge.sim.consensus_run).

With free CPU and fixed links the round time is exactly the protocol's message delays;
messages per round are exact counts of the protocol; the same seed gives the same trace.
"""

from __future__ import annotations

import pytest

from sealbridge.core.errors import ConfigError
from sealbridge.sim import FixedCpu, MeasuredCpu
from sealbridge.sim.consensus_run import (
    ConsensusRunResult,
    compute_f,
    compute_message_delays,
    compute_paper_round_ms,
    compute_target_round_ms,
    run_consensus_rounds,
)

LINK = 0.010


def run_zero(n: int, threshold: str = "paper", **kwargs: object) -> ConsensusRunResult:
    return run_consensus_rounds(
        n, 1 / 3, rounds=3, threshold=threshold, cpu="zero", link_delay=LINK, **kwargs
    )  # type: ignore[arg-type]


# --- parameters ---------------------------------------------------------------------------


def test_f_from_the_ratio_is_capped_at_the_papers_maximum() -> None:
    assert compute_f(800, 1 / 3) == 265  # floor((800 - 3) / 3), not 266
    assert compute_f(800, 1 / 6) == 133
    assert compute_f(600, 1 / 6) == 100  # 600 / 6 is 99.99.. in floating point
    assert compute_f(600, 1 / 5) == 120
    assert compute_f(64, 1 / 3) == 20
    assert compute_f(7, 1 / 3) == 1 and compute_f(4, 1 / 3) == 0


def test_paper_points_and_targets() -> None:
    assert compute_paper_round_ms(800, 1 / 3) == (1340.0, "given")
    assert compute_paper_round_ms(800, 1 / 6) == (700.0, "given")
    assert compute_paper_round_ms(200, 1 / 4)[0] == 200.0
    value, source = compute_paper_round_ms(800, 1 / 4)
    assert value == pytest.approx(1020.0) and source.startswith("derived")
    assert compute_paper_round_ms(500, 1 / 3)[0] == pytest.approx(200 + 300 / 600 * 1140)
    assert compute_target_round_ms(1340.0) == pytest.approx(134.0)
    assert compute_target_round_ms(200.0) == pytest.approx(45.0)  # 1.5 x 3 x 10 ms
    assert compute_message_delays(True, 2) == 3 and compute_message_delays(False, 5) == 5
    assert compute_message_delays(True, 1) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 3, "f_ratio": 1 / 3, "rounds": 1},
        {"n": 7, "f_ratio": 0.0, "rounds": 1},
        {"n": 7, "f_ratio": 0.5, "rounds": 1},
        {"n": 7, "f_ratio": 1 / 3, "rounds": 0},
        {"n": 7, "f_ratio": 1 / 3, "rounds": 1, "faulty": 2},  # f = 1
        {"n": 7, "f_ratio": 1 / 3, "f": 1, "rounds": 1},  # both
        {"n": 7, "rounds": 1},  # neither
        {"n": 7, "f_ratio": 1 / 3, "rounds": 1, "threshold": "fast"},
        {"n": 7, "f_ratio": 1 / 3, "rounds": 1, "threshold": 1},  # below f + 1
        {"n": 7, "f_ratio": 1 / 3, "rounds": 1, "threshold": 3},  # int: single_phase needed
        {"n": 7, "f_ratio": 1 / 3, "rounds": 1, "cpu": "fast"},
        {"n": 7, "f_ratio": 1 / 3, "rounds": 1, "shared_verifier": True},  # measured CPU
        {"n": 7, "f_ratio": 1 / 3, "rounds": 1, "link_delay": -0.001},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        run_consensus_rounds(**kwargs)  # type: ignore[arg-type]


# --- exact virtual time and message counts ------------------------------------------------


@pytest.mark.parametrize("n", [7, 13, 16])
def test_paper_round_is_exactly_three_link_delays(n: int) -> None:
    result = run_zero(n, "paper")
    assert (result.mode, result.single_phase, result.threshold) == ("paper", True, result.f + 1)
    assert result.round_ms == [30.0, 30.0, 30.0]
    assert result.first_round_ms == result.mean_round_ms == result.p95_round_ms == 30.0
    assert result.floor_ms == 30.0 and result.crypto_overhead_ms == 0.0
    assert result.bound_by == "link delays"
    # The client's view adds the request's link delay; the collector commits one delay
    # before the others.
    assert result.client_round_ms == [40.0, 40.0, 40.0]
    assert result.mean_round_over_replicas_ms == pytest.approx((20.0 + 30.0 * (n - 1)) / n)
    assert "not safe across view changes" in result.caveat
    assert result.measured_rounds == 2 and result.rounds == 3


@pytest.mark.parametrize("n", [7, 13, 16])
def test_safe_round_is_exactly_five_link_delays(n: int) -> None:
    result = run_zero(n, "safe")
    assert (result.mode, result.single_phase, result.is_safe_threshold) == ("safe", False, True)
    assert result.threshold == (n + result.f + 2) // 2
    assert result.round_ms == [50.0, 50.0, 50.0]
    assert result.floor_ms == 50.0 and result.caveat == ""


def test_paper_round_at_n4_is_one_delay_with_threshold_one() -> None:
    """n = 4 has f = 0 at every ratio: the primary's own share is the certificate."""
    result = run_zero(4, "paper")
    assert (result.f, result.threshold) == (0, 1)
    assert result.round_ms == [10.0, 10.0, 10.0] and result.floor_ms == 10.0


@pytest.mark.parametrize("n", [4, 7, 13])
def test_messages_per_round_are_linear_in_n(n: int) -> None:
    """Paper: PrePrepare, shares, Commit to n - 1 each, plus the client's Request;
    safe: PrePrepare, 2 x shares, Prepare, Commit."""
    paper = run_zero(n, "paper")
    safe = run_zero(n, "safe")
    assert paper.messages_per_round == paper.messages_first_round == 3 * (n - 1) + 1
    assert safe.messages_per_round == safe.messages_first_round == 5 * (n - 1) + 1
    assert paper.bytes_per_round > 0


def test_message_counts_fit_a_line_exactly() -> None:
    counts = {n: run_zero(n, "paper").messages_per_round for n in (4, 7, 13)}
    assert counts == {4: 10, 7: 19, 13: 37}
    assert (counts[13] - counts[7]) / 6 == (counts[7] - counts[4]) / 3 == 3


# --- determinism, faults, measured CPU ----------------------------------------------------


@pytest.mark.parametrize("cpu", ["zero", FixedCpu(per_event=2e-4, per_message_sent=1e-6)])
def test_same_seed_same_trace(cpu: object) -> None:
    runs = [
        run_consensus_rounds(7, 1 / 3, rounds=3, cpu=cpu, seed=11)  # type: ignore[arg-type]
        for _ in range(2)
    ]
    assert runs[0].trace_digest == runs[1].trace_digest
    assert runs[0].round_ms == runs[1].round_ms
    if not isinstance(cpu, str):
        # Charged CPU moves the clock deterministically: above the floor, same every time.
        assert runs[0].mean_round_ms > runs[0].floor_ms


def test_a_crashed_replica_does_not_stop_the_rounds() -> None:
    paper = run_consensus_rounds(7, 1 / 3, rounds=3, cpu="zero", faulty=1)
    assert paper.faulty == 1 and paper.f == 1
    assert paper.round_ms == [30.0, 30.0, 30.0]
    assert paper.messages_per_round == 3 * 6 + 1 - 1  # the crashed replica sends no share
    safe = run_consensus_rounds(13, 1 / 3, rounds=2, cpu="zero", faulty=3, threshold="safe")
    assert safe.round_ms == [50.0, 50.0]
    assert safe.messages_per_round == 5 * 12 + 1 - 2 * 3


def test_measured_cpu_charges_real_crypto() -> None:
    done: list[tuple[int, int]] = []
    result = run_consensus_rounds(
        7, 1 / 3, rounds=3, cpu="measured", progress=lambda d, t: done.append((d, t))
    )
    assert done == [(1, 3), (2, 3), (3, 3)]
    assert result.cpu == "measured"
    assert result.mean_round_ms > result.floor_ms == 30.0
    assert result.crypto_overhead_ms > 0
    assert result.collector_cpu_ms_per_round > 0 and result.replica_cpu_ms_per_round > 0
    path = result.critical_path
    assert path.replica_sign_ms > 0 and path.collector_combine_ms > 0
    assert path.replica_commit_ms > 0 and path.link_ms == 30.0
    assert result.wall_s >= result.run_wall_s > 0
    explicit = run_consensus_rounds(7, 1 / 3, rounds=1, cpu=MeasuredCpu())
    assert explicit.cpu == "measured" and explicit.measured_rounds == 1
