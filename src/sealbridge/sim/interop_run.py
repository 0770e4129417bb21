"""Running InterTrust scenarios on the simulator: transfers, faults, outcomes, costs.

Theory of operation
-------------------
:func:`run_interop` builds a deployment (:func:`sealbridge.sim.interop_scenario.build_deployment`),
puts every core into a :class:`~sealbridge.sim.engine.Simulator`, schedules the
transfers (each a :class:`TransferPlan`: a ``TransferRequest`` injected into the source
gateway of a pair drawn from the seed unless given, possibly several copies) and the
faults (:class:`FaultPlan`: replica crashes and restarts, gateway crashes at a time or
right after a given phase report of that gateway, restarted as a fresh object with the
same sealed identity), then runs in steps of ``step`` virtual seconds (link delays:
``delay``, or ``links`` per directed link) until the run is *quiescent* or ``timeout``
passes.

Quiescent: every transfer has been submitted and is decided on both chains as seen by the
most advanced honest replica of each AS (source RELEASED, UNLOCKED, ABORTED or never locked;
destination PAID, REFUSED or never touched; nothing LOCKED), every gateway that is up is
idle and no honest replica that is up holds an unexecuted request.

The result (:class:`InteropRun`) has, per transfer, its states on both chains, the
outcome (``committed`` = released and paid, ``aborted`` = neither, anything else is a
violation) and the time of each phase (``accepted``, ``setup``, ``lock``, ``verify``,
``release``/``unlock``, from the gateways' ``interop/phase`` reports); every threshold
signature with its message and group public key (hex, standard BLS: check them with any
implementation); the simulator's counters; the gateways' key-dealing costs; and
:func:`check_invariants`' list of violations (atomicity per transfer, per-AS supply,
value conservation across both chains, agreement of honest replicas).

:func:`compare_key_modes` runs one scenario with per-transaction keys and with epoch keys
and reports what the keys cost: dealings, CPU seconds of dealing and encryption, key
messages and bytes per transfer, all messages and bytes per transfer, latency.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sealbridge.consensus.ledger import (
    BRIDGE_ACCOUNT,
    CrossState,
    CrossTransfer,
    compute_transfer_id,
    is_system_account,
)
from sealbridge.core.encoding import encode
from sealbridge.interop.messages import KeyAsk, KeyGrant, ShareDelivery, TransferRequest
from sealbridge.interop.replica import InteropReplica
from sealbridge.interop.setup import KeyMode
from sealbridge.sim.delays import DelayModel, Uniform
from sealbridge.sim.engine import CpuModel, ReportRecord, RunStats, Simulator, ZeroCpu
from sealbridge.sim.interop_scenario import (
    AS_A,
    AS_B,
    InteropDeployment,
    InteropSpec,
    build_deployment,
)

__all__ = [
    "FaultPlan",
    "GatewayCrash",
    "InteropRun",
    "KeyModeCost",
    "ReplicaCrash",
    "TransferPlan",
    "TransferResult",
    "check_invariants",
    "compare_key_modes",
    "run_interop",
]

_FINAL_SOURCE = (CrossState.RELEASED, CrossState.UNLOCKED, CrossState.ABORTED, None)
_FINAL_DEST = (CrossState.PAID, CrossState.REFUSED, None)
_KEY_MESSAGES = (KeyAsk, KeyGrant, ShareDelivery)


@dataclass(frozen=True)
class TransferPlan:
    """One user transfer: ``amount`` from ``sender`` on ``src_as`` to ``recipient`` on the
    other AS, submitted at ``submit_at`` with a deadline ``timeout`` later, to the source
    gateway of ``pair`` (None: drawn from the run's seed); ``copies`` > 1 submits the same
    transfer again (to the next pair's gateway) ``copy_gap`` seconds apart."""

    src_as: int
    sender: str
    recipient: str
    amount: int
    submit_at: float = 0.0
    timeout: float = 10.0
    pair: int | None = None
    copies: int = 1
    copy_gap: float = 0.05
    salt: bytes = b""


@dataclass(frozen=True)
class ReplicaCrash:
    node: int
    at: float
    restart_at: float | None = None


@dataclass(frozen=True)
class GatewayCrash:
    """Crash ``node`` at ``at``, or right after its first ``interop/phase`` report named
    ``after_phase``; restart it ``restart_after`` seconds later (None: never)."""

    node: int
    at: float | None = None
    after_phase: str | None = None
    restart_after: float | None = 1.0


@dataclass(frozen=True)
class FaultPlan:
    replica_crashes: tuple[ReplicaCrash, ...] = ()
    gateway_crashes: tuple[GatewayCrash, ...] = ()


@dataclass
class TransferResult:
    transfer: CrossTransfer
    transfer_id: str
    pair: int
    source_state: CrossState | None
    dest_state: CrossState | None
    outcome: str  # committed | aborted | violation
    phases: dict[str, float]


@dataclass
class InteropRun:
    deployment: InteropDeployment
    simulator: Simulator
    results: list[TransferResult]
    signatures: list[dict[str, Any]]
    stats: RunStats
    quiescent: bool
    violations: list[str]
    message_counts: Counter[str] = field(default_factory=Counter)
    message_bytes: Counter[str] = field(default_factory=Counter)

    @property
    def committed(self) -> int:
        return sum(1 for r in self.results if r.outcome == "committed")

    @property
    def aborted(self) -> int:
        return sum(1 for r in self.results if r.outcome == "aborted")

    def get_gateway_totals(self) -> dict[str, float]:
        """Key-dealing costs summed over every gateway object that ran."""
        totals: dict[str, float] = defaultdict(float)
        for gateway in self.deployment.all_gateways:
            s = gateway.stats
            totals["keygens"] += s.keygens
            totals["keygen_seconds"] += s.keygen_seconds
            totals["encryptions"] += s.encryptions
            totals["grant_bytes"] += s.grant_bytes
            totals["shares_delivered"] += s.shares_delivered
            totals["certificates"] += s.certificates
            totals["bad_shares"] += s.bad_shares
            totals["adopted"] += s.adopted
            totals["duplicates"] += s.duplicates
        return dict(totals)


# --- running -------------------------------------------------------------------------------------


def _reference(deployment: InteropDeployment, sim: Simulator, as_id: int) -> InteropReplica:
    """The most advanced honest replica of an AS (up ones first)."""
    honest = deployment.get_replicas(as_id, honest=True)
    return max(honest, key=lambda r: (r.replica.last_executed, sim.is_up(r.node_id), -r.index))


def _get_states(
    deployment: InteropDeployment, sim: Simulator, transfer: CrossTransfer
) -> tuple[CrossState | None, CrossState | None]:
    tid = compute_transfer_id(transfer)
    source = _reference(deployment, sim, transfer.src_as).get_state(tid)
    dest = _reference(deployment, sim, transfer.dst_as).get_state(tid)
    return source, dest


def _is_quiescent(
    deployment: InteropDeployment, sim: Simulator, transfers: Sequence[CrossTransfer]
) -> bool:
    for transfer in transfers:
        source, dest = _get_states(deployment, sim, transfer)
        if source not in _FINAL_SOURCE or dest not in _FINAL_DEST:
            return False
    for node, gateway in deployment.gateways.items():
        if sim.is_up(node) and not gateway.is_idle:
            return False
    for as_id in (AS_A, AS_B):
        for replica in deployment.get_replicas(as_id, honest=True):
            if sim.is_up(replica.node_id) and replica.replica.has_pending_requests:
                return False
    return True


def run_interop(
    spec: InteropSpec,
    plans: Sequence[TransferPlan],
    *,
    faults: FaultPlan = FaultPlan(),
    delay: DelayModel | None = None,
    links: Mapping[tuple[int, int], DelayModel] | None = None,
    cpu: CpuModel | None = None,
    timeout: float = 120.0,
    step: float = 0.5,
    count_bytes: bool = False,
    count_messages: bool = False,
    cpu_clock: Callable[[], float] | None = None,
) -> InteropRun:
    """Run ``plans`` on a deployment of ``spec`` (see the module docstring)."""
    deployment = build_deployment(spec, cpu_clock=cpu_clock)
    sim = Simulator(
        deployment.get_nodes(),
        seed=deployment.seed,
        delay=Uniform(0.005, 0.020) if delay is None else delay,
        cpu=ZeroCpu() if cpu is None else cpu,
        links=links,
        count_bytes=count_bytes,
    )
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    if count_messages:

        def count(at: float, sender: int, receiver: int, message: Any) -> Any:
            name = type(message).__name__
            counts[name] += 1
            sizes[name] += len(encode(message))
            return message

        sim.add_filter(count)

    rng = random.Random(deployment.seed)
    transfers: list[CrossTransfer] = []
    pairs: list[int] = []
    for number, plan in enumerate(plans):
        pair = rng.randrange(spec.pairs) if plan.pair is None else plan.pair
        salt = plan.salt or number.to_bytes(4, "big")
        transfer = deployment.make_transfer(
            plan.src_as,
            plan.sender,
            plan.recipient,
            plan.amount,
            plan.submit_at + plan.timeout,
            salt,
        )
        transfers.append(transfer)
        pairs.append(pair)
        for copy in range(plan.copies):
            gateways = deployment.get_pair((pair + copy) % spec.pairs)
            source_gateway = gateways[0] if plan.src_as == AS_A else gateways[1]
            sim.inject(
                source_gateway,
                TransferRequest(transfer=transfer),
                at=plan.submit_at + copy * plan.copy_gap,
            )
    _schedule_faults(deployment, sim, faults)

    phases: dict[str, dict[str, float]] = {}
    signatures: list[dict[str, Any]] = []

    def observe(record: ReportRecord) -> None:
        if record.kind == "interop/phase":
            data = record.data
            phases.setdefault(data["transfer"], {}).setdefault(data["phase"], record.time)
        elif record.kind == "interop/signature":
            signatures.append({**record.data, "time": record.time, "node": record.node_id})

    sim.on_report(observe)
    last_submission = max((p.submit_at + (p.copies - 1) * p.copy_gap for p in plans), default=0.0)
    quiescent = False
    while sim.now < timeout:
        sim.run(until=min(timeout, sim.now + step))
        if sim.now > last_submission and _is_quiescent(deployment, sim, transfers):
            quiescent = True
            break
    results = []
    for transfer, pair in zip(transfers, pairs, strict=True):
        source, dest = _get_states(deployment, sim, transfer)
        tid = compute_transfer_id(transfer).hex()
        if source is CrossState.RELEASED and dest is CrossState.PAID:
            outcome = "committed"
        elif source in (CrossState.UNLOCKED, CrossState.ABORTED, None) and dest in (
            CrossState.REFUSED,
            None,
        ):
            outcome = "aborted"
        else:
            outcome = "violation"
        results.append(
            TransferResult(
                transfer=transfer,
                transfer_id=tid,
                pair=pair,
                source_state=source,
                dest_state=dest,
                outcome=outcome,
                phases=dict(phases.get(tid, {})),
            )
        )
    run = InteropRun(
        deployment=deployment,
        simulator=sim,
        results=results,
        signatures=signatures,
        stats=sim.stats,
        quiescent=quiescent,
        violations=[],
        message_counts=counts,
        message_bytes=sizes,
    )
    run.violations = check_invariants(run)
    return run


def _schedule_faults(deployment: InteropDeployment, sim: Simulator, faults: FaultPlan) -> None:
    for crash in faults.replica_crashes:
        sim.crash(crash.node, at=crash.at)
        if crash.restart_at is not None:
            sim.restart(crash.node, at=crash.restart_at)
    by_phase: dict[tuple[int, str], GatewayCrash] = {}
    for gateway_crash in faults.gateway_crashes:
        if gateway_crash.at is not None:
            _crash_gateway(deployment, sim, gateway_crash, gateway_crash.at)
        elif gateway_crash.after_phase is not None:
            by_phase[(gateway_crash.node, gateway_crash.after_phase)] = gateway_crash
    if not by_phase:
        return

    def on_phase(record: ReportRecord) -> None:
        if record.kind != "interop/phase":
            return
        crash = by_phase.pop((record.node_id, record.data["phase"]), None)
        if crash is not None and sim.is_up(crash.node):
            _crash_gateway(deployment, sim, crash, record.time)

    sim.on_report(on_phase)


def _crash_gateway(
    deployment: InteropDeployment, sim: Simulator, crash: GatewayCrash, at: float
) -> None:
    sim.crash(crash.node, at=at)
    if crash.restart_after is not None:
        restarted = deployment.make_gateway(crash.node)
        sim.restart(crash.node, at=at + crash.restart_after, node=restarted)

        def swap() -> None:  # the deployment's view follows the running object
            deployment.gateways[crash.node] = restarted

        sim.call_at(at + crash.restart_after, swap)


# --- invariants ---------------------------------------------------------------------------------


def check_invariants(run: InteropRun) -> list[str]:
    """Violations of atomicity and conservation at the end of a run (empty: none).

    * every transfer is committed on both chains (source RELEASED, destination PAID) or
      on neither (source UNLOCKED, ABORTED or never locked; destination REFUSED or never
      paid);
    * honest replicas that executed as far agree on the ledger (same digest);
    * each AS's total supply (balances + escrow) equals its genesis supply;
    * across both chains, the users' value (non-system balances + escrow) and the bridge
      reserves' value are each unchanged: value moves from users on one chain to users on
      the other only against the bridge reserves, and none is created or destroyed.
    """
    deployment, sim = run.deployment, run.simulator
    problems: list[str] = []
    if not run.quiescent:
        problems.append("the run did not reach quiescence before the timeout")
    for result in run.results:
        if result.outcome == "violation":
            problems.append(
                f"transfer {result.transfer_id[:16]}: source {result.source_state}, "
                f"destination {result.dest_state}"
            )
    users_before = users_after = bridges_before = bridges_after = 0
    for as_id in (AS_A, AS_B):
        reference = _reference(deployment, sim, as_id)
        ledger = reference.replica.ledger
        for replica in deployment.get_replicas(as_id, honest=True):
            if replica.replica.last_executed == reference.replica.last_executed:
                if replica.replica.ledger.compute_digest() != ledger.compute_digest():
                    problems.append(f"AS {as_id}: honest replicas disagree at the same height")
                    break
        if ledger.get_total_supply() != ledger.genesis_supply:
            problems.append(f"AS {as_id}: total supply changed")
        genesis = dict(deployment.consensus[as_id].genesis)
        users_before += sum(v for k, v in genesis.items() if not is_system_account(k))
        bridges_before += genesis.get(BRIDGE_ACCOUNT, 0)
        balances = ledger.get_balances()
        users_after += sum(v for k, v in balances.items() if not is_system_account(k))
        users_after += ledger.get_escrowed()
        bridges_after += balances.get(BRIDGE_ACCOUNT, 0)
    if users_before != users_after:
        problems.append(f"users' value changed across chains: {users_before} -> {users_after}")
    if bridges_before != bridges_after:
        problems.append(f"bridge reserves changed in sum: {bridges_before} -> {bridges_after}")
    return problems


# --- per-transaction keys against epoch keys ----------------------------------------------------


@dataclass(frozen=True)
class KeyModeCost:
    mode: str
    transfers: int
    committed: int
    keygens: int
    keygen_cpu_seconds: float  # dealing + encrypting shares, measured in the gateways
    encryptions: int
    key_messages: int  # KeyAsk + KeyGrant + ShareDelivery copies
    key_bytes: int
    messages: int  # every message copy of the run (consensus included)
    bytes: int
    mean_latency: float  # accepted -> release, virtual seconds

    def per_transfer(self, value: float) -> float:
        return value / self.transfers if self.transfers else 0.0

    def as_row(self) -> dict[str, float | int | str]:
        return {
            "mode": self.mode,
            "transfers": self.transfers,
            "committed": self.committed,
            "keygens": self.keygens,
            "keygen_ms_per_transfer": 1e3 * self.per_transfer(self.keygen_cpu_seconds),
            "encryptions_per_transfer": self.per_transfer(self.encryptions),
            "key_messages_per_transfer": self.per_transfer(self.key_messages),
            "key_bytes_per_transfer": self.per_transfer(self.key_bytes),
            "messages_per_transfer": self.per_transfer(self.messages),
            "bytes_per_transfer": self.per_transfer(self.bytes),
            "mean_latency_s": self.mean_latency,
        }


def compare_key_modes(
    *,
    n: int = 4,
    transfers: int = 8,
    pairs: int = 1,
    seed: bytes = b"key-modes",
    spacing: float = 0.2,
) -> dict[str, KeyModeCost]:
    """Run the same transfers with per-transaction keys and with epoch keys."""
    plans = [
        TransferPlan(
            src_as=AS_A if i % 2 == 0 else AS_B,
            sender="alice",
            recipient="bob",
            amount=1 + i,
            submit_at=0.5 + spacing * i,
            timeout=30.0,
        )
        for i in range(transfers)
    ]
    costs: dict[str, KeyModeCost] = {}
    for mode in (KeyMode.PER_TX, KeyMode.EPOCH):
        spec = InteropSpec(seed=seed, n=(n, n), pairs=pairs, mode=mode)
        run = run_interop(
            spec,
            plans,
            count_bytes=True,
            count_messages=True,
            cpu_clock=time.thread_time,
            timeout=120.0,
        )
        totals = run.get_gateway_totals()
        latencies = [
            r.phases["release"] - r.phases["accepted"]
            for r in run.results
            if "release" in r.phases and "accepted" in r.phases
        ]
        key_names = [m.__name__ for m in _KEY_MESSAGES]
        costs[mode.value] = KeyModeCost(
            mode=mode.value,
            transfers=transfers,
            committed=run.committed,
            keygens=int(totals["keygens"]),
            keygen_cpu_seconds=totals["keygen_seconds"],
            encryptions=int(totals["encryptions"]),
            key_messages=sum(run.message_counts[k] for k in key_names),
            key_bytes=sum(run.message_bytes[k] for k in key_names),
            messages=run.stats.messages_sent,
            bytes=run.stats.bytes_sent,
            mean_latency=sum(latencies) / len(latencies) if latencies else 0.0,
        )
    return costs
