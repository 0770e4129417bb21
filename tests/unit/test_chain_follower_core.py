"""FollowerCore: confirmations, ordering, exactly-once delivery, reorg detection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealbridge.chain.errors import ChainConfigError, ReorgDetected
from sealbridge.evm.follower import FollowerCore


def h(n: int, fork: int = 0) -> bytes:
    return bytes([fork]) + n.to_bytes(31, "big")


def header(n: int, fork: int = 0, parent_fork: int | None = None) -> tuple[int, bytes, bytes]:
    pf = fork if parent_fork is None else parent_fork
    return (n, h(n, fork), h(n - 1, pf) if n > 0 else b"\x00" * 32)


def deliver(core: FollowerCore, tip: int, fork: int = 0) -> list[int]:
    numbers = core.on_tip(tip)
    core.process_blocks([header(n, fork) for n in numbers])
    return numbers


def test_confirmations_hold_back_recent_blocks() -> None:
    core = FollowerCore(0, 3)
    assert core.on_tip(2) == []
    assert core.on_tip(3) == [0]
    assert deliver(core, 5) == [0, 1, 2]
    assert core.on_tip(5) == []
    assert deliver(core, 6) == [3]
    assert core.delivered_height == 3


def test_zero_confirmations_delivers_tip() -> None:
    core = FollowerCore(10, 0)
    assert deliver(core, 12) == [10, 11, 12]
    assert core.next_block == 13


def test_on_tip_is_idempotent_until_processed() -> None:
    core = FollowerCore(0, 1)
    assert core.on_tip(4) == [0, 1, 2, 3]
    assert core.on_tip(4) == [0, 1, 2, 3]
    core.process_blocks([header(0), header(1)])
    assert core.on_tip(4) == [2, 3]


def test_tip_going_backwards_delivers_nothing() -> None:
    core = FollowerCore(0, 0)
    deliver(core, 9)
    assert core.on_tip(5) == []


def test_max_batch_limits_delivery() -> None:
    core = FollowerCore(0, 0, max_batch=4)
    assert deliver(core, 100) == [0, 1, 2, 3]
    assert deliver(core, 100) == [4, 5, 6, 7]


def test_out_of_order_or_duplicate_is_refused_without_state_change() -> None:
    core = FollowerCore(0, 0)
    deliver(core, 2)
    with pytest.raises(ChainConfigError):
        core.process_blocks([header(2)])  # duplicate
    with pytest.raises(ChainConfigError):
        core.process_blocks([header(4)])  # gap
    with pytest.raises(ChainConfigError):
        core.process_blocks([header(3), header(5)])  # gap inside a batch
    assert core.next_block == 3


def test_parent_mismatch_is_a_reorg_and_changes_nothing() -> None:
    core = FollowerCore(0, 0)
    deliver(core, 4)
    with pytest.raises(ReorgDetected) as info:
        core.process_blocks([header(5, fork=1)])
    assert info.value.block_number == 4
    assert core.next_block == 5
    assert core.get_delivered_hash(4) == h(4)


def test_parent_mismatch_inside_a_batch_is_detected() -> None:
    core = FollowerCore(0, 0)
    bad = [header(0), header(1), (2, h(2), h(1, fork=9))]
    with pytest.raises(ReorgDetected):
        core.process_blocks(bad)
    assert core.next_block == 0


def test_check_block_detects_contradiction() -> None:
    core = FollowerCore(0, 0)
    deliver(core, 3)
    core.check_block(2, h(2))
    core.check_block(50, h(50, 7))  # unknown: nothing to contradict
    with pytest.raises(ReorgDetected):
        core.check_block(2, h(2, fork=1))


def test_skip_empty_mode_advances_past_gaps() -> None:
    core = FollowerCore(0, 0)
    core.process_blocks([header(3), header(4), header(8), header(10)], through=10)
    assert core.next_block == 11
    with pytest.raises(ReorgDetected):
        core.process_blocks([header(11, fork=2, parent_fork=5)], through=12)
    with pytest.raises(ReorgDetected):  # 4 -> 5 is contiguous inside a batch, so checked
        FollowerCore(0, 0).process_blocks([header(4), header(5, 1, parent_fork=2)], through=6)
    core.process_blocks([header(13, fork=3)], through=14)  # 12 unknown: nothing to link
    with pytest.raises(ChainConfigError):
        core.process_blocks([header(20)], through=15)


def test_history_is_bounded() -> None:
    core = FollowerCore(0, 0, history=5)
    deliver(core, 20)
    assert core.get_delivered_hash(20) == h(20)
    assert core.get_delivered_hash(10) is None


def test_invalid_parameters() -> None:
    with pytest.raises(ChainConfigError):
        FollowerCore(-1, 0)
    with pytest.raises(ChainConfigError):
        FollowerCore(0, -1)
    with pytest.raises(ChainConfigError):
        FollowerCore(0, 0).on_tip(-1)


@given(
    start=st.integers(0, 50),
    confirmations=st.integers(0, 6),
    tips=st.lists(st.integers(0, 200), min_size=1, max_size=30),
)
def test_every_final_block_delivered_exactly_once_in_order(
    start: int, confirmations: int, tips: list[int]
) -> None:
    core = FollowerCore(start, confirmations, max_batch=37)
    delivered: list[int] = []
    highest = 0
    for tip in tips:
        highest = max(highest, tip)
        while True:
            got = deliver(core, tip)
            if not got:
                break
            assert all(tip - n >= confirmations for n in got)
            delivered.extend(got)
    assert delivered == list(range(start, start + len(delivered)))
    expected_last = max(core.compute_final_height(t) for t in tips)
    if expected_last >= start:
        assert delivered[-1] == expected_last
    else:
        assert delivered == []
