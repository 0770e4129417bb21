"""The network driver: runs one host core against the chain, enclaves, peers and disk.

Theory of operation
-------------------
A host core (:class:`~sealbridge.core.effects.ProtocolNode`: ``on_start``,
``on_message``, ``on_timer``, each given the time) decides; this driver carries out
what it decides, the same way for every role. The simulator carries out the same
effects in virtual time (:mod:`sealbridge.sim.engine`).

**One loop thread.** Every call into the core happens on the driver's loop thread, so a
core needs no locks. The loop takes the earliest of: an input from its inbox (an answer
to an effect, a peer's message) or a due timer. HTTP handlers that need an answer at
once hand the loop a function with :meth:`NetworkDriver.call`; the loop runs it, carries
out the effects it returns, and hands back its answer.

**Effects.**

* ``SetTimer`` / ``CancelTimer`` -- a heap of deadlines on the monotonic clock (a
  timer set again under the same name replaces the old one);
* ``Persist`` -- written on the loop thread (through :class:`Executors`' ``persist``)
  before the next input is handled;
* ``SubmitTx``, ``ReadChain``, ``CallEnclave``, ``AskPeers`` -- run on a small pool of
  I/O threads, so a slow RPC never stalls the loop; the answer (``TxOutcome``,
  ``ChainRead``, ``EnclaveAnswer``, ``PeerAnswers``) comes back through the inbox with
  the effect's tag;
* ``StoreCheckpoint`` -- run on the same pool by the role's ``store_checkpoint``
  executor (the worker's: HTTP to the storage nodes, with its own timeout) and answered
  with ``CheckpointStored``; not retried (a checkpoint that was not stored is an
  answer the core decides on);
* ``Send`` -- handed to the role's ``send`` executor (HTTP to peers);
* ``Report`` -- logged, the latest of each kind kept for the status endpoint, and
  handed to the role's ``report`` executor if it has one (its own log lines).

**One retry policy** (:data:`RETRY`, tenacity): a passing failure -- the chain's RPC or
a peer unreachable (``RpcError``, ``TransportError``) -- is retried with exponential
backoff for up to ``RETRY_SECONDS``; after that, or on any other error, the core gets
the failure as its answer (``TxOutcome(status="failed")``, ``ChainRead(error=...)``) and
decides what to do. A reverted transaction is not retried: it is an answer.

**Inline mode.** A host whose own loop is not (yet) this driver's -- the worker,
gatekeeper and gateway hosts follow the chain on their own thread -- runs a host core
with ``inline=True``: nothing starts a thread, :meth:`NetworkDriver.step` (called from
the host's loop) fires due timers and carries out effects on the calling thread, chain
and enclave effects included, until nothing is due.

**One shutdown path.** :meth:`NetworkDriver.stop` sets the stop flag, wakes the loop,
joins it and shuts the I/O pool down (queued work is cancelled). A core handler that
raises stops the driver with ``phase = failed`` and the error kept for the status
endpoint; the process keeps serving its status.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
)

from sealbridge.chain.errors import RpcError, TransactionReverted
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
from sealbridge.core.errors import SealbridgeError
from sealbridge.net.http import TransportError
from sealbridge.tee.errors import EnclaveCallError

log = logging.getLogger("sealbridge.node.driver")
T = TypeVar("T")

RETRY_SECONDS = 20.0
TRANSIENT = (RpcError, TransportError)
IO_THREADS = 4


def get_retrying(
    seconds: float = RETRY_SECONDS, stopped: threading.Event | None = None
) -> Retrying:
    """The one retry policy of network I/O: passing failures, exponential backoff, for
    ``seconds`` at most, and not past ``stopped`` (a driver's shutdown)."""
    stop = stop_after_delay(seconds)
    if stopped is not None:
        return Retrying(
            retry=retry_if_exception_type(TRANSIENT),
            wait=wait_exponential(multiplier=0.1, min=0.1, max=2.0),
            stop=stop | stop_when_event_set(stopped),
            sleep=lambda seconds: None if stopped.wait(seconds) else None,
            reraise=True,
        )
    return Retrying(
        retry=retry_if_exception_type(TRANSIENT),
        wait=wait_exponential(multiplier=0.1, min=0.1, max=2.0),
        stop=stop,
        reraise=True,
    )


RETRY = get_retrying()


@dataclass
class Executors:
    """How a role carries out each kind of effect (the I/O half of a node)."""

    # tx -> the block it was mined in, or None when it was sent without waiting
    submit_tx: Callable[[Any], int | None] | None = None
    read_chain: Callable[[Any], Any] | None = None  # query -> value
    call_enclave: Callable[[Any, Any], Any] | None = None  # (declaration, request) -> response
    persist: Callable[[str, bytes], None] | None = None
    # (request, needed) -> (answers, errors): the role's peers asked one after another
    ask_peers: Callable[[Any, int], tuple[list[Any], list[str]]] | None = None
    # (kind, data) of every Report, for the role's own log lines and counters
    report: Callable[[str, Any], None] | None = None
    # (blob, threshold) -> the confirming storage nodes' (node id, signature), sorted
    store_checkpoint: Callable[[bytes, int], Sequence[tuple[bytes, bytes]]] | None = None
    send: Callable[[tuple[int, ...], Any], None] | None = None
    retry_seconds: float = RETRY_SECONDS


@dataclass
class DriverStatus:
    phase: str = "starting"  # starting | running | stopped | failed
    error: str = ""
    reports: dict[str, Any] = field(default_factory=dict)


class NetworkDriver:
    """Runs ``core`` on a loop thread, carrying out its effects (see module docstring)."""

    def __init__(
        self, core: ProtocolNode, executors: Executors, *, name: str = "node", inline: bool = False
    ) -> None:
        self.core = core
        self.executors = executors
        self.name = name
        self.inline = inline
        self.status = DriverStatus()
        self._stop = threading.Event()
        self._retrying = get_retrying(executors.retry_seconds, self._stop)
        self._inbox: queue.SimpleQueue[tuple[int, Any] | None] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, str]] = []
        self._timer_gen: dict[str, int] = {}
        self._seq = itertools.count()
        self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix=f"{name}-io")
        self._thread: threading.Thread | None = None
        self._loop_thread: threading.Thread | None = None
        self._before_start = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"{self.name}-loop", daemon=True)
        self._thread.start()

    def run(self) -> None:
        """The loop (on the calling thread); returns when stopped or failed."""
        with self._before_start:
            if self._stop.is_set():
                return
            self._loop_thread = threading.current_thread()
            self.status.phase = "running"
        try:
            self._apply(self.core.on_start(time.time()))
            while not self._stop.is_set():
                item = self._next_input()
                if item is None:
                    continue
                sender, message = item
                self._handle(sender, message)
        except Exception as exc:  # keep the process up to report the failure
            self.status.phase = "failed"
            self.status.error = f"{type(exc).__name__}: {exc}"
            log.exception("%s: the host core failed", self.name)
        else:
            self.status.phase = "stopped"
        finally:
            self._stop.set()
            self._fail_pending()

    def _handle(self, sender: int, message: Any) -> None:
        if isinstance(message, _Call):
            message.run(self)
            return
        try:
            effects = self.core.on_message(sender, message, time.time())
        except SealbridgeError as exc:  # a refused input changes nothing
            log.warning("%s: refused %s: %s", self.name, type(message).__name__, exc)
            return
        self._apply(effects)

    def stop(self, timeout: float = 10.0) -> None:
        with self._before_start:
            self._stop.set()
            if self.status.phase == "starting":
                self.status.phase = "stopped"
        self._inbox.put(None)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._fail_pending()

    def _fail_pending(self) -> None:
        """Fail the calls that will never run now, rather than at their timeout."""
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is not None and isinstance(item[1], _Call):
                item[1].fail(DriverStopped(f"{self.name} stopped"))

    @property
    def is_running(self) -> bool:
        return self.status.phase == "running"

    def step(self, max_rounds: int = 64) -> None:
        """Inline mode: start the core if needed, then handle due timers and answers on
        the calling thread until nothing is due (at most ``max_rounds`` rounds)."""
        if not self.inline:
            raise DriverConfigError(f"{self.name}: step() is for an inline driver")
        if self.status.phase == "starting":
            self.status.phase = "running"
            self._apply(self.core.on_start(time.time()))
        for _ in range(max_rounds):
            progressed = self._fire_due_timer() == 0.0  # at most one due timer per round
            while True:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    continue
                sender, message = item
                self._handle(sender, message)
                progressed = True
            if not progressed:
                return

    # -- inputs ------------------------------------------------------------------------
    def deliver(self, sender: int, message: Any) -> None:
        """Hand the core an input (from any thread)."""
        self._inbox.put((sender, message))

    def call(self, fn: Callable[[], tuple[list[Effect], T]], timeout: float = 60.0) -> T:
        """Run ``fn`` on the loop thread (it may use the core freely), carry out the
        effects it returns, and return its answer. From the loop thread itself, runs at
        once; before the loop is started, runs on the caller's thread (one call at a
        time). Raises what ``fn`` raises."""
        if self.inline:
            raise DriverConfigError(f"{self.name}: an inline driver is stepped, not called")
        if threading.current_thread() is self._loop_thread:
            effects, answer = fn()
            self._apply(effects)
            return answer
        if self._loop_thread is None:
            with self._before_start:
                if self._stop.is_set():
                    raise DriverStopped(f"{self.name}: stopped")
                if self._loop_thread is None:
                    effects, answer = fn()
                    self._apply(effects)
                    return answer
        if self._stop.is_set() or not self.is_running:
            raise DriverStopped(f"{self.name}: the host core is not running ({self.status.phase})")
        call: _Call = _Call(fn)
        self._inbox.put((0, call))
        if self._stop.is_set():  # stopped meanwhile: the loop may never take it
            self._fail_pending()
        try:
            return call.future.result(timeout)  # type: ignore[no-any-return]
        except FutureTimeout:
            if call.future.cancel():
                raise DriverBusy(f"{self.name}: no answer within {timeout:.0f}s") from None
            return call.future.result()  # type: ignore[no-any-return]

    def _fire_due_timer(self) -> float | None:
        """Fire the earliest timer if it is due (returns 0.0); else the seconds until
        the next one is due, or None when no timer is set. Replaced or cancelled timers
        leave the heap on the way."""
        while self._timers:
            deadline, gen, name = self._timers[0]
            if self._timer_gen.get(name) != gen:
                heapq.heappop(self._timers)
                continue
            wait = deadline - time.monotonic()
            if wait > 0:
                return wait
            heapq.heappop(self._timers)
            del self._timer_gen[name]
            self._apply(self.core.on_timer(name, time.time()))
            return 0.0
        return None

    def _next_input(self) -> tuple[int, Any] | None:
        wait = self._fire_due_timer()
        if wait is None:
            return self._inbox.get()
        try:  # after a fired timer, a timer always due must not starve the inbox
            return self._inbox.get_nowait() if wait == 0.0 else self._inbox.get(timeout=wait)
        except queue.Empty:
            return None

    # -- effects -----------------------------------------------------------------------
    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, SetTimer):
                gen = next(self._seq)
                self._timer_gen[effect.name] = gen
                heapq.heappush(self._timers, (time.monotonic() + effect.delay, gen, effect.name))
                if len(self._timers) > 64 and len(self._timers) > 2 * len(self._timer_gen):
                    self._timers = [t for t in self._timers if self._timer_gen.get(t[2]) == t[1]]
                    heapq.heapify(self._timers)  # replaced timers left the heap
            elif isinstance(effect, CancelTimer):
                self._timer_gen.pop(effect.name, None)
            elif isinstance(effect, Persist):
                if self.executors.persist is None:
                    raise DriverConfigError(f"{self.name} cannot persist {effect.key!r}")
                self.executors.persist(effect.key, effect.data)
            elif isinstance(effect, _IO_EFFECTS):
                if self.inline:
                    self._run_io(effect)
                else:
                    self._pool.submit(self._run_io, effect)
            elif isinstance(effect, Send):
                if self.executors.send is None:
                    raise DriverConfigError(f"{self.name} cannot send to peers")
                if self.inline:
                    self._run_send(effect)
                else:
                    self._pool.submit(self._run_send, effect)
            elif isinstance(effect, Report):
                self.status.reports[effect.kind] = effect.data
                log.info("%s: %s %s", self.name, effect.kind, effect.data)
                if self.executors.report is not None:
                    self.executors.report(effect.kind, effect.data)
            else:
                raise DriverConfigError(f"{self.name}: not an effect: {type(effect).__name__}")

    def _run_io(self, effect: _IoEffect) -> None:
        answer: Any
        try:
            if isinstance(effect, SubmitTx):
                answer = self._submit(effect)
            elif isinstance(effect, ReadChain):
                answer = self._read(effect)
            elif isinstance(effect, AskPeers):
                answer = self._ask(effect)
            elif isinstance(effect, StoreCheckpoint):
                answer = self._store(effect)
            else:
                answer = self._ecall(effect)
        except Exception as exc:  # an executor bug must reach the core, not vanish
            log.exception("%s: effect %s failed", self.name, type(effect).__name__)
            answer = _failure(effect, f"{type(exc).__name__}: {exc}")
        if not self._stop.is_set():
            self.deliver(0, answer)

    def _submit(self, effect: SubmitTx) -> TxOutcome:
        run = self.executors.submit_tx
        if run is None:
            return TxOutcome(effect.tag, "failed", reason="this node sends no transactions")
        try:
            block = self._retrying(run, effect.tx)
        except TransactionReverted as exc:
            return TxOutcome(effect.tag, "reverted", reason=exc.reason or exc.message)
        except SealbridgeError as exc:
            return TxOutcome(effect.tag, "failed", reason=exc.message)
        if block is None:
            return TxOutcome(effect.tag, "sent")
        return TxOutcome(effect.tag, "mined", block_number=int(block))

    def _read(self, effect: ReadChain) -> ChainRead:
        run = self.executors.read_chain
        if run is None:
            return ChainRead(effect.tag, error="this node reads no chain")
        try:
            return ChainRead(effect.tag, self._retrying(run, effect.query))
        except SealbridgeError as exc:
            return ChainRead(effect.tag, error=exc.message, passing=isinstance(exc, TRANSIENT))

    def _ecall(self, effect: CallEnclave) -> EnclaveAnswer:
        run = self.executors.call_enclave
        if run is None:
            return EnclaveAnswer(effect.tag, error="this node has no enclave")
        try:
            return EnclaveAnswer(effect.tag, run(effect.ecall, effect.request))
        except EnclaveCallError as exc:  # the refusal's own code, from inside the enclave
            return EnclaveAnswer(effect.tag, error=f"{exc.remote_code}: {exc.message}")
        except SealbridgeError as exc:
            return EnclaveAnswer(effect.tag, error=f"{exc.code}: {exc.message}")

    def _ask(self, effect: AskPeers) -> PeerAnswers:
        run = self.executors.ask_peers
        if run is None:
            return PeerAnswers(effect.tag, errors=("this node has no peers to ask",))
        answers, errors = run(effect.request, effect.needed)
        return PeerAnswers(effect.tag, tuple(answers), tuple(errors))

    def _store(self, effect: StoreCheckpoint) -> CheckpointStored:
        run = self.executors.store_checkpoint
        if run is None:
            return CheckpointStored(effect.tag, error="this node stores no checkpoints")
        try:
            confirmations = list(run(effect.blob, effect.threshold))
        except SealbridgeError as exc:
            return CheckpointStored(effect.tag, error=exc.message)
        return CheckpointStored(
            effect.tag,
            node_ids=tuple(node_id for node_id, _ in confirmations),
            signatures=tuple(signature for _, signature in confirmations),
        )

    def _run_send(self, effect: Send) -> None:
        send = self.executors.send
        if send is None:
            return
        try:
            self._retrying(send, effect.to, effect.message)
        except SealbridgeError as exc:  # a peer that stays down: the core's timers cope
            log.warning("%s: could not send to %s: %s", self.name, effect.to, exc.message)
        except Exception:  # an executor bug: say so, never vanish
            log.exception("%s: sending to %s failed", self.name, effect.to)


_IoEffect = SubmitTx | ReadChain | CallEnclave | AskPeers | StoreCheckpoint
_IO_EFFECTS = (SubmitTx, ReadChain, CallEnclave, AskPeers, StoreCheckpoint)


class DriverStopped(SealbridgeError):
    code = "node_stopped"


class DriverConfigError(SealbridgeError):
    code = "driver_config"


class DriverBusy(SealbridgeError):
    """A call got no answer in time (it was withdrawn: it will not run later)."""

    code = "node_busy"


class _Call:
    def __init__(self, fn: Callable[[], tuple[list[Effect], Any]]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()

    def fail(self, exc: BaseException) -> None:
        if self.future.set_running_or_notify_cancel():
            self.future.set_exception(exc)

    def run(self, driver: NetworkDriver) -> None:
        if not self.future.set_running_or_notify_cancel():
            return  # withdrawn by a caller that stopped waiting
        try:
            effects, answer = self.fn()
            driver._apply(effects)
        except BaseException as exc:
            self.future.set_exception(exc)
            return
        self.future.set_result(answer)


def _failure(effect: _IoEffect, reason: str) -> Any:
    if isinstance(effect, SubmitTx):
        return TxOutcome(effect.tag, "failed", reason=reason)
    if isinstance(effect, AskPeers):
        return PeerAnswers(effect.tag, errors=(reason,))
    if isinstance(effect, ReadChain):
        return ChainRead(effect.tag, error=reason)
    if isinstance(effect, StoreCheckpoint):
        return CheckpointStored(effect.tag, error=reason)
    return EnclaveAnswer(effect.tag, error=reason)
