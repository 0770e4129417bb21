"""The network driver (node/driver.py) with a small host core and executors of the
test's making: timers, answers by tag, one retry policy, calls from other threads,
refused inputs, and one shutdown path. Threads only; no processes."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from sealbridge.chain.errors import RpcError, TransactionReverted
from sealbridge.core.effects import (
    CallEnclave,
    ChainRead,
    CheckpointStored,
    Effect,
    EnclaveAnswer,
    Persist,
    ReadChain,
    Report,
    SetTimer,
    StoreCheckpoint,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.errors import RemoteProtocolError
from sealbridge.node.driver import DriverConfigError, DriverStopped, Executors, NetworkDriver
from sealbridge.storage.errors import StorageUnavailable
from sealbridge.tee.errors import EnclaveCallError


class Recorder:
    """Asks for a read and a transaction at start, ticks three times, keeps answers."""

    node_id = 0

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.ticks = 0
        self.done = threading.Event()
        self.thread_ids: set[int] = set()

    def on_start(self, now: float) -> list[Effect]:
        self.thread_ids.add(threading.get_ident())
        return [ReadChain("r", "height"), SubmitTx("t", "tx-1"), SetTimer("tick", 0.01)]

    def on_timer(self, name: str, now: float) -> list[Effect]:
        self.thread_ids.add(threading.get_ident())
        self.ticks += 1
        if self.ticks < 3:
            return [SetTimer("tick", 0.01)]
        return [Report("ticked", self.ticks)]

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        self.thread_ids.add(threading.get_ident())
        if message == "bad":
            raise RemoteProtocolError("refused input")
        self.answers.append(message)
        if len(self.answers) >= 2:
            self.done.set()
        return []


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


def test_effects_are_carried_out_and_answered_by_tag() -> None:
    core = Recorder()
    flaky = iter([RpcError("down"), RpcError("down")])

    def read(query: Any) -> Any:
        error = next(flaky, None)
        if error is not None:
            raise error  # a passing failure: retried by the one policy
        return 42

    driver = NetworkDriver(core, Executors(read_chain=read, submit_tx=lambda tx: 7), name="t")
    driver.start()
    try:
        assert core.done.wait(10)
        wait_for(lambda: "ticked" in driver.status.reports)
        assert ChainRead("r", 42) in core.answers
        assert TxOutcome("t", "mined", block_number=7) in core.answers
        assert core.ticks == 3
        assert len(core.thread_ids) == 1  # every handler on the loop thread
    finally:
        driver.stop()
    assert driver.status.phase == "stopped"


def test_reverts_and_lasting_failures_are_answers_not_crashes() -> None:
    core = Recorder()

    def revert(tx: Any) -> int:
        raise TransactionReverted("stake too low")

    def unreachable(query: Any) -> Any:
        raise RpcError("connection refused")

    driver = NetworkDriver(
        core, Executors(read_chain=unreachable, submit_tx=revert, retry_seconds=0.2), name="t"
    )
    driver.start()
    try:
        assert core.done.wait(10)
        assert TxOutcome("t", "reverted", reason="stake too low") in core.answers
        (read,) = [a for a in core.answers if isinstance(a, ChainRead)]
        assert read.value is None and "connection refused" in read.error
        driver.deliver(1, "bad")  # a refused input changes nothing and stops nothing
        driver.deliver(1, "after")
        wait_for(lambda: "after" in core.answers)
        assert driver.is_running
    finally:
        driver.stop()


def test_calls_run_on_the_loop_and_persist_before_the_answer() -> None:
    core = Recorder()
    written: dict[str, bytes] = {}
    driver = NetworkDriver(
        core,
        Executors(read_chain=lambda q: 1, submit_tx=lambda t: 1, persist=written.__setitem__),
    )
    # before the loop starts, a call runs on the caller's thread
    assert driver.call(lambda: ([Persist("k0", b"v0")], "early")) == "early"
    assert written == {"k0": b"v0"}
    driver.start()
    try:

        def work() -> tuple[list[Effect], str]:
            core.thread_ids.add(threading.get_ident())
            return [Persist("k1", b"v1")], "answer"

        assert driver.call(work) == "answer"
        assert written["k1"] == b"v1"
        assert len(core.thread_ids) == 1
        with pytest.raises(ZeroDivisionError):
            driver.call(lambda: (_ for _ in ()).throw(ZeroDivisionError()))
        assert driver.is_running
    finally:
        driver.stop()
    with pytest.raises(DriverStopped):
        driver.call(lambda: ([], None))


def test_a_core_bug_fails_the_driver_and_keeps_the_reason() -> None:
    class Broken(Recorder):
        def on_timer(self, name: str, now: float) -> list[Effect]:
            raise KeyError("bug")

    driver = NetworkDriver(Broken(), Executors(read_chain=lambda q: 1, submit_tx=lambda t: 1))
    driver.start()
    try:
        wait_for(lambda: driver.status.phase == "failed")
        assert "KeyError" in driver.status.error
    finally:
        driver.stop()


def test_an_inline_driver_works_on_the_calling_thread() -> None:
    core = Recorder()
    calls: list[int] = []

    def read(query: Any) -> Any:
        calls.append(threading.get_ident())
        return 5

    driver = NetworkDriver(core, Executors(read_chain=read, submit_tx=lambda t: 3), inline=True)
    driver.step()  # starts the core; its read and transaction are answered at once
    assert ChainRead("r", 5) in core.answers
    assert TxOutcome("t", "mined", block_number=3) in core.answers
    assert calls == [threading.get_ident()]
    assert core.ticks == 0  # the timer is not due yet
    time.sleep(0.02)
    driver.step()
    assert core.ticks >= 1
    assert core.thread_ids == {threading.get_ident()}
    with pytest.raises(DriverConfigError):  # step() is for an inline driver
        NetworkDriver(core, Executors()).step()


class OneEffect:
    """Asks for the effects it is given at start and keeps the answers."""

    node_id = 0

    def __init__(self, *effects: Effect) -> None:
        self.effects = list(effects)
        self.answers: list[Any] = []

    def on_start(self, now: float) -> list[Effect]:
        return self.effects

    def on_timer(self, name: str, now: float) -> list[Effect]:
        return []

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        self.answers.append(message)
        return []


def test_checkpoints_are_stored_by_the_roles_executor_and_failures_are_answers() -> None:
    asked: list[tuple[bytes, int]] = []

    def store(blob: bytes, threshold: int) -> list[tuple[bytes, bytes]]:
        asked.append((blob, threshold))
        if blob == b"unlucky":
            raise StorageUnavailable("1 of 3 confirmed; 2 needed", confirmed=1, needed=2)
        if blob == b"buggy":
            raise KeyError("an executor bug")
        return [(b"\x01" * 32, b"a" * 65), (b"\x02" * 32, b"b" * 65)]

    core = OneEffect(
        StoreCheckpoint("s1", b"blob", 2),
        StoreCheckpoint("s2", b"unlucky", 2),
        StoreCheckpoint("s3", b"buggy", 2),
    )
    NetworkDriver(core, Executors(store_checkpoint=store), inline=True).step()
    assert asked == [(b"blob", 2), (b"unlucky", 2), (b"buggy", 2)]
    ok, unlucky, buggy = core.answers
    assert ok == CheckpointStored("s1", (b"\x01" * 32, b"\x02" * 32), (b"a" * 65, b"b" * 65))
    assert unlucky.tag == "s2" and "2 needed" in unlucky.error and unlucky.node_ids == ()
    assert buggy.tag == "s3" and "KeyError" in buggy.error
    # a role with no storage executor answers so, rather than dropping the effect
    none = OneEffect(StoreCheckpoint("s4", b"blob", 1))
    NetworkDriver(none, Executors(), inline=True).step()
    assert none.answers == [CheckpointStored("s4", error="this node stores no checkpoints")]


def test_an_enclave_refusal_answers_with_its_own_code() -> None:
    def refuse(ecall: Any, request: Any) -> Any:
        raise EnclaveCallError(
            "nothing to sign", kind="OutputsRefused", remote_code="outputs_refused"
        )

    core = OneEffect(CallEnclave("e", "sign_outputs", None))
    NetworkDriver(core, Executors(call_enclave=refuse), inline=True).step()
    assert core.answers == [EnclaveAnswer("e", error="outputs_refused: nothing to sign")]
