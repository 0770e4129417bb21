"""Attacks on the network driver (node/driver.py): shutdown races, failures while calls
are pending, thread-identity reuse, retries after stop, timed-out calls, silent executor
errors, timer-heap growth, timer starvation and inline re-entrancy.

Tests whose docstring starts with "Fixed --" demonstrated a weakness (they failed on
the code as first written; each one's fix is in the same change); the others
are regression tests of what holds. Threads only; no processes."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from sealbridge.chain.errors import RpcError, TransactionReverted
from sealbridge.core.effects import (
    CancelTimer,
    ChainRead,
    Effect,
    Persist,
    ReadChain,
    Send,
    SetTimer,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.errors import ConfigError, SealbridgeError
from sealbridge.node.driver import DriverStopped, Executors, NetworkDriver


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


class Core:
    """A configurable host core: keeps what it is given, can be told to raise."""

    node_id = 0

    def __init__(self, start: list[Effect] | None = None) -> None:
        self.start = list(start or [])
        self.messages: list[Any] = []
        self.timers: list[str] = []

    def on_start(self, now: float) -> list[Effect]:
        return list(self.start)

    def on_timer(self, name: str, now: float) -> list[Effect]:
        self.timers.append(name)
        return []

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if message == "boom":
            raise RuntimeError("a core bug")
        self.messages.append(message)
        return []


def blocking_call(driver: NetworkDriver, gate: threading.Event) -> threading.Thread:
    """Occupy the loop thread with a call that waits for ``gate``."""
    entered = threading.Event()

    def fn() -> tuple[list[Effect], None]:
        entered.set()
        gate.wait(10)
        return [], None

    thread = threading.Thread(target=lambda: driver.call(fn, timeout=15), daemon=True)
    thread.start()
    assert entered.wait(5)
    return thread


# -- shutdown and failure ---------------------------------------------------------------


def test_stop_fails_pending_calls_with_a_typed_error() -> None:
    """Regression: calls queued behind a busy handler are failed by stop(), not hung."""
    driver = NetworkDriver(Core(), Executors(), name="t")
    driver.start()
    gate = threading.Event()
    blocker = blocking_call(driver, gate)
    outcome: list[BaseException | str] = []

    def pending() -> None:
        try:
            outcome.append(driver.call(lambda: ([], "ran"), timeout=10))
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)

    waiter = threading.Thread(target=pending, daemon=True)
    waiter.start()
    time.sleep(0.05)  # the call is queued behind the blocker
    stopper = threading.Thread(target=driver.stop, daemon=True)
    stopper.start()
    time.sleep(0.05)
    gate.set()
    stopper.join(5)
    waiter.join(5)
    blocker.join(5)
    assert len(outcome) == 1
    assert outcome[0] == "ran" or isinstance(outcome[0], DriverStopped)


def test_stop_from_the_loop_thread_does_not_deadlock() -> None:
    """Regression: a handler (here a call) that stops its own driver returns."""
    driver = NetworkDriver(Core(), Executors(), name="t")
    driver.start()
    assert driver.call(lambda: (driver.stop(), ([], "stopped itself"))[1], timeout=5) == (
        "stopped itself"
    )
    wait_for(lambda: driver.status.phase == "stopped", 5)


def test_a_call_from_inside_a_handler_runs_at_once() -> None:
    """Regression: call() on the loop thread (a handler that calls) does not deadlock."""
    driver = NetworkDriver(Core(), Executors(), name="t")
    driver.start()
    try:
        inner = lambda: ([], "inner")  # noqa: E731
        assert driver.call(lambda: ([], driver.call(inner, timeout=1)), timeout=5) == "inner"
    finally:
        driver.stop()


def test_calls_pending_when_the_core_fails_hang_until_their_timeout() -> None:
    """Fixed -- when a core handler raises, run() returns with phase ``failed`` but never
    fails the calls still in the inbox (only stop() drains it): a caller that got past the
    is_running check waits its whole timeout and then gets an untyped TimeoutError."""
    driver = NetworkDriver(Core(), Executors(), name="t")
    driver.start()
    gate = threading.Event()
    blocker = blocking_call(driver, gate)
    driver.deliver(1, "boom")  # queued behind the blocker: the core will fail on it
    outcome: list[BaseException | str] = []

    def pending() -> None:
        try:
            outcome.append(driver.call(lambda: ([], "ran"), timeout=3))
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    waiter = threading.Thread(target=pending, daemon=True)
    waiter.start()
    time.sleep(0.05)  # the call is queued behind "boom"
    begun = time.monotonic()
    gate.set()
    waiter.join(10)
    blocker.join(5)
    elapsed = time.monotonic() - begun
    try:
        assert driver.status.phase == "failed"
        assert len(outcome) == 1
        assert isinstance(outcome[0], DriverStopped), repr(outcome[0])
        assert elapsed < 1.5, f"the caller waited {elapsed:.1f} s for a dead loop"
    finally:
        driver.stop()


def test_a_stopped_driver_that_never_started_still_runs_calls() -> None:
    """Fixed -- call() before the loop started runs fn on the caller's thread -- even
    after stop(). A StorageHost that was stopped before its loop ran still stores blobs
    (Persist carried out) instead of answering DriverStopped."""
    written: dict[str, bytes] = {}
    driver = NetworkDriver(Core(), Executors(persist=written.__setitem__), name="t")
    driver.stop()
    with pytest.raises(DriverStopped):
        driver.call(lambda: ([Persist("blob/x", b"late")], "stored"))
    assert written == {}


def test_calls_after_stop_are_refused_from_any_thread() -> None:
    """Once stopped, a call from any thread (thread ids are recycled: a new request
    thread may get the dead loop's id) is refused, and none of its effects happen."""
    written: dict[str, bytes] = {}
    driver = NetworkDriver(Core(), Executors(persist=written.__setitem__), name="t")
    driver.start()
    wait_for(lambda: driver.is_running)
    driver.stop()
    assert driver.status.phase == "stopped"
    results: list[object] = []

    def probe() -> None:
        try:
            results.append(driver.call(lambda: ([Persist("k", b"after stop")], "ran"), 1))
        except DriverStopped as exc:
            results.append(exc)

    for _ in range(50):
        thread = threading.Thread(target=probe)
        thread.start()
        thread.join()
    assert len(results) == 50 and all(isinstance(r, DriverStopped) for r in results)
    assert written == {}


# -- the retry policy -------------------------------------------------------------------


def test_non_transient_errors_and_reverts_are_not_retried() -> None:
    """Regression: a ConfigError and a revert are answered after one attempt."""
    attempts = {"read": 0, "tx": 0}

    def read(query: Any) -> Any:
        attempts["read"] += 1
        raise ConfigError("another chain")

    def submit(tx: Any) -> int:
        attempts["tx"] += 1
        raise TransactionReverted("no")

    core = Core([ReadChain("r", "q"), SubmitTx("t", "tx")])
    driver = NetworkDriver(core, Executors(read_chain=read, submit_tx=submit), name="t")
    driver.start()
    try:
        wait_for(lambda: len(core.messages) == 2)
    finally:
        driver.stop()
    assert attempts == {"read": 1, "tx": 1}
    (read_answer,) = [m for m in core.messages if isinstance(m, ChainRead)]
    assert read_answer.error and read_answer.passing is False
    assert TxOutcome("t", "reverted", reason="no") in core.messages


def test_a_transient_failure_gives_up_after_the_policy_s_time() -> None:
    """Regression: RpcError is retried, then answered as a passing failure."""
    attempts: list[float] = []

    def read(query: Any) -> Any:
        attempts.append(time.monotonic())
        raise RpcError("down")

    core = Core([ReadChain("r", "q")])
    driver = NetworkDriver(core, Executors(read_chain=read, retry_seconds=0.5), name="t")
    driver.start()
    try:
        wait_for(lambda: core.messages, 10)
    finally:
        driver.stop()
    (answer,) = core.messages
    assert answer.error and answer.passing is True
    assert 2 <= len(attempts) <= 10
    assert attempts[-1] - attempts[0] < 3.0


def test_an_executor_bug_reaches_the_core_as_a_failure() -> None:
    """Regression: a non-typed exception of an executor becomes a failed answer."""

    def submit(tx: Any) -> int:
        raise KeyError("executor bug")

    core = Core([SubmitTx("t", "tx")])
    driver = NetworkDriver(core, Executors(submit_tx=submit), name="t")
    driver.start()
    try:
        wait_for(lambda: core.messages)
        assert driver.is_running
    finally:
        driver.stop()
    (outcome,) = core.messages
    assert outcome.status == "failed" and "KeyError" in outcome.reason


def test_retries_go_on_after_stop() -> None:
    """Fixed -- stop() says queued work is cancelled, but an effect already retrying keeps
    hammering the RPC on its I/O thread (tenacity only stops after ``retry_seconds``):
    the policy never looks at the stop flag, and the non-daemon pool thread outlives
    the driver."""
    attempts: list[float] = []

    def read(query: Any) -> Any:
        attempts.append(time.monotonic())
        raise RpcError("down")

    core = Core([ReadChain("r", "q")])
    driver = NetworkDriver(core, Executors(read_chain=read, retry_seconds=2.5), name="t")
    driver.start()
    wait_for(lambda: len(attempts) >= 2)
    driver.stop()
    stopped = time.monotonic()
    time.sleep(1.2)
    late = [t for t in attempts if t > stopped + 0.05]
    wait_for(lambda: time.monotonic() - attempts[-1] > 2.1, 5)  # let the leak end
    assert late == [], f"{len(late)} RPC attempts after stop()"


def test_answers_are_not_delivered_after_stop() -> None:
    """Regression: an answer that comes back after stop() reaches no core."""
    release = threading.Event()

    def read(query: Any) -> Any:
        release.wait(5)
        return 1

    core = Core([ReadChain("r", "q")])
    driver = NetworkDriver(core, Executors(read_chain=read), name="t")
    driver.start()
    time.sleep(0.05)
    driver.stop()
    release.set()
    time.sleep(0.1)
    assert core.messages == []


# -- calls that time out ------------------------------------------------------------------


def test_a_timed_out_call_is_an_untyped_error() -> None:
    """Fixed -- call() lets concurrent.futures' TimeoutError escape; an HTTP handler that
    maps SealbridgeError to typed answers turns it into a 500."""
    driver = NetworkDriver(Core(), Executors(), name="t")
    driver.start()
    gate = threading.Event()
    blocker = blocking_call(driver, gate)
    try:
        with pytest.raises(SealbridgeError):
            driver.call(lambda: ([], "late"), timeout=0.1)
    finally:
        gate.set()
        blocker.join(5)
        driver.stop()


def test_a_timed_out_call_still_runs_later() -> None:
    """Fixed -- the _Call stays in the inbox after its caller gave up, and runs when the
    loop gets to it: the caller was told it failed, yet its effects (a blob written, a
    counter moved) happen. It should be cancelled (Future.cancel /
    set_running_or_notify_cancel)."""
    written: dict[str, bytes] = {}
    driver = NetworkDriver(Core(), Executors(persist=written.__setitem__), name="t")
    driver.start()
    gate = threading.Event()
    blocker = blocking_call(driver, gate)
    try:
        with pytest.raises(Exception):  # noqa: B017,PT011 - any error: the caller gave up
            driver.call(lambda: ([Persist("blob/x", b"late")], "late"), timeout=0.1)
        gate.set()
        blocker.join(5)
        driver.call(lambda: ([], None), timeout=5)  # the loop has passed the old call
    finally:
        gate.set()
        driver.stop()
    assert written == {}, "a call its caller saw fail was carried out afterwards"


# -- silent errors ------------------------------------------------------------------------


def test_a_send_executor_bug_vanishes_silently(caplog: pytest.LogCaptureFixture) -> None:
    """Fixed -- _run_send catches SealbridgeError only; any other exception of the send
    executor is stored in a pool Future nobody reads -- no log, no answer, no status."""
    calls: list[int] = []

    def send(to: tuple[int, ...], message: Any) -> None:
        calls.append(1)
        raise ValueError("send executor bug")

    core = Core([Send((1,), "hello")])
    driver = NetworkDriver(core, Executors(send=send), name="t")
    with caplog.at_level(logging.DEBUG, logger="sealbridge.node.driver"):
        driver.start()
        try:
            wait_for(lambda: calls)
            time.sleep(0.1)
        finally:
            driver.stop()
    assert any("ValueError" in r.getMessage() or r.exc_info for r in caplog.records), (
        "the send executor's ValueError left no trace"
    )


# -- timers -------------------------------------------------------------------------------


def test_timers_fire_in_deadline_order_and_replacements_win() -> None:
    """Regression: three timers fire earliest first; a replaced one fires once, late."""
    core = Core(
        [
            SetTimer("c", 0.15),
            SetTimer("a", 0.05),
            SetTimer("b", 0.10),
            SetTimer("a", 0.20),  # replaces the first "a"
            SetTimer("x", 0.01),
            CancelTimer("x"),
        ]
    )
    driver = NetworkDriver(core, Executors(), name="t")
    driver.start()
    try:
        wait_for(lambda: len(core.timers) >= 3)
        time.sleep(0.1)
    finally:
        driver.stop()
    assert core.timers == ["b", "c", "a"]


class Resetter(Core):
    """Keeps one live early timer, and re-sets a later one on every message (as a core
    re-arms an idle or view-change timeout per input)."""

    def on_start(self, now: float) -> list[Effect]:
        return [SetTimer("early", 3600.0)]

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        self.messages.append(message)
        return [SetTimer("late", 7200.0)]


def test_re_set_timers_grow_the_heap_without_bound() -> None:
    """Fixed -- SetTimer pushes a heap entry and only marks the old one stale; stale
    entries are dropped only when they reach the top. Behind a live earlier timer they
    never do, so every input that re-arms a timer leaks one entry (the simulator compacts
    its heap, sim/engine.py _compact; the driver does not)."""
    core = Resetter()
    driver = NetworkDriver(core, Executors(), name="t")
    driver.start()
    try:
        for i in range(5000):
            driver.deliver(1, i)
        wait_for(lambda: len(core.messages) == 5000)
        heap = driver.call(lambda: ([], len(driver._timers)), timeout=5)
    finally:
        driver.stop()
    assert heap <= 64, f"{heap} heap entries for 2 live timers"


class Spinner(Core):
    """Re-arms a zero-delay timer ``limit`` times (a core whose handler takes longer than
    its timer's delay looks the same to the driver)."""

    def __init__(self, limit: int) -> None:
        super().__init__([SetTimer("spin", 0.0)])
        self.limit = limit
        self.stop_spinning = threading.Event()

    def on_timer(self, name: str, now: float) -> list[Effect]:
        self.timers.append(name)
        if len(self.timers) >= self.limit or self.stop_spinning.is_set():
            return []
        return [SetTimer("spin", 0.0)]


def test_step_ignores_max_rounds_for_due_timers() -> None:
    """Fixed -- step() promises at most ``max_rounds`` rounds, but its inner loop fires
    due timers until none is due: a timer that is always due again keeps the host's
    follow loop inside step() (here bounded only by the core giving up)."""
    core = Spinner(limit=3000)
    driver = NetworkDriver(core, Executors(), name="t", inline=True)
    driver.step(max_rounds=8)
    assert len(core.timers) <= 8 * 4, f"{len(core.timers)} timers fired in one step(8)"


def test_an_always_due_timer_starves_calls() -> None:
    """Fixed -- _next_input fires a due timer before it looks at the inbox, every time:
    while a timer is always due, no call or answer is ever handled (calls time out)."""
    core = Spinner(limit=10**9)
    driver = NetworkDriver(core, Executors(), name="t")
    driver.start()
    try:
        wait_for(lambda: len(core.timers) > 10)
        answer = driver.call(lambda: ([], "served"), timeout=1.0)
    except Exception as exc:  # noqa: BLE001
        answer = repr(exc)
    finally:
        core.stop_spinning.set()
        driver.stop()
    assert answer == "served"


# -- inline mode ---------------------------------------------------------------------------


def test_inline_call_runs_concurrently_with_step() -> None:
    """Fixed -- an inline driver never sets ``_loop_ident``, so call() from another
    thread runs fn at once (under ``_before_start``, which step() does not take) while
    step() is inside a handler on the host's thread: two threads in one core, which the
    driver promises never happens."""
    inside = threading.Event()
    release = threading.Event()
    overlap: list[bool] = []

    class Slow(Core):
        busy = False

        def on_timer(self, name: str, now: float) -> list[Effect]:
            self.busy = True
            inside.set()
            release.wait(5)
            self.busy = False
            return []

    core = Slow([SetTimer("t", 0.0)])
    driver = NetworkDriver(core, Executors(), name="t", inline=True)
    stepper = threading.Thread(target=driver.step, daemon=True)
    stepper.start()
    assert inside.wait(5)
    caller_done = threading.Event()

    def caller() -> None:
        try:
            driver.call(lambda: (overlap.append(core.busy), ([], None))[1], timeout=2)
        except Exception:  # noqa: BLE001 - refusing is fine; running concurrently is not
            pass
        caller_done.set()

    threading.Thread(target=caller, daemon=True).start()
    caller_done.wait(0.5)
    release.set()
    stepper.join(5)
    caller_done.wait(5)
    assert True not in overlap, "call() ran inside the core while step() was in a handler"
