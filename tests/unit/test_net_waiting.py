"""``net.waiting.wait_until``: the one "wait until a condition holds" helper.

Timings here are loose on purpose (small timeouts, bounds of "timeout + 1 s"): speed is
measured in ``bench/``, never asserted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from sealbridge.core.errors import ConfigError, LocalProtocolError
from sealbridge.net.waiting import WaitTimeout, wait_until


class NotYet(Exception):
    """A passing failure: the thing waited for is not there yet."""


class Broken(Exception):
    """Any other failure: raised at once."""


def answers(*values: object) -> Callable[[], object]:
    """A check that returns ``values`` in turn (then the last one forever)."""
    it: Iterator[object] = iter(values)
    last: list[object] = [None]

    def check() -> object:
        last[0] = next(it, last[0])
        return last[0]

    return check


def test_returns_the_first_truthy_value() -> None:
    check = answers(None, 0, False, "", [], {"phase": "following"}, "later")
    assert wait_until(check, timeout=5, what="a status", interval=0.01) == {"phase": "following"}


def test_a_truthy_first_answer_returns_without_sleeping() -> None:
    started = time.monotonic()
    assert wait_until(lambda: 42, timeout=5, what="the answer", interval=10) == 42
    assert time.monotonic() - started < 1


def test_passing_exceptions_count_as_not_yet() -> None:
    calls: list[int] = []

    def check() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise NotYet("not listening yet")
        return "up"

    assert wait_until(check, timeout=5, what="a node", interval=0.01, passing=(NotYet,)) == "up"
    assert len(calls) == 3


def test_a_predicate_chooses_the_passing_exceptions() -> None:
    calls: list[str] = []

    def check() -> str:
        calls.append("x")
        if len(calls) == 1:
            raise NotYet("not_witnessed")
        raise NotYet("forbidden")

    def is_not_witnessed(exc: BaseException) -> bool:
        return str(exc) == "not_witnessed"

    with pytest.raises(NotYet, match="forbidden"):
        wait_until(check, timeout=5, what="an answer", interval=0.01, passing=is_not_witnessed)
    assert len(calls) == 2


def test_other_exceptions_are_raised_at_once() -> None:
    calls: list[int] = []

    def check() -> bool:
        calls.append(1)
        raise Broken("the process exited")

    started = time.monotonic()
    with pytest.raises(Broken, match="the process exited"):
        wait_until(check, timeout=5, what="a node", interval=0.01, passing=(NotYet,))
    assert calls == [1]
    assert time.monotonic() - started < 1


def test_timeout_names_what_and_chains_the_last_passing_exception() -> None:
    rounds: list[int] = []

    def check() -> None:
        rounds.append(1)
        raise NotYet(f"round {len(rounds)}")

    with pytest.raises(WaitTimeout, match=r"after 0\.2s waiting for anvil at http://x") as info:
        wait_until(check, timeout=0.2, what="anvil at http://x", interval=0.05, passing=(NotYet,))
    error = info.value
    assert isinstance(error, LocalProtocolError)
    assert error.code == "wait_timeout"
    assert error.what == "anvil at http://x"
    assert error.timeout == 0.2
    assert isinstance(error.__cause__, NotYet)
    assert error.last is error.__cause__
    assert str(error.__cause__) == f"round {len(rounds)}"  # the last one, not the first
    assert f"round {len(rounds)}" in error.message


def test_timeout_after_falsy_answers_chains_nothing() -> None:
    with pytest.raises(WaitTimeout, match="waiting for the era") as info:
        wait_until(lambda: None, timeout=0.2, what="the era", interval=0.05)
    assert info.value.last is None
    assert info.value.__cause__ is None


def test_reraise_gives_back_the_last_passing_exception() -> None:
    rounds: list[int] = []

    def check() -> None:
        rounds.append(1)
        raise NotYet(f"round {len(rounds)}")

    with pytest.raises(NotYet) as info:
        wait_until(check, timeout=0.2, what="x", interval=0.05, passing=(NotYet,), reraise=True)
    assert str(info.value) == f"round {len(rounds)}"
    # when the last round answered "not yet" without raising, there is nothing to re-raise
    with pytest.raises(WaitTimeout):
        wait_until(lambda: False, timeout=0.1, what="x", interval=0.05, reraise=True)


@pytest.mark.parametrize("interval", [0.05, 0.15, 5.0])
def test_the_total_wait_is_bounded(interval: float) -> None:
    """Never much past the deadline, even with an interval longer than the timeout."""
    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        wait_until(lambda: None, timeout=0.2, what="nothing", interval=interval)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 0.2 + 1


def test_a_zero_timeout_checks_once() -> None:
    calls: list[int] = []

    def check() -> bool:
        calls.append(1)
        return False

    with pytest.raises(WaitTimeout):
        wait_until(check, timeout=0, what="x")
    assert calls == [1]


def test_the_interval_is_respected() -> None:
    """No busy spinning: 0.25 s at 0.1 s is a round at 0, 0.1, 0.2 and (cut) 0.25."""
    calls: list[float] = []

    def check() -> None:
        calls.append(time.monotonic())

    with pytest.raises(WaitTimeout):
        wait_until(check, timeout=0.25, what="x", interval=0.1)
    assert 2 <= len(calls) <= 5
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert all(gap >= 0.09 for gap in gaps[:-1])  # only the last may be cut at the deadline


@pytest.mark.parametrize("interval", [0.0, -1.0])
def test_a_non_positive_interval_is_refused(interval: float) -> None:
    with pytest.raises(ConfigError, match="interval"):
        wait_until(lambda: True, timeout=1, what="x", interval=interval)
