"""The deterministic discrete-event simulator (sealbridge.sim) with small toy cores."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from sealbridge.core.effects import (
    CancelTimer,
    ChainRead,
    Effect,
    ReadChain,
    Report,
    Send,
    SetTimer,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.encoding import Message, encode
from sealbridge.core.errors import ConfigError, LocalProtocolError
from sealbridge.sim import (
    EXTERNAL,
    DuplicateNodeError,
    Fixed,
    FixedCpu,
    Jitter,
    MeasuredCpu,
    ReportRecord,
    SimulationError,
    Simulator,
    Uniform,
    UnknownNodeError,
    ZeroCpu,
)


class Ping(Message, frozen=True):
    seq: int = 0


class Pong(Message, frozen=True):
    seq: int = 0


class Work(Message, frozen=True):
    job: int


class Done(Message, frozen=True):
    job: int


class Toy:
    """Logs every call; subclasses script the effects."""

    def __init__(self, node_id: int) -> None:
        self._node_id = node_id
        self.log: list[tuple[Any, ...]] = []

    @property
    def node_id(self) -> int:
        return self._node_id

    def on_start(self, now: float) -> list[Effect]:
        self.log.append(("start", now))
        return []

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        self.log.append(("message", sender, message, now))
        return []

    def on_timer(self, name: str, now: float) -> list[Effect]:
        self.log.append(("timer", name, now))
        return []

    def get_times(self, kind: str) -> list[float]:
        return [entry[-1] for entry in self.log if entry[0] == kind]


class Pinger(Toy):
    def __init__(self, node_id: int, peer: int) -> None:
        super().__init__(node_id)
        self.peer = peer

    def on_start(self, now: float) -> list[Effect]:
        super().on_start(now)
        return [Send((self.peer,), Ping(seq=1))]

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        super().on_message(sender, message, now)
        return [Report("pong", now)]


class Ponger(Toy):
    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        super().on_message(sender, message, now)
        return [Send((sender,), Pong(seq=message.seq))]


class Ticker(Toy):
    """Sends Ping(k) to ``to`` every ``period`` seconds, starting at ``period``."""

    def __init__(self, node_id: int, to: tuple[int, ...], period: float = 1.0) -> None:
        super().__init__(node_id)
        self.to = to
        self.period = period
        self.count = 0

    def on_start(self, now: float) -> list[Effect]:
        super().on_start(now)
        return [SetTimer("tick", self.period)]

    def on_timer(self, name: str, now: float) -> list[Effect]:
        super().on_timer(name, now)
        self.count += 1
        return [Send(self.to, Ping(seq=self.count)), SetTimer("tick", self.period)]


def received(node: Toy) -> list[tuple[int, Any, float]]:
    return [(e[1], e[2], e[3]) for e in node.log if e[0] == "message"]


# ---------------------------------------------------------------------------- time


def test_ping_pong_latency_is_the_sum_of_the_link_delays() -> None:
    pinger, ponger = Pinger(0, peer=1), Ponger(1)
    sim = Simulator(
        [pinger, ponger],
        seed=1,
        cpu=ZeroCpu(),
        links={(0, 1): Fixed(0.003), (1, 0): Fixed(0.007)},
    )
    sim.run()
    assert ponger.get_times("message") == [0.003]
    assert sim.reports == [ReportRecord(0.003 + 0.007, 0, "pong", 0.003 + 0.007)]
    assert sim.now == 0.003 + 0.007


def test_default_link_delay_is_fixed_ten_milliseconds() -> None:
    pinger = Pinger(0, peer=1)
    sim = Simulator([pinger, Ponger(1)], seed=1, cpu=ZeroCpu())
    sim.run()
    assert pinger.get_times("message") == [0.010 + 0.010]


class Hub(Toy):
    """Sends three jobs to node 1 and one to node 2 at start."""

    def on_start(self, now: float) -> list[Effect]:
        super().on_start(now)
        effects: list[Effect] = [Send((1,), Work(job=j)) for j in range(3)]
        return [*effects, Send((2,), Work(job=3))]


class Worker(Toy):
    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        super().on_message(sender, message, now)
        if isinstance(message, Work):
            return [Send((sender,), Done(job=message.job))]
        return []


def test_fixed_cpu_serialises_a_node_and_overlaps_nodes() -> None:
    hub, w1, w2 = Hub(0), Worker(1), Worker(2)
    cpu = FixedCpu(per_event=0.25, per_message_sent=0.125)
    sim = Simulator([hub, w1, w2], seed=1, cpu=cpu, delay=Fixed(0.5))
    sim.run()
    # Hub's on_start: 0.25 + 4 copies * 0.125 = 0.75; all four depart then, arrive at 1.25.
    # Node 1 handles its three jobs one after another (each 0.25 + 0.125 for the reply) ...
    assert w1.get_times("message") == [1.25, 1.625, 2.0]
    # ... while node 2 handles its job at the same time as node 1's first.
    assert w2.get_times("message") == [1.25]
    # Replies depart when each handler finishes and take 0.5: 2.125, 2.5, 2.875 from node 1,
    # 2.125 from node 2. The hub is busy 0.25 per reply (it sends nothing back).
    assert [(e[1], e[3]) for e in hub.log if e[0] == "message"] == [
        (1, 2.125),
        (2, 2.375),  # arrived at 2.125 too, waited for the hub (FIFO by arrival)
        (1, 2.625),  # arrived at 2.5, hub busy until 2.625
        (1, 2.875),
    ]
    assert sim.get_busy_until(0) == 3.125
    assert sim.get_busy_until(1) == 2.375
    # Every on_start costs 0.25 as well.
    assert sim.stats.cpu_seconds == {0: 0.75 + 4 * 0.25, 1: 0.25 + 3 * 0.375, 2: 0.25 + 0.375}


class SelfTimer(Toy):
    def on_start(self, now: float) -> list[Effect]:
        super().on_start(now)
        return [SetTimer("t", 1.0), Send((0,), Ping())]


def test_timers_start_when_the_handler_finishes() -> None:
    node = SelfTimer(0)
    sim = Simulator([node], seed=1, cpu=FixedCpu(per_event=0.25), delay=Fixed(0.5))
    sim.run()
    assert node.get_times("timer") == [0.25 + 1.0]
    assert node.get_times("message") == [0.75]  # departs at 0.25, to itself via link (0, 0)


def test_events_wait_for_a_busy_node_in_arrival_order() -> None:
    hub, w1, w2 = Hub(0), Worker(1), Worker(2)
    sim = Simulator([hub, w1, w2], seed=1, cpu=FixedCpu(per_event=1.0), delay=Fixed(0.5))
    sim.run()
    assert [m.job for _, m, _ in received(w1)] == [0, 1, 2]
    assert w1.get_times("message") == [1.5, 2.5, 3.5]


def test_multicast_draws_one_delay_per_recipient() -> None:
    nodes = [Toy(i) for i in range(1, 9)]
    sender = Ticker(0, to=tuple(range(1, 9)))
    sim = Simulator([sender, *nodes], seed=7, cpu=ZeroCpu(), delay=Uniform(0.1, 0.2))
    sim.run(until=1.5)
    arrivals = [n.get_times("message")[0] for n in nodes]
    assert len(set(arrivals)) == len(arrivals)
    assert all(1.1 <= t <= 1.2 for t in arrivals)


# ---------------------------------------------------------------------------- timers


class TimerScript(Toy):
    def on_start(self, now: float) -> list[Effect]:
        super().on_start(now)
        return [SetTimer("a", 1.0), SetTimer("b", 2.0), SetTimer("c", 3.0), SetTimer("z", 9.0)]

    def on_timer(self, name: str, now: float) -> list[Effect]:
        super().on_timer(name, now)
        if name == "a":
            return [
                SetTimer("b", 5.0),
                CancelTimer("c"),
                CancelTimer("z"),
                CancelTimer("never-set"),
            ]
        return []


def test_timers_fire_are_replaced_and_cancelled() -> None:
    node = TimerScript(0)
    sim = Simulator([node], seed=1, cpu=ZeroCpu())
    sim.run()
    assert [(e[1], e[2]) for e in node.log if e[0] == "timer"] == [("a", 1.0), ("b", 6.0)]
    assert sim.stats.timers_fired == 2
    assert sim.now == 6.0  # the stale entry of "z" (at 9.0) does not move the clock


class Canceller(Toy):
    def on_start(self, now: float) -> list[Effect]:
        super().on_start(now)
        return [SetTimer("t", 0.25)]

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        super().on_message(sender, message, now)
        return [CancelTimer("t")] if isinstance(message, Pong) else []


@pytest.mark.parametrize("cancel", [True, False])
def test_timer_cancelled_while_waiting_in_a_busy_inbox_does_not_fire(cancel: bool) -> None:
    node = Canceller(1)
    sim = Simulator([node], seed=1, cpu=FixedCpu(per_event=1.0))
    # on_start runs 0 -> 1.0, so the timer comes due at 1.25. The Ping is handled at 1.0
    # (busy until 2.0); the second message and then the timer wait in the inbox.
    sim.inject(1, Ping(), at=1.0)
    sim.inject(1, Pong() if cancel else Ping(), at=1.1)
    sim.run()
    assert node.get_times("message") == [1.0, 2.0]
    assert node.get_times("timer") == ([] if cancel else [3.0])


def test_timers_of_a_crashed_node_are_dropped() -> None:
    node = TimerScript(0)
    sim = Simulator([node], seed=1, cpu=ZeroCpu())
    sim.crash(0, at=0.5)
    sim.run(until=20.0)
    assert node.get_times("timer") == []
    sim.restart(0, at=21.0)
    sim.run()
    assert node.get_times("start") == [0.0, 21.0]
    assert [(e[1], e[2]) for e in node.log if e[0] == "timer"] == [("a", 22.0), ("b", 27.0)]


class Watchdog(Toy):
    """Ticks every millisecond and pushes a long watchdog timer back each time."""

    def __init__(self, node_id: int, ticks: int) -> None:
        super().__init__(node_id)
        self.ticks = ticks

    def on_start(self, now: float) -> list[Effect]:
        return [SetTimer("tick", 0.001), SetTimer("watchdog", 100.0)]

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name == "watchdog":
            self.log.append(("timer", name, now))
            return []
        self.ticks -= 1
        if self.ticks == 0:
            return [SetTimer("watchdog", 100.0)]
        return [SetTimer("tick", 0.001), SetTimer("watchdog", 100.0)]


def test_replaced_timers_do_not_pile_up_in_the_queue() -> None:
    node = Watchdog(0, ticks=20_000)
    sim = Simulator([node], seed=1, cpu=ZeroCpu())
    peak = 0

    def watch() -> bool:
        nonlocal peak
        peak = max(peak, sim.pending_events)
        return False

    sim.run_until(watch, timeout=1000.0)
    assert peak < 10_000
    assert len(node.get_times("timer")) == 1
    assert node.get_times("timer")[0] == pytest.approx(20.0 + 100.0)


# ---------------------------------------------------------------------------- faults


def test_crash_drops_messages_and_restart_resumes_with_on_start() -> None:
    ticker, target = Ticker(0, to=(1,)), Toy(1)
    sim = Simulator([ticker, target], seed=1, cpu=ZeroCpu(), delay=Fixed(0.25))
    sim.crash(1, at=2.5)
    sim.restart(1, at=5.5)
    stats = sim.run(until=7.5)
    assert [m.seq for _, m, _ in received(target)] == [1, 2, 6, 7]
    assert target.get_times("start") == [0.0, 5.5]
    assert stats.dropped_by["down"] == 3
    assert stats.messages_sent == 7
    assert stats.messages_delivered == 4
    assert sim.is_up(1)


def test_restart_with_a_replacement_object() -> None:
    ticker, old, new = Ticker(0, to=(1,)), Toy(1), Toy(1)
    sim = Simulator([ticker, old], seed=1, cpu=ZeroCpu(), delay=Fixed(0.25))
    sim.crash(1, at=1.5)
    sim.restart(1, at=2.5, node=new)
    sim.run(until=4.5)
    assert [m.seq for _, m, _ in received(old)] == [1]
    assert [m.seq for _, m, _ in received(new)] == [3, 4]
    assert new.get_times("start") == [2.5]
    assert sim.get_node(1) is new


def test_crash_drops_what_waits_in_the_inbox() -> None:
    hub, w1, w2 = Hub(0), Worker(1), Worker(2)
    sim = Simulator([hub, w1, w2], seed=1, cpu=FixedCpu(per_event=1.0), delay=Fixed(0.5))
    sim.crash(1, at=2.0)  # node 1 handled job 0 at 1.5; jobs 1 and 2 wait until 2.5
    stats = sim.run()
    assert [m.job for _, m, _ in received(w1)] == [0]
    assert stats.dropped_by["down"] == 2
    assert not sim.is_up(1)


def test_partition_drops_cross_group_messages_until_healed() -> None:
    ticker, same, other = Ticker(0, to=(1, 2)), Toy(1), Toy(2)
    sim = Simulator([ticker, same, other], seed=1, cpu=ZeroCpu(), delay=Fixed(0.25))
    sim.partition([[0, 1], [2]], at=1.5)
    sim.heal(at=3.5)  # the copy sent at 3.0 arrives at 3.25, still cut off
    stats = sim.run(until=4.5)
    assert [m.seq for _, m, _ in received(same)] == [1, 2, 3, 4]
    assert [m.seq for _, m, _ in received(other)] == [1, 4]
    assert stats.dropped_by["partition"] == 2


def test_unlisted_nodes_form_one_more_group() -> None:
    ticker, listed, rest = Ticker(0, to=(1, 2)), Toy(1), Toy(2)
    sim = Simulator([ticker, listed, rest], seed=1, cpu=ZeroCpu(), delay=Fixed(0.25))
    sim.partition([[1]], at=0.0)
    sim.run(until=2.5)
    assert received(listed) == []
    assert [m.seq for _, m, _ in received(rest)] == [1, 2]


def test_filters_drop_and_replace_messages_in_flight() -> None:
    ticker, one, two = Ticker(0, to=(1, 2)), Toy(1), Toy(2)
    sim = Simulator([ticker, one, two], seed=1, cpu=ZeroCpu(), delay=Fixed(0.25))
    seen: list[tuple[float, int, int]] = []

    def byzantine(at: float, sender: int, receiver: int, message: Any) -> Any:
        seen.append((at, sender, receiver))
        if receiver == 2:
            return None
        return Ping(seq=message.seq + 100)

    sim.add_filter(byzantine)
    stats = sim.run(until=2.5)
    assert [m.seq for _, m, _ in received(one)] == [101, 102]
    assert received(two) == []
    assert seen == [(1.0, 0, 1), (1.0, 0, 2), (2.0, 0, 1), (2.0, 0, 2)]
    assert stats.dropped_by["filter"] == 2
    sim.remove_filter(byzantine)
    sim.run(until=3.5)
    assert [m.seq for _, m, _ in received(two)] == [3]


# ---------------------------------------------------------------------------- errors


class SendsTo(Toy):
    def __init__(self, node_id: int, *to: int) -> None:
        super().__init__(node_id)
        self.to = to

    def on_start(self, now: float) -> list[Effect]:
        return [Send((1,), Ping()), Send(self.to, Ping()), Report("sent")]


def test_send_to_an_unknown_node_is_a_typed_error_and_applies_nothing() -> None:
    target = Toy(1)
    sim = Simulator([SendsTo(0, 1, 99), target], seed=1, cpu=ZeroCpu())
    with pytest.raises(UnknownNodeError, match="99") as info:
        sim.run()
    assert isinstance(info.value, SimulationError)
    assert isinstance(info.value, LocalProtocolError)
    assert sim.reports == []
    assert sim.stats.messages_sent == 0


def test_duplicate_node_ids_are_a_typed_error() -> None:
    with pytest.raises(DuplicateNodeError):
        Simulator([Toy(1), Toy(2), Toy(1)], seed=1)
    sim = Simulator([Toy(1)], seed=1)
    with pytest.raises(DuplicateNodeError):
        sim.add_node(Toy(1))


def test_invalid_scenarios_are_typed_errors() -> None:
    sim = Simulator([Toy(0)], seed=1, cpu=ZeroCpu())
    with pytest.raises(UnknownNodeError):
        sim.crash(5, at=1.0)
    with pytest.raises(UnknownNodeError):
        sim.partition([[0], [5]])
    with pytest.raises(SimulationError, match="two partition groups"):
        sim.partition([[0], [0]])
    with pytest.raises(SimulationError, match="expected 0"):
        sim.restart(0, at=1.0, node=Toy(3))
    with pytest.raises(ConfigError):
        sim.crash(0, at=-1.0)
    sim.run(until=5.0)
    with pytest.raises(SimulationError, match="in the past"):
        sim.crash(0, at=4.0)
    sim.restart(0, at=6.0)  # it is not down
    with pytest.raises(SimulationError, match="not down"):
        sim.run()
    with pytest.raises(ConfigError):
        Uniform(0.2, 0.1)
    with pytest.raises(ConfigError):
        Fixed(float("nan"))
    with pytest.raises(ConfigError):
        FixedCpu(per_event=-1.0)


def test_a_handler_must_return_effects() -> None:
    class Broken(Toy):
        def on_start(self, now: float) -> list[Effect]:
            return None  # type: ignore[return-value]

    class BadTimer(Toy):
        def on_start(self, now: float) -> list[Effect]:
            return [SetTimer("t", -1.0)]

    class NotAnEffect(Toy):
        def on_start(self, now: float) -> list[Effect]:
            return ["send it"]  # type: ignore[list-item]

    for node in (Broken(0), BadTimer(0), NotAnEffect(0)):
        with pytest.raises(SimulationError):
            Simulator([node], seed=1, cpu=ZeroCpu()).run()


def test_a_handler_exception_propagates_with_context() -> None:
    class Crashing(Toy):
        def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
            raise ValueError("boom")

    sim = Simulator([Pinger(0, peer=1), Crashing(1)], seed=1, cpu=ZeroCpu())
    with pytest.raises(ValueError, match="boom") as info:
        sim.run()
    assert any("node 1" in note and "Ping" in note for note in info.value.__notes__)


def test_run_is_not_reentrant() -> None:
    sim = Simulator([Pinger(0, peer=1), Ponger(1)], seed=1, cpu=ZeroCpu())

    def nested(record: ReportRecord) -> None:
        sim.run()

    sim.on_report(nested)
    with pytest.raises(SimulationError, match="re-entrant"):
        sim.run()


# ---------------------------------------------------------------------------- determinism


class Chatter(Toy):
    """Pings every other node; answers each Ping(k < 5) with Ping(k + 1)."""

    def __init__(self, node_id: int, n: int) -> None:
        super().__init__(node_id)
        self.others = tuple(i for i in range(n) if i != node_id)

    def on_start(self, now: float) -> list[Effect]:
        return [Send(self.others, Ping(seq=0)), SetTimer("report", 0.5)]

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        if message.seq < 5:
            return [Send((sender,), Ping(seq=message.seq + 1))]
        return []

    def on_timer(self, name: str, now: float) -> list[Effect]:
        return [Report("alive", self.node_id)]


def run_chatter(
    seed: int, scenario: Callable[[Simulator], None] | None = None, peek: bool = False
) -> Simulator:
    n = 14
    sim = Simulator(
        [Chatter(i, n) for i in range(n)],
        seed=seed,
        cpu=FixedCpu(per_event=0.001, per_message_sent=0.0001),
        delay=Uniform(0.001, 0.050),
        keep_trace=True,
    )
    if scenario is not None:
        scenario(sim)
    if peek:
        sim.run(until=0.1)
        sim.trace_digest()
    sim.run()
    return sim


def test_same_seed_gives_the_same_trace_and_digest() -> None:
    a, b = run_chatter(seed=42), run_chatter(seed=42, peek=True)
    assert len(a.trace) > 1024  # more than one hashed chunk
    assert a.trace == b.trace
    assert a.trace_digest() == b.trace_digest()
    assert a.stats.messages_delivered == 14 * 13 * 6


def test_the_digest_follows_every_event() -> None:
    sim = Simulator([Pinger(0, peer=1), Ponger(1)], seed=1, cpu=ZeroCpu())
    digests = [sim.trace_digest()]
    sim.start()
    while sim.pending_events:
        sim.run(max_events=1)
        digests.append(sim.trace_digest())
    assert sim.stats.events == 4
    assert len(set(digests)) == len(digests) == 1 + 4


def test_different_seed_or_scenario_gives_a_different_digest() -> None:
    base = run_chatter(seed=42)
    assert run_chatter(seed=43).trace_digest() != base.trace_digest()
    crashed = run_chatter(seed=42, scenario=lambda sim: sim.crash(3, at=0.02))
    assert crashed.trace_digest() != base.trace_digest()


def test_delays_use_the_simulators_generator_not_the_global_one() -> None:
    import random

    random.seed(1)
    a = run_chatter(seed=42).trace_digest()
    random.seed(2)
    assert run_chatter(seed=42).trace_digest() == a


def test_jitter_is_base_plus_a_nonnegative_extra() -> None:
    import random

    rng = random.Random(5)
    model = Jitter(0.010, 0.005)
    samples = [model.sample(rng, 0, 1) for _ in range(2000)]
    assert min(samples) >= 0.010
    assert 0.013 < sum(samples) / len(samples) < 0.017
    assert Jitter(0.010, 0.0).sample(rng, 0, 1) == 0.010


# ---------------------------------------------------------------------------- stats, reports


def test_fixed_cpu_charges_per_event_and_per_copy() -> None:
    cpu = FixedCpu(per_event=1.0, per_message_sent=0.5)
    effects: list[Effect] = [Send((1, 2, 3), Ping()), Send((4,), Ping()), Report("x")]
    assert cpu.charge(cpu.begin(), 0, None, effects) == 1.0 + 4 * 0.5
    assert cpu.charge(cpu.begin(), 0, None, []) == 1.0
    assert ZeroCpu().charge(ZeroCpu().begin(), 0, None, effects) == 0.0


def test_stats_count_messages_and_bytes() -> None:
    class Mixed(Toy):
        def on_start(self, now: float) -> list[Effect]:
            return [Send((1, 2), Ping(seq=7)), Send((1,), ("not", "a", "struct"))]

    sim = Simulator([Mixed(0), Toy(1), Toy(2)], seed=1, cpu=ZeroCpu(), count_bytes=True)
    sim.crash(2, at=0.0)
    stats = sim.run()
    size = len(encode(Ping(seq=7)))
    assert size > 0
    assert stats.messages_sent == 3
    assert stats.messages_delivered == 2
    assert stats.messages_dropped == 1
    assert stats.bytes_sent == 2 * size
    assert stats.bytes_delivered == size
    assert stats.events == 5  # the crash, two starts (not node 2's), two deliveries
    assert stats.wall_seconds > 0.0
    with pytest.raises(SimulationError, match="keep_trace"):
        sim.trace  # noqa: B018


def test_bytes_are_not_counted_unless_asked() -> None:
    sim = Simulator([Pinger(0, peer=1), Ponger(1)], seed=1, cpu=ZeroCpu())
    stats = sim.run()
    assert stats.messages_sent == 2
    assert stats.bytes_sent == 0


def test_reports_are_recorded_when_the_handler_finishes_and_observed() -> None:
    seen: list[ReportRecord] = []
    sim = Simulator(
        [Pinger(0, peer=1), Ponger(1)], seed=1, cpu=FixedCpu(per_event=0.25), delay=Fixed(0.5)
    )
    sim.on_report(seen.append)
    assert sim.run_until(lambda: len(sim.reports) > 0, timeout=10.0)
    assert sim.now == 1.75  # not 1.5, when the handler that reports started
    sim.run()
    # start 0 -> 0.25, arrive 0.75, pong done 1.0, arrive 1.5, report done at 1.75
    assert sim.reports == [ReportRecord(1.75, 0, "pong", 1.5)]
    assert seen == list(sim.reports)
    assert sim.get_reports("pong") == list(sim.reports)
    assert sim.get_reports("other") == []


def test_run_until_stops_as_soon_as_the_predicate_holds() -> None:
    ticker = Ticker(0, to=(1,))
    sim = Simulator([ticker, Toy(1)], seed=1, cpu=ZeroCpu(), delay=Fixed(0.25))
    assert sim.run_until(lambda: ticker.count == 3, timeout=10.0)
    assert sim.now == 3.0
    assert not sim.run_until(lambda: ticker.count == 100, timeout=2.5)
    assert sim.now == 5.5  # the last event was at 5.25; virtual time runs to the deadline
    assert ticker.count == 5


def test_run_until_time_and_max_events() -> None:
    ticker = Ticker(0, to=(1,))
    sim = Simulator([ticker, Toy(1)], seed=1, cpu=ZeroCpu(), delay=Fixed(0.25))
    stats = sim.run(until=2.1)
    assert sim.now == 2.1
    assert ticker.count == 2
    assert stats.end_time == 2.1
    stats = sim.run(max_events=3)
    assert stats.events == 3
    assert stats.start_time == 2.1


def test_inject_and_call_at() -> None:
    node = Toy(1)
    sim = Simulator([node], seed=1, cpu=ZeroCpu())
    calls: list[float] = []
    sim.inject(1, Ping(seq=9), at=2.0)
    sim.call_at(3.0, lambda: calls.append(sim.now))
    sim.run()
    assert received(node) == [(EXTERNAL, Ping(seq=9), 2.0)]
    assert calls == [3.0]


def test_nodes_join_before_or_after_the_start() -> None:
    sim = Simulator([Ticker(0, to=(1,))], seed=1, cpu=ZeroCpu(), delay=Fixed(0.25))
    early = Toy(1)
    sim.add_node(early)
    sim.run(until=1.5)
    assert early.get_times("start") == [0.0]
    late = Toy(2)
    sim.add_node(late, at=2.0)
    assert not sim.is_up(2)
    sim.run(until=3.0)
    assert late.get_times("start") == [2.0]
    assert sim.is_up(2)


# ---------------------------------------------------------------------------- measured CPU


class Burner(Toy):
    def __init__(self, node_id: int, work: Callable[[], object]) -> None:
        super().__init__(node_id)
        self.work = work

    def on_start(self, now: float) -> list[Effect]:
        self.work()
        return []


def test_measured_cpu_charges_computing_not_sleeping() -> None:
    burner = Burner(0, lambda: sum(i * i for i in range(200_000)))
    sleeper = Burner(1, lambda: time.sleep(0.05))
    sim = Simulator([burner, sleeper], seed=1, cpu=MeasuredCpu())
    stats = sim.run()
    assert stats.cpu_seconds[0] > 0.001
    assert stats.cpu_seconds[1] < 0.01  # thread time: the 50 ms of sleep are not charged
    assert sim.get_busy_until(0) == stats.cpu_seconds[0]
    free = Simulator([burner], seed=1, cpu=MeasuredCpu(scale=0.0))
    assert free.run().cpu_seconds[0] == 0.0


class Reader(Toy):
    """Asks its chain one question at start (tag "q1") and logs the answers."""

    def on_start(self, now: float) -> list[Effect]:
        super().on_start(now)
        return [ReadChain("q1", "height?"), SubmitTx("t1", "tx")]


class Chain(Toy):
    """Answers questions after ``delay`` seconds (never, with ``None``)."""

    def __init__(self, node_id: int, delay: float | None) -> None:
        super().__init__(node_id)
        self.delay = delay
        self.waiting: list[tuple[int, Any]] = []

    def on_message(self, sender: int, message: Any, now: float) -> list[Effect]:
        super().on_message(sender, message, now)
        if self.delay is None:
            return []
        self.waiting.append((sender, message))
        return [SetTimer("answer", self.delay)]

    def on_timer(self, name: str, now: float) -> list[Effect]:
        out: list[Effect] = []
        for sender, message in self.waiting:
            if isinstance(message, ReadChain):
                out.append(Send((sender,), ChainRead(message.tag, 7)))
            else:
                out.append(Send((sender,), TxOutcome(message.tag, "mined", 1)))
        self.waiting = []
        return out


def answers(node: Toy) -> list[Any]:
    return [entry[2] for entry in node.log if entry[0] == "message"]


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_a_lost_answer_is_answered_with_a_failure_after_the_answer_timeout(
    timeout: float | None,
) -> None:
    reader, chain = Reader(1), Chain(0, delay=None)  # the chain never answers
    sim = Simulator([chain, reader], seed=1, delay=Fixed(0.01))
    sim.set_service(ReadChain, 0, answer_timeout=timeout)
    sim.set_service(SubmitTx, 0, answer_timeout=timeout)
    sim.run(until=20.0)
    if timeout is None:
        assert answers(reader) == [] and sim.answers_timed_out == 0
        return
    got = answers(reader)
    assert [type(a) for a in got] == [ChainRead, TxOutcome]
    assert got[0].tag == "q1" and got[0].error and got[0].passing
    assert got[1].tag == "t1" and got[1].status == "failed"
    assert sim.answers_timed_out == 2


def test_an_answer_in_time_is_not_answered_again_and_a_crash_forgets_what_was_awaited() -> None:
    reader, chain = Reader(1), Chain(0, delay=1.0)
    sim = Simulator([chain, reader], seed=1, delay=Fixed(0.01))
    sim.set_service(ReadChain, 0, answer_timeout=5.0)
    sim.set_service(SubmitTx, 0, answer_timeout=5.0)
    sim.run(until=20.0)
    assert [type(a) for a in answers(reader)] == [ChainRead, TxOutcome]
    assert answers(reader)[0].value == 7 and sim.answers_timed_out == 0

    lonely, silent = Reader(3), Chain(2, delay=None)
    sim = Simulator([silent, lonely], seed=1, delay=Fixed(0.01))
    sim.set_service(ReadChain, 2, answer_timeout=5.0)
    sim.set_service(SubmitTx, 2, answer_timeout=5.0)
    sim.crash(3, at=1.0)  # before the answers are due: the restarted node awaits none
    sim.restart(3, at=2.0, node=Toy(3))
    sim.run(until=4.0)
    assert sim.answers_timed_out == 0
    sim.run(until=20.0)
    assert sim.answers_timed_out == 0


def test_the_answer_timeout_must_be_a_number_of_seconds() -> None:
    sim = Simulator([Chain(0, delay=None)], seed=1)
    with pytest.raises(ConfigError):
        sim.set_service(ReadChain, 0, answer_timeout=-1.0)
