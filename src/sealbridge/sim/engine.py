"""Deterministic discrete-event simulator with virtual time for sans-I/O protocol cores.

Theory of operation
-------------------
The simulator drives :class:`~sealbridge.core.effects.ProtocolNode` cores (BFT replicas,
gateways, ...) in *virtual* time: a float of seconds that only moves when the simulator
takes the next event off its queue. Nothing sleeps; a run of minutes of protocol time
takes as long as the handlers take to compute.

Event queue.
    One binary heap of tuples ``(time, seq, kind, ...)``. ``seq`` is a counter that
    grows with every insertion, so two events at the same time are taken in the order they
    were scheduled, and the order of the whole run depends on nothing but the scenario,
    the seed and the CPU model.

Nodes compute in parallel, each one serially.
    Every node has a virtual clock ``busy_until``. An event for node X that comes due at
    ``t`` (a message arriving, a timer firing, a start) is handled at
    ``start = max(t, busy_until[X])``: while X is busy, events wait in X's inbox in the
    order they came due (FIFO). The handler's cost ``cost`` comes from the CPU model, and
    ``busy_until[X] = start + cost``. Different nodes overlap freely in virtual time.

    * :class:`MeasuredCpu` charges the real CPU time of the handler call
      (``time.thread_time_ns()`` around it, times ``scale``): benchmarks use it to see
      how a protocol with real crypto behaves at hundreds of nodes. Sleeping costs nothing.
      It is **not reproducible**: the measured times, and therefore the order of events
      and the trace digest, differ from run to run.
    * :class:`FixedCpu` (``per_event + per_message_sent * copies``) and :class:`ZeroCpu`
      are deterministic; tests use them.

Effects.
    The effects a handler returns are carried out when it finishes, at
    ``done = start + cost``:

    * ``Send(to, message)`` -- one pass over ``to``: each copy departs at ``done`` and
      arrives at ``done + delay``, one delay draw per recipient from the link's model
      (:mod:`sealbridge.sim.delays`; the default model, ``links=`` overrides, or an
      overridden :meth:`Simulator.delay_for`). Messages are passed by reference, never
      copied or encoded (``count_bytes=True`` encodes each one once to count bytes).
      Sending to oneself goes through the link ``(x, x)`` like any other.
    * ``SetTimer(name, delay)`` -- fires at ``done + delay``; setting a name again
      replaces the timer (each timer carries a generation; a stale heap entry is skipped
      when it comes up, and re-checked when it leaves a busy node's inbox).
    * ``CancelTimer(name)`` -- forgets the timer, if any.
    * ``Report(kind, data)`` -- recorded at ``done`` as a :class:`ReportRecord` in
      :attr:`Simulator.reports`, and passed to every ``on_report`` observer.
    * ``SubmitTx``, ``ReadChain``, ``CallEnclave``, ``AskPeers``, ``StoreCheckpoint``
      -- sent, like a message, to the node that serves that kind of effect
      (:meth:`Simulator.set_service`: a ledger model for the chain,
      :mod:`sealbridge.sim.chain_model`); the effect object itself is the message, and
      the service answers the sender with an ordinary ``Send`` (``TxOutcome``,
      ``ChainRead``, ``EnclaveAnswer``, ``PeerAnswers``, ``CheckpointStored``). Link
      delays, partitions and crashes apply to them like to any message. A node may also
      carry out its own ``CallEnclave`` effects (its enclave is local:
      :mod:`sealbridge.sim.local_enclave`). With an ``answer_timeout`` (``set_service``),
      an effect whose answer has not reached its node that many seconds after the effect
      left it (lost under a partition, or the service down) is answered there by the
      simulator with a failure of its kind -- a ``TxOutcome`` ``failed``, a ``ChainRead``
      error that may pass, an ``EnclaveAnswer`` or ``CheckpointStored`` error, a
      ``PeerAnswers`` with no answer -- as the network driver answers an effect whose
      transport failed: every such effect is answered once. An answer that comes later
      still is delivered too (a core takes only the answer to the tag it awaits).
    * ``Persist(key, data)`` -- written to the node's simulated disk
      (:meth:`Simulator.get_disk`), which survives a crash and a restart.

    Before any effect is applied the whole list is checked: a ``Send`` to a node id the
    simulator does not know, a negative timer delay or an object that is not an effect
    raise :class:`SimulationError` and apply nothing.

Faults are events too.
    ``crash``, ``restart``, ``partition`` and ``heal`` are scheduled at a virtual time and
    take their place in the heap like any other event, so their order against messages is
    deterministic. A crashed node handles nothing: its inbox is emptied, its timers are
    forgotten, messages that arrive while it is down are dropped. A crash happens between
    handlers: a handler that started before the crash completes and its effects stand
    (its messages are already "on the wire"). ``restart`` brings the node (or a
    replacement object with the same id) back and calls ``on_start``. A partition splits
    the nodes into groups (nodes not named form one more group together); a message whose
    sender and receiver are in different groups *when it arrives* is dropped. Filters
    (``add_filter``) see every copy as it departs and may drop it (return ``None``) or
    replace it: Byzantine links, corruption, selective delays of a test's making.

Trace and reproducibility.
    Every handled event, drop, report and fault is appended to a compact trace
    ``(time_ns, node, event, sender, name, detail)`` (times rounded to integer
    nanoseconds) and folded into a running SHA-256 (:meth:`Simulator.trace_digest`): the
    tag ``sealbridge/sim/trace/v1``, then the canonical msgpack encoding of the records in
    arrays of 1,024, the last one partial -- so asking for the digest never changes it.
    With a deterministic CPU model, the same seed and scenario give the same digest; with
    :class:`MeasuredCpu` they do not. The records themselves are kept only with
    ``keep_trace=True`` (a long run at 800 nodes has millions of them).

Cost: O(log E) per event for a heap of E pending events, O(k) per ``Send`` to k
recipients; nothing is ever done for all nodes per event. Stale timer entries are
skipped when they come up, and the heap is compacted when they are the majority of it.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

from sealbridge.core.effects import (
    AskPeers,
    CallEnclave,
    CancelTimer,
    ChainRead,
    CheckpointStored,
    Effect,
    EnclaveAnswer,
    PeerAnswers,
    Persist,
    ProtocolNode,
    ReadChain,
    Report,
    Send,
    SetTimer,
    StoreCheckpoint,
    SubmitTx,
    TxOutcome,
)
from sealbridge.core.encoding import encode
from sealbridge.core.errors import ConfigError, LocalProtocolError
from sealbridge.sim.delays import DelayModel, Fixed, check_seconds

__all__ = [
    "EXTERNAL",
    "CpuModel",
    "DuplicateNodeError",
    "FixedCpu",
    "MeasuredCpu",
    "MessageFilter",
    "ReportRecord",
    "RunStats",
    "SimulationError",
    "Simulator",
    "TraceRecord",
    "UnknownNodeError",
    "ZeroCpu",
]

EXTERNAL: Final = -1
SERVED: Final = (SubmitTx, ReadChain, CallEnclave, AskPeers, StoreCheckpoint)  # by services
"""Sender id of messages injected from outside the simulated nodes (``Simulator.inject``)."""

_TRACE_TAG: Final = b"sealbridge/sim/trace/v1"
_TRACE_CHUNK: Final = 1024  # records hashed per msgpack array
_COMPACT_MIN: Final = 4096  # stale timer entries before the heap is worth compacting


# ---------------------------------------------------------------------------- errors


class SimulationError(LocalProtocolError):
    """The simulator was asked to do something invalid (by a scenario or by a core)."""

    code = "simulation"


class UnknownNodeError(SimulationError):
    """A node id the simulator does not know (a ``Send`` recipient, a fault target)."""

    code = "sim_unknown_node"


class DuplicateNodeError(SimulationError):
    """Two nodes with the same ``node_id``."""

    code = "sim_duplicate_node"


# ---------------------------------------------------------------------------- CPU models


class CpuModel(Protocol):
    """How much virtual CPU time a handler call costs.

    The simulator calls ``begin()`` right before the handler and ``charge(begun, ...)``
    right after it, with the node, the message handled (``None`` for ``on_start`` and
    ``on_timer``) and the effects it returned. ``charge`` returns seconds (finite, >= 0).
    """

    def begin(self) -> int: ...

    def charge(
        self, begun: int, node_id: int, message: Any, effects: Sequence[Effect]
    ) -> float: ...


@dataclass(frozen=True, slots=True)
class MeasuredCpu:
    """Charge the real CPU time of the handler's thread, times ``scale``.

    Uses ``time.thread_time_ns()``: waiting and sleeping cost nothing, computing does.
    Not reproducible -- the charged times (and with them the order of events and the
    trace digest) vary from run to run. For benchmarks, not for tests.
    """

    scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", check_seconds("scale", self.scale))

    def begin(self) -> int:
        return time.thread_time_ns()

    def charge(self, begun: int, node_id: int, message: Any, effects: Sequence[Effect]) -> float:
        return (time.thread_time_ns() - begun) * 1e-9 * self.scale


@dataclass(frozen=True, slots=True)
class FixedCpu:
    """``per_event`` seconds per handler call plus ``per_message_sent`` per copy sent.

    A ``Send`` to k recipients counts k copies. Deterministic.
    """

    per_event: float = 0.0
    per_message_sent: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_event", check_seconds("per_event", self.per_event))
        object.__setattr__(
            self, "per_message_sent", check_seconds("per_message_sent", self.per_message_sent)
        )

    def begin(self) -> int:
        return 0

    def charge(self, begun: int, node_id: int, message: Any, effects: Sequence[Effect]) -> float:
        if self.per_message_sent == 0.0:
            return self.per_event
        copies = 0
        for effect in effects:
            if type(effect) is Send:
                copies += len(effect.to)
        return self.per_event + self.per_message_sent * copies


@dataclass(frozen=True, slots=True)
class ZeroCpu:
    """Handlers take no time: only link delays and timers move the clock. Deterministic."""

    def begin(self) -> int:
        return 0

    def charge(self, begun: int, node_id: int, message: Any, effects: Sequence[Effect]) -> float:
        return 0.0


DEFAULT_DELAY: Final = Fixed(0.010)
DEFAULT_CPU: Final = MeasuredCpu()


# ---------------------------------------------------------------------------- records


class ReportRecord(NamedTuple):
    """A ``Report`` effect as observed: when (handler completion), who, what."""

    time: float
    node_id: int
    kind: str
    data: Any


class TraceRecord(NamedTuple):
    """One line of the trace.

    ``event`` is one of ``start``, ``message``, ``timer``, ``report``, ``drop``,
    ``crash``, ``restart``, ``partition``, ``heal``, ``call``. ``sender`` is the sender of a
    message (``-1`` otherwise); ``name`` is the message's type name, the timer's name or
    the report's kind; ``detail`` is the reason of a drop.
    """

    time_ns: int
    node_id: int
    event: str
    sender: int
    name: str
    detail: str


MessageFilter = Callable[[float, int, int, Any], Any]
"""``fn(time, sender, receiver, message) -> message | None``: ``None`` drops the copy."""


@dataclass(frozen=True, slots=True)
class RunStats:
    """Counters of a run (``Simulator.run``) or of the whole simulation (``.stats``).

    ``messages_sent`` counts copies (a ``Send`` to k nodes is k); ``dropped_by`` splits
    ``messages_dropped`` by reason (``down``, ``partition``, ``filter``); byte counts are
    zero unless the simulator was built with ``count_bytes=True``. ``cpu_seconds`` is the
    virtual CPU time charged per node; ``wall_seconds`` the real time spent in ``run``.
    """

    events: int
    messages_sent: int
    messages_delivered: int
    messages_dropped: int
    dropped_by: dict[str, int]
    bytes_sent: int
    bytes_delivered: int
    timers_fired: int
    reports: int
    cpu_seconds: dict[int, float]
    start_time: float
    end_time: float
    wall_seconds: float

    @property
    def total_cpu_seconds(self) -> float:
        return sum(self.cpu_seconds.values())

    @property
    def max_cpu_seconds(self) -> float:
        return max(self.cpu_seconds.values(), default=0.0)


# ---------------------------------------------------------------------------- engine

# Heap entry kinds. An entry is (time, seq, kind, state, a, b, c).
_MESSAGE: Final = 0  # a=sender, b=message, c=size in bytes
_INJECT: Final = 1  # like _MESSAGE, from outside: no partition check
_TIMER: Final = 2  # a=name, b=generation
_START: Final = 3
_WAKE: Final = 4  # the node's busy period is over: take the next event of its inbox
_REPORT: Final = 5  # a=kind, b=data (a report of a handler that finished later)
_ACTION: Final = 6  # a=callable (faults, call_at); state is None

_Entry = tuple[float, int, int, Any, Any, Any, Any]
_Item = tuple[int, Any, Any, Any]  # (kind, a, b, c) waiting in an inbox


class _NodeState:
    __slots__ = (
        "node_id",
        "node",
        "busy_until",
        "inbox",
        "wake_pending",
        "timers",
        "is_down",
        "cpu_seconds",
    )

    def __init__(self, node: ProtocolNode) -> None:
        self.node_id: int = node.node_id
        self.node: ProtocolNode = node
        self.busy_until = 0.0
        self.inbox: deque[_Item] = deque()
        self.wake_pending = False
        self.timers: dict[str, int] = {}
        self.is_down = False
        self.cpu_seconds = 0.0


def _size_of(message: Any) -> int:
    # msgspec Structs carry __struct_fields__ (sealbridge.core.encoding relies on it too);
    # anything else is not a wire message and counts as 0 bytes.
    if getattr(type(message), "__struct_fields__", None) is None:
        return 0
    return len(encode(message))


def _check_node_id(node: ProtocolNode) -> int:
    node_id = node.node_id
    if isinstance(node_id, bool) or not isinstance(node_id, int):
        raise SimulationError(f"node_id must be an int, got {type(node_id).__name__}")
    return node_id


class Simulator:
    """Run sans-I/O protocol nodes in deterministic virtual time (see the module docstring).

    ``seed`` seeds the simulator's own :class:`random.Random` (delay draws). ``delay`` is
    the default link model, ``links`` per-link overrides ``{(sender, receiver): model}``.
    ``cpu`` charges handler time (default :class:`MeasuredCpu`; tests pass
    :class:`ZeroCpu` or :class:`FixedCpu`). ``count_bytes`` encodes every sent message
    once to count bytes; ``keep_trace`` keeps the trace records (the digest is always
    computed).
    """

    def __init__(
        self,
        nodes: Iterable[ProtocolNode] = (),
        *,
        seed: int | str | bytes,
        delay: DelayModel = DEFAULT_DELAY,
        cpu: CpuModel = DEFAULT_CPU,
        links: Mapping[tuple[int, int], DelayModel] | None = None,
        count_bytes: bool = False,
        keep_trace: bool = False,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | str | bytes):
            raise ConfigError(f"seed must be an int, str or bytes, got {type(seed).__name__}")
        self._rng = random.Random(seed)
        self._delay: DelayModel = delay
        self._cpu: CpuModel = cpu
        self._zero_cpu = type(cpu) is ZeroCpu
        self._count_bytes = count_bytes
        self._keep_trace = keep_trace

        self._states: dict[int, _NodeState] = {}
        self._known: set[int] = set()
        self._queue: list[_Entry] = []
        self._seq = 0
        self._now = 0.0
        self._started = False
        self._running = False

        self._links: dict[tuple[int, int], DelayModel] = {}
        self._custom_delay_for = type(self).delay_for is not Simulator.delay_for
        self._groups: dict[int, int] | None = None
        self._filters: list[MessageFilter] = []

        self._reports: list[ReportRecord] = []
        self._observers: list[Callable[[ReportRecord], None]] = []
        self._trace: list[TraceRecord] = []
        self._trace_buffer: list[tuple[int, int, str, int, str, str]] = []
        self._hasher = hashlib.sha256(_TRACE_TAG)
        self._stale_timers = 0  # heap entries of replaced/cancelled timers (an estimate)
        self._services: dict[type, int] = {}  # effect kind -> the node that serves it
        self._answer_timeouts: dict[type, float] = {}  # effect kind -> seconds
        self._awaited: dict[tuple[int, str], type] = {}  # (node, tag) -> effect kind
        self._answers_timed_out = 0
        self._disks: dict[int, dict[str, bytes]] = {}

        self._events = 0
        self._sent = 0
        self._delivered = 0
        self._dropped: dict[str, int] = {"down": 0, "partition": 0, "filter": 0, "external": 0}
        self._bytes_sent = 0
        self._bytes_delivered = 0
        self._timers_fired = 0
        self._wall = 0.0

        for node in nodes:
            self.add_node(node)
        for (sender, receiver), model in (links or {}).items():
            self.set_link_delay(sender, receiver, model)

    # ------------------------------------------------------------------ nodes and links

    def add_node(self, node: ProtocolNode, *, at: float | None = None) -> None:
        """Register a node. Before the run starts it starts with the others; afterwards
        it is down until ``at`` (default: now), when its ``on_start`` is called."""
        node_id = _check_node_id(node)
        if node_id in self._states:
            raise DuplicateNodeError(f"node id {node_id} is already in the simulation")
        if at is not None and not self._started:
            raise SimulationError("add_node(at=...) is only for nodes joining a started run")
        state = _NodeState(node)
        self._states[node_id] = state
        self._known.add(node_id)
        if self._started:
            state.is_down = True
            when = self._check_time(at)
            self._push_action(when, lambda: self._do_restart(node_id, None, "join"))

    def set_service(self, kind: type, node_id: int, *, answer_timeout: float | None = None) -> None:
        """Route every effect of ``kind`` (one of :data:`SERVED`) to node ``node_id`` as
        a message from the node that returned it. With ``answer_timeout``, an effect not
        answered that many seconds after it left is answered with a failure (see the
        class docstring)."""
        if kind not in SERVED:
            raise SimulationError(f"{kind.__name__} is not an effect a service serves")
        if node_id not in self._known:
            raise UnknownNodeError(f"service node {node_id} is not in the simulation")
        self._services[kind] = node_id
        if answer_timeout is None:
            self._answer_timeouts.pop(kind, None)
        else:
            self._answer_timeouts[kind] = check_seconds("answer_timeout", answer_timeout)

    def get_disk(self, node_id: int) -> dict[str, bytes]:
        """What ``node_id`` persisted (key -> data); kept across crashes and restarts."""
        return self._disks.setdefault(node_id, {})

    @property
    def nodes(self) -> Mapping[int, ProtocolNode]:
        """The current node object of every id (a snapshot)."""
        return {node_id: state.node for node_id, state in self._states.items()}

    def get_node(self, node_id: int) -> ProtocolNode:
        return self._get_state(node_id).node

    def is_up(self, node_id: int) -> bool:
        """False while the node is crashed (or has not joined yet)."""
        return not self._get_state(node_id).is_down

    def get_busy_until(self, node_id: int) -> float:
        """The virtual time until which the node is computing."""
        return self._get_state(node_id).busy_until

    def set_link_delay(self, sender: int, receiver: int, model: DelayModel) -> None:
        """Use ``model`` for messages from ``sender`` to ``receiver`` (one direction)."""
        self._get_state(sender)
        self._get_state(receiver)
        self._links[(sender, receiver)] = model

    def delay_for(self, sender: int, receiver: int) -> DelayModel:
        """The delay model of a link: a ``links`` override, else the default.

        A subclass may override this hook (for a topology, regions, ...); it is then
        called once per recipient of every ``Send``.
        """
        return self._links.get((sender, receiver), self._delay)

    # ------------------------------------------------------------------ faults and scenario

    def crash(self, node_id: int, at: float | None = None) -> None:
        """From ``at`` (default: now) the node handles nothing; its inbox and timers are
        dropped, and so is every message that reaches it while it is down."""
        self._get_state(node_id)
        self._push_action(self._check_time(at), lambda: self._do_crash(node_id))

    def restart(
        self, node_id: int, at: float | None = None, node: ProtocolNode | None = None
    ) -> None:
        """At ``at`` the crashed node comes back -- the same object, or ``node`` (same id)
        in its place -- and its ``on_start`` is called. Its CPU clock carries on."""
        self._get_state(node_id)
        if node is not None and _check_node_id(node) != node_id:
            raise SimulationError(f"replacement node has id {node.node_id}, expected {node_id}")
        self._push_action(self._check_time(at), lambda: self._do_restart(node_id, node, "restart"))

    def partition(self, groups: Sequence[Iterable[int]], at: float | None = None) -> None:
        """From ``at``, drop messages between nodes of different groups (replacing any
        partition in force). Nodes in no group form one more group together."""
        mapping: dict[int, int] = {}
        for index, group in enumerate(groups):
            for node_id in group:
                self._get_state(node_id)
                if node_id in mapping:
                    raise SimulationError(f"node {node_id} is in two partition groups")
                mapping[node_id] = index
        self._push_action(self._check_time(at), lambda: self._do_partition(mapping))

    def heal(self, at: float | None = None) -> None:
        """From ``at``, no partition (nothing if there is none)."""
        self._push_action(self._check_time(at), self._do_heal)

    def add_filter(self, fn: MessageFilter) -> MessageFilter:
        """Pass every copy through ``fn(time, sender, receiver, message)`` as it departs;
        ``None`` drops it, anything else is delivered instead. Filters apply in the order
        they were added. Returns ``fn`` (for :meth:`remove_filter`)."""
        self._filters.append(fn)
        return fn

    def remove_filter(self, fn: MessageFilter) -> None:
        if fn not in self._filters:
            raise SimulationError("no such filter")
        self._filters.remove(fn)

    def inject(
        self, receiver: int, message: Any, *, at: float | None = None, sender: int = EXTERNAL
    ) -> None:
        """Deliver ``message`` to ``receiver`` at ``at`` as if from ``sender`` (a client
        outside the simulation by default). No link delay; filters and partitions do not
        apply; not counted as sent."""
        state = self._get_state(receiver)
        size = _size_of(message) if self._count_bytes else 0
        self._push(self._check_time(at), _INJECT, state, sender, message, size)

    def call_at(self, at: float, action: Callable[[], None]) -> None:
        """Call ``action()`` at virtual time ``at`` (a scenario step); it is an event."""

        def call() -> None:
            self._record(self._now, EXTERNAL, "call", EXTERNAL, "", "")
            action()

        self._push_action(self._check_time(at), call)

    def on_report(self, callback: Callable[[ReportRecord], None]) -> None:
        """Call ``callback(record)`` for every report, as it is recorded."""
        self._observers.append(callback)

    # ------------------------------------------------------------------ running

    @property
    def now(self) -> float:
        return self._now

    @property
    def pending_events(self) -> int:
        """Entries in the event queue (including stale timers not yet skipped)."""
        return len(self._queue)

    def start(self) -> None:
        """Schedule ``on_start`` of every node at the current time (``run`` does this
        on first use)."""
        if self._started:
            raise SimulationError("the simulation has already started")
        self._started = True
        for state in self._states.values():
            self._push(self._now, _START, state, None, None, None)

    def run(self, until: float | None = None, max_events: int | None = None) -> RunStats:
        """Process events until the queue is empty, the next event is later than
        ``until`` (the clock then moves to ``until``) or ``max_events`` events were
        handled. Returns the counters of this call."""
        limit = None if until is None else self._check_time(until, "until")
        before = self.stats
        self._enter()
        wall = time.perf_counter()
        try:
            queue = self._queue
            step = self._step
            handled_before = self._events
            while queue:
                if limit is not None and queue[0][0] > limit:
                    break
                if max_events is not None and self._events - handled_before >= max_events:
                    break
                step()
            stopped_early = max_events is not None and self._events - handled_before >= max_events
            if limit is not None and not stopped_early and self._now < limit:
                self._now = limit
        finally:
            self._wall += time.perf_counter() - wall
            self._running = False
        return self._diff(before, self.stats)

    def run_until(
        self, predicate: Callable[[], bool], timeout: float, max_events: int | None = None
    ) -> bool:
        """Run until ``predicate()`` holds (checked before the first event and after
        each one) and return True; return False if ``timeout`` virtual seconds pass, the
        queue runs dry or ``max_events`` events were handled first."""
        deadline = self._now + check_seconds("timeout", timeout)
        self._enter()
        wall = time.perf_counter()
        try:
            if predicate():
                return True
            queue = self._queue
            step = self._step
            handled_before = self._events
            while queue and queue[0][0] <= deadline:
                if max_events is not None and self._events - handled_before >= max_events:
                    return False
                step()
                if predicate():
                    return True
            self._now = max(self._now, deadline)
            return False
        finally:
            self._wall += time.perf_counter() - wall
            self._running = False

    # ------------------------------------------------------------------ results

    @property
    def reports(self) -> Sequence[ReportRecord]:
        """Every report so far, in the order recorded (by time)."""
        return self._reports

    def get_reports(self, kind: str) -> list[ReportRecord]:
        return [record for record in self._reports if record.kind == kind]

    @property
    def trace(self) -> Sequence[TraceRecord]:
        """The trace records (only with ``keep_trace=True``)."""
        if not self._keep_trace:
            raise SimulationError("the trace is not kept; build the simulator with keep_trace=True")
        return self._trace + [TraceRecord(*record) for record in self._trace_buffer]

    def trace_digest(self) -> str:
        """Hex SHA-256 of the trace so far (see the module docstring)."""
        hasher = self._hasher.copy()
        if self._trace_buffer:
            hasher.update(encode(self._trace_buffer))
        return hasher.hexdigest()

    @property
    def stats(self) -> RunStats:
        """Counters since the simulator was built."""
        return RunStats(
            events=self._events,
            messages_sent=self._sent,
            messages_delivered=self._delivered,
            messages_dropped=sum(self._dropped.values()),
            dropped_by=dict(self._dropped),
            bytes_sent=self._bytes_sent,
            bytes_delivered=self._bytes_delivered,
            timers_fired=self._timers_fired,
            reports=len(self._reports),
            cpu_seconds={node_id: s.cpu_seconds for node_id, s in self._states.items()},
            start_time=0.0,
            end_time=self._now,
            wall_seconds=self._wall,
        )

    # ------------------------------------------------------------------ internals

    def _enter(self) -> None:
        if self._running:
            raise SimulationError("the simulator is already running (re-entrant run)")
        if not self._started:
            self.start()
        self._running = True

    @staticmethod
    def _diff(before: RunStats, after: RunStats) -> RunStats:
        return RunStats(
            events=after.events - before.events,
            messages_sent=after.messages_sent - before.messages_sent,
            messages_delivered=after.messages_delivered - before.messages_delivered,
            messages_dropped=after.messages_dropped - before.messages_dropped,
            dropped_by={k: v - before.dropped_by.get(k, 0) for k, v in after.dropped_by.items()},
            bytes_sent=after.bytes_sent - before.bytes_sent,
            bytes_delivered=after.bytes_delivered - before.bytes_delivered,
            timers_fired=after.timers_fired - before.timers_fired,
            reports=after.reports - before.reports,
            cpu_seconds={
                k: v - before.cpu_seconds.get(k, 0.0) for k, v in after.cpu_seconds.items()
            },
            start_time=before.end_time,
            end_time=after.end_time,
            wall_seconds=after.wall_seconds - before.wall_seconds,
        )

    def _get_state(self, node_id: int) -> _NodeState:
        state = self._states.get(node_id)
        if state is None:
            raise UnknownNodeError(f"unknown node id {node_id!r}")
        return state

    def _check_time(self, at: float | None, name: str = "at") -> float:
        if at is None:
            return self._now
        when = check_seconds(name, at)
        if when < self._now:
            raise SimulationError(f"{name}={when} is in the past (now={self._now})")
        return when

    def _push(self, at: float, kind: int, state: Any, a: Any, b: Any, c: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, state, a, b, c))

    @property
    def answers_timed_out(self) -> int:
        """Served effects answered by the simulator with a failure (see set_service)."""
        return self._answers_timed_out

    def _await_answer(self, node_id: int, tag: str, kind: type, due: float) -> None:
        key = (node_id, tag)
        self._awaited[key] = kind
        self._push_action(due, lambda: self._answer_due(key, kind))

    def _answer_due(self, key: tuple[int, str], kind: type) -> None:
        """The answer to a served effect is overdue: answer it with a failure."""
        if self._awaited.get(key) is not kind:
            return  # answered, or its node crashed since
        del self._awaited[key]
        node_id, tag = key
        state = self._states[node_id]
        if state.is_down:
            return
        why = "no answer in time (lost on the way, or the service is down)"
        answer: Any
        if kind is SubmitTx:
            answer = TxOutcome(tag, "failed", reason=why)
        elif kind is ReadChain:
            answer = ChainRead(tag, error=why, passing=True)
        elif kind is CallEnclave:
            answer = EnclaveAnswer(tag, error=f"enclave_unavailable: {why}")
        elif kind is AskPeers:
            answer = PeerAnswers(tag, errors=(why,))
        else:
            answer = CheckpointStored(tag, error=why)
        self._answers_timed_out += 1
        self._record(self._now, node_id, "answer_timeout", EXTERNAL, kind.__name__, tag)
        self._arrive(state, (_INJECT, self._services[kind], answer, 0))

    def _push_action(self, at: float, action: Callable[[], None]) -> None:
        self._push(at, _ACTION, None, action, None, None)

    def _record(
        self, at: float, node_id: int, event: str, sender: int, name: str, detail: str
    ) -> None:
        buffer = self._trace_buffer
        buffer.append((round(at * 1e9), node_id, event, sender, name, detail))
        if len(buffer) >= _TRACE_CHUNK:
            self._hasher.update(encode(buffer))
            if self._keep_trace:
                self._trace.extend(TraceRecord(*record) for record in buffer)
            buffer.clear()

    def _drop(self, at: float, receiver: int, sender: int, message: Any, reason: str) -> None:
        self._dropped[reason] += 1
        self._record(at, receiver, "drop", sender, type(message).__name__, reason)

    def _step(self) -> None:
        at, _, kind, state, a, b, c = heapq.heappop(self._queue)
        if kind == _TIMER and state.timers.get(a) != b:
            self._stale_timers -= 1
            return  # replaced, cancelled or crashed: skipped without moving the clock
        self._now = at
        if kind == _MESSAGE or kind == _INJECT:
            if state.is_down:
                self._drop(at, state.node_id, a, b, "down")
                return
            groups = self._groups
            if (
                kind == _MESSAGE
                and groups is not None
                and groups.get(a, -1) != groups.get(state.node_id, -1)
            ):
                self._drop(at, state.node_id, a, b, "partition")
                return
            if self._awaited:  # an answer to a served effect has arrived in time
                tag = getattr(b, "tag", None)
                if isinstance(tag, str):
                    awaited = self._awaited.get((state.node_id, tag))
                    if awaited is not None and self._services.get(awaited) == a:
                        del self._awaited[(state.node_id, tag)]
            self._arrive(state, (kind, a, b, c))
        elif kind == _TIMER:
            self._arrive(state, (_TIMER, a, b, None))
        elif kind == _WAKE:
            self._on_wake(state)
        elif kind == _START:
            if not state.is_down:
                self._arrive(state, (_START, None, None, None))
        elif kind == _REPORT:
            self._add_report(at, state.node_id, a, b)
        else:
            self._events += 1
            a()

    def _arrive(self, state: _NodeState, item: _Item) -> None:
        if not state.inbox and state.busy_until <= self._now:
            self._handle(state, item)
            return
        state.inbox.append(item)
        if not state.wake_pending:
            state.wake_pending = True
            self._push(max(state.busy_until, self._now), _WAKE, state, None, None, None)

    def _on_wake(self, state: _NodeState) -> None:
        # One handler per wake, so that run_until sees every event.
        state.wake_pending = False
        inbox = state.inbox
        if state.busy_until <= self._now:
            while inbox and not self._handle(state, inbox.popleft()):
                pass  # a timer cancelled while it waited: take the next one
        if inbox:
            state.wake_pending = True
            self._push(state.busy_until, _WAKE, state, None, None, None)

    def _handle(self, state: _NodeState, item: _Item) -> bool:
        kind, a, b, c = item
        now = self._now
        node = state.node
        node_id = state.node_id
        cpu = self._cpu
        message: Any = None
        try:
            if kind == _MESSAGE or kind == _INJECT:
                message = b
                self._delivered += 1
                self._bytes_delivered += c
                self._record(now, node_id, "message", a, type(b).__name__, "")
                if self._zero_cpu:
                    effects = node.on_message(a, b, now)
                    cost = 0.0
                else:
                    begun = cpu.begin()
                    effects = node.on_message(a, b, now)
                    cost = cpu.charge(begun, node_id, b, effects)
            elif kind == _TIMER:
                if state.timers.get(a) != b:
                    return False  # cancelled or replaced while the node was busy
                del state.timers[a]
                self._timers_fired += 1
                self._record(now, node_id, "timer", EXTERNAL, a, "")
                if self._zero_cpu:
                    effects = node.on_timer(a, now)
                    cost = 0.0
                else:
                    begun = cpu.begin()
                    effects = node.on_timer(a, now)
                    cost = cpu.charge(begun, node_id, None, effects)
            else:
                self._record(now, node_id, "start", EXTERNAL, "", "")
                if self._zero_cpu:
                    effects = node.on_start(now)
                    cost = 0.0
                else:
                    begun = cpu.begin()
                    effects = node.on_start(now)
                    cost = cpu.charge(begun, node_id, None, effects)
        except Exception as exc:
            what = "on_start" if kind == _START else "on_timer" if kind == _TIMER else "on_message"
            about = "" if message is None else f" handling {type(message).__name__}"
            exc.add_note(f"in {what} of node {node_id} at t={now!r}{about}")
            raise
        self._events += 1
        if not cost >= 0.0 or cost == math.inf:
            raise SimulationError(f"CPU model charged {cost!r} seconds to node {node_id}")
        done = now + cost
        state.busy_until = done
        state.cpu_seconds += cost
        if effects or type(effects) is not list:
            self._apply(state, done, effects)
        return True

    def _check_effects(self, node_id: int, effects: Any) -> None:
        if not isinstance(effects, list | tuple):
            raise SimulationError(
                f"node {node_id} returned {type(effects).__name__}, expected a list of effects"
            )
        known = self._known
        for effect in effects:
            kind = type(effect)
            if kind is Send:
                to = effect.to
                if not isinstance(to, tuple | list):
                    raise SimulationError(
                        f"node {node_id}: Send.to must be a tuple of node ids, "
                        f"got {type(to).__name__}"
                    )
                if not known.issuperset(to) and not (known | {EXTERNAL}).issuperset(to):
                    unknown = sorted({r for r in to if r not in known}, key=repr)
                    raise UnknownNodeError(
                        f"node {node_id} sent {type(effect.message).__name__} "
                        f"to unknown node(s) {unknown}"
                    )
            elif kind is SetTimer:
                delay = effect.delay
                if (
                    isinstance(delay, bool)
                    or not isinstance(delay, int | float)
                    or not 0.0 <= delay < math.inf
                ):
                    raise SimulationError(
                        f"node {node_id}: timer {effect.name!r} has invalid delay {delay!r}"
                    )
            elif kind in self._services or kind is Persist:
                continue
            elif kind in SERVED:
                raise SimulationError(
                    f"node {node_id} returned {kind.__name__}, which no service serves "
                    "(Simulator.set_service)"
                )
            elif kind is not CancelTimer and kind is not Report:
                raise SimulationError(f"node {node_id} returned a non-effect {kind.__name__}")

    def _apply(self, state: _NodeState, done: float, effects: Sequence[Effect]) -> None:
        self._check_effects(state.node_id, effects)
        for effect in effects:
            if type(effect) is Send:
                to = effect.to
                if EXTERNAL in to:  # an answer to the outside world: nobody to deliver to
                    self._dropped["external"] += sum(1 for r in to if r == EXTERNAL)
                    to = tuple(r for r in to if r != EXTERNAL)
                if to:
                    self._send(state.node_id, done, to, effect.message)
            elif type(effect) is SetTimer:
                self._seq += 1
                generation = self._seq
                if effect.name in state.timers:
                    self._stale_timers += 1
                state.timers[effect.name] = generation
                heapq.heappush(
                    self._queue,
                    (done + effect.delay, generation, _TIMER, state, effect.name, generation, None),
                )
            elif type(effect) is CancelTimer:
                if state.timers.pop(effect.name, None) is not None:
                    self._stale_timers += 1
            elif type(effect) is Report:
                if done == self._now:
                    self._add_report(done, state.node_id, effect.kind, effect.data)
                else:
                    self._push(done, _REPORT, state, effect.kind, effect.data, None)
            elif type(effect) is Persist:
                self._disks.setdefault(state.node_id, {})[effect.key] = bytes(effect.data)
            else:
                kind = type(effect)
                self._send(state.node_id, done, (self._services[kind],), effect)
                timeout = self._answer_timeouts.get(kind)
                tag = getattr(effect, "tag", None)
                if timeout is not None and isinstance(tag, str):
                    self._await_answer(state.node_id, tag, kind, done + timeout)
        if self._stale_timers > _COMPACT_MIN and 2 * self._stale_timers > len(self._queue):
            self._compact()

    def _compact(self) -> None:
        """Drop stale timer entries from the heap (order of the rest is unchanged)."""
        queue = self._queue
        queue[:] = [e for e in queue if e[2] != _TIMER or e[3].timers.get(e[4]) == e[5]]
        heapq.heapify(queue)
        self._stale_timers = 0

    def _send(self, sender: int, depart: float, to: Sequence[int], message: Any) -> None:
        copies = len(to)
        self._sent += copies
        size = 0
        if self._count_bytes:
            size = _size_of(message)
            self._bytes_sent += size * copies
        states = self._states
        queue = self._queue
        push = heapq.heappush
        seq = self._seq
        if not self._filters and not self._links and not self._custom_delay_for:
            model = self._delay
            if type(model) is Fixed:
                arrive = depart + model.delay
                for receiver in to:
                    seq += 1
                    push(queue, (arrive, seq, _MESSAGE, states[receiver], sender, message, size))
            else:
                sample = model.sample
                rng = self._rng
                for receiver in to:
                    d = sample(rng, sender, receiver)
                    if not 0.0 <= d < math.inf:
                        self._seq = seq
                        raise SimulationError(f"delay model returned {d!r}")
                    seq += 1
                    push(
                        queue,
                        (depart + d, seq, _MESSAGE, states[receiver], sender, message, size),
                    )
            self._seq = seq
            return
        # General path: filters and per-link models, one receiver at a time.
        filters = self._filters
        rng = self._rng
        for receiver in to:
            copy = message
            copy_size = size
            if filters:
                for fn in filters:
                    copy = fn(depart, sender, receiver, copy)
                    if copy is None:
                        break
                if copy is None:
                    self._drop(depart, receiver, sender, message, "filter")
                    continue
                if copy is not message and self._count_bytes:
                    copy_size = _size_of(copy)
            d = self.delay_for(sender, receiver).sample(rng, sender, receiver)
            if not 0.0 <= d < math.inf:
                raise SimulationError(f"delay model returned {d!r}")
            self._push(depart + d, _MESSAGE, states[receiver], sender, copy, copy_size)

    def _add_report(self, at: float, node_id: int, kind: str, data: Any) -> None:
        record = ReportRecord(at, node_id, kind, data)
        self._reports.append(record)
        self._record(at, node_id, "report", EXTERNAL, str(kind), "")
        for callback in self._observers:
            callback(record)

    def _do_crash(self, node_id: int) -> None:
        state = self._states[node_id]
        if state.is_down:
            raise SimulationError(f"node {node_id} crashed at t={self._now} but is already down")
        self._record(self._now, node_id, "crash", EXTERNAL, "", "")
        state.is_down = True
        self._stale_timers += len(state.timers)
        state.timers.clear()
        for key in [k for k in self._awaited if k[0] == node_id]:
            del self._awaited[key]  # a restarted node awaits none of its old answers
        for kind, a, b, _ in state.inbox:
            if kind == _MESSAGE or kind == _INJECT:
                self._drop(self._now, node_id, a, b, "down")
        state.inbox.clear()

    def _do_restart(self, node_id: int, node: ProtocolNode | None, event: str) -> None:
        state = self._states[node_id]
        if not state.is_down:
            raise SimulationError(f"node {node_id} restarted at t={self._now} but is not down")
        self._record(self._now, node_id, event, EXTERNAL, "", "")
        if node is not None:
            state.node = node
        state.is_down = False
        self._arrive(state, (_START, None, None, None))

    def _do_partition(self, mapping: dict[int, int]) -> None:
        groups = sorted(set(mapping.values()))
        detail = ";".join(
            ",".join(str(n) for n in sorted(k for k, g in mapping.items() if g == group))
            for group in groups
        )
        self._record(self._now, EXTERNAL, "partition", EXTERNAL, "", detail)
        self._groups = mapping

    def _do_heal(self) -> None:
        self._record(self._now, EXTERNAL, "heal", EXTERNAL, "", "")
        self._groups = None
